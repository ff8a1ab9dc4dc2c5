"""Daily catalogs without retraining: `smar-reindex` exports a changed catalog with the
champion's towers, indexes it and registers it through the same gate; an item added to the
catalog is searchable from the new champion, and no training ran."""

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
    # the gate compares the same towers over the old and the new catalog: one more item may push
    # a relevant one out of a top 10, so a reindex allows a small tolerance
    second = smar_reindex(
        params_file=str(params),
        data_dir=str(changed),
        outputs_dir=str(tmp_path / "second"),
        overrides={"register": {"tolerance": 0.02}},
    )
    assert "train" not in second and second["champion"]["from_version"] == first["register"]["version"]
    assert second["validate"]["items"] == first["validate"]["items"] + 1
    registration = second["register"]
    assert registration["promote"], registration["reason"]
    assert (
        registration["gate_queries"] == first["register"]["gate_queries"]
    )  # the same queries, those the towers never trained on

    client = MlflowClient()
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == registration["version"]
    run = client.get_run(registration["run_id"])
    assert (
        run.data.tags["reindex.from_version"] == first["register"]["version"] and "train_loss" not in run.data.metrics
    )
    champion = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    found = champion.predict(pd.DataFrame({"query": [NEW_TITLE]}), params={"k": 10})["item_ids"][0]
    assert "I9999999" in list(found)
