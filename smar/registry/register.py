"""Step 7, register: log the retriever as one MLflow pyfunc version, then run the promotion gate.

The new version gets alias `challenger`. It takes `champion` only if its score on
`evaluate.primary_metric` (Recall@10 by default) passes `register.threshold` AND is not worse
(beyond `tolerance`) than the current champion's, both measured here, through their served
pyfunc models, on the same evaluation queries: those that neither version trained on
(smar.registry.gate). The alias moves by compare-and-set
(smar.registry.promotion), so a promotion racing this one cannot leave the worse model as
champion. The decision, its reason and the numbers behind it are tags on the version, and a
one-line description (kind, score, data version, decision) shows in the versions list.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from smar.core.config import SmarConfig
from smar.core.errors import ConfigError
from smar.core.paths import Paths, require, write_text_atomic
from smar.core.tracking import Tracker, run_id_of
from smar.data.dataset import data_version, load_dataset
from smar.model.checkpoint import saved_config, trained_queries
from smar.registry.gate import Comparison, Measured, compare_on_unseen, gate
from smar.registry.promotion import current_champion

CHALLENGER = "challenger"
STATE_TAG = "smar.state"  # registering -> registered: a version still registering has no gate decision yet
log = logging.getLogger(__name__)
RUNTIME_PACKAGES = (
    "torch",
    "transformers",
    "timm",
    "tokenizers",
    "onnxruntime",
    "faiss-cpu",
    "numpy",
    "pandas",
    "pyarrow",
    "pillow",
    "pydantic",
    "mlflow",
)


def register(config: SmarConfig, paths: Paths, tracker: Tracker | None = None) -> dict:
    """Register the model and index as a new version (alias `challenger`), then run the gate on it.
    A registration that fails part-way (the tracking server lost) removes its version."""
    import mlflow
    from mlflow import MlflowClient

    if tracker is None:
        raise ConfigError(
            "register records a version in the MLflow model registry: run it with a tracker (the CLI and the flow "
            "pass one)."
        )
    settings = config.register_
    require(paths.index.root, "index")
    require(paths.evaluation.metrics, "evaluate")
    run_id = run_id_of(require(paths.model.root, "train"))
    client = MlflowClient()
    withdraw_unfinished(client, settings.model_name, run_id)  # left by an earlier attempt that lost the server
    with mlflow.start_run(run_id=run_id):  # the version's model is logged in the training's run
        version = log_version(settings.model_name, paths.model.root, paths.index.root)
    try:
        result = judge(config, paths, client, version, run_id, tracker)
    except BaseException:
        withdraw(client, settings.model_name, version)
        raise
    client.set_model_version_tag(settings.model_name, version, STATE_TAG, "registered")
    write_text_atomic(paths.registration, json.dumps(result, indent=2) + "\n")
    return result


def judge(config: SmarConfig, paths: Paths, client, version: str, run_id: str, tracker: Tracker) -> dict:
    """Alias `challenger`, the gate on the evaluation queries, and its decision as tags, description and run metrics."""
    settings, split, metric = config.register_, config.evaluate.split, config.evaluate.primary
    dataset = load_dataset(paths.data)
    queries, relevant = dataset.split_queries(split), dataset.relevant_items(split)
    texts = dict(zip(queries["query_id"], queries["text"]))
    client.set_registered_model_alias(settings.model_name, CHALLENGER, version)

    measured = {}  # version -> Measured, each version's search run once

    def measure(number: str) -> Measured:
        if number not in measured:
            measured[number] = measure_version(f"models:/{settings.model_name}/{number}", queries, metric.k)
        return measured[number]

    def compare(champion_version: str | None) -> Comparison:
        champion = measure(champion_version) if champion_version else None
        return compare_on_unseen(measure(version), champion, relevant, metric, texts)

    decision, champion_version, comparison = gate(
        client,
        settings.model_name,
        version,
        compare,
        threshold=settings.threshold,
        tolerance=settings.tolerance,
        min_queries=settings.min_gate_queries,
    )
    tags = gate_tags(decision, comparison, champion_version, settings.threshold, split)
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, version, key, value)
    client.update_model_version(
        settings.model_name, version, description=describe_version(config, paths, decision, comparison)
    )
    tracker.set_tags(run_id, {"registered_version": version, "gate.decision": tags["gate.decision"]})
    if comparison.candidate is not None:
        tracker.log_metrics(run_id, {metric.tracked("gate"): comparison.candidate, "gate.queries": comparison.queries})
    return {
        "model_name": settings.model_name,
        "version": version,
        "run_id": run_id,
        "metric": metric.key,
        "score": comparison.candidate,
        "champion_version": champion_version,
        "champion_score": comparison.champion,
        "gate_queries": comparison.queries,
        "gate_queries_left_out": comparison.left_out,
    } | asdict(decision)


def withdraw(client, model_name: str, version: str) -> None:
    """Delete a version whose registration failed part-way, unless it already took `champion`
    (then only its tags are missing, and serving it is what the gate decided)."""
    try:
        if current_champion(client, model_name) != version:
            client.delete_model_version(model_name, version)
            log.warning("registration of %s version %s failed: the version was removed", model_name, version)
    except Exception as error:  # the tracking server is still away: the run's next attempt removes it
        log.warning(
            "could not remove the unfinished %s version %s (%s); the next register of this run will",
            model_name,
            version,
            error,
        )


def withdraw_unfinished(client, model_name: str, run_id: str) -> None:
    """Remove this run's versions whose registration never finished (tag `smar.state: registering`)."""
    for found in client.search_model_versions(f"name='{model_name}' and run_id='{run_id}'"):
        if found.tags.get(STATE_TAG) == "registering":
            withdraw(client, model_name, str(found.version))


