"""The pipeline as Prefect flows, one task per step, each a thin call into smar.pipeline.steps:
`smar-pipeline` (train and ship), `smar-reindex` (a changed catalog with the champion's towers),
`smar-learn` (the search log becomes a dataset version, and the pipeline trains on it) and
`smar-promote` (the waiting challenger promoted, or not, on the interleaving experiment's evidence).

Run it with `smar pipeline`, or serve it as a deployment (`smar pipeline --serve`) and
trigger runs with a parameter form from the Prefect UI (its fields: smar.pipeline.form).
"""

from dataclasses import replace
from pathlib import Path

from prefect import flow, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from smar.core.config import ClusterConfig, SmarConfig, load_config
from smar.core.errors import ConfigError
from smar.core.paths import Paths
from smar.data.revision import materialise, track
from smar.features.step import featurize_shard, finish_featurize, start_featurize
from smar.model.checkpoint import saved_config
from smar.pipeline import form
from smar.pipeline.steps import run_step
from smar.pipeline.summary import decision_row, format_summary
from smar.retrieval.export import export_shard, finish_export, start_export
from smar.traffic.dataset import from_logs

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
start_featurize_task = task(start_featurize, name="featurize-start", cache_policy=NO_CACHE)
featurize_shard_task = task(featurize_shard, name="featurize-shard", cache_policy=NO_CACHE)
finish_featurize_task = task(finish_featurize, name="featurize-finish", cache_policy=NO_CACHE)
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
    model_kind: form.ModelKindParameter = None,
    epochs: form.EpochsParameter = None,
    learning_rate: form.LearningRateParameter = None,
    batch_size: form.BatchSizeParameter = None,
    data_rev: form.DataRevParameter = None,
    overrides: form.OverridesParameter = None,
    params_file: str = "params.yaml",
    data_dir: str = "data",
    outputs_dir: str = "outputs",
) -> dict:
    """validate -> featurize -> train -> export -> index -> evaluate -> register, on files under `outputs_dir`.

    Every value a run does not set comes from `params_file`.

    Args:
        model_kind: The model to train (model.kind): smar_fused_only (the default: SMAR's towers, the fused
            loss alone), smar (the paper's three losses), text_only, image_only, late_fusion or smar_no_xattn.
        epochs: Passes over the training queries (train.epochs).
        learning_rate: The optimiser's learning rate (train.learning_rate).
        batch_size: Queries per batch, and so in-batch negatives (train.batch_size).
        data_rev: A git commit, branch or tag: the dataset version its data.dvc records, materialised with DVC
            under outputs_dir/datasets/ (the training run is tagged data.rev). Empty: data_dir as it is.
        overrides: Any other values of the params file, by section, e.g. {"train": {"weight_decay": 0.02}};
            a wrong name fails the run before any work.
        params_file: The params file, in the directory the run executes in.
        data_dir: The dataset.
        outputs_dir: Where the steps write.
    """
    per_run = {"model_kind": model_kind, "epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size}
    config, paths, summary = _start(
        params_file, data_dir, outputs_dir, form.run_overrides(overrides, **per_run), data_rev
    )
    summary["featurize"] = featurize_flow.with_options(task_runner=shard_runner(config.cluster))(config, paths)
    summary["train"] = train_task.with_options(retries=config.train.retries, retry_condition_fn=not_a_user_error)(
        config, paths
    )
    return _index_and_register(config, paths, summary)


@flow(name="smar-reindex", log_prints=True)
def smar_reindex(
    data_rev: form.DataRevParameter = None,
    overrides: form.OverridesParameter = None,
    params_file: str = "params.yaml",
    data_dir: str = "data",
    outputs_dir: str = "outputs",
) -> dict:
    """A changed catalog without retraining: validate -> the champion's towers -> featurize (at the
    champion's settings) -> export -> index -> evaluate -> register, through the same gate on the
    same queries as a training run.

    Every value a run does not set comes from `params_file`.

    Args:
        data_rev: A git commit, branch or tag: the catalog version its data.dvc records, materialised with DVC
            under outputs_dir/datasets/. Empty: data_dir as it is.
        overrides: Any other values of the params file, by section, e.g. {"index": {"target_recall": 0.97}};
            a wrong name fails the run before any work.
        params_file: The params file, in the directory the run executes in.
        data_dir: The catalog: where the day's items land.
        outputs_dir: Where the steps write.
    """
    config, paths, summary = _start(params_file, data_dir, outputs_dir, form.run_overrides(overrides), data_rev)
    summary["champion"] = fetch_champion_task.with_options(**tracking_retries(config))(config, paths)
    champion = config.model_copy(update={"model": saved_config(paths.model.root)})
    summary["featurize"] = featurize_flow.with_options(task_runner=shard_runner(config.cluster))(champion, paths)
    return _index_and_register(config, paths, summary)


@task(name="from-logs", cache_policy=NO_CACHE)
def from_logs_task(log_dir: str, catalog_dir: str, dataset_dir: str, config: SmarConfig) -> dict:
    manifest = from_logs(Path(log_dir), Path(catalog_dir), Path(dataset_dir), config.from_logs)
    pointer = track(Path(dataset_dir))
    return manifest["counts"] | {"kept": manifest["source"]["kept"], "dvc": str(pointer) if pointer else None}


@flow(name="smar-learn", log_prints=True)
def smar_learn(
    log_dir: str = "outputs/search-log",
    catalog_dir: str = "data",
    dataset_dir: str = "data-from-logs",
    overrides: form.OverridesParameter = None,
    params_file: str = "params.yaml",
    outputs_dir: str = "outputs/learn",
) -> dict:
    """The shop's own traffic: the search log -> a dataset version (from-logs, added to DVC in a DVC
    project) -> the whole pipeline on it -> a registered challenger, promoted only through the gate.

    Args:
        log_dir: The search log the servers write (serve.log_dir).
        catalog_dir: The catalog the logged searches ranked.
        dataset_dir: Where the new dataset version goes (replaced only when it builds).
        overrides: Any other values of the params file, by section, e.g. {"from_logs": {"test_days": 7}}.
        params_file: The params file, in the directory the run executes in.
        outputs_dir: Where the pipeline's steps write.
    """
    config = load_config(params_file, overrides=form.run_overrides(overrides))
    built = from_logs_task(log_dir, catalog_dir, dataset_dir, config)
    summary = smar_pipeline(overrides=overrides, params_file=params_file, data_dir=dataset_dir, outputs_dir=outputs_dir)
    return {"from_logs": built} | summary


@flow(name="smar-promote", log_prints=True)
def smar_promote(params_file: str = "params.yaml", log_dir: str = "") -> dict:
    """The challenger waiting for live traffic (register.await_interleaving): promoted once the
    interleaved searches in the log show shoppers prefer it, rejected once they show the
    opposite, not distinguishable after register.interleaving_searches, else still waiting.

    Args:
        params_file: The params file, in the directory the run executes in.
        log_dir: The search log the servers write; empty: serve.log_dir.
    """
    from smar.registry.on_traffic import promote_on_traffic

    config = load_config(params_file)
    decided = promote_on_traffic(config, Path(log_dir) if log_dir else config.serve.log_dir)
    create_table_artifact(
        key="interleaving-decision",
        table=[{key: value for key, value in decided.items() if key != "preference"}],
        description="Champion and challenger on live traffic",
    )
    print(f"{decided['decision']}: {decided['reason']}")
    return decided


def _start(params_file: str, data_dir: str, outputs_dir: str, overrides: dict, data_rev: str | None):
    """The run's config, its dataset (materialised when `data_rev` names one), validated."""
    config = load_config(params_file, overrides=overrides)
    shard_runner(config.cluster)  # a missing integration fails here, before any work
    paths = Paths(data=Path(data_dir), outputs=Path(outputs_dir))
    if data_rev:
        paths = replace(paths, data=materialise_task(data_rev, paths.data, paths.datasets_dir))
    summary = {"data": str(paths.data), "outputs": outputs_dir, "validate": validate_task(config, paths)["counts"]}
    return config, paths, summary


def _index_and_register(config: SmarConfig, paths: Paths, summary: dict) -> dict:
    """export -> index -> evaluate -> register after the towers are in place, and the run's artifacts."""
    summary["export"] = export_flow.with_options(task_runner=shard_runner(config.cluster))(config, paths)
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


@flow(name="smar-featurize")
def featurize_flow(config: SmarConfig, paths: Paths) -> dict:
    """The featurize step with its shards mapped over the task runner (threads, Dask or Ray)."""
    shards = start_featurize_task(config, paths)
    done = featurize_shard_task.map(unmapped(config), unmapped(paths), shards)
    return finish_featurize_task(config, paths, done.result())


@flow(name="smar-export")
def export_flow(config: SmarConfig, paths: Paths) -> dict:
    """The export step with its shards mapped over the task runner (threads, Dask or Ray)."""
    shards = start_export_task(config, paths)
    done = export_shard_task.map(unmapped(config), unmapped(paths), shards)
    return finish_export_task(config, paths, done.result())


def shard_runner(settings: ClusterConfig):
    """The task runner `cluster.task_runner` names, `cluster.workers` wide (or on `cluster.address`)."""
    if settings.task_runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=settings.workers)
    extra = {"dask": "prefect_dask", "ray": "prefect_ray"}[settings.task_runner]
    try:
        module = __import__(extra)
    except ImportError:
        raise ConfigError(
            f"cluster.task_runner is '{settings.task_runner}' but {extra.replace('_', '-')} is not installed. "
            f"Fix: pip install -c constraints.txt -e '.[{settings.task_runner}]', or set cluster.task_runner: threads."
        ) from None
    if settings.task_runner == "dask":
        if settings.address:
            return module.DaskTaskRunner(address=settings.address)
        return module.DaskTaskRunner(
            cluster_kwargs={"n_workers": settings.workers, "threads_per_worker": 1, "dashboard_address": None}
        )
    return module.RayTaskRunner(
        address=settings.address,
        init_kwargs={"num_cpus": settings.workers} if not settings.address else {},
    )


def serve_deployment(params_file: str = "params.yaml", data_dir: str = "data", outputs_dir: str = "outputs") -> None:
    """Serve the flow as deployment `smar-pipeline/default`; runs triggered in the UI execute here."""
    smar_pipeline.serve(
        name=DEPLOYMENT_NAME,
        parameters=form.deployment_parameters(params_file, data_dir, outputs_dir),
        description="The whole smar pipeline. The form starts from the params file's values; `overrides` takes "
        'any other value of the file, by section: {"train": {"weight_decay": 0.02}}.',
    )


if __name__ == "__main__":
    serve_deployment()
