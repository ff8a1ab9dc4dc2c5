"""Featurize and export in shards: mapped over Prefect's thread pool or a local Dask cluster,
they write the same features and embeddings as one sequential pass; an incomplete export never
replaces the last good one."""

import json
import os
import shutil

import numpy as np
import pytest

from smar.core.config import ClusterConfig, load_config
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
            "export": base.export.model_copy(update={"shard_items": SHARD, "batch_size": 16}),
            "featurize": base.featurize.model_copy(update={"shard_items": SHARD}),
            "cluster": base.cluster.model_copy(update={"workers": 2}),
        }
    )
    paths = Paths(tiny_data, tmp_path_factory.mktemp("shards") / "outputs")
    steps.validate(config, paths)
    steps.featurize(config, paths)
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


def assert_matches_one_pass(paths: Paths, expected: dict) -> None:
    assert json.loads(paths.embeddings.summary.read_text())["shards"] == 4
    vectors, item_ids = read_embeddings(paths.embeddings.root)
    assert len(item_ids) == 200 and vectors.keys() == expected.keys()
    for view in expected:  # float16 on disk: other batches may round the last bit the other way
        np.testing.assert_allclose(vectors[view], expected[view], atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(vectors[view].astype(np.float32), axis=1), 1.0, atol=1e-3)


def test_export_shards_mapped_over_threads_match_one_pass(prefect_harness, trained):
    from smar.pipeline.flow import export_flow, shard_runner

    config, paths, expected = trained
    summary = export_flow.with_options(task_runner=shard_runner(config.cluster))(config, paths)
    assert summary["shards"] == 4 and summary["items"] == 200
    assert_matches_one_pass(paths, expected)


def test_an_export_missing_a_shard_is_not_published(trained):
    config, paths, expected = trained
    before = {p.name: p.stat().st_mtime_ns for p in paths.embeddings.root.iterdir()}
    shards = start_export(config, paths)
    results = [export_shard(config, paths, shard) for shard in shards[:-1]]  # the last shard's worker died
    with pytest.raises(RuntimeError, match="do not cover the catalog's 200 rows"):
        finish_export(config, paths, results)
    assert {p.name: p.stat().st_mtime_ns for p in paths.embeddings.root.iterdir()} == before
    np.testing.assert_allclose(
        read_embeddings(paths.embeddings.root)[0]["multimodal"], expected["multimodal"], atol=1e-4
    )


def test_a_runner_whose_integration_is_missing_is_named_with_the_fix():
    from smar.pipeline.flow import shard_runner

    with pytest.raises(ConfigError, match=r"cluster.task_runner is 'ray' but prefect-ray is not installed.*\.\[ray\]"):
        shard_runner(ClusterConfig(task_runner="ray"))


def test_the_old_export_runner_settings_name_where_they_moved(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("export:\n  task_runner: dask\n  workers: 2\n")
    with pytest.raises(ConfigError, match=r"task_runner, workers moved to the cluster section.*cluster.task_runner"):
        load_config(params)


def test_featurize_and_export_on_a_dask_cluster_match_threads(prefect_harness, trained, tmp_path, environment_restored):
    """On a Dask cluster (`cluster.address`, two worker processes): the same shards, the same
    features, whichever runner computed them; export's shards the same embeddings as one pass."""
    from distributed import LocalCluster

    from smar.features.store import ItemImageFeatures
    from smar.pipeline.flow import export_flow, featurize_flow, shard_runner

    config, paths, expected = trained
    on_dask = Paths(paths.data, tmp_path / "outputs")
    shutil.copytree(paths.validation.root, on_dask.validation.root)
    shutil.copytree(paths.model.root, on_dask.model.root)
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        dask = config.model_copy(
            update={"cluster": ClusterConfig(task_runner="dask", address=cluster.scheduler_address)}
        )
        summary = featurize_flow.with_options(task_runner=shard_runner(dask.cluster))(dask, on_dask)
        assert summary["computed"] == summary["shards"] == 4 + 4 + 2
        exported = export_flow.with_options(task_runner=shard_runner(dask.cluster))(dask, on_dask)
    assert exported["shards"] == 4 and exported["items"] == 200
    assert_matches_one_pass(on_dask, expected)

    threads, workers = (json.loads(p.features.manifest.read_text()) for p in (paths, on_dask))
    assert threads["parts"] == workers["parts"]  # the same shard keys
    for name in (name for names in threads["parts"].values() for name in names):
        for array in paths.features.shard(name).iterdir():
            ours, theirs = np.load(array), np.load(on_dask.features.shard(name) / array.name)
            assert np.array_equal(ours, theirs), (name, array.name)
    image = [ItemImageFeatures([p.features.shard(n) for n in threads["parts"]["image"]]) for p in (paths, on_dask)]
    rows = np.arange(200)
    np.testing.assert_allclose(image[0].rows(rows), image[1].rows(rows), atol=1e-6)
