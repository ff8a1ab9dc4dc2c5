"""The synthetic dataset: determinism, modality asymmetry, qrels, splits, images."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from smar.synth import BRANDS, COLOURS, PRESETS, synthesize

TINY = PRESETS["tiny"]
ATTRIBUTES = ("colour", "pattern", "brand", "material")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    synthesize(TINY, out)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_manifest_counts_match_files(tiny):
    items = pd.read_parquet(tiny / "items.parquet")
    queries = pd.read_parquet(tiny / "queries.parquet")
    assert len(items) == TINY.num_items == 160
    assert len(queries) == TINY.num_queries == 160
    assert len(list((tiny / "images").glob("*.png"))) == 160


def test_same_parameters_give_byte_identical_files(tiny, tmp_path):
    synthesize(TINY, tmp_path / "again")
    first, second = _files(tiny), _files(tmp_path / "again")
    assert sorted(first) == sorted(second)
    assert len(first) == 160 + 4  # images + items, queries, qrels parquet + dataset.json
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []


def test_different_seed_gives_different_bytes(tiny, tmp_path):
    synthesize(TINY.model_copy(update={"seed": 1}), tmp_path / "other")
    first, other = _files(tiny), _files(tmp_path / "other")
    assert first["items.parquet"] != other["items.parquet"]
    assert first["images/I000000.png"] != other["images/I000000.png"]


def test_no_title_states_colour_at_rate_zero(tmp_path):
    synthesize(TINY.model_copy(update={"title_attribute_rate": 0.0}), tmp_path / "d")
    items = pd.read_parquet(tmp_path / "d" / "items.parquet")
    stating = [t for t in items["title"] if _words(t) & set(COLOURS)]
    assert stating == []
    assert not items["title_states_look"].any()


def test_every_title_states_its_colour_and_pattern_at_rate_one(tmp_path):
    synthesize(TINY.model_copy(update={"title_attribute_rate": 1.0}), tmp_path / "d")
    items = pd.read_parquet(tmp_path / "d" / "items.parquet")
    missing = [
        (row.item_id, row.title)
        for row in items.itertuples()
        if row.colour not in _words(row.title) or row.pattern not in _words(row.title)
    ]
    assert missing == []
    assert items["title_states_look"].all()


def test_brand_and_material_appear_in_every_title(tiny):
    items = pd.read_parquet(tiny / "items.parquet")
    assert set(items["brand"]) <= set(BRANDS)
    for row in items.itertuples():
        assert row.brand in _words(row.title), row.title
        assert row.material in _words(row.title), row.title
        assert row.category in _words(row.title), row.title


def _matches(item, query) -> bool:
    if item.category != query.category:
        return False
    return all(pd.isna(getattr(query, a)) or getattr(item, a) == getattr(query, a) for a in ATTRIBUTES)


def test_qrels_are_exactly_the_attribute_matches(tiny):
    items = pd.read_parquet(tiny / "items.parquet")
    queries = pd.read_parquet(tiny / "queries.parquet")
    qrels = pd.read_parquet(tiny / "qrels.parquet")
    judged = qrels.groupby("query_id")["item_id"].apply(set).to_dict()
    for query in queries.itertuples():
        expected = {item.item_id for item in items.itertuples() if _matches(item, query)}
        assert expected, f"{query.query_id} matches no item"
        assert judged.get(query.query_id, set()) == expected, query.query_id
    assert set(qrels["label"]) == {1}


def test_query_text_names_category_and_attributes(tiny):
    queries = pd.read_parquet(tiny / "queries.parquet")
    for query in queries.itertuples():
        named = {str(getattr(query, a)) for a in ATTRIBUTES if not pd.isna(getattr(query, a))}
        assert named, query.query_id
        assert _words(query.text) == named | {query.category}, query.text
    assert queries["text"].is_unique


def test_each_query_has_exactly_one_split(tiny):
    qrels = pd.read_parquet(tiny / "qrels.parquet")
    splits_per_query = qrels.groupby("query_id")["split"].nunique()
    assert (splits_per_query == 1).all()
    assert set(qrels["split"]) == {"train", "valid", "test"}


def test_solid_items_show_their_colour_at_the_centre(tiny):
    items = pd.read_parquet(tiny / "items.parquet")
    solid = items[items["pattern"] == "solid"].head(8)
    assert len(solid) >= 3
    centre = TINY.image_size // 2
    for item in solid.itertuples():
        pixels = np.asarray(Image.open(tiny / item.image).convert("RGB"), dtype=int)
        assert pixels.shape == (TINY.image_size, TINY.image_size, 3)
        patch = pixels[centre - 1 : centre + 2, centre - 1 : centre + 2].reshape(-1, 3)
        assert np.abs(patch - np.array(COLOURS[item.colour])).max() <= 8, (item.item_id, item.colour, patch[4])
