"""A gate that leakage cannot fool: after the catalog's queries are split again, the old
champion has trained on many of the new test queries; the gate measures both versions only
on the queries neither trained on, says how many, and refuses to decide on too few."""

import json
import os
import shutil

import pytest

from smar.core.config import load_config
from smar.core.paths import Paths
from smar.data.dataset import load_dataset
from smar.data.splits import resplit
from smar.pipeline import steps

pytestmark = pytest.mark.slow
MODEL_NAME = "gate-leakage"


def with_settings(config, min_gate_queries: int):
    return config.model_copy(
        update={
            "train": config.train.model_copy(update={"epochs": 2}),
            "register_": config.register_.model_copy(
                update={"model_name": MODEL_NAME, "min_gate_queries": min_gate_queries}
            ),
        }
    )


def run_pipeline(config, paths: Paths) -> dict:
    for name in ("validate", "featurize", "train", "export", "index", "evaluate"):
        steps.run_step(name, config, paths)
    return steps.run_step("register", config, paths)


def test_gate_compares_only_on_queries_neither_version_trained_on(tiny_data, tiny_params, tmp_path):
    from mlflow import MlflowClient

    base = load_config(tiny_params)
    first = run_pipeline(with_settings(base, 1), Paths(tiny_data, tmp_path / "first"))
    assert first["promote"] and first["gate_queries_left_out"] == 0  # its test queries are all unseen

    resplit_data = tmp_path / "resplit"
    resplit(tiny_data, resplit_data, "query", seed=7)  # same items and queries, a new split
    old, new = load_dataset(tiny_data), load_dataset(resplit_data)
    old_train = set(old.split_qrels("train")["query_id"])
    new_test = set(new.split_qrels("test")["query_id"])
    unseen = new_test - old_train
    assert len(new_test & old_train) >= 10  # many new test queries trained the champion

    second_paths = Paths(resplit_data, tmp_path / "second")
    second_paths.outputs.mkdir()  # the same items and queries: featurize reuses the first run's shards
    shutil.copytree(tmp_path / "first" / "features", second_paths.outputs / "features", copy_function=os.link)
    refused = run_pipeline(with_settings(base, len(unseen) + 1), second_paths)
    assert not refused["promote"] and refused["gate_queries"] == len(unseen)
    assert f"only {len(unseen)} evaluation queries are unseen" in refused["reason"]

    decided = steps.run_step("register", with_settings(base, len(unseen)), second_paths)  # the same model, a lower bar
    assert decided["gate_queries"] == len(unseen) and decided["gate_queries_left_out"] == len(new_test) - len(unseen)
    assert decided["champion_version"] == first["version"]
    assert f"on the {len(unseen)} queries neither trained on" in decided["reason"]

    client = MlflowClient()
    version = client.get_model_version(MODEL_NAME, decided["version"])
    assert version.tags["gate.queries"] == str(len(unseen))
    assert (
        version.description.startswith(f"{base.model.kind} · Recall@10 ")
        and f"on {len(unseen)} unseen test queries" in version.description
    )
    assert json.loads((second_paths.model.root / "trained_queries.json").read_text())["query_ids"] == sorted(
        set(new.split_qrels("train")["query_id"])
    )
