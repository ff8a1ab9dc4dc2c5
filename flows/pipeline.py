"""The whole pipeline as one Prefect flow: one task per step, each a thin call into smar.stages.

Run it with `smar pipeline`, or serve it as a deployment (`smar pipeline --serve`) and
trigger runs with a parameter form from the Prefect UI.
"""

import os
from pathlib import Path

for _name, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "smar",
}.items():
    os.environ.setdefault(_name, _value)
if os.environ.get("PREFECT_HOME"):  # Prefect creates its home, but not missing parents
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)

from prefect import flow, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from smar import stages  # noqa: E402
from smar.config import SmarConfig, load_config  # noqa: E402
from smar.evaluate import format_table  # noqa: E402
from smar.paths import Paths  # noqa: E402

DEPLOYMENT_NAME = "default"


def _step_task(name: str, step):
    """A Prefect task around one step; always runs (DVC is the tool that skips unchanged steps)."""

    def run_step(config: SmarConfig, paths: Paths) -> dict:
        result = step(config, paths)
        return result if isinstance(result, dict) else vars(result)

    return task(run_step, name=name, cache_policy=NO_CACHE)


def not_a_user_error(task, task_run, state) -> bool:
    """Retry crashes and transient failures; not errors only the user can fix (bad data, bad settings)."""
    from smar.errors import SmarError

    return not isinstance(state.result(raise_on_failure=False), SmarError)


validate_task = _step_task("validate", stages.validate)
train_task = _step_task("train", stages.train)
export_task = _step_task("export", stages.export)
index_task = _step_task("index", stages.build_index)
evaluate_task = _step_task("evaluate", stages.evaluate)
register_task = _step_task("register", stages.register)


@flow(name="smar-pipeline", log_prints=True)
def smar_pipeline(
    params_file: str = "params.yaml",
    data_dir: str = "data",
    outputs_dir: str = "outputs",
    config: SmarConfig | None = None,
) -> dict:
    """validate -> train -> export -> index -> evaluate -> register, on files under `outputs_dir`.

    `config` overrides `params_file` when given (the Prefect UI renders it as a form).
    """
    config = config or load_config(params_file)
    paths = Paths(data=Path(data_dir), outputs=Path(outputs_dir))
    summary = {"data": data_dir, "outputs": outputs_dir}
    summary["validate"] = validate_task(config, paths)["counts"]
    summary["train"] = train_task.with_options(retries=config.train.retries, retry_condition_fn=not_a_user_error)(config, paths)
    summary["export"] = export_task(config, paths)
    summary["index"] = index_task(config, paths)
    summary["evaluate"] = evaluate_task(config, paths)
    summary["register"] = register_task(config, paths)
    create_table_artifact(key="promotion-decision", table=[decision_row(summary["register"])], description="The promotion gate's decision")
    create_markdown_artifact(key="smar-pipeline-summary", markdown=f"```\n{format_summary(summary)}\n```", description="Evaluation and promotion")
    return summary


def decision_row(registration: dict) -> dict:
    def recall(value):
        return round(value, 4) if value is not None else None

    return {
        "model": registration["model_name"],
        "version": registration["version"],
        "decision": "promoted" if registration["promote"] else "rejected",
        "recall@10": recall(registration["recall_at_10"]),
        "champion before": registration["champion_version"],
        "champion recall@10": recall(registration["champion_recall_at_10"]),
        "reason": registration["reason"],
    }


def format_summary(summary: dict) -> str:
    """The one-screen summary printed at the end of `smar pipeline` (and kept as a Prefect artifact)."""
    train, evaluation, registration = summary["train"], summary["evaluate"], summary["register"]
    decision = "PROMOTED to champion" if registration["promote"] else "NOT promoted"
    return "\n".join(
        [
            "",
            f"smar pipeline  data={summary['data']}  outputs={summary['outputs']}",
            f"  validated   {summary['validate']['items']} items, {summary['validate']['queries']} queries, {summary['validate']['qrels']} qrels",
            f"  trained     {train['kind']} in {train['seconds']:.0f} s, final loss {train['final_loss']:.3f}, valid Recall@10 {train['valid_recall_at_10']:.3f}",
            f"  indexed     {summary['index']['items']} items x {', '.join(summary['index']['views'])} ({summary['index']['factory']}, dim {summary['index']['dim']})",
            "",
            f"Evaluation on {evaluation['queries']} {evaluation['split']} queries over {evaluation['items']} items"
            f" (served by index: {', '.join(f'{view} {count}' for view, count in evaluation['served_by_index'].items())}):",
            format_table(evaluation),
            "",
            f"Model {registration['model_name']} version {registration['version']} (MLflow run {registration['run_id']})",
            f"  {decision}: {registration['reason']}.",
        ]
    )


def serve_deployment(params_file: str = "params.yaml", data_dir: str = "data", outputs_dir: str = "outputs") -> None:
    """Serve the flow as deployment `smar-pipeline/default`; runs triggered in the UI execute here."""
    smar_pipeline.serve(
        name=DEPLOYMENT_NAME,
        parameters={"params_file": params_file, "data_dir": data_dir, "outputs_dir": outputs_dir},
        description="The whole smar pipeline. Leave `config` empty to use the params file.",
    )


if __name__ == "__main__":
    serve_deployment()
