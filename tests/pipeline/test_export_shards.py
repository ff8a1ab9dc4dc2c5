"""Export in shards: mapped over Prefect's thread pool or a local Dask cluster, it writes the
same embeddings as one sequential pass; an incomplete export never replaces the last good one."""

import json
import os

import numpy as np
import pytest

from smar.core.config import ExportConfig, load_config
from smar.core.errors import ConfigError
from smar.core.paths import Paths
from smar.pipeline import steps
from smar.retrieval.export import export_shard, finish_export, read_embeddings, start_export

pytestmark = pytest.mark.slow
SHARD = 64  # the tiny catalog's 200 items make 4 shards


@pytest.fixture(scope="module")
def trained(tiny_data, tiny_params, tmp_path_factory):
    base = load_config(tiny_params)
    config = base.model_copy(
        update={
            "train": base.train.model_copy(update={"max_steps": 5, "checkpoint_every_steps": 0}),
            "export": base.export.model_copy(update={"shard_items": SHARD, "workers": 2, "batch_size": 16}),
        }
    )
    paths = Paths(tiny_data, tmp_path_factory.mktemp("shards") / "outputs")
    steps.validate(config, paths)
    steps.train(config, paths)
    one_pass = config.model_copy(
        update={"export": config.export.model_copy(update={"shard_items": 10_000, "batch_size": 256})}
    )
    steps.export(one_pass, paths)
    expected, _ = read_embeddings(paths.embeddings.root)
    return config, paths, expected


@pytest.fixture
def environment_restored():
    """A local Dask cluster sets OMP_NUM_THREADS=1 (and the like) in this process: later tests must not inherit it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("runner", ["threads", "dask"])
def test_shards_mapped_over_a_task_runner_match_one_pass(prefect_harness, trained, runner, environment_restored):
    from smar.pipeline.flow import export_flow, shard_runner

    config, paths, expected = trained
    config = config.model_copy(update={"export": config.export.model_copy(update={"task_runner": runner})})
    summary = export_flow.with_options(task_runner=shard_runner(config.export))(config, paths)

    assert summary["shards"] == 4 and summary["items"] == 200
    assert json.loads(paths.embeddings.summary.read_text())["shards"] == 4
    vectors, item_ids = read_embeddings(paths.embeddings.root)
    assert len(item_ids) == 200 and vectors.keys() == expected.keys()
    for view in expected:
        np.testing.assert_allclose(vectors[view], expected[view], atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(vectors[view], axis=1), 1.0, atol=1e-4)


def test_an_export_missing_a_shard_is_not_published(trained):
    config, paths, expected = trained
    before = {p.name: p.stat().st_mtime_ns for p in paths.embeddings.root.iterdir()}
    shards = start_export(config, paths)
    results = [export_shard(config, paths, shard) for shard in shards[:-1]]  # the last shard's worker died
    with pytest.raises(RuntimeError, match="do not cover the catalog's 200 rows"):
        finish_export(config, paths, results)
    assert {p.name: p.stat().st_mtime_ns for p in paths.embeddings.root.iterdir()} == before
    np.testing.assert_allclose(
        read_embeddings(paths.embeddings.root)[0]["multimodal"], expected["multimodal"], atol=1e-5
    )


def test_a_runner_whose_integration_is_missing_is_named_with_the_fix():
    from smar.pipeline.flow import shard_runner

    with pytest.raises(ConfigError, match=r"export.task_runner is 'ray' but prefect-ray is not installed.*\.\[ray\]"):
        shard_runner(ExportConfig(task_runner="ray"))
