"""FAISS index build: stable 64-bit ids, the id map, search, and failed builds."""

import hashlib
import io
import json
import shutil

import faiss
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from smar.core.config import SmarConfig
from smar.core.errors import MissingInputError
from smar.core.paths import Paths
from smar.retrieval.index import (
    SEARCH_PARAMETERS,
    build_index,
    choose_factory,
    exact_search,
    faiss_id,
    load_index,
    normalized,
    overlap,
)
from smar.retrieval.thumbnails import Thumbnails

N, DIM = 50, 16
VIEW = "multimodal"
ITEM_IDS = [f"sku-{n}" for n in range(N)]


def _write_embeddings(paths: Paths, vectors: np.ndarray, item_ids: list[str]) -> None:
    """The layout `smar.retrieval.export` writes, beside the catalog it came from."""
    paths.data.mkdir(parents=True, exist_ok=True)
    images = [f"images/{n}.png" if n % 2 else None for n in range(N)]  # some items ship features, not images
    pd.DataFrame({"item_id": ITEM_IDS, "title": [f"title {n}" for n in range(N)], "image": images}).to_parquet(
        paths.data / "items.parquet"
    )
    paths.embeddings.root.mkdir(parents=True)
    np.save(paths.embeddings.vectors(VIEW), vectors.astype(np.float32))
    pd.DataFrame({"item_id": item_ids}).to_parquet(paths.embeddings.item_ids, index=False)


@pytest.fixture
def vectors() -> np.ndarray:
    raw = np.random.default_rng(0).normal(size=(N, DIM)).astype(np.float32)
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


@pytest.fixture
def built(tmp_path, vectors):
    paths = Paths(tmp_path / "data", tmp_path / "outputs")
    _write_embeddings(paths, vectors, ITEM_IDS)
    stats = build_index(SmarConfig(), paths)
    return paths, stats


def test_faiss_id_is_blake2b_masked_to_63_bits():
    digest = hashlib.blake2b(b"sku-17", digest_size=8).digest()
    assert faiss_id("sku-17") == int.from_bytes(digest, "big") & (2**63 - 1)
    assert faiss_id("sku-17") == 2916329150191044202  # pinned: ids must not change between releases
    assert faiss_id("sku-17") == faiss_id("sku-17")
    assert faiss_id("sku-17") != faiss_id("sku-18")
    assert all(0 <= faiss_id(i) < 2**63 for i in ITEM_IDS)


def test_build_reports_stats_and_writes_files(built):
    paths, stats = built
    assert stats["items"] == N
    assert stats["dim"] == DIM
    assert stats["factory"] == "Flat"
    assert stats["index_dir"] == str(paths.index.root)
    files = paths.index
    assert sorted(paths.index.root.iterdir()) == sorted([files.faiss(VIEW), files.id_map, files.build])
    assert json.loads(files.build.read_text())["items"] == N


def test_id_map_has_one_row_per_item_with_hashed_ids(built):
    paths, _ = built
    id_map = pd.read_parquet(paths.index.id_map)
    assert len(id_map) == N
    assert id_map["item_id"].tolist() == ITEM_IDS
    assert id_map["faiss_id"].tolist() == [faiss_id(i) for i in ITEM_IDS]
    indexes, mapping, shown = load_index(paths.index.root)
    index = indexes[VIEW]
    assert index.ntotal == N
    assert mapping == {faiss_id(i): i for i in ITEM_IDS}
    assert shown["sku-3"] == ("title 3", None, 3) and shown["sku-4"] == ("title 4", None, 4)  # (title, URL, row)


