"""The pipeline as Prefect flows, one task per step, each a thin call into smar.pipeline.steps:
`smar-pipeline` (train and ship) and `smar-reindex` (a changed catalog with the champion's towers).

Run it with `smar pipeline`, or serve it as a deployment (`smar pipeline --serve`) and
trigger runs with a parameter form from the Prefect UI.
"""

from pathlib import Path

from prefect import flow, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from smar.core.config import ExportConfig, SmarConfig, SmarOverrides, load_config
from smar.core.errors import ConfigError
from smar.core.paths import Paths
from smar.data.revision import materialise
from smar.pipeline.steps import run_step
from smar.pipeline.summary import decision_row, format_summary
from smar.retrieval.export import export_shard, finish_export, start_export

DEPLOYMENT_NAME = "default"


def _step_task(name: str):
    """A Prefect task around one step; always runs (DVC is the tool that skips unchanged steps)."""

    def step(config: SmarConfig, paths: Paths) -> dict:
        return run_step(name, config, paths)

    return task(step, name=name, cache_policy=NO_CACHE)


def not_a_user_error(task, task_run, state) -> bool:
    """Retry crashes and transient failures; not errors only the user can fix (bad data, bad settings)."""
    from smar.core.errors import SmarError

    return not isinstance(state.result(raise_on_failure=False), SmarError)


def tracking_retries(config: SmarConfig) -> dict:
    """Task options of the steps after training that need the tracking server: retried while it is unreachable."""
    settings = config.register_
    return {
        "retries": settings.retries,
        "retry_delay_seconds": settings.retry_delay_seconds,
        "retry_condition_fn": not_a_user_error,
    }


materialise_task = task(materialise, name="materialise-data", cache_policy=NO_CACHE)
validate_task = _step_task("validate")
fetch_champion_task = _step_task("fetch_champion")
train_task = _step_task("train")
start_export_task = task(start_export, name="export-start", cache_policy=NO_CACHE)
export_shard_task = task(export_shard, name="export-shard", cache_policy=NO_CACHE)
finish_export_task = task(finish_export, name="export-finish", cache_policy=NO_CACHE)
index_task = _step_task("index")
evaluate_task = _step_task("evaluate")
register_task = _step_task("register")


@flow(name="smar-pipeline", log_prints=True)
def smar_pipeline(
    params_file: str = "params.yaml",
    data_dir: str = "data",
    outputs_dir: str = "outputs",
    config: SmarOverrides | None = None,
    data_rev: str | None = None,
) -> dict:
    """validate -> train -> export -> index -> evaluate -> register, on files under `outputs_dir`.

    `config` holds overrides laid over `params_file`: the values set, nested by section (the
    Prefect UI renders it as a typed form that starts from the file's values); a field left
    empty keeps the file's value. `data_rev` (a git commit, branch or tag) picks the version of
    `data_dir` that its `.dvc` pointer records at that revision; the run materialises it with DVC
    under `outputs_dir/datasets/` and the training run is tagged with it (`data.rev`).
    """
    config, paths, summary = _start(params_file, data_dir, outputs_dir, config, data_rev)
    summary["train"] = train_task.with_options(retries=config.train.retries, retry_condition_fn=not_a_user_error)(
        config, paths
    )
    return _index_and_register(config, paths, summary)


@flow(name="smar-reindex", log_prints=True)
def smar_reindex(
    params_file: str = "params.yaml",
    data_dir: str = "data",
    outputs_dir: str = "outputs",
    config: SmarOverrides | None = None,
    data_rev: str | None = None,
) -> dict:
    """A changed catalog without retraining: validate -> the champion's towers -> export -> index
    -> evaluate -> register, through the same gate on the same queries as a training run."""
    config, paths, summary = _start(params_file, data_dir, outputs_dir, config, data_rev)
    summary["champion"] = fetch_champion_task.with_options(**tracking_retries(config))(config, paths)
    return _index_and_register(config, paths, summary)


