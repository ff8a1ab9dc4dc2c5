"""`smar data import`: table (CSV / JSONL / Parquet) and jd_tsv sources into the data contract."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from smar.core.config import ImportConfig
from smar.core.errors import ConfigError, DatasetError
from smar.data.importers import config_from_options, import_catalog
from smar.data.splits import hash_split

MAPPING = {
    "items": {"item_id": "sku", "title": "name", "category": "cat", "brand": "maker", "image": "img"},
    "queries": {"query_id": "qid", "text": "q"},
    "interactions": {"query_id": "qid", "item_id": "sku", "label": "clicks", "split": None},
}
MAP_OPTIONS = [
    f"{table}.{column}={source or ''}" for table, columns in MAPPING.items() for column, source in columns.items()
]
SPLITS = {"train", "valid", "test"}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    return path


def make_catalog(root: Path, ext: str = "csv", num_items: int = 12, num_queries: int = 8) -> dict[str, Path]:
    """A source catalog with renamed columns, integer SKUs, a folder of tiny PNGs, repeated click rows."""
    images = root / "pics"
    images.mkdir(parents=True)
    items = []
    for number in range(num_items):
        colour = (20 * number % 256, 100, 200)
        Image.new("RGB", (4, 4), colour).save(images / f"p{number}.png")
        items.append(
            {
                "sku": 1000 + number,
                "name": f"item {number} mug",
                "cat": ["mug", "lamp", "vase"][number % 3],
                "maker": None if number % 4 == 0 else f"brand{number % 3}",
                "img": f"p{number}.png",
                "price": 1.5 * number,
            }
        )
    queries = [{"qid": 500 + q, "q": f"query {q}"} for q in range(num_queries)]
    clicks = []
    for q in range(num_queries):
        clicks.append({"qid": 500 + q, "sku": 1000 + q, "clicks": 2})
        clicks.append({"qid": 500 + q, "sku": 1000 + q, "clicks": 1})  # same pair again: summed to 3
        clicks.append({"qid": 500 + q, "sku": 1000 + (q + 1) % num_items, "clicks": 1})
        clicks.append({"qid": 500 + q, "sku": 1000 + (q + 2) % num_items, "clicks": 0})  # dropped
    return {
        "items": _write(pd.DataFrame(items), root / f"items.{ext}"),
        "queries": _write(pd.DataFrame(queries), root / f"queries.{ext}"),
        "interactions": _write(pd.DataFrame(clicks), root / f"interactions.{ext}"),
        "images_dir": images,
    }


def table_config(paths: dict[str, Path], **update) -> ImportConfig:
    return ImportConfig(format="table", mapping=MAPPING, **paths, **update)


@pytest.fixture(scope="module", params=["csv", "jsonl", "parquet"])
def imported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"source-{request.param}")
    paths = make_catalog(root / "src", request.param)
    out = root / "data"
    manifest = import_catalog(table_config(paths), out)
    return paths, out, manifest


# ---------------------------------------------------------------------------------------------
# table import


def test_table_import_meets_the_contract(imported):
    _, out, manifest = imported
    items = pd.read_parquet(out / "items.parquet")
    queries = pd.read_parquet(out / "queries.parquet")
    qrels = pd.read_parquet(out / "qrels.parquet")
    assert list(items.columns[:5]) == ["item_id", "title", "category", "brand", "image"]
    assert "price" in items.columns  # unmapped source columns are kept as attributes
    assert list(queries.columns) == ["query_id", "text"]
    assert list(qrels.columns) == ["query_id", "item_id", "label", "split"]
    for frame, column in ((items, "item_id"), (queries, "query_id"), (qrels, "query_id"), (qrels, "item_id")):
        assert pd.api.types.is_string_dtype(frame[column]), column
        assert all(isinstance(v, str) for v in frame[column]), column
    assert items["item_id"].is_unique and queries["query_id"].is_unique
    assert items["item_id"].tolist() == sorted(items["item_id"]) and "1000" in set(items["item_id"])
    assert items.set_index("item_id").loc["1000", "brand"] is None or pd.isna(
        items.set_index("item_id").loc["1000", "brand"]
    )
    assert items.set_index("item_id").loc["1001", "brand"] == "brand1"
    assert set(qrels["item_id"]) <= set(items["item_id"]) and set(qrels["query_id"]) <= set(queries["query_id"])
    assert qrels["label"].dtype == np.int64 and (qrels["label"] >= 1).all()
    assert not qrels.duplicated(["query_id", "item_id"]).any()
    labels = qrels.set_index(["query_id", "item_id"])["label"]
    assert labels[("500", "1000")] == 3  # 2 + 1 clicks on the same pair
    assert labels[("500", "1001")] == 1
    assert ("500", "1002") not in labels.index  # 0 clicks: dropped
    assert len(qrels) == 16
    assert set(qrels["split"]) <= SPLITS
    assert (qrels.groupby("query_id")["split"].nunique() == 1).all()
    assert manifest == json.loads((out / "dataset.json").read_text())
    counts = manifest["counts"]
    assert (
        (counts["items"], counts["queries"], counts["qrels"]) == (len(items), len(queries), len(qrels)) == (12, 8, 16)
    )
    per_query = qrels.drop_duplicates("query_id")["split"].value_counts()
    assert {s: counts[f"{s}_queries"] for s in SPLITS} == {s: int(per_query.get(s, 0)) for s in SPLITS}
    assert manifest["source"]["format"] == "table" and manifest["source"]["parameters"]["mapping"] == MAPPING
    assert manifest["source"]["dropped"]["zero_click_pairs"] == 8


def test_every_image_is_copied_and_opens(imported):
    paths, out, _ = imported
    items = pd.read_parquet(out / "items.parquet")
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(f"{i}.png" for i in items["item_id"])
    for item_id, image in zip(items["item_id"], items["image"]):
        assert image == f"images/{item_id}.png"
        with Image.open(out / image) as opened:
            opened.load()
        number = int(item_id) - 1000
        assert (out / image).read_bytes() == (paths["images_dir"] / f"p{number}.png").read_bytes()


def test_all_three_formats_give_the_same_dataset(tmp_path):
    tables = {}
    for ext in ("csv", "jsonl", "parquet"):
        make = make_catalog(tmp_path / ext, ext)
        import_catalog(table_config(make), tmp_path / f"out-{ext}")
        tables[ext] = {
            name: pd.read_parquet(tmp_path / f"out-{ext}" / name) for name in ("queries.parquet", "qrels.parquet")
        }
        items = pd.read_parquet(tmp_path / f"out-{ext}" / "items.parquet")
        tables[ext]["items"] = items[["item_id", "title", "category", "brand", "image"]]
    for ext in ("jsonl", "parquet"):
        for name, frame in tables["csv"].items():
            pd.testing.assert_frame_equal(frame, tables[ext][name])


def test_two_imports_are_byte_identical(imported, tmp_path):
    paths, out, _ = imported
    import_catalog(table_config(paths), tmp_path / "again")
    first, second = _files(out), _files(tmp_path / "again")
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []


def test_image_paths_relative_to_the_items_file_or_absolute(tmp_path):
    paths = make_catalog(tmp_path / "src")
    items = pd.read_csv(paths["items"])
    items["img"] = [f"pics/p{n}.png" if n % 2 else str(paths["images_dir"] / f"p{n}.png") for n in range(len(items))]
    items.to_csv(paths["items"], index=False)
    config = table_config({k: v for k, v in paths.items() if k != "images_dir"})
    import_catalog(config, tmp_path / "out")
    assert len(list((tmp_path / "out" / "images").glob("*.png"))) == 12


def test_unsafe_item_ids_get_stable_distinct_file_names(tmp_path):
    paths = make_catalog(tmp_path / "src", num_items=4, num_queries=2)
    for role, column in (("items", "sku"), ("interactions", "sku")):
        frame = pd.read_csv(paths[role])
        frame[column] = frame[column].map({1000: "a/b", 1001: "a_b", 1002: "../x", 1003: "A"})
        frame.to_csv(paths[role], index=False)
    import_catalog(table_config(paths), tmp_path / "out")
    items = pd.read_parquet(tmp_path / "out" / "items.parquet")
    assert items["image"].is_unique
    assert all(
        Path(image).parent == Path("images") and (tmp_path / "out" / image).is_file() for image in items["image"]
    )
    assert items.set_index("item_id").loc["A", "image"] == "images/A.png"


def test_graded_labels_and_a_given_split_are_kept(tmp_path):
    paths = make_catalog(tmp_path / "src")
    frame = pd.DataFrame(
        {
            "qid": [500, 500, 501, 502],
            "sku": [1000, 1001, 1000, 1003],
            "grade": [2, 0, 1, 3],
            "fold": ["train", "train", "TEST", "valid"],
        }
    )
    frame.to_csv(paths["interactions"], index=False)
    mapping = MAPPING | {"interactions": {"query_id": "qid", "item_id": "sku", "label": "grade", "split": "fold"}}
    import_catalog(ImportConfig(format="table", mapping=mapping, label="graded", **paths), tmp_path / "out")
    qrels = pd.read_parquet(tmp_path / "out" / "qrels.parquet")
    assert qrels.to_dict("records") == [
        {"query_id": "500", "item_id": "1000", "label": 2, "split": "train"},
        {"query_id": "501", "item_id": "1000", "label": 1, "split": "test"},
        {"query_id": "502", "item_id": "1003", "label": 3, "split": "valid"},
    ]


def test_interactions_without_a_label_column_count_rows_as_clicks(tmp_path):
    paths = make_catalog(tmp_path / "src")
    pd.DataFrame({"qid": [500, 500, 500, 501], "sku": [1000, 1000, 1001, 1002]}).to_csv(
        paths["interactions"], index=False
    )
    mapping = MAPPING | {"interactions": {"query_id": "qid", "item_id": "sku", "label": None}}
    import_catalog(ImportConfig(format="table", mapping=mapping, **paths), tmp_path / "out")
    qrels = pd.read_parquet(tmp_path / "out" / "qrels.parquet")
    assert qrels["label"].tolist() == [2, 1, 1]


# ---------------------------------------------------------------------------------------------
# splits


def test_hash_split_is_reproducible_and_respects_fractions(tmp_path):
    paths = make_catalog(tmp_path / "src", num_items=210, num_queries=200)
    a = import_catalog(table_config(paths), tmp_path / "a")
    qrels = pd.read_parquet(tmp_path / "a" / "qrels.parquet")
    split = qrels.drop_duplicates("query_id").set_index("query_id")["split"]
    assert len(split) == 200
    assert 0.04 <= (split == "valid").mean() <= 0.18 and 0.08 <= (split == "test").mean() <= 0.23
    for query_id, value in split.items():
        assert hash_split(query_id, 0, 0.1, 0.15) == value
    # shuffled source rows: same split
    frame = pd.read_csv(paths["interactions"]).sample(frac=1.0, random_state=3)
    frame.to_csv(paths["interactions"], index=False)
    import_catalog(table_config(paths), tmp_path / "b")
    pd.testing.assert_frame_equal(qrels, pd.read_parquet(tmp_path / "b" / "qrels.parquet"))
    # another seed moves queries; larger fractions take more queries
    import_catalog(table_config(paths, seed=1), tmp_path / "c")
    other = pd.read_parquet(tmp_path / "c" / "qrels.parquet").drop_duplicates("query_id").set_index("query_id")["split"]
    assert (other != split).any()
    big = import_catalog(table_config(paths, valid_fraction=0.3, test_fraction=0.4), tmp_path / "d")
    assert big["counts"]["test_queries"] > a["counts"]["test_queries"]
    assert 0.3 <= big["counts"]["test_queries"] / 200 <= 0.5


def test_fractions_are_checked():
    with pytest.raises(ConfigError, match="test_fraction"):
        config_from_options(format="table", items="i.csv", queries="q.csv", interactions="x.csv", test_fraction=0.7)


# ---------------------------------------------------------------------------------------------
# errors name the file, the column and the fix


def test_missing_mapped_column(tmp_path):
    paths = make_catalog(tmp_path / "src")
    mapping = MAPPING | {"items": MAPPING["items"] | {"title": "product_name"}}
    with pytest.raises(DatasetError) as error:
        import_catalog(ImportConfig(format="table", mapping=mapping, **paths), tmp_path / "out")
    message = str(error.value)
    assert "items.csv" in message and "'product_name'" in message and "items.title" in message
    assert "sku, name, cat, maker, img, price" in message and "--map items.title=" in message
    assert not (tmp_path / "out").exists()


def test_unknown_extension(tmp_path):
    paths = make_catalog(tmp_path / "src")
    odd = paths["queries"].with_suffix(".xlsx")
    paths["queries"].rename(odd)
    with pytest.raises(DatasetError, match=r"queries.xlsx: unknown extension '.xlsx'.*\.csv.*\.jsonl.*\.parquet.*Fix"):
        import_catalog(table_config(paths | {"queries": odd}), tmp_path / "out")


def test_unreadable_file(tmp_path):
    paths = make_catalog(tmp_path / "src", "parquet")
    paths["items"].write_bytes(b"this is not parquet")
    with pytest.raises(DatasetError, match=r"items.parquet: cannot be read as Parquet.*Fix"):
        import_catalog(table_config(paths), tmp_path / "out")


def test_missing_image_names_items_and_keeps_the_old_dataset(tmp_path):
    paths = make_catalog(tmp_path / "src")
    import_catalog(table_config(paths), tmp_path / "out")
    before = _files(tmp_path / "out")
    (paths["images_dir"] / "p3.png").unlink()
    (paths["images_dir"] / "p7.png").unlink()
    with pytest.raises(DatasetError) as error:
        import_catalog(table_config(paths), tmp_path / "out")
    message = str(error.value)
    assert "items.csv" in message and "'img'" in message and "2 image file(s) not found" in message
    assert "1003 (p3.png)" in message and "1007 (p7.png)" in message and "--images DIR" in message
    assert _files(tmp_path / "out") == before  # a failed import leaves the last good dataset
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no scratch left behind


def test_interactions_with_unknown_ids(tmp_path):
    paths = make_catalog(tmp_path / "src")
    frame = pd.read_csv(paths["interactions"])
    extra = pd.DataFrame({"qid": [500, 501, 502], "sku": [9001, 9002, 9002], "clicks": [1, 1, 1]})
    pd.concat([frame, extra]).to_csv(paths["interactions"], index=False)
    with pytest.raises(DatasetError) as error:
        import_catalog(table_config(paths), tmp_path / "out")
    message = str(error.value)
    assert "interactions.csv" in message and "3 row(s) in column 'sku'" in message
    assert "2 item_id(s) not in items.csv: 9001, 9002" in message and "Fix:" in message

    frame.assign(qid=frame["qid"].replace(500, 777)).to_csv(paths["interactions"], index=False)
    with pytest.raises(DatasetError, match=r"column 'qid' refer to 1 query_id\(s\) not in queries.csv: 777"):
        import_catalog(table_config(paths), tmp_path / "out")


def test_bad_values(tmp_path):
    paths = make_catalog(tmp_path / "src")
    frame = pd.read_csv(paths["interactions"])
    frame.assign(clicks=frame["clicks"].astype(str).replace("2", "lots")).to_csv(paths["interactions"], index=False)
    with pytest.raises(DatasetError, match=r"column 'clicks' \(click counts\) must hold non-negative integers.*lots"):
        import_catalog(table_config(paths), tmp_path / "out")

    items = pd.read_csv(paths["items"])
    pd.concat([items, items.iloc[[2]]]).to_csv(paths["items"], index=False)
    with pytest.raises(
        DatasetError, match=r"items.csv: column 'sku' \(item_id\) must be unique; 1 value\(s\) repeat: 1002"
    ):
        import_catalog(table_config(paths), tmp_path / "out")


def test_split_must_be_one_per_query(tmp_path):
    paths = make_catalog(tmp_path / "src")
    frame = pd.read_csv(paths["interactions"])
    frame["fold"] = ["train", "test"] * (len(frame) // 2)
    frame.to_csv(paths["interactions"], index=False)
    mapping = MAPPING | {"interactions": MAPPING["interactions"] | {"split": "fold"}}
    with pytest.raises(DatasetError, match=r"column 'fold' \(split\) must be the same on every row of a query"):
        import_catalog(ImportConfig(format="table", mapping=mapping, **paths), tmp_path / "out")


def test_bad_options():
    with pytest.raises(ConfigError, match=r"--map 'items.sku'"):
        config_from_options(format="table", maps=["items.sku"])
    with pytest.raises(ConfigError, match="unknown column 'sku'"):
        config_from_options(format="table", items="i.csv", queries="q.csv", interactions="x.csv", maps=["items.sku=id"])
    with pytest.raises(ConfigError, match=r"needs items \(--items FILE\)"):
        config_from_options(format="table", queries="q.csv", interactions="x.csv")
    with pytest.raises(ConfigError, match=r"needs source_dir \(--source DIR\)"):
        config_from_options(format="jd-tsv")


def test_output_inside_the_source_is_refused(tmp_path):
    paths = make_catalog(tmp_path / "src")
    with pytest.raises(ConfigError, match="holds the source"):
        import_catalog(table_config(paths), tmp_path / "src")
    assert paths["items"].is_file()


# ---------------------------------------------------------------------------------------------
# jd_tsv


def make_release(root: Path, feature_shape=(6,), missing_features=()) -> Path:
    root.mkdir(parents=True)
    item_ids = ["30", "10", "20", "40"]
    (root / "items.tsv").write_text(
        "30\t12 873 5\t3\t7\n"
        "10\t4  9\t1\t\n"  # double space, no brand
        "20\t100\t3\t2\n"
        "40\t8 8\t2\t7\n"
    )
    (root / "queries.tsv").write_text("q1\t12 5\nq2\t100\nq3\t8\n")
    (root / "interactions.tsv").write_text("q1\t30\t2\nq1\t30\t1\nq1\t10\t0\nq2\t20\t1\nq3\t40\t4\nq3\t10\t1\n")
    rng = np.random.default_rng(0)
    feature_ids = [i for i in ["20", "99", "40", "10", "30"] if i not in missing_features]  # shuffled, one unknown id
    features = rng.standard_normal((len(feature_ids), *feature_shape)).astype(np.float64)
    np.save(root / "image_features.npy", features)
    (root / "image_feature_ids.txt").write_text("\n".join(feature_ids) + "\n")
    assert set(item_ids) - set(missing_features) <= set(feature_ids)
    return root


def _jd(source: Path, **update) -> ImportConfig:
    return ImportConfig(format="jd_tsv", source_dir=source, **update)


@pytest.mark.parametrize("feature_shape", [(6,), (3, 5)])
def test_jd_tsv_import(tmp_path, feature_shape):
    source = make_release(tmp_path / "release", feature_shape)
    manifest = import_catalog(_jd(source), tmp_path / "out")
    out = tmp_path / "out"
    items = pd.read_parquet(out / "items.parquet")
    queries = pd.read_parquet(out / "queries.parquet")
    qrels = pd.read_parquet(out / "qrels.parquet")
    assert items["item_id"].tolist() == ["10", "20", "30", "40"]
    assert items.set_index("item_id").loc["30", ["title", "category", "brand"]].tolist() == ["w12 w873 w5", "c3", "b7"]
    assert items.set_index("item_id").loc["10", "title"] == "w4 w9" and pd.isna(
        items.set_index("item_id").loc["10", "brand"]
    )
    assert items["image"].isna().all() and pd.api.types.is_string_dtype(items["image"])
    assert queries.set_index("query_id")["text"].to_dict() == {"q1": "w12 w5", "q2": "w100", "q3": "w8"}
    assert qrels[["query_id", "item_id", "label"]].to_dict("records") == [
        {"query_id": "q1", "item_id": "30", "label": 3},
        {"query_id": "q2", "item_id": "20", "label": 1},
        {"query_id": "q3", "item_id": "10", "label": 1},
        {"query_id": "q3", "item_id": "40", "label": 4},
    ]
    assert (qrels.groupby("query_id")["split"].nunique() == 1).all() and set(qrels["split"]) <= SPLITS
    features = np.load(out / "image_features.npy")
    assert features.dtype == np.float32 and features.shape == (4, *feature_shape)
    source_features = np.load(source / "image_features.npy")
    source_ids = (source / "image_feature_ids.txt").read_text().split()
    for row, item_id in enumerate(items["item_id"]):
        np.testing.assert_array_equal(features[row], source_features[source_ids.index(item_id)].astype(np.float32))
    assert manifest["image_features"] == {
        "file": "image_features.npy",
        "dtype": "float32",
        "shape": [4, *feature_shape],
    }
    assert manifest["source"]["dropped"]["unused_feature_rows"] == 1
    assert list((out / "images").iterdir()) == []
    import_catalog(_jd(source), tmp_path / "again")
    assert _files(out) == _files(tmp_path / "again")


def test_jd_tsv_items_without_features(tmp_path):
    source = make_release(tmp_path / "release", missing_features=("40",))
    with pytest.raises(
        DatasetError,
        match=r"image_feature_ids.txt: 1 item\(s\) of items.tsv have no image feature row: "
        r"40.*--drop-items-without-features",
    ):
        import_catalog(_jd(source), tmp_path / "out")
    manifest = import_catalog(_jd(source, drop_items_without_features=True), tmp_path / "out")
    items = pd.read_parquet(tmp_path / "out" / "items.parquet")
    qrels = pd.read_parquet(tmp_path / "out" / "qrels.parquet")
    assert items["item_id"].tolist() == ["10", "20", "30"] and "40" not in set(qrels["item_id"])
    assert np.load(tmp_path / "out" / "image_features.npy").shape == (3, 6)
    assert manifest["source"]["dropped"]["items_without_features"] == 1
    assert manifest["source"]["dropped"]["qrels_of_items_without_features"] == 1


def test_jd_tsv_errors(tmp_path):
    source = make_release(tmp_path / "release")
    (source / "queries.tsv").write_text("q1\t12 x5\nq2\t100\nq3\t8\n")
    with pytest.raises(
        DatasetError,
        match=r"queries.tsv: column 2 \(query token ids\) must hold space-separated non-negative integer token ids.*q1",
    ):
        import_catalog(_jd(source), tmp_path / "out")
    (source / "queries.tsv").write_text("q1\t12 5\nq2\t100\nq3\t8\n")
    (source / "image_feature_ids.txt").write_text("20\n99\n40\n")
    with pytest.raises(DatasetError, match=r"3 id line\(s\) for 5 row\(s\) of image_features.npy"):
        import_catalog(_jd(source), tmp_path / "out")
    (source / "interactions.tsv").unlink()
    with pytest.raises(DatasetError, match="interactions.tsv: missing from the jd_tsv release"):
        import_catalog(_jd(source), tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# the command line


SMAR = Path(sys.executable).with_name("smar")


def test_cli_table_import(tmp_path):
    paths = make_catalog(tmp_path / "src")
    command = [
        str(SMAR),
        "data",
        "import",
        "--format",
        "table",
        "--items",
        str(paths["items"]),
        "--queries",
        str(paths["queries"]),
        "--interactions",
        str(paths["interactions"]),
        "--images",
        str(paths["images_dir"]),
        "--data",
        str(tmp_path / "data"),
        "--name",
        "shop",
        "--seed",
        "3",
    ]
    for option in MAP_OPTIONS:
        command += ["--map", option]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout.split(": ", 1)[1])
    assert result.stdout.startswith(f"wrote {tmp_path / 'data'}:") and counts["items"] == 12 and counts["qrels"] == 16
    manifest = json.loads((tmp_path / "data" / "dataset.json").read_text())
    assert manifest["name"] == "shop" and manifest["source"]["parameters"]["seed"] == 3
    assert manifest == import_catalog(table_config(paths, name="shop", seed=3), tmp_path / "api")
    assert _files(tmp_path / "data") == _files(tmp_path / "api")


def test_cli_error_is_one_message_without_traceback(tmp_path):
    paths = make_catalog(tmp_path / "src")
    command = [
        str(SMAR),
        "data",
        "import",
        "--items",
        str(paths["items"]),
        "--queries",
        str(paths["queries"]),
        "--interactions",
        str(paths["interactions"]),
        "--images",
        str(paths["images_dir"]),
        "--data",
        str(tmp_path / "data"),
        "--map",
        "items.item_id=product_code",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "items.csv" in result.stderr and "'product_code'" in result.stderr
    assert "Fix:" in result.stderr and not (tmp_path / "data").exists()


def test_cli_reads_the_import_section_of_params_yaml(tmp_path):
    paths = make_catalog(tmp_path / "src")
    config = table_config(paths, name="shop")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"import": json.loads(config.model_dump_json())}))
    result = subprocess.run(
        [str(SMAR), "data", "import", "--params", str(params), "--data", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    import_catalog(config, tmp_path / "api")
    assert _files(tmp_path / "data") == _files(tmp_path / "api")

    params.write_text("train:\n  epochs: 1\n")
    missing = subprocess.run(
        [str(SMAR), "data", "import", "--params", str(params)], capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 1 and "no `import` section" in missing.stderr
