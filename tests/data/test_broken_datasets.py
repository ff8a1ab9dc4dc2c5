"""A corpus of broken datasets, one per way real data breaks a pipeline.

Each is rejected by `validate`: `ValidationFailed` (a report with success false, and HTML data
docs) or, for structural problems, `DatasetError` (no report, no data docs). Either way the
message names the file, the column, example rows and the fix.
"""

import json
import logging
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smar.core.config import SmarConfig
from smar.core.errors import DatasetError
from smar.core.paths import Paths
from smar.data.validation import ValidationFailed, require_passed, validate


@pytest.fixture
def data(tiny_data, tmp_path) -> Path:
    """A fresh copy of the good dataset, to break."""
    copy = tmp_path / "data"
    shutil.copytree(tiny_data, copy)
    return copy


# --- ways to break a dataset ---------------------------------------------------------------
# Each breakage edits a copy of the dataset and returns its needles: for ValidationFailed, strings
# that must all appear on one line of the message (which must also hold "fix: "); for
# DatasetError, strings that must appear in the message. Ids and paths are read from the data,
# so the corpus does not depend on the generator's naming.


def _edit(path: Path, change) -> None:
    frame = pd.read_parquet(path)
    frame = change(frame)
    frame.to_parquet(path, index=False)


def _row(data: Path, file: str, row: int) -> dict:
    return pd.read_parquet(data / file).iloc[row].to_dict()


def _set(data: Path, file: str, row: int, column: str, value) -> dict:
    """Set one cell, through an object column so any Python value fits; return the row as it was."""
    before = _row(data, file, row)

    def set_cell(frame):
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame

    _edit(data / file, set_cell)
    return before


def _raw_string(data: Path, file: str, row: int, column: str, raw: bytes) -> dict:
    """Write `raw` into a Parquet *string* column without UTF-8 validation (as a buggy exporter does)."""
    before = _row(data, file, row)
    table = pq.read_table(data / file)
    values = [value.encode() if value is not None else None for value in table.column(column).to_pylist()]
    values[row] = raw
    strings = pa.array(values, pa.binary()).view(pa.string())
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, strings), data / file)
    return before


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG that declares width x height (all Image.open sees of a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _image(row: int, content, check: str, *details: str):
    """Replace item `row`'s image file with content (bytes, a function of the old bytes, or None to delete)."""

    def breakage(data: Path) -> list[str]:
        item = _row(data, "items.parquet", row)
        path = data / item["image"]
        if content is None:
            path.unlink()
        else:
            path.write_bytes(content(path.read_bytes()) if callable(content) else content)
        return ["items.parquet [image]", check, item["item_id"], item["image"], *details]

    return breakage


def _cell(file: str, row: int, column: str, value, check: str, *details: str, ids=("item_id",)):
    def breakage(data: Path) -> list[str]:
        before = _set(data, file, row, column, value)
        return [f"{file} [{column}]", check, *(before[i] for i in ids), *details]

    return breakage


def _raw(file: str, row: int, column: str, raw: bytes, check: str, *details: str, ids=("item_id",)):
    def breakage(data: Path) -> list[str]:
        before = _raw_string(data, file, row, column, raw)
        return [f"{file} [{column}]", check, *(before[i] for i in ids), *details]

    return breakage


def _duplicate_item(data: Path) -> list[str]:
    _edit(data / "items.parquet", lambda f: pd.concat([f, f.iloc[[4]]], ignore_index=True))
    return ["items.parquet [item_id]", "unique", _row(data, "items.parquet", 4)["item_id"]]


def _blank_titles(data: Path) -> list[str]:
    empty = _set(data, "items.parquet", 3, "title", "")
    blank = _set(data, "items.parquet", 4, "title", " \t\u3000")
    return [
        "items.parquet [title]",
        "not_blank",
        "2 row(s) fail",
        f"item_id={empty['item_id']} title=''",
        f"item_id={blank['item_id']} title=' \\t\\u3000'",
    ]


def _ids_as_integers(data: Path) -> list[str]:
    """An importer that kept numeric ids: consistent across files, but not strings."""
    for file in ("items.parquet", "qrels.parquet"):
        _edit(data / file, lambda f: f.assign(item_id=f["item_id"].str.lstrip("I").astype("int64")))
    return [
        "items.parquet [item_id]",
        "is_string",
        f"row=0 item_id={_row(data, 'items.parquet', 0)['item_id']}: int, not str",
    ]


def _labels_as_strings(data: Path) -> list[str]:
    _edit(data / "qrels.parquet", lambda f: f.assign(label=f["label"].astype(str)))
    first = _row(data, "qrels.parquet", 0)
    return [
        "qrels.parquet [label]",
        "is_integer",
        first["query_id"],
        first["item_id"],
        f"label={first['label']}: str, not a whole number",
    ]


def _relabel_split(source: str, target: str):
    def breakage(data: Path) -> list[str]:
        _edit(data / "qrels.parquet", lambda f: f.assign(split=f["split"].replace(source, target)))
        return ["qrels.parquet [split]", f"split_{source}_is_not_empty", f"no qrels row has split '{source}'"]

    return breakage


def _features(make, null_images: bool = True, *needles: str):
    """Ship image_features.npy (make(num_items)) and, by default, null every image path."""

    def breakage(data: Path) -> list[str]:
        items = pd.read_parquet(data / "items.parquet")
        np.save(data / "image_features.npy", make(len(items)), allow_pickle=False)
        if null_images:
            items["image"] = None
            items.to_parquet(data / "items.parquet", index=False)
            shutil.rmtree(data / "images")
        return [need(items) if callable(need) else need for need in needles]

    return breakage


def _good_features(n: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 4, 8)).astype(np.float32)


