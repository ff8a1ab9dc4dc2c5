"""Step 6, register: log the retriever as one MLflow pyfunc version, then run the promotion gate.

The new version gets alias `challenger`. It takes `champion` only if its Recall@10 passes
the configured threshold AND is not worse (beyond `tolerance`) than the current champion,
both measured here, through their served pyfunc models, on the same evaluation queries.
The alias moves by compare-and-set (`smar.promotion`), so a promotion racing this one
cannot leave the worse model as champion. The decision and its reason are tags on the version.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from smar.config import SmarConfig
from smar.errors import SmarError
from smar.paths import Paths, require, write_text_atomic

CHALLENGER = "challenger"
RUNTIME_PACKAGES = ("torch", "transformers", "timm", "tokenizers", "onnxruntime", "faiss-cpu", "numpy", "pandas", "pyarrow", "pillow", "pydantic", "mlflow")


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def promotion_decision(candidate: float, champion: float | None, threshold: float, tolerance: float = 0.0) -> Decision:
    """The gate, on Recall@10: above the threshold, and not worse than the champion."""
    if candidate < threshold:
        return Decision(False, f"Recall@10 {candidate:.4f} is below the threshold {threshold:.4f}")
    if champion is None:
        return Decision(True, f"Recall@10 {candidate:.4f} passes the threshold {threshold:.4f}; there is no champion yet")
    if candidate < champion - tolerance:
        return Decision(False, f"Recall@10 {candidate:.4f} is worse than the champion's {champion:.4f} on the same queries")
    return Decision(
        True, f"Recall@10 {candidate:.4f} passes the threshold {threshold:.4f} and matches or beats the champion's {champion:.4f}"
    )


def register(config: SmarConfig, paths: Paths) -> dict:
    from mlflow import MlflowClient

    from smar import tracking
    from smar.data.dataset import load_dataset

    settings = config.register_
    mlflow = tracking.configure()
    client = MlflowClient()
    dataset = load_dataset(paths.data)
    split = config.evaluate.split
    queries, relevant = dataset.split_queries(split), dataset.relevant_items(split)

    require(paths.index_dir, "index")
    require(paths.metrics_file, "evaluate")
    run_id = tracking.run_id_of(require(paths.model_dir, "train"))
    with mlflow.start_run(run_id=run_id):
        version = log_version(settings.model_name, paths.model_dir, paths.index_dir)
    client.set_registered_model_alias(settings.model_name, CHALLENGER, version)

    candidate = recall_at_10(f"models:/{settings.model_name}/{version}", queries, relevant)
    decision, champion_version, champion = gate(
        client,
        settings.model_name,
        version,
        candidate,
        champion_recall=lambda champion: recall_at_10(f"models:/{settings.model_name}/{champion}", queries, relevant),
        threshold=settings.min_recall_at_10,
        tolerance=settings.tolerance,
    )

    tags = {
        "gate.decision": "promoted" if decision.promote else "rejected",
        "gate.reason": decision.reason,
        "gate.recall_at_10": f"{candidate:.6f}",
        "gate.threshold": str(settings.min_recall_at_10),
        "gate.split": split,
        "gate.champion_version": champion_version or "none",
        "gate.champion_recall_at_10": f"{champion:.6f}" if champion is not None else "none",
    }
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, version, key, value)
    with mlflow.start_run(run_id=run_id):
        mlflow.set_tags({"registered_version": version, "gate.decision": tags["gate.decision"]})
        mlflow.log_metric(f"gate_{split}_recall_at_10", candidate)

    result = {
        "model_name": settings.model_name,
        "version": version,
        "run_id": run_id,
        "recall_at_10": candidate,
        "champion_version": champion_version,
        "champion_recall_at_10": champion,
    } | asdict(decision)
    write_text_atomic(paths.registration_file, json.dumps(result, indent=2) + "\n")
    return result


def gate(client, model_name: str, version: str, candidate: float, champion_recall, threshold: float, tolerance: float, attempts: int = 5):
    """Decide against the current champion and, on a pass, move the alias by compare-and-set.

    `champion_recall(version)` measures a champion on the same queries as the candidate. When
    another promotion moves the champion between the decision and the move, the candidate is
    judged again against the new champion. Returns (decision, champion version, its recall).
    """
    from smar.registry.promotion import ChampionMoved, current_champion, move_champion

    measured: dict[str, float] = {}
    for _ in range(attempts):
        champion_version = current_champion(client, model_name)
        if champion_version is not None and champion_version not in measured:
            measured[champion_version] = champion_recall(champion_version)
        champion = measured.get(champion_version)
        decision = promotion_decision(candidate, champion, threshold, tolerance)
        if not decision.promote:
            return decision, champion_version, champion
        try:
            move_champion(client, model_name, version, expected=champion_version, reason=decision.reason, by="gate",
                          metrics={"recall_at_10": round(candidate, 6)})
            return decision, champion_version, champion
        except ChampionMoved:
            continue
    raise SmarError(f"{model_name}: the champion moved {attempts} times while version {version} was judged; it stays challenger. Run again.")


def log_version(model_name: str, model_dir: Path, index_dir: Path) -> str:
    """Log the retriever (checkpoint + indexes) as one pyfunc model in the active run, register it, return the version."""
    import mlflow.pyfunc

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*input example", category=UserWarning)  # the signature is explicit
        info = mlflow.pyfunc.log_model(
            name="retriever",
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"model": str(model_dir), "index": str(index_dir)},
            signature=_signature(),
            pip_requirements=_pinned_requirements(),
            registered_model_name=model_name,
        )
    return str(info.registered_model_version)


def recall_at_10(model_uri: str, queries, relevant) -> float:
    """Recall@10 of a registered version, searched through its pyfunc model as it is served."""
    import mlflow.pyfunc
    import pandas as pd

    from smar.evaluation.evaluate import rank
    from smar.metrics import retrieval_metrics

    model = mlflow.pyfunc.load_model(model_uri)

    def search(texts: list[str], k: int) -> list[list[str]]:
        return model.predict(pd.DataFrame({"query": texts}), params={"k": k})["item_ids"].tolist()

    return retrieval_metrics(rank(search, queries, 10), relevant, ks=(10,))["recall@10"]


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
