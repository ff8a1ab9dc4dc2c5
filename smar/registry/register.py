"""Step 7, register: log the retriever as one MLflow pyfunc version, then run the promotion gate.

The new version gets alias `challenger`. It takes `champion` only through the gate
(smar.registry.gate): its score on `evaluate.primary_metric` (Recall@10 by default) passes
`register.threshold`, and a paired bootstrap of its per-query difference from the current
champion, both measured here through their served pyfunc models on the evaluation queries
neither version trained on, shows it no worse beyond `register.tolerance`, overall and in every
slice; else it is rejected, or, when the interval cannot tell, the champion stays. A reindex
(a run that `fetch_champion` started) is judged as one: the new index against exact search,
the new items findable by their titles, and the queries whose items are in both catalogs.
The alias moves by compare-and-set (smar.registry.promotion), so a promotion racing this one
cannot leave the worse model as champion. The decision, its interval and the numbers behind it
are tags on the version, and a one-line description (kind, score, interval, data version,
decision) shows in the versions list.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from smar.core.config import SmarConfig
from smar.core.errors import ConfigError
from smar.core.paths import Paths, require, write_text_atomic
from smar.core.tracking import Tracker, run_id_of
from smar.data.dataset import data_version, load_dataset
from smar.model.checkpoint import saved_config, trained_queries
from smar.registry.gate import (
    Comparison,
    Decision,
    Measured,
    compare_on_unseen,
    gate,
    promotion_decision,
    reindex_decision,
)
from smar.registry.on_traffic import AWAITING
from smar.registry.promotion import current_champion

CHALLENGER = "challenger"
REINDEX_TAG = "reindex.from_version"  # set by fetch_champion on a reindex's run
NEW_ITEMS_TRIED = 1000  # a reindex searches at most this many of its new items by their titles
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


@dataclass(frozen=True)
class LoadedVersion:
    """A registered version loaded as it is served: its rankings of the evaluation queries, the
    items its index serves, and its search (texts, k -> ranked item ids)."""

    measured: Measured
    item_ids: frozenset[str]
    search: Callable[[list[str], int], list[list[str]]]


def judge(config: SmarConfig, paths: Paths, client, version: str, run_id: str, tracker: Tracker) -> dict:
    """Alias `challenger`, the gate on the evaluation queries, and its decision as tags, description and run metrics."""
    from smar.evaluation.slices import query_slices

    settings, split, metric = config.register_, config.evaluate.split, config.evaluate.primary
    dataset = load_dataset(paths.data)
    queries, relevant = dataset.split_queries(split), dataset.relevant_items(split)
    texts = dict(zip(queries["query_id"], queries["text"]))
    slices = query_slices(dataset, split)
    reindex_of = client.get_run(run_id).data.tags.get(REINDEX_TAG)
    client.set_registered_model_alias(settings.model_name, CHALLENGER, version)

    loaded: dict[str, LoadedVersion] = {}  # each version searched once

    def load(number: str) -> LoadedVersion:
        if number not in loaded:
            loaded[number] = load_version(f"models:/{settings.model_name}/{number}", queries, metric.k)
        return loaded[number]

    def judged(champion_version: str | None) -> tuple[Decision, Comparison]:
        candidate, champion = load(version), load(champion_version) if champion_version else None

        def compare(only: set[str] | None = None) -> Comparison:
            against = champion.measured if champion else None
            return compare_on_unseen(
                candidate.measured, against, relevant, metric, texts, slices, settings.confidence, only
            )

        if reindex_of and champion:
            return judge_reindex(config, paths, dataset.items, relevant, candidate, champion, compare)
        comparison = compare()
        decision = promotion_decision(comparison, settings.threshold, settings.tolerance, settings.min_gate_queries)
        if decision.promote and champion and settings.await_interleaving:  # shoppers decide (smar.registry.on_traffic)
            decision = Decision(False, f"{decision.reason}; it waits for the interleaving experiment", AWAITING)
        return decision, comparison

    decision, champion_version, comparison = gate(client, settings.model_name, version, judged)
    tags = gate_tags(decision, comparison, champion_version, settings, split)
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
        "reindex_of": reindex_of,
        "difference": asdict(comparison.difference) if comparison.difference else None,
        "slices": {name: asdict(interval) for name, interval in comparison.slices.items()},
    } | asdict(decision)


def judge_reindex(
    config: SmarConfig, paths: Paths, items, relevant: dict, candidate: LoadedVersion, champion: LoadedVersion, compare
) -> tuple[Decision, Comparison]:
    """A reindex's decision (smar.registry.gate.reindex_decision) on the queries whose relevant
    items the champion's catalog holds too, the new index's exactness (as evaluate measured it),
    and the new items (here, not in the champion's index) searched by their own titles."""
    from smar.retrieval.index import EXACTNESS

    settings = config.register_
    comparison = compare({query for query, found in relevant.items() if set(found) <= champion.item_ids})
    exactness = json.loads(paths.evaluation.metrics.read_text())["index"][EXACTNESS.key]
    new_items = items.loc[~items["item_id"].astype(str).isin(champion.item_ids)]
    decision = reindex_decision(
        comparison,
        settings.threshold,
        settings.tolerance,
        settings.min_gate_queries,
        exactness,
        config.index.target_recall,
        findable(candidate, new_items, EXACTNESS.k),
    )
    return decision, comparison


def findable(version: LoadedVersion, new_items, k: int, limit: int = NEW_ITEMS_TRIED) -> tuple[int, int]:
    """(found, tried): of at most `limit` of `new_items`, how many are in the top k of a search for their own title."""
    if new_items.empty:
        return 0, 0
    tried = new_items.sample(n=min(limit, len(new_items)), random_state=0)
    rankings = version.search(tried["title"].astype(str).tolist(), k)
    return sum(item in ranking for item, ranking in zip(tried["item_id"].astype(str), rankings)), len(tried)


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


def gate_tags(decision, comparison: Comparison, champion_version: str | None, settings, split: str) -> dict[str, str]:
    """The gate's decision and the numbers behind it, as tags on the version."""

    def number(value: float | None) -> str:
        return f"{value:.6f}" if value is not None else "none"

    difference = comparison.difference
    tags = {
        "gate.decision": decision.verdict,
        "gate.reason": decision.reason,
        "gate.metric": comparison.metric.key,
        comparison.metric.tracked("gate"): number(comparison.candidate),
        "gate.threshold": str(settings.threshold),
        "gate.tolerance": str(settings.tolerance),
        "gate.confidence": str(settings.confidence),
        "gate.split": split,
        "gate.queries": str(comparison.queries),
        "gate.queries_left_out": str(comparison.left_out),
        "gate.champion_version": champion_version or "none",
        comparison.metric.tracked("gate", "champion"): number(comparison.champion),
        "gate.difference": str(difference) if difference else "none",
    }
    return tags | {f"gate.slice.{name}": str(interval) for name, interval in comparison.slices.items()}


def describe_version(config: SmarConfig, paths: Paths, decision, comparison: Comparison) -> str:
    """One line for the registry's versions list: kind, the gate's score, data version, the gate's decision."""
    version = data_version(paths.data)
    score = (
        f"{comparison.metric.label} {comparison.candidate:.4f} on {comparison.queries} unseen "
        f"{config.evaluate.split} queries"
        if comparison.candidate is not None
        else "no unseen queries"
    )
    if comparison.difference is not None:
        difference = comparison.difference
        score += f", candidate - champion {difference.mean:+.4f} [{difference.low:+.4f}, {difference.high:+.4f}]"
    data = f"{version.get('dataset', paths.data.name)} ({version['dvc_md5'][:8]})"
    return f"{saved_config(paths.model.root).kind} · {score} · data {data} · gate: {decision.verdict}"


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


def load_version(model_uri: str, queries, k: int) -> LoadedVersion:
    """A registered version through its pyfunc model as it is served: its top-k rankings of
    `queries` with the ids and texts of the queries it trained on (from its saved model), the item
    ids its index serves, and its search."""
    import mlflow.pyfunc
    import pandas as pd

    from smar.evaluation.evaluate import rank
    from smar.traffic.dataset import normalise

    model = mlflow.pyfunc.load_model(model_uri)
    retriever = model.unwrap_python_model().retriever

    def search(texts: list[str], k: int) -> list[list[str]]:
        return model.predict(pd.DataFrame({"query": texts}), params={"k": k})["item_ids"].tolist()

    trained = trained_queries(retriever.model_dir)
    rankings = rank(search, queries, k)
    if trained is None:
        measured = Measured(rankings, None)
    else:
        ids, texts = trained
        measured = Measured(rankings, ids, frozenset(map(normalise, texts or ())))
    return LoadedVersion(measured, frozenset(map(str, retriever.item_ids.values())), search)


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