def gate_tags(
    decision, comparison: Comparison, champion_version: str | None, threshold: float, split: str
) -> dict[str, str]:
    """The gate's decision and the numbers behind it, as tags on the version."""

    def number(value: float | None) -> str:
        return f"{value:.6f}" if value is not None else "none"

    return {
        "gate.decision": "promoted" if decision.promote else "rejected",
        "gate.reason": decision.reason,
        "gate.metric": comparison.metric.key,
        comparison.metric.tracked("gate"): number(comparison.candidate),
        "gate.threshold": str(threshold),
        "gate.split": split,
        "gate.queries": str(comparison.queries),
        "gate.queries_left_out": str(comparison.left_out),
        "gate.champion_version": champion_version or "none",
        comparison.metric.tracked("gate", "champion"): number(comparison.champion),
    }


def describe_version(config: SmarConfig, paths: Paths, decision, comparison: Comparison) -> str:
    """One line for the registry's versions list: kind, the gate's score, data version, the gate's decision."""
    version = data_version(paths.data)
    score = (
        f"{comparison.metric.label} {comparison.candidate:.4f} on {comparison.queries} unseen "
        f"{config.evaluate.split} queries"
        if comparison.candidate is not None
        else "no unseen queries"
    )
    data = f"{version.get('dataset', paths.data.name)} ({version['dvc_md5'][:8]})"
    return (
        f"{saved_config(paths.model.root).kind} · {score} · data {data} · gate: "
        f"{'promoted' if decision.promote else 'rejected'}"
    )


def log_version(model_name: str, model_dir: Path, index_dir: Path) -> str:
    """Log the retriever (checkpoint + indexes) as one pyfunc model in the active run and register
    it, tagged `smar.state: registering` until its gate has decided; return the version."""
    import mlflow
    import mlflow.pyfunc

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*input example", category=UserWarning)  # the signature is explicit
        info = mlflow.pyfunc.log_model(
            name="retriever",
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"model": str(model_dir), "index": str(index_dir)},
            signature=_signature(),
            pip_requirements=_pinned_requirements(),
        )
    return str(mlflow.register_model(info.model_uri, model_name, tags={STATE_TAG: "registering"}).version)


def measure_version(model_uri: str, queries, k: int) -> Measured:
    """A registered version's top-k rankings of `queries`, searched through its pyfunc model as
    it is served, and the ids and texts of the queries it trained on (from its saved model)."""
    import mlflow.pyfunc
    import pandas as pd

    from smar.evaluation.evaluate import rank

    model = mlflow.pyfunc.load_model(model_uri)

    def search(texts: list[str], k: int) -> list[list[str]]:
        return model.predict(pd.DataFrame({"query": texts}), params={"k": k})["item_ids"].tolist()

    from smar.traffic.dataset import normalise

    trained = trained_queries(model.unwrap_python_model().retriever.model_dir)
    if trained is None:
        return Measured(rank(search, queries, k), None)
    ids, texts = trained
    return Measured(rank(search, queries, k), ids, frozenset(map(normalise, texts or ())))


def _signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("string", "query")]), params=ParamSchema([ParamSpec("k", "long", 10)]))


def _pinned_requirements() -> list[str]:
    """The runtime packages at the versions this model was built with (smar itself is installed from this repo)."""
    pins = []
    for package in RUNTIME_PACKAGES:
        try:
            pins.append(f"{package}=={metadata.version(package).split('+')[0]}")
        except metadata.PackageNotFoundError:
            pass
    return pins
