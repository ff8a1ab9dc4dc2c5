"""A dataset that ships precomputed image features (as a JD-style import does) trains and
serves with the features in place of the image backbone."""

import shutil

import numpy as np
import pandas as pd
import pytest

from smar.core.config import load_config
from smar.core.paths import Paths
from smar.data.synth import COLOURS
from smar.pipeline import steps
from smar.retrieval.retriever import Retriever

pytestmark = pytest.mark.slow


def test_features_replace_the_image_backbone(tiny_data, tiny_params, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    shutil.rmtree(data / "images")
    items = pd.read_parquet(data / "items.parquet")
    features = np.random.default_rng(0).normal(0, 0.1, (len(items), 4, len(COLOURS))).astype(np.float32)
    features[np.arange(len(items)), :, items["colour"].map(list(COLOURS).index).to_numpy()] += (
        1.0  # the image "shows" the colour
    )
    np.save(data / "image_features.npy", features)
    items.assign(image=None).to_parquet(data / "items.parquet", index=False)

    config = load_config(tiny_params)
    paths = Paths(data, tmp_path / "outputs")
    report = steps.validate(config, paths)
    assert report["success"]
    steps.featurize(config, paths)
    steps.train(config, paths)
    steps.export(config, paths)
    steps.build_index(config, paths)
    evaluation = steps.evaluate(config, paths)
    assert evaluation["model"]["recall_at_10"] > 3 * evaluation["random"]["recall_at_10"]

    retriever = Retriever(paths.model.root, paths.index.root)
    assert retriever.model.image_encoder.backbone is None
    assert retriever.model.image_feature_shape == [4, len(COLOURS)]
    assert len(retriever.search(["red mug"], 5).item_ids[0]) == 5
