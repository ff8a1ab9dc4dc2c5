"""Training under `torchrun` on two CPU processes (gloo) matches one process at the same global
batch: negatives are gathered across ranks with their gradients, and every rank draws its share
of each global batch from one DistributedSampler shuffle. Micro-batches (gradient accumulation)
match one pass too."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from smar.core.config import load_config
from smar.core.paths import Paths
from smar.core.tracking import run_id_of
from smar.data.synth import COLOURS
from smar.model.checkpoint import load_model
from smar.model.inference import encode_texts
from smar.pipeline import steps
from smar.retrieval.export import read_embeddings

pytestmark = pytest.mark.slow
STEPS = 4


@pytest.fixture(scope="module")
def feature_data(tiny_data, tmp_path_factory):
    """The tiny catalog with precomputed image features: no BatchNorm in the image tower, whose
    per-process batch statistics would differ from one process's on CPU (CUDA runs sync them)."""
    data = tmp_path_factory.mktemp("distributed") / "data"
    shutil.copytree(tiny_data, data)
    shutil.rmtree(data / "images")
    items = pd.read_parquet(data / "items.parquet")
    features = np.random.default_rng(0).normal(0, 0.1, (len(items), 4, len(COLOURS))).astype(np.float32)
    features[np.arange(len(items)), :, items["colour"].map(list(COLOURS).index).to_numpy()] += 1.0
    np.save(data / "image_features.npy", features)
    items.assign(image=None).to_parquet(data / "items.parquet", index=False)
    return data


def params_file(tiny_params, directory, **train) -> str:
    config = load_config(tiny_params)
    config = config.model_copy(
        update={
            "model": config.model.model_copy(update={"text_dropout": 0.0}),  # the same forward pass everywhere
            "train": config.train.model_copy(update={"max_steps": STEPS, "checkpoint_every_steps": 0, **train}),
        }
    )
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True, exclude_none=True)))
    return str(path)


def train(launcher: list[str], params: str, data, outputs) -> tuple[dict[str, np.ndarray], list[float]]:
    """Train with `launcher`; the trained model's query and item vectors, and the logged loss per step."""
    from mlflow import MlflowClient

    config, paths = load_config(params), Paths(data, outputs)
    steps.validate(config, paths)
    steps.featurize(config, paths)
    command = [*launcher, "-m", "smar", "train", "--params", params, "--data", str(data), "--out", str(outputs)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-4000:]
    history = MlflowClient().get_metric_history(run_id_of(paths.model.root), "train_loss")
    steps.export(config, paths)
    vectors, _ = read_embeddings(paths.embeddings.root)
    model, tokenizer = load_model(paths.model.root)
    queries = pd.read_parquet(data / "queries.parquet")["text"].head(50).tolist()
    vectors["queries"] = encode_texts(model, tokenizer, queries).numpy()
    return vectors, [metric.value for metric in sorted(history, key=lambda m: m.step)]


def assert_same_training(expected, actual) -> None:
    """Same loss at every step and the same vectors. (Weights are not compared one by one: a
    parameter with no effect on the output, such as an attention key bias, has a gradient of
    rounding noise, whose sign AdamW turns into a full step either way.)"""
    (vectors, losses), (other_vectors, other_losses) = expected, actual
    assert len(losses) == len(other_losses) == STEPS
    assert np.allclose(losses, other_losses, rtol=1e-5, atol=1e-5), (losses, other_losses)
    assert vectors.keys() == other_vectors.keys() == {"multimodal", "queries"}
    for name in vectors:  # the item vectors are stored as float16: within two of its steps (rtol 2e-3)
        rtol = 2e-3 if vectors[name].dtype == np.float16 else 0
        np.testing.assert_allclose(
            vectors[name].astype(np.float32), other_vectors[name].astype(np.float32), rtol=rtol, atol=1e-4, err_msg=name
        )


@pytest.fixture(scope="module")
def one_process(feature_data, tiny_params, tmp_path_factory):
    directory = tmp_path_factory.mktemp("one")
    return train([sys.executable], params_file(tiny_params, directory), feature_data, directory / "outputs")


def test_two_gloo_ranks_match_one_process_at_the_same_global_batch(one_process, feature_data, tiny_params, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    two_ranks = train(
        torchrun, params_file(tiny_params, tmp_path, loader_workers=1), feature_data, tmp_path / "outputs"
    )
    assert_same_training(one_process, two_ranks)


def test_micro_batches_match_one_pass(one_process, feature_data, tiny_params, tmp_path):
    micro = train(
        [sys.executable], params_file(tiny_params, tmp_path, accumulation_steps=4), feature_data, tmp_path / "outputs"
    )
    assert_same_training(one_process, micro)


def test_batch_must_split_evenly_over_the_ranks(feature_data, tiny_params, tmp_path):
    params = params_file(tiny_params, tmp_path, batch_size=33)
    steps.validate(load_config(params), Paths(feature_data, tmp_path / "outputs"))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [
            *torchrun,
            "-m",
            "smar",
            "train",
            "--params",
            params,
            "--data",
            str(feature_data),
            "--out",
            str(tmp_path / "outputs"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "train.batch_size (33) is the global batch: it must be a multiple of the 2 processes" in done.stderr
    assert not (tmp_path / "outputs" / "model").exists()
