"""Behaviour: where only the image shows an item's colour, SMAR finds it and text-only cannot,
also for kinds of product no training query named.

Trained (the default towers and settings) on a small synthetic catalog in which 30% of titles
state the colour, split by category, both models answer held-out queries that name a colour,
all about unseen categories. Among the retrieved items whose titles do NOT state their look,
SMAR's must have the asked colour at least RATIO times as often, for every seed.
"""

import pandas as pd
import pytest

from smar.core.config import DataConfig, SmarConfig
from smar.core.paths import Paths
from smar.data.synth import synthesize
from smar.pipeline import steps
from smar.retrieval.retriever import Retriever

pytestmark = pytest.mark.slow
SEEDS = (0, 1, 2)
RATIO = 1.5
CONFIG = {"model": {"image_size": 48}, "train": {"batch_size": 64, "epochs": 4}}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    data = tmp_path_factory.mktemp("behaviour") / "data"
    synthesize(
        DataConfig(
            num_items=400,
            num_queries=800,
            image_size=48,
            title_attribute_rate=0.3,
            test_fraction=0.3,
            split_by="category",
        ),
        data,
    )
    config = SmarConfig.model_validate({"model": CONFIG["model"]})
    validated = Paths(data, data.parent / "validated")
    steps.validate(config, validated)
    steps.featurize(config, validated)  # the frozen encoders' outputs, computed once for every run
    return data


def colour_hit_rate(data, outputs) -> float:
    """Share of retrieved items, among those whose titles hide their look, that have the asked colour."""
    items = pd.read_parquet(data / "items.parquet").set_index("item_id")
    queries = pd.read_parquet(data / "queries.parquet")
    qrels = pd.read_parquet(data / "qrels.parquet")
    held_out = queries[
        queries["query_id"].isin(qrels.loc[qrels["split"] != "train", "query_id"]) & queries["colour"].notna()
    ]
    hits = Retriever(outputs / "model", outputs / "index").search(held_out["text"].tolist(), 10)
    matches = [
        items.at[item, "colour"] == colour
        for colour, found in zip(held_out["colour"], hits.item_ids)
        for item in found
        if not items.at[item, "title_states_look"]
    ]
    rate = sum(matches) / len(matches)
    print(f"{outputs.name}: colour hit rate {rate:.3f}")
    return rate


def trained(kind: str, seed: int, data, tmp_path) -> float:
    config = SmarConfig.model_validate(
        {"model": CONFIG["model"] | {"kind": kind}, "train": CONFIG["train"] | {"seed": seed}}
    )
    paths = Paths(data, tmp_path / f"{kind}-{seed}")
    paths.validation.root.mkdir(parents=True)
    paths.features.root.symlink_to(data.parent / "validated" / "features", target_is_directory=True)
    paths.validation.report.write_bytes((data.parent / "validated" / "validation" / "report.json").read_bytes())
    steps.train(config, paths)
    steps.export(config, paths)
    steps.build_index(config, paths)
    return colour_hit_rate(data, paths.outputs)


@pytest.mark.parametrize("seed", SEEDS)
def test_smar_finds_the_colour_only_the_image_shows(seed, catalog, tmp_path):
    smar = trained("smar", seed, catalog, tmp_path)
    text_only = trained("text_only", seed, catalog, tmp_path)
    assert smar > RATIO * text_only, f"seed {seed}: SMAR {smar:.3f} vs text-only {text_only:.3f}"