def _start(params_file: str, data_dir: str, outputs_dir: str, overrides, data_rev: str | None):
    """The run's config, its dataset (materialised when `data_rev` names one), validated."""
    config = load_config(params_file, overrides=overrides)
    shard_runner(config.export)  # a missing integration fails here, before any work
    if data_rev:
        data_dir = str(materialise_task(data_rev, Path(data_dir), Paths(outputs=Path(outputs_dir)).datasets_dir))
    paths = Paths(data=Path(data_dir), outputs=Path(outputs_dir))
    summary = {"data": data_dir, "outputs": outputs_dir, "validate": validate_task(config, paths)["counts"]}
    return config, paths, summary


def _index_and_register(config: SmarConfig, paths: Paths, summary: dict) -> dict:
    """export -> index -> evaluate -> register after the towers are in place, and the run's artifacts."""
    summary["export"] = export_flow.with_options(task_runner=shard_runner(config.export))(config, paths)
    summary["index"] = index_task(config, paths)
    summary["evaluate"] = evaluate_task.with_options(**tracking_retries(config))(config, paths)
    summary["register"] = register_task.with_options(**tracking_retries(config))(config, paths)
    create_table_artifact(
        key="promotion-decision", table=[decision_row(summary["register"])], description="The promotion gate's decision"
    )
    create_markdown_artifact(
        key="smar-pipeline-summary",
        markdown=f"```\n{format_summary(summary)}\n```",
        description="Evaluation and promotion",
    )
    return summary


@flow(name="smar-export")
def export_flow(config: SmarConfig, paths: Paths) -> dict:
    """The export step with its shards mapped over the task runner (threads, Dask or Ray)."""
    shards = start_export_task(config, paths)
    done = export_shard_task.map(unmapped(config), unmapped(paths), shards)
    return finish_export_task(config, paths, done.result())


def shard_runner(settings: ExportConfig):
    """The task runner `export.task_runner` names, `export.workers` wide (or on `export.cluster_address`)."""
    if settings.task_runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=settings.workers)
    extra = {"dask": "prefect_dask", "ray": "prefect_ray"}[settings.task_runner]
    try:
        module = __import__(extra)
    except ImportError:
        raise ConfigError(
            f"export.task_runner is '{settings.task_runner}' but {extra.replace('_', '-')} is not installed. "
            f"Fix: pip install -c constraints.txt -e '.[{settings.task_runner}]', or set export.task_runner: threads."
        ) from None
    if settings.task_runner == "dask":
        if settings.cluster_address:
            return module.DaskTaskRunner(address=settings.cluster_address)
        return module.DaskTaskRunner(
            cluster_kwargs={"n_workers": settings.workers, "threads_per_worker": 1, "dashboard_address": None}
        )
    return module.RayTaskRunner(
        address=settings.cluster_address,
        init_kwargs={"num_cpus": settings.workers} if not settings.cluster_address else {},
    )


def deployment_parameters(params_file: str, data_dir: str, outputs_dir: str) -> dict:
    """The deployment's default parameters: the run form's `config` starts from the params file's values now."""
    shown = load_config(params_file).model_dump(mode="json", by_alias=True, exclude_none=True)
    return {"params_file": params_file, "data_dir": data_dir, "outputs_dir": outputs_dir, "config": shown}


def serve_deployment(params_file: str = "params.yaml", data_dir: str = "data", outputs_dir: str = "outputs") -> None:
    """Serve the flow as deployment `smar-pipeline/default`; runs triggered in the UI execute here."""
    smar_pipeline.serve(
        name=DEPLOYMENT_NAME,
        parameters=deployment_parameters(params_file, data_dir, outputs_dir),
        description="The whole smar pipeline. `config` starts from the params file's values: what you change "
        "overrides them; "
        "a field you empty keeps the file's value.",
    )


if __name__ == "__main__":
    serve_deployment()