def test_thumbnails_travel_in_the_index_and_image_urls_in_the_id_map(tmp_path, vectors):
    """Items with an image file get a JPEG thumbnail in one file beside the index, read one at a
    time; items with an image_url keep the URL instead; thumbnail_size 0 writes none."""
    paths = Paths(tmp_path / "data", tmp_path / "outputs")
    _write_embeddings(paths, vectors, ITEM_IDS)
    items = pd.read_parquet(paths.data / "items.parquet")
    (paths.data / "images").mkdir()
    for n in (1, 3, 5):
        Image.new("RGBA", (300, 150), (200, 30, 30, 255)).save(paths.data / f"images/{n}.png")
    items["image_url"] = [f"https://cdn.example.com/{n}.jpg" if n == 5 else None for n in range(N)]
    items.to_parquet(paths.data / "items.parquet", index=False)
    stats = build_index(SmarConfig(), paths)
    assert stats["thumbnails"]["items"] == 2 and stats["thumbnails"]["failed"] == N // 2 - 3  # files 7, 9, ... missing
    assert pd.read_parquet(paths.index.id_map)["image_url"].tolist() == items["image_url"].tolist()
    shown, thumbnails = load_index(paths.index.root)[2], Thumbnails.open(paths.index.root)
    assert shown["sku-5"] == ("title 5", "https://cdn.example.com/5.jpg", 5)
    for row in range(N):
        jpeg = thumbnails.read(row)
        assert (jpeg is not None) == (row in (1, 3)) == thumbnails.has(row)
        if jpeg:
            picture = Image.open(io.BytesIO(jpeg))
            assert picture.format == "JPEG" and picture.size == (96, 48)  # at most 96 px a side, aspect kept
            assert picture.convert("RGB").getpixel((48, 24)) == pytest.approx((200, 30, 30), abs=8)

    without = Paths(paths.data, tmp_path / "without")
    shutil.copytree(paths.embeddings.root, without.embeddings.root)
    config = SmarConfig.model_validate({"index": {"thumbnail_size": 0}})
    assert build_index(config, without)["thumbnails"] is None
    assert not without.index.thumbnails.exists() and Thumbnails.open(without.index.root) is None


@pytest.mark.parametrize("row", [0, 17, N - 1])
def test_stored_vector_finds_itself(built, vectors, row):
    paths, _ = built
    indexes, mapping, _ = load_index(paths.index.root)
    index = indexes[VIEW]
    scores, ids = index.search(vectors[row : row + 1], 3)
    assert mapping[int(ids[0, 0])] == f"sku-{row}"
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert scores[0, 1] < scores[0, 0]


def test_unnormalised_vectors_are_normalised_before_indexing(tmp_path, vectors):
    paths = Paths(tmp_path / "data", tmp_path / "outputs")
    _write_embeddings(paths, vectors * 7.0, ITEM_IDS)
    build_index(SmarConfig(), paths)
    indexes, mapping, _ = load_index(paths.index.root)
    index = indexes[VIEW]
    scores, ids = index.search(vectors[5:6], 1)
    assert mapping[int(ids[0, 0])] == "sku-5"
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_missing_embeddings_leaves_existing_index_untouched(tmp_path):
    paths = Paths(tmp_path / "data", tmp_path / "outputs")
    paths.index.root.mkdir(parents=True)
    (paths.index.root / "marker.txt").write_text("previous good index")
    with pytest.raises(MissingInputError) as error:
        build_index(SmarConfig(), paths)
    assert str(paths.embeddings.root) in str(error.value)
    assert "smar export" in str(error.value)
    assert [p.name for p in paths.index.root.iterdir()] == ["marker.txt"]
    assert (paths.index.root / "marker.txt").read_text() == "previous good index"
    assert sorted(p.name for p in paths.outputs.iterdir()) == ["index"]  # no scratch dirs left behind


def test_repeated_item_id_is_rejected_and_existing_index_kept(tmp_path, vectors):
    paths = Paths(tmp_path / "data", tmp_path / "outputs")
    _write_embeddings(paths, vectors, ITEM_IDS[:-1] + [ITEM_IDS[0]])
    paths.index.root.mkdir(parents=True)
    (paths.index.root / "marker.txt").write_text("previous good index")
    with pytest.raises(ValueError, match="repeats"):
        build_index(SmarConfig(), paths)
    assert [p.name for p in paths.index.root.iterdir()] == ["marker.txt"]


def test_rebuild_replaces_previous_index(built, vectors):
    paths, _ = built
    (paths.index.root / "marker.txt").write_text("stale")
    build_index(SmarConfig(), paths)
    assert not (paths.index.root / "marker.txt").exists()
    assert paths.index.faiss(VIEW).is_file()
    assert sorted(p.name for p in paths.outputs.iterdir()) == ["embeddings", "index"]


