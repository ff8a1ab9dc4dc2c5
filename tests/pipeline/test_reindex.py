"""Daily catalogs without retraining: `smar-reindex` exports a changed catalog with the
champion's towers, indexes it and registers it, judged as a reindex; an item added to the
catalog is searchable from the new champion with the shipped gate settings, no training ran,
and an export whose ids were shuffled is refused."""

import shutil

import pandas as pd
import pytest

from tests.conftest import own_model_name

pytestmark = pytest.mark.slow
MODEL_NAME = "reindex"
NEW_TITLE = "zanzibar aurora lantern"


def with_new_item(tiny_data, directory):
    """A copy of the catalog with one more item: a new id and title, another item's category and image."""
    data = directory / "data"
    shutil.copytree(tiny_data, data)
    items = pd.read_parquet(data / "items.parquet")
    new = items.iloc[[0]].assign(item_id="I9999999", title=NEW_TITLE)
    pd.concat([items, new], ignore_index=True).to_parquet(data / "items.parquet", index=False)
    return data


def test_an_added_item_is_searchable_after_a_reindex_with_no_training(
    prefect_harness, tiny_data, tiny_params, tmp_path
):
    import mlflow.pyfunc
    from mlflow import MlflowClient

    from smar.pipeline.flow import smar_pipeline, smar_reindex

    params = own_model_name(tiny_params, tmp_path, MODEL_NAME)
    first = smar_pipeline(
        params_file=str(params),
        data_dir=str(tiny_data),
        outputs_dir=str(tmp_path / "first"),
        epochs=2,
    )
    assert first["register"]["promote"]

    changed = with_new_item(tiny_data, tmp_path)
    second = smar_reindex(params_file=str(params), data_dir=str(changed), outputs_dir=str(tmp_path / "second"))
    assert "train" not in second and second["champion"]["from_version"] == first["register"]["version"]
    assert second["validate"]["items"] == first["validate"]["items"] + 1
    registration = second["register"]
    assert registration["promote"], registration["reason"]
    assert (
        registration["reindex_of"] == first["register"]["version"]
        and "1 of 1 new items found" in registration["reason"]
    )
    assert (
        registration["gate_queries"] == first["register"]["gate_queries"]
    )  # the same queries (those the towers never trained on): the new item is relevant to none

    client = MlflowClient()
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == registration["version"]
    run = client.get_run(registration["run_id"])
    assert (
        run.data.tags["reindex.from_version"] == first["register"]["version"] and "train_loss" not in run.data.metrics
    )
    champion = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    found = champion.predict(pd.DataFrame({"query": [NEW_TITLE]}), params={"k": 10})["item_ids"][0]
    assert "I9999999" in list(found)

    shuffled_export_is_refused(params, changed, tmp_path / "second", registration["version"])


def shuffled_export_is_refused(params, data, outputs, champion: str) -> None:
    """The reindex's export with its item ids shuffled (each vector under another item's id),
    then index, evaluate and register again: the gate refuses it and the champion stays."""
    import numpy as np
    from mlflow import MlflowClient

    from smar.core.config import load_config
    from smar.core.paths import Paths
    from smar.pipeline.steps import run_step

    # no threshold: the gate's comparison, not its floor, is what must refuse it
    config, paths = load_config(params, overrides={"register": {"threshold": 0.0}}), Paths(data, outputs)
    ids = paths.embeddings.item_ids
    frame = pd.read_parquet(ids)
    frame["item_id"] = np.random.default_rng(0).permutation(frame["item_id"].to_numpy())
    frame.to_parquet(ids, index=False)
    for step in ("index", "evaluate"):
        run_step(step, config, paths)
    refused = run_step("register", config, paths)
    assert not refused["promote"] and refused["verdict"] == "rejected", refused["reason"]
    assert "worse than the champion's" in refused["reason"] and refused["reindex_of"]
    assert str(MlflowClient().get_model_version_by_alias(MODEL_NAME, "champion").version) == champion