def _with_nan(n: int) -> np.ndarray:
    features = _good_features(n)
    features[9, 2, 3] = np.nan
    return features


def _features_and_missing_image(data: Path) -> list[str]:
    """3-D features next to image files: the features pass, image paths are still checked."""
    _features(_good_features, False)(data)
    return _image(14, None, "image_file_exists")(data)


def _unlink(name: str, *needles: str):
    def breakage(data: Path) -> list[str]:
        (data / name).unlink()
        return list(needles)

    return breakage


def _overwrite(name: str, content: bytes, *needles: str):
    def breakage(data: Path) -> list[str]:
        (data / name).write_bytes(content)
        return list(needles)

    return breakage


def _drop_column(file: str, column: str):
    def breakage(data: Path) -> list[str]:
        _edit(data / file, lambda f: f.drop(columns=column))
        return [file, f"missing column(s) {column}", "Fix:"]

    return breakage


QRELS = ("query_id", "item_id")
# Each breakage fails exactly one check (no collateral failures), except:
FAILED_CHECKS = {"item-id-integers": 2}  # items.parquet and qrels.parquet both hold item ids

CORPUS = [
    pytest.param(_image(5, None, "image_file_exists", "no such file"), ValidationFailed, id="missing-image"),
    pytest.param(
        _image(7, b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4, "image_decodes"), ValidationFailed, id="corrupt-image"
    ),
    pytest.param(_image(9, b"", "image_file_not_empty", "0 bytes"), ValidationFailed, id="zero-byte-image"),
    pytest.param(
        _image(11, _png_header(5000, 5000), "image_within_max_pixels", "5000x5000 = 25000000 px"),
        ValidationFailed,
        id="image-too-large",
    ),
    pytest.param(
        _image(12, _png_header(10_000, 10_000), "image_within_max_pixels", "decompression bomb"),
        ValidationFailed,
        id="decompression-bomb-warning",
    ),
    pytest.param(
        _image(13, _png_header(40_000, 40_000), "image_within_max_pixels", "decompression bomb"),
        ValidationFailed,
        id="decompression-bomb-error",
    ),
    pytest.param(_duplicate_item, ValidationFailed, id="duplicate-item-id"),
    pytest.param(_blank_titles, ValidationFailed, id="empty-and-whitespace-titles"),
    pytest.param(
        _cell(
            "items.parquet",
            6,
            "title",
            "\u200b\u200c\u200d\u2060\ufeff",
            "not_blank",
            "title='\\u200b\\u200c\\u200d\\u2060\\ufeff': only invisible characters (U+200B, U+200C",
        ),
        ValidationFailed,
        id="zero-width-title",
    ),
    pytest.param(
        _cell(
            "queries.parquet",
            2,
            "text",
            "\u00a0\u202f\u2007",
            "not_blank",
            "text='\\xa0\\u202f\\u2007'",
            "fix: give every query a non-blank text",
            ids=("query_id",),
        ),
        ValidationFailed,
        id="no-break-space-query",
    ),
    pytest.param(
        _cell(
            "items.parquet",
            8,
            "title",
            "Ceramic\x00 mug",
            "no_control_characters",
            "title='Ceramic\\x00 mug'",
            "U+0000 at character 8",
        ),
        ValidationFailed,
        id="nul-in-title",
    ),
    pytest.param(
        _cell("items.parquet", 3, "brand", "Acme\x1b[0m", "no_control_characters", "brand='Acme\\x1b[0m'", "U+001B"),
        ValidationFailed,
        id="control-character-in-brand",
    ),
    pytest.param(
        _cell(
            "items.parquet",
            5,
            "category",
            "\x93kitchen\x94",
            "no_control_characters",
            "U+0093",
            "decode it as cp1252",
        ),
        ValidationFailed,
        id="c1-controls-in-category",
    ),
    pytest.param(
        _cell("qrels.parquet", 0, "query_id", "Q999999", "is_in_queries", "Q999999", ids=("item_id",)),
        ValidationFailed,
        id="qrels-unknown-query",
    ),
    pytest.param(
        _cell("qrels.parquet", 0, "item_id", "I999999", "is_in_items", "I999999", ids=("query_id",)),
        ValidationFailed,
        id="qrels-unknown-item",
    ),
    pytest.param(_ids_as_integers, ValidationFailed, id="item-id-integers"),
    pytest.param(_labels_as_strings, ValidationFailed, id="label-strings"),
    pytest.param(
        _cell("qrels.parquet", 2, "label", 1.5, "is_integer", "label=1.5: float, not a whole number", ids=QRELS),
        ValidationFailed,
        id="label-fraction",
    ),
    pytest.param(
        _cell("qrels.parquet", 1, "label", float("nan"), "not_be_null", ids=QRELS), ValidationFailed, id="label-nan"
    ),
    pytest.param(
        _cell("qrels.parquet", 3, "label", -2, "between", "label=-2", ids=QRELS), ValidationFailed, id="label-negative"
    ),
    pytest.param(
        _cell(
            "qrels.parquet", 0, "split", None, "not_be_null", "row=0 ", "fix: give every qrels row a split", ids=QRELS
        ),
        ValidationFailed,
        id="qrels-null-split",
    ),
    pytest.param(_relabel_split("train", "valid"), ValidationFailed, id="empty-train-split"),
    pytest.param(_relabel_split("test", "train"), ValidationFailed, id="empty-test-split"),
    pytest.param(
        _cell("items.parquet", 2, "title", b"caf\xe9 mug", "is_utf8_string", "not UTF-8"),
        ValidationFailed,
        id="bytes-not-utf8",
    ),
    pytest.param(
        _raw("items.parquet", 4, "title", b"lamp \xed\xa0\x80", "is_utf8_string", "not UTF-8"),
        ValidationFailed,
        id="encoded-lone-surrogate",
    ),
    pytest.param(
        _cell("items.parquet", 1, "title", "Caf\ufffd mug", "is_utf8_string", "U+FFFD"),
        ValidationFailed,
        id="replacement-character",
    ),
    pytest.param(
        _cell("items.parquet", 10, "image", None, "not_be_null", "image_features.npy"),
        ValidationFailed,
        id="null-image-without-features",
    ),
    pytest.param(
        _features(
            lambda n: _good_features(n - 1),
            True,
            "image_features.npy [rows]",
            "rows_match_items",
            lambda items: f"{len(items) - 1} feature rows for {len(items)} items",
        ),
        ValidationFailed,
        id="features-row-count",
    ),
    pytest.param(
        _features(
            _with_nan, True, "image_features.npy [values]", "all_finite", "row=9", lambda items: items["item_id"][9]
        ),
        ValidationFailed,
        id="features-nan",
    ),
    pytest.param(
        _features(
            lambda n: _good_features(n).astype(np.float64),
            True,
            "image_features.npy [dtype]",
            "dtype_is_float32",
            "float64",
        ),
        ValidationFailed,
        id="features-float64",
    ),
    pytest.param(_features_and_missing_image, ValidationFailed, id="features-but-image-path-missing"),
    pytest.param(
        _overwrite("image_features.npy", b"not numpy", "image_features.npy", "cannot be read as a .npy", "Fix:"),
        DatasetError,
        id="features-unreadable",
    ),
    pytest.param(
        _features(lambda n: np.zeros(n, np.float32), True, "image_features.npy", "shape [", "Fix:"),
        DatasetError,
        id="features-wrong-shape",
    ),
    pytest.param(
        _overwrite(
            "dataset.json",
            b'{\n  "name": "tiny",\n  "version": "1"\n  "source": "synth"\n}\n',
            "dataset.json [content] is_json_object",
            "not valid JSON: Expecting ',' delimiter at line 4 column 3",
            "fix: make dataset.json one UTF-8 JSON object",
        ),
        ValidationFailed,
        id="manifest-not-json",
    ),
    pytest.param(
        _overwrite(
            "dataset.json",
            b'[{"name": "tiny"}]',
            "dataset.json [content] is_json_object",
            "an array, not a JSON object",
            "fix: make dataset.json",
        ),
        ValidationFailed,
        id="manifest-not-an-object",
    ),
    pytest.param(_unlink("qrels.parquet", "qrels.parquet: missing", "Fix:"), DatasetError, id="missing-file"),
    pytest.param(_drop_column("queries.parquet", "text"), DatasetError, id="missing-column"),
    pytest.param(
        _overwrite("items.parquet", b"PAR1 this is not parquet", "items.parquet", "cannot be read as Parquet", "Fix:"),
        DatasetError,
        id="unreadable-parquet",
    ),
]


