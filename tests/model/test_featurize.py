"""The featurize step: the frozen encoders' outputs in shards, equal to the encoders' own, reused
while their inputs are unchanged, recomputed shard by shard when they change, never read stale,
and never left half-written (a crash, kill -9 or a full disk)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from smar.core.config import load_config
from smar.core.errors import MissingInputError
from smar.core.paths import Paths
from smar.features import encoders, step
from smar.features.step import featurize, load_features
from smar.model.tokenizer import tokenize, train_tokenizer
from smar.model.towers import masked_mean
from smar.model.two_tower import RetrievalModel
from tests.conftest import PROJECT

SHARD = 64  # the tiny catalog's 200 items make 4 shards of each item part


@pytest.fixture(scope="module")
def config(tiny_params):
    base = load_config(tiny_params)
    return base.model_copy(update={"featurize": base.featurize.model_copy(update={"shard_items": SHARD})})


@pytest.fixture(scope="module")
def validated(tiny_data, tmp_path_factory, config) -> Paths:
    from smar.data.validation import validate

    paths = Paths(tiny_data, tmp_path_factory.mktemp("featurize") / "outputs")
    validate(config, paths)
    return paths


@pytest.fixture
def paths(validated, tmp_path):
    """A copy of the tiny catalog, with its validation report, that a test may change."""
    shutil.copytree(validated.data, tmp_path / "data")
    paths = Paths(tmp_path / "data", tmp_path / "outputs")
    shutil.copytree(validated.validation.root, paths.validation.root)
    return paths


def computed(summary: dict) -> int:
    return summary["computed"]


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_features_are_the_frozen_encoders_outputs(config, paths, runtime, monkeypatch):
    from smar.data.dataset import load_dataset
    from smar.data.image_cache import image_store

    monkeypatch.setattr(encoders, "ONNX_FROM_ROWS", 1 if runtime == "onnx" else 10**9)  # the tiny shards take either

    summary = featurize(config, paths)
    assert summary["shards"] == 4 + 4 + 2 and computed(summary) == 10  # item texts, images, 100 training queries
    features = load_features(paths, config.model)
    model = RetrievalModel(config.model, vocab_size=0, pretrained=True).eval()
    tokenizer = train_tokenizer([], config.model)
    dataset = load_dataset(paths.data)
    from smar.core.contract import item_texts

    rows = np.array([0, 63, 64, 150, 199])  # across shard boundaries
    texts = [item_texts(dataset.items)[row] for row in rows]
    tokens = tokenize(tokenizer, texts)
    with torch.inference_mode():
        states = model.query_encoder.states(**tokens)
        pixels = torch.from_numpy(np.array(image_store(paths.data, paths.cache_dir, 32)[rows]))
        patches = model.image_encoder.patches(pixels)
    read = features.item_text.rows(rows)
    assert read["attention_mask"].tolist() == tokens["attention_mask"].bool().tolist()  # no padding stored
    mask = tokens["attention_mask"].bool()
    torch.testing.assert_close(read["states"][mask], states[mask], atol=0.03, rtol=0)  # int8, one scale per token
    cosine = torch.nn.functional.cosine_similarity(
        masked_mean(read["states"], mask), masked_mean(states, tokens["attention_mask"])
    )
    assert cosine.min() > 0.9999
    read, step = features.item_image.rows(rows), patches.abs().amax(-1, keepdim=True) / 127
    assert ((read - patches).abs() <= step + 1e-3).all()  # int8: within one step of its token's own scale

    queries = dataset.split_queries("train")["text"].tolist()
    query_tokens = tokenize(tokenizer, queries[:5])
    with torch.inference_mode():
        pooled = masked_mean(model.query_encoder.states(**query_tokens), query_tokens["attention_mask"])
    read = features.queries.rows(np.arange(5))
    assert torch.nn.functional.cosine_similarity(read, pooled).min() > 0.9999  # int8, one scale per vector


def test_unchanged_inputs_cost_nothing_and_a_changed_item_recomputes_its_shard(config, paths):
    import pandas as pd

    first = featurize(config, paths)
    before = json.loads(paths.features.manifest.read_text())["parts"]
    assert computed(featurize(config, paths)) == 0
    items = pd.read_parquet(paths.data / "items.parquet")
    items.loc[70, "title"] = "a renamed listing"  # in the second shard of item texts
    items.to_parquet(paths.data / "items.parquet", index=False)
    with pytest.raises(MissingInputError, match="another version of the dataset.*Run `smar featurize`"):
        load_features(paths, config.model)
    image = paths.data / items.loc[130, "image"]
    os.utime(image, ns=(time.time_ns(), time.time_ns()))  # in the third shard of images

    again = featurize(config, paths)
    after = json.loads(paths.features.manifest.read_text())["parts"]
    assert computed(again) == 2 and again["shards"] == first["shards"]
    changed = {part: [name for name in after[part] if name not in before[part]] for part in after}
    assert [name.split("-")[1] for name in changed["text"]] == ["000000064"]
    assert [name.split("-")[1] for name in changed["image"]] == ["000000128"] and changed["query"] == []
    assert len(list(paths.features.root.glob("text-*"))) == 4  # the replaced shard is gone
    load_features(paths, config.model)  # the manifest is the changed dataset's


def test_other_encoder_settings_never_read_old_features(config, paths):
    featurize(config, paths)
    longer = config.model_copy(update={"model": config.model.model_copy(update={"max_text_length": 16})})
    with pytest.raises(MissingInputError, match="another version of the model settings"):
        load_features(paths, longer.model)
    larger_images = config.model.model_copy(update={"image_size": 64})
    assert load_features(paths, larger_images, (step.ITEM_TEXT,)).item_image is None  # all the zero-shot reads
    with pytest.raises(MissingInputError, match="another version of the model settings"):
        load_features(paths, larger_images)
    summary = featurize(longer, paths)
    assert computed(summary) == 4 + 2  # texts and queries again; the images' encoder did not change
    assert encoders.text_encoder_key(config.model) != encoders.text_encoder_key(longer.model)


def test_a_crash_mid_shard_leaves_no_shard(config, paths, monkeypatch):
    calls = {"n": 0}
    original = encoders.encode_images

    def failing(model, pixels, device, shard_rows):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed mid-way")
        return original(model, pixels, device, shard_rows)

    small = config.model_copy(update={"featurize": config.featurize.model_copy(update={"batch_size": 32})})
    monkeypatch.setattr(encoders, "encode_images", failing)
    with pytest.raises(RuntimeError, match="killed mid-way"):
        featurize(small, paths)
    assert not list(paths.features.root.glob("image-*")) and not paths.features.manifest.exists()
    monkeypatch.undo()
    assert computed(featurize(small, paths)) == 4 + 2  # images and queries: the text shards before the crash are kept


def _featurize_command(paths: Paths, params) -> list[str]:
    return [
        sys.executable,
        "-m",
        "smar",
        "featurize",
        "--params",
        str(params),
        "--data",
        str(paths.data),
        "--out",
        str(paths.outputs),
    ]


def test_killed_featurize_resumes_from_its_finished_shards(config, paths, tmp_path):
    import yaml

    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["model"].update(config.model.model_dump(include={"image_size", "fusion_width"}))
    params["featurize"].update({"shard_items": 40, "batch_size": 8})
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    process = subprocess.Popen(
        _featurize_command(paths, params_file), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while len(list(paths.features.root.glob("[a-z]*-*"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(list(paths.features.root.glob("[a-z]*-*")))
    assert 3 <= finished < 13, "the run was not killed half-way"

    resumed = subprocess.run(_featurize_command(paths, params_file), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["shards"] == 13 and summary["reused"] == finished and summary["computed"] == 13 - finished
    assert not list(paths.features.root.glob(".*"))  # the killed run's scratch is gone


def test_a_full_disk_fails_naming_the_directory_and_the_bytes(config, paths, tmp_path):
    """A real write failure: the process may write files of at most 64 KB (RLIMIT_FSIZE)."""
    script = f"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG rather than killing the process
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
from smar.cli import main
sys.argv = ["smar", "featurize", "--params", {str(PROJECT / "params.yaml")!r}, "--data", {str(paths.data)!r},
            "--out", {str(paths.outputs)!r}]
main()
"""
    failed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0
    message = failed.stderr.strip().splitlines()[-1]
    assert f"{paths.features.root}: no space for feature shard" in message and "bytes and" in message, message
    assert "Traceback" not in failed.stderr
    assert not [p for p in paths.features.root.iterdir() if p.name.startswith("text-")]  # no partial shard
    assert not paths.features.manifest.exists()


def test_step_parts_follow_what_the_model_reads(config):
    text_only = config.model_copy(update={"model": config.model.model_copy(update={"kind": "text_only"})})
    assert step.parts(config, has_image_features=False) == [step.ITEM_TEXT, step.ITEM_IMAGE, step.QUERY_TEXT]
    assert step.parts(text_only, has_image_features=False) == [step.ITEM_TEXT, step.QUERY_TEXT]
    assert step.parts(config, has_image_features=True) == [step.ITEM_TEXT, step.QUERY_TEXT]
