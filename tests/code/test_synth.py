"""The synthetic dataset: determinism, streaming, worker processes, modality asymmetry, realistic text, qrels, splits,
images."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from smar.core.errors import SmarError
from smar.data import synth
from smar.data.synth import CATEGORIES, CATEGORY_SHAPES, COLOURS, MATERIALS, PATTERNS, PRESETS, synthesize

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
    assert len(pd.read_parquet(tiny / "items.parquet")) == TINY.num_items == 200
    assert len(pd.read_parquet(tiny / "queries.parquet")) == TINY.num_queries == 200
    assert len(list((tiny / "images").rglob("*.png"))) == 200


def test_presets_cover_small_to_a_million_items():
    assert PRESETS["small"].num_items < PRESETS["medium"].num_items < PRESETS["large"].num_items == 1_000_000
    assert len(CATEGORIES) >= 30 and len(set(CATEGORY_SHAPES.values())) == len(CATEGORIES)


def test_same_parameters_give_byte_identical_files(tiny, tmp_path):
    synthesize(TINY, tmp_path / "again")
    first, second = _files(tiny), _files(tmp_path / "again")
    assert sorted(first) == sorted(second) and len(first) == 200 + 4
    assert [name for name in first if first[name] != second[name]] == []


def test_streaming_in_small_chunks_gives_the_same_rows(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "CHUNK", 7)
    monkeypatch.setattr(synth, "QRELS_CHUNK", 11)
    synthesize(TINY, tmp_path / "chunked")
    for name in ("items.parquet", "queries.parquet", "qrels.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tiny / name), pd.read_parquet(tmp_path / "chunked" / name))


def test_any_number_of_workers_gives_byte_identical_files(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "IMAGE_CHUNK", 64)  # 4 chunks, the last one partial, shared by 2 processes
    synthesize(TINY, tmp_path / "one", workers=1)
    synthesize(TINY, tmp_path / "two", workers=2)
    one, two, default = _files(tmp_path / "one"), _files(tmp_path / "two"), _files(tiny)
    assert sorted(two) == sorted(one) == sorted(default) and len(two) == 200 + 4
    assert [name for name in one if not one[name] == two[name] == default[name]] == []


def test_a_failing_worker_fails_the_run_and_keeps_the_old_dataset(tmp_path, monkeypatch):
    out = tmp_path / "data"
    out.mkdir()
    (out / "dataset.json").write_text("the last good dataset\n")
    monkeypatch.setattr(synth, "IMAGE_CHUNK", 64)
    monkeypatch.setattr(synth, "CATEGORIES", {"spoon": ()})  # the worker processes have no shape for it
    with pytest.raises(SmarError, match=r"items I0000000\.\.I0000063 failed in a worker process \(KeyError: 'spoon'\)"):
        synthesize(TINY, out, workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no scratch directory left behind
    assert [p.name for p in out.iterdir()] == ["dataset.json"]
    assert (out / "dataset.json").read_text() == "the last good dataset\n"


def test_workers_below_one_are_refused(tmp_path):
    with pytest.raises(SmarError, match="workers=0: .* at least 1 worker"):
        synthesize(TINY, tmp_path / "d", workers=0)
    assert not (tmp_path / "d").exists()


def test_different_seed_gives_different_bytes(tiny, tmp_path):
    synthesize(TINY.model_copy(update={"seed": 1}), tmp_path / "other")
    first, other = _files(tiny), _files(tmp_path / "other")
    assert first["items.parquet"] != other["items.parquet"]
    assert first["images/0000/I0000000.png"] != other["images/0000/I0000000.png"]


def test_no_title_states_colour_at_rate_zero(tmp_path):
    synthesize(TINY.model_copy(update={"title_attribute_rate": 0.0}), tmp_path / "d")
    items = pd.read_parquet(tmp_path / "d" / "items.parquet")
    assert [t for t in items["title"] if _words(t) & set(COLOURS)] == []
    assert not items["title_states_look"].any()


def test_titles_state_look_brand_material_and_category_when_asked(tmp_path):
    synthesize(TINY.model_copy(update={"title_attribute_rate": 1.0, "typo_rate": 0.0}), tmp_path / "d")
    items = pd.read_parquet(tmp_path / "d" / "items.parquet")
    for row in items.itertuples():
        words = _words(row.title)
        assert {row.colour, row.pattern, row.brand.lower(), row.material, *row.category.split()} <= words, row.title


def test_typos_change_one_word_of_some_titles(tmp_path):
    synthesize(TINY.model_copy(update={"typo_rate": 0.0}), tmp_path / "clean")
    synthesize(TINY.model_copy(update={"typo_rate": 1.0}), tmp_path / "typos")
    clean = pd.read_parquet(tmp_path / "clean" / "items.parquet")
    typos = pd.read_parquet(tmp_path / "typos" / "items.parquet")
    changed = [(a, b) for a, b in zip(clean["title"], typos["title"]) if a != b]
    assert len(changed) > 0.8 * len(clean)
    for a, b in changed:
        assert sorted(a) == sorted(b) and len(set(a.split()) ^ set(b.split())) == 2  # letters swapped within one word


def test_colour_variants_of_one_listing_are_hard_negatives(tiny):
    items = pd.read_parquet(tiny / "items.parquet")
    families = items.groupby("family").agg(
        colours=("colour", "nunique"), size=("item_id", "size"), brands=("brand", "nunique")
    )
    multi = families[families["size"] > 1]
    assert len(multi) >= 10
    assert (multi["colours"] == multi["size"]).all() and (multi["brands"] == 1).all()


def test_qrels_are_the_most_clicked_attribute_matches(tiny):
    items = pd.read_parquet(tiny / "items.parquet").set_index("item_id")
    queries = pd.read_parquet(tiny / "queries.parquet")
    qrels = pd.read_parquet(tiny / "qrels.parquet")
    judged = qrels.groupby("query_id")["item_id"].apply(set).to_dict()
    for query in queries.itertuples():
        match = items["category"] == query.category
        for attribute in ATTRIBUTES:
            if pd.notna(getattr(query, attribute)):
                match &= items[attribute] == getattr(query, attribute)
        matching = items[match].sort_values("popularity", ascending=False)
        expected = set(matching.index[: TINY.max_relevant_per_query])
        assert expected and judged[query.query_id] == expected, query.query_id
    assert qrels["label"].dtype.kind == "i" and qrels["label"].min() >= 1


def test_clicks_are_skewed_towards_popular_items(tmp_path):
    synthesize(PRESETS["tiny"].model_copy(update={"num_items": 1000, "num_queries": 600}), tmp_path / "d")
    clicks = (
        pd.read_parquet(tmp_path / "d" / "qrels.parquet").groupby("item_id")["label"].sum().sort_values(ascending=False)
    )
    assert clicks.head(len(clicks) // 10).sum() > 0.3 * clicks.sum()  # a tenth of the items take a third of the clicks


def test_query_text_names_category_and_attributes_or_their_synonyms(tiny):
    queries = pd.read_parquet(tiny / "queries.parquet")
    vocabulary = {
        "colour": {c: (c, *s) for c, (_, s) in COLOURS.items()},
        "pattern": {p: (p, *s) for p, s in PATTERNS.items()},
        "material": {m: (m, *s) for m, s in MATERIALS.items()},
    }
    synonyms_used = 0
    for query in queries.itertuples():
        text = query.text.lower()
        assert any(name in text for name in (query.category, *CATEGORIES[query.category])), query.text
        for attribute in ATTRIBUTES:
            value = getattr(query, attribute)
            if pd.isna(value):
                continue
            options = vocabulary[attribute][value] if attribute in vocabulary else (value.lower(),)
            assert any(option in text for option in options), (query.text, attribute, value)
            synonyms_used += options[0] not in text
    assert queries["text"].is_unique and synonyms_used > 5


def test_each_query_has_exactly_one_split(tiny):
    qrels = pd.read_parquet(tiny / "qrels.parquet")
    assert (qrels.groupby("query_id")["split"].nunique() == 1).all()
    assert set(qrels["split"]) == {"train", "valid", "test"}


def test_solid_items_show_their_colour_at_the_centre(tiny):
    items = pd.read_parquet(tiny / "items.parquet")
    solid = items[(items["pattern"] == "solid") & ~items["category"].map(lambda c: CATEGORY_SHAPES[c][1] == "hole")]
    assert len(solid) >= 5
    centre = TINY.image_size // 2
    for item in solid.itertuples():
        pixels = np.asarray(Image.open(tiny / item.image).convert("RGB"), dtype=float)
        patch = np.median(pixels[centre - 1 : centre + 2, centre - 1 : centre + 2].reshape(-1, 3), axis=0)
        distance = {
            name: min(np.abs(patch - factor * np.array(rgb)).max() for factor in np.linspace(0.7, 1.25, 23))
            for name, (rgb, _) in COLOURS.items()
        }
        assert min(distance, key=distance.get) == item.colour, (item.item_id, item.colour, patch)