@pytest.mark.parametrize("breakage, error", CORPUS)
def test_broken_dataset_is_rejected_with_file_column_rows_and_fix(data, tmp_path, breakage, error, request, caplog):
    needles = breakage(data)
    paths = Paths(data, tmp_path / "outputs")
    with caplog.at_level(logging.WARNING), pytest.raises(error) as raised:
        validate(SmarConfig(), paths)
    message = str(raised.value)
    print(message)  # the corpus' messages, for `pytest -s`
    # smar's message is all the user reads: no library warnings or tracebacks before it
    assert not caplog.records, "\n".join(f"{r.name}: {r.getMessage()[:300]}" for r in caplog.records)
    if error is DatasetError:
        assert all(needle in message for needle in needles), f"{needles} not all in:\n{message}"
        assert not paths.validation.report.exists() and not paths.validation.data_docs.exists()
        return
    lines = [line for line in message.splitlines() if all(needle in line for needle in needles)]
    assert lines, f"no line has all of {needles}:\n{message}"
    assert all("fix: " in line for line in lines)
    report = json.loads(paths.validation.report.read_text())
    assert report["success"] is False
    failed = [check for check in report["checks"] if not check["success"]]
    assert len(failed) == FAILED_CHECKS.get(request.node.callspec.id, 1), message
    assert all(check["fix"] and check["examples"] for check in failed)
    assert (paths.validation.data_docs / "index.html").is_file()
    assert list((paths.validation.data_docs / "validations").rglob("*.html"))
    with pytest.raises(ValidationFailed):  # training refuses to start from this dataset
        require_passed(paths)