def test_every_exported_view_gets_its_own_index(tmp_path, vectors):
    paths = Paths(tmp_path / "data", tmp_path / "outputs")
    _write_embeddings(paths, vectors, ITEM_IDS)
    np.save(paths.embeddings.vectors("text"), -vectors)
    stats = build_index(SmarConfig(), paths)
    indexes, mapping, _ = load_index(paths.index.root)
    assert stats["views"] == ["multimodal", "text"] and sorted(indexes) == ["multimodal", "text"]
    scores, ids = indexes["text"].search(-vectors[:1], 1)
    assert mapping[int(ids[0, 0])] == ITEM_IDS[0] and scores[0, 0] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("items", "factory"),
    [
        (50, "Flat"),
        (100_000, "Flat"),
        (100_001, "HNSW32,Flat"),
        (5_000_000, "HNSW32,Flat"),
        (20_000_000, "IVF16384,PQ32x8,Refine(SQ8)"),
    ],
)
def test_auto_factory_follows_catalog_size(items, factory):
    assert choose_factory("auto", items, 64) == factory
    assert choose_factory("IVF64,Flat", items, 64) == "IVF64,Flat"  # a set factory is kept


def test_exact_search_in_chunks_matches_brute_force(monkeypatch):
    import smar.core.topk

    rng = np.random.default_rng(1)
    vectors, queries = rng.normal(size=(1000, DIM)).astype(np.float32), rng.normal(size=(20, DIM)).astype(np.float32)
    ids = np.arange(1000, dtype=np.int64) * 7 + 3
    monkeypatch.setattr(smar.core.topk, "ITEM_CHUNK", 128)  # several chunks to merge
    found = exact_search(vectors, ids, normalized(queries), 10)
    expected = ids[np.argsort(-(normalized(queries) @ normalized(vectors).T), axis=1)[:, :10]]
    assert (found == expected).all()


@pytest.mark.parametrize(("factory", "parameter"), [("HNSW16,Flat", "efSearch"), ("IVF64,Flat", "nprobe")])
def test_approximate_index_is_tuned_to_the_target_recall_and_keeps_it(tmp_path, factory, parameter):
    """Clustered vectors, as embeddings are: the cheapest setting that reaches 0.9 of exact search
    is chosen, recorded in build.json and saved in the index file."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, DIM))
    vectors = (centres[rng.integers(0, 40, 5000)] + 0.4 * rng.normal(size=(5000, DIM))).astype(np.float32)
    queries = (centres[rng.integers(0, 40, 300)] + 0.4 * rng.normal(size=(300, DIM))).astype(np.float32)
    item_ids = [f"sku-{n}" for n in range(len(vectors))]
    paths = Paths(tmp_path / "data", tmp_path / "outputs")
    paths.data.mkdir(parents=True)
    pd.DataFrame({"item_id": item_ids, "title": item_ids, "image": None}).to_parquet(paths.data / "items.parquet")
    paths.embeddings.root.mkdir(parents=True)
    np.save(paths.embeddings.vectors(VIEW), vectors)
    np.save(paths.embeddings.tuning_queries, queries)
    pd.DataFrame({"item_id": item_ids}).to_parquet(paths.embeddings.item_ids, index=False)
    config = SmarConfig(index={"factory": factory, "target_recall": 0.9})

    tuning = build_index(config, paths)["tuning"][VIEW]

    assert tuning["parameter"] == parameter and tuning["recall_at_10"] >= 0.9
    cheaper = (
        SEARCH_PARAMETERS[parameter][SEARCH_PARAMETERS[parameter].index(tuning["value"]) - 1]
        if tuning["value"] > SEARCH_PARAMETERS[parameter][0]
        else None
    )
    index = load_index(paths.index.root)[0][VIEW]
    ids = np.array([faiss_id(i) for i in item_ids])
    exact = exact_search(vectors, ids, normalized(queries), 10)
    assert overlap(index.search(normalized(queries), 10)[1], exact) == pytest.approx(tuning["recall_at_10"], abs=1e-4)
    if cheaper is not None:  # the value below it misses the target
        faiss.ParameterSpace().set_index_parameter(index, parameter, cheaper)
        assert overlap(index.search(normalized(queries), 10)[1], exact) < 0.9
    assert json.loads(paths.index.build.read_text())["tuning"][VIEW] == tuning
