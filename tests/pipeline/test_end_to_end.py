"""The whole pipeline as one real Prefect flow run, then the registry, the gate and serving over HTTP."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smar.core.metrics import reported
from smar.core.paths import Paths
from tests.conftest import own_model_name
from tests.servers import running

pytestmark = pytest.mark.slow
MODEL_NAME = "end-to-end"


@pytest.fixture(scope="module")
def first_run(prefect_harness, tiny_data, tiny_params, tmp_path_factory):
    from smar.pipeline.flow import smar_pipeline

    outputs = tmp_path_factory.mktemp("run1") / "outputs"
    params = own_model_name(tiny_params, outputs.parent, MODEL_NAME)
    summary = smar_pipeline(params_file=str(params), data_dir=str(tiny_data), outputs_dir=str(outputs))
    return summary, Paths(tiny_data, outputs), params


def test_every_step_writes_its_artifacts(first_run):
    import faiss

    summary, paths, _ = first_run
    assert json.loads(paths.validation.report.read_text())["success"] is True
    model = paths.model
    assert {model.weights, model.tokenizer, model.config, model.query_onnx, model.run, model.trained_queries} <= set(
        model.root.iterdir()
    )

    items = pd.read_parquet(paths.data / "items.parquet")
    assert summary["index"]["views"] == ["multimodal"]  # SMAR serves its fused item vectors
    for view in summary["index"]["views"]:
        embeddings = np.load(paths.embeddings.vectors(view))
        assert embeddings.shape == (len(items), 384)
        np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)
        assert faiss.read_index(str(paths.index.faiss(view))).ntotal == len(items)
    assert summary["index"]["thumbnails"]["items"] == len(items)  # the search page's pictures travel with the index

    metrics = json.loads(paths.evaluation.metrics.read_text())
    for ranker in ("model", "zero_shot", "random"):
        assert list(metrics[ranker]) == [metric.key for metric in reported((10, 50))]
        assert all(0.0 <= score <= 1.0 for score in metrics[ranker].values())
    assert metrics["model"]["recall_at_10"] > 2 * metrics["random"]["recall_at_10"]  # it learned something
    assert metrics["zero_shot"]["recall_at_10"] > 2 * metrics["random"]["recall_at_10"]  # MiniLM reads titles
    # the tiny catalog is split by category: every test query asks for a kind of product training never saw
    assert metrics["cold"]["queries"] == metrics["queries"] and metrics["cold"]["model"] == metrics["model"]
    curve = pd.read_csv(paths.evaluation.recall_curve)
    assert list(curve.columns) == ["k", "model", "zero_shot", "random"] and curve["model"].is_monotonic_increasing
    assert paths.evaluation.recall_plot.stat().st_size > 1000
    assert pd.read_parquet(paths.evaluation.per_query)["cold"].all()
    assert summary["register"]["version"] == json.loads(paths.registration.read_text())["version"]


def test_queries_are_encoded_by_onnx_runtime_as_pytorch_would(first_run):
    from smar.model.inference import encode_texts
    from smar.retrieval.retriever import Retriever

    _, paths, _ = first_run
    retriever = Retriever(paths.model.root, paths.index.root)
    assert retriever.onnx is not None
    queries = pd.read_parquet(paths.data / "queries.parquet")["text"].tolist()
    served, _ = retriever.encode(queries)
    np.testing.assert_allclose(served, encode_texts(retriever.model, retriever.tokenizer, queries).numpy(), atol=1e-4)


def test_mlflow_run_holds_the_lineage(first_run):
    from mlflow import MlflowClient

    summary, paths, _ = first_run
    client = MlflowClient()
    run = client.get_run(summary["train"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["git.commit"]
    assert run.data.tags["data.dataset"] == "smar-synthetic@2"
    assert run.data.tags["prefect.flow_run_id"]
    assert run.data.params["train.epochs"] == "8"
    losses = [m.value for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert len(losses) > 5 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # the loss curve falls
    for metric in (
        "test.recall_at_10",
        "test.zero_shot.recall_at_10",
        "test.cold.recall_at_10",
        "test.cold.zero_shot.recall_at_10",
        "test.index.recall_at_10",
        "valid.recall_at_10",
        "gate.recall_at_10",
    ):
        assert metric in run.data.metrics
    blends = {key: value for key, value in run.data.metrics.items() if key.startswith("valid.blend_")}
    assert len(blends) == 6 and "zero_shot_blend" in run.data.metrics  # train.zero_shot_blend's factors
    kept = run.data.metrics["zero_shot_blend"]
    assert (
        summary["train"]["valid"]["recall_at_10"]
        == blends[f"valid.blend_{kept:g}.recall_at_10"]
        == max(blends.values())
    )
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "validation")}
    assert {
        "validation/report.json",
        "validation/data_docs",
    } <= artifacts  # the validation report and its HTML data docs


def test_first_model_passing_the_gate_becomes_champion(first_run):
    from mlflow import MlflowClient

    summary, _, _ = first_run
    client = MlflowClient()
    version = summary["register"]["version"]
    assert summary["register"]["promote"] is True
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == version
    assert str(client.get_model_version_by_alias(MODEL_NAME, "challenger").version) == version
    tags = client.get_model_version(MODEL_NAME, version).tags
    assert tags["gate.decision"] == "promoted" and "no champion yet" in tags["gate.reason"]
    assert tags["promotion.by"] == "gate" and tags["promotion.previous_champion"] == "none"


def test_every_gate_decision_is_a_prefect_table_artifact(first_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    summary, _, _ = first_run
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["promotion-decision"]))
        )
    rows = [
        row
        for artifact in artifacts
        for row in (json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data)
    ]
    [row] = [row for row in rows if (row["model"], row["version"]) == (MODEL_NAME, summary["register"]["version"])]
    assert row["decision"] == "promoted" and row["model"] == MODEL_NAME and "no champion yet" in row["reason"]


def test_champion_pyfunc_answers_under_mlflow_models_serve(first_run, tmp_path):
    """The registered pyfunc model stands on its own: `mlflow models serve` answers with it."""
    summary, paths, _ = first_run
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smar = Path(sys.executable).with_name("smar")
    server = subprocess.Popen(
        [
            str(smar.with_name("mlflow")),
            "models",
            "serve",
            "-m",
            f"models:/{MODEL_NAME}@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        stdout=(tmp_path / "serve.log").open("w"),
        stderr=subprocess.STDOUT,
        env=os.environ | {"PATH": f"{smar.parent}{os.pathsep}{os.environ['PATH']}"},
        start_new_session=True,
    )
    try:
        import httpx

        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(1)
        response = httpx.post(
            f"{url}/invocations",
            json={"dataframe_records": [{"query": "red striped mug"}, {"query": "blue lamp"}], "params": {"k": 5}},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        catalog = set(pd.read_parquet(paths.data / "items.parquet")["item_id"])
        assert [p["query"] for p in predictions] == ["red striped mug", "blue lamp"]
        for prediction in predictions:
            assert len(prediction["item_ids"]) == 5 and set(prediction["item_ids"]) <= catalog
            assert prediction["scores"] == sorted(prediction["scores"], reverse=True)
            assert prediction["index"] == "multimodal"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_the_loop_on_its_own_traffic_registers_a_challenger_that_only_the_gate_can_promote(
    first_run, tiny_data, tmp_path
):
    """The loop, small: shoppers (simulated, over HTTP) search the served champion, and smar-learn
    turns the search log into a dataset version and runs the pipeline on it (one training step,
    an override laid over the params file). Its few test queries are too few for the gate to
    decide on: the challenger is registered, never promoted."""
    import httpx
    from mlflow import MlflowClient

    from smar.core.config import load_config
    from smar.pipeline.flow import smar_learn
    from smar.serving.app import create_app
    from smar.serving.follower import AliasFollower
    from smar.traffic.log import SearchLog
    from smar.traffic.shoppers import simulate

    summary, first_paths, params = first_run
    champion = summary["register"]["version"]
    (tmp_path / "outputs").mkdir()  # the same catalog: featurize reuses the first run's item shards
    shutil.copytree(first_paths.outputs / "features", tmp_path / "outputs" / "features", copy_function=os.link)
    search_log = SearchLog(tmp_path / "log", max_bytes=1 << 20, max_seconds=3600).start()
    follower = AliasFollower(MODEL_NAME, "champion", poll_seconds=60)
    follower.start()
    exploring = load_config(params).serve.model_copy(update={"explore_share": 0.5})
    with running(create_app(follower, exploring, search_log)) as url:
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the champion did not load in 60 s"
            time.sleep(0.1)
        simulate(url, tiny_data, 600, seed=1, concurrency=4)
    follower.stop()
    search_log.close()

    second = smar_learn(
        log_dir=str(tmp_path / "log"),
        catalog_dir=str(tiny_data),
        dataset_dir=str(tmp_path / "dataset"),
        overrides={"from_logs": {"split_by": "query", "min_test_queries": 3}, "train": {"max_steps": 1}},
        params_file=str(params),
        outputs_dir=str(tmp_path / "outputs"),
    )
    built = json.loads((tmp_path / "dataset" / "dataset.json").read_text())
    assert second["data"] == str(tmp_path / "dataset") and second["from_logs"]["kept"] == built["source"]["kept"]
    assert built["source"]["read"]["searches"]["records"] == 600 and built["counts"]["qrels"] > 0
    registration = second["register"]
    client = MlflowClient()
    settings = client.get_run(second["train"]["run_id"]).data.params  # the override, laid over the file's other values
    assert (
        settings["train.max_steps"] == "1"
        and settings["train.epochs"] == "8"
        and settings["register.model_name"] == MODEL_NAME
    )
    assert registration["promote"] is False and "the gate needs 30 to decide" in registration["reason"]
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == champion
    assert str(client.get_model_version_by_alias(MODEL_NAME, "challenger").version) == registration["version"]
    assert client.get_model_version(MODEL_NAME, registration["version"]).tags["gate.decision"] == "rejected"