def _tabs_newlines_and_invisible_marks(data: Path) -> None:
    """Whitespace controls and format characters next to visible text are fine (exports carry them)."""
    _set(data, "items.parquet", 1, "title", "Ceramic mug\twhite\r\nsoft\u00adtouch\u200b")
    _set(data, "items.parquet", 2, "brand", "\ufeffAcme")
    _set(data, "queries.parquet", 0, "text", "\u00a0red\u00a0mug\n")


def _empty_valid_and_float_labels(data: Path) -> None:
    _relabel_split("valid", "train")(data)
    _edit(data / "qrels.parquet", lambda f: f.assign(label=f["label"].astype(float)))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_empty_valid_and_float_labels, id="empty-valid-split-and-integral-float-labels"),
        pytest.param(_features(lambda n: np.ones((n, 8), np.float32)), id="2d-features-instead-of-images"),
        pytest.param(_unlink("dataset.json"), id="no-dataset-json"),  # optional: only a present one must be JSON
        pytest.param(_tabs_newlines_and_invisible_marks, id="text-with-tabs-newlines-and-invisible-marks"),
    ],
)
def test_accepted_variants_pass(data, tmp_path, change):
    change(data)
    report = validate(SmarConfig(), Paths(data, tmp_path / "outputs"))
    assert report["success"] is True


def test_empty_valid_split_fails_when_evaluation_uses_it(data, tmp_path):
    _relabel_split("valid", "train")(data)
    config = SmarConfig.model_validate({"evaluate": {"split": "valid"}})
    with pytest.raises(
        ValidationFailed, match=r"qrels.parquet \[split\] split_valid_is_not_empty: .*fix: .*evaluate.split"
    ):
        validate(config, Paths(data, tmp_path / "outputs"))


def test_data_docs_follow_every_run_and_are_never_half_written(data, tmp_path, monkeypatch):
    paths = Paths(data, tmp_path / "outputs")
    docs = paths.validation.data_docs

    report = validate(SmarConfig(), paths)  # a good dataset: an index and one result page per file
    assert report["success"] is True and report["data_docs"] == str(docs / "index.html")
    index = (docs / "index.html").read_text()
    for file in ("items.parquet", "queries.parquet", "qrels.parquet", "dataset.json"):
        [page] = (docs / "validations" / file.split(".")[0]).rglob("*.html")
        assert file in index and "fix: " in page.read_text()

    _image(3, None, "image_file_exists")(data)  # a failed run replaces them with its own results
    with pytest.raises(ValidationFailed):
        validate(SmarConfig(), paths)
    pages = list((docs / "validations").rglob("*.html"))
    assert len(pages) == 4 and "image_file_exists" in "".join(p.read_text() for p in pages)

    def crash(suites, config, scratch):  # dies half-way through writing the docs
        (scratch / "index.html").write_text("<html>half")
        raise RuntimeError("killed")

    monkeypatch.setattr("smar.data.validation.runner.run_suites", crash)
    with pytest.raises(RuntimeError):
        validate(SmarConfig(), paths)
    assert not docs.exists() and not paths.validation.report.exists()
    assert not [p.name for p in docs.parent.iterdir() if p.name.startswith(".")]  # no scratch left behind
    monkeypatch.undo()

    (data / "qrels.parquet").unlink()  # a structural error: no report, no docs
    with pytest.raises(DatasetError):
        validate(SmarConfig(), paths)
    assert not docs.exists() and not paths.validation.report.exists()
