"""Dataset validation: a good dataset passes and gets a report; each kind of breakage is named."""

import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from smar.core.config import SmarConfig
from smar.core.errors import DatasetError
from smar.core.paths import Paths
from smar.data.validation import ValidationFailed, require_passed, validate
from smar.data.validation.row_checks import no_control_characters, not_blank


@pytest.fixture
def broken(tiny_data, tmp_path):
    """A fresh copy of the good dataset to break, plus its Paths."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    return data, Paths(data, tmp_path / "outputs")


def _item(data: Path, row: int) -> dict:
    """Item `row` as the generator wrote it (ids and image paths are read, not assumed)."""
    return pd.read_parquet(data / "items.parquet").iloc[row].to_dict()


def _edit(path: Path, change) -> None:
    frame = pd.read_parquet(path)
    frame = change(frame)
    frame.to_parquet(path, index=False)


def _fails(paths: Paths, *needles: str) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as error:
        validate(SmarConfig(), paths)
    message = str(error.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in:\n{message}"
    report = json.loads(paths.validation.report.read_text())
    assert report["success"] is False and any(not check["success"] for check in report["checks"])
    with pytest.raises(ValidationFailed):  # training refuses to start from this dataset
        require_passed(paths)
    return error.value


def test_tiny_dataset_passes_and_writes_report(tiny_data, tmp_path):
    paths = Paths(tiny_data, tmp_path / "outputs")
    report = validate(SmarConfig(), paths)
    assert report["success"] is True
    assert report["counts"]["items"] == len(pd.read_parquet(tiny_data / "items.parquet")) > 0
    assert report["counts"]["queries"] == len(pd.read_parquet(tiny_data / "queries.parquet")) > 0
    assert all(check["success"] for check in report["checks"])
    assert json.loads(paths.validation.report.read_text()) == report


def test_duplicate_item_id(broken):
    data, paths = broken
    _edit(data / "items.parquet", lambda f: pd.concat([f, f.iloc[[4]]], ignore_index=True))
    failure = _fails(paths, "items.parquet", "[item_id]", "unique", _item(data, 4)["item_id"], "fix: ")
    assert [(f.file, f.column) for f in failure.failures] == [("items.parquet", "item_id")]


def test_whitespace_title(broken):
    data, paths = broken

    def blank(frame):
        frame.loc[3, "title"] = "   "
        return frame

    _edit(data / "items.parquet", blank)
    failure = _fails(paths, "items.parquet", "[title]", _item(data, 3)["item_id"])
    assert [(f.column, f.unexpected_count) for f in failure.failures] == [("title", 1)]


def test_qrels_item_not_in_items(broken):
    data, paths = broken

    def dangling(frame):
        frame.loc[0, "item_id"] = "I999999"
        return frame

    _edit(data / "qrels.parquet", dangling)
    _fails(paths, "qrels.parquet", "[item_id]", "I999999")


def test_zero_label(broken):
    data, paths = broken
    qrels = pd.read_parquet(data / "qrels.parquet")
    query_id, item_id = qrels.loc[0, "query_id"], qrels.loc[0, "item_id"]

    def zero(frame):
        frame.loc[0, "label"] = 0
        return frame

    _edit(data / "qrels.parquet", zero)
    failure = _fails(paths, "qrels.parquet", "[label]", query_id, item_id)
    assert [f.column for f in failure.failures] == ["label"]


def test_unknown_split_value(broken):
    data, paths = broken
    qrels = pd.read_parquet(data / "qrels.parquet")
    query_id = qrels.loc[qrels["split"] == "train", "query_id"].iloc[0]

    def rename(frame):
        frame.loc[frame["query_id"] == query_id, "split"] = "training"
        return frame

    _edit(data / "qrels.parquet", rename)
    _fails(paths, "qrels.parquet", "[split]", query_id)


def test_missing_image_file(broken):
    data, paths = broken
    item = _item(data, 5)
    (data / item["image"]).unlink()
    failure = _fails(paths, "items.parquet", "[image]", "image_file_exists", item["item_id"], item["image"])
    assert [f.check for f in failure.failures] == ["image_file_exists"]


def test_corrupt_image_bytes(broken):
    data, paths = broken
    item = _item(data, 7)
    (data / item["image"]).write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    failure = _fails(paths, "items.parquet", "[image]", "image_decodes", item["item_id"])
    assert [f.check for f in failure.failures] == ["image_decodes"]


def test_image_path_outside_dataset_is_missing(broken):
    data, paths = broken

    def escape(frame):
        frame.loc[2, "image"] = "../outside.png"
        return frame

    (data.parent / "outside.png").write_bytes((data / _item(data, 2)["image"]).read_bytes())
    _edit(data / "items.parquet", escape)
    _fails(paths, "items.parquet", "[image]", "image_file_exists", _item(data, 2)["item_id"], "outside the dataset")


def test_image_url_must_be_an_http_url_or_null(broken):
    data, paths = broken

    def add_urls(frame):
        frame["image_url"] = [None if n % 2 else f"https://cdn.example.com/{n}.jpg" for n in range(len(frame))]
        frame.loc[4, "image_url"] = "javascript:alert(1)"
        return frame

    _edit(data / "items.parquet", add_urls)
    failure = _fails(paths, "items.parquet", "[image_url]", "is_http_url", _item(data, 4)["item_id"], "http(s) URL")
    assert [f.check for f in failure.failures] == ["is_http_url"] and failure.failures[0].unexpected_count == 1


def test_missing_column_raises_dataset_error(broken):
    data, paths = broken
    _edit(data / "items.parquet", lambda f: f.drop(columns="title"))
    with pytest.raises(DatasetError) as error:
        validate(SmarConfig(), paths)
    message = str(error.value)
    assert "items.parquet" in message
    assert "missing column(s) title" in message
    assert not paths.validation.report.exists()


def test_missing_dataset_directory_raises_dataset_error(tmp_path):
    paths = Paths(tmp_path / "no-such-data", tmp_path / "outputs")
    with pytest.raises(DatasetError, match="no such dataset directory") as error:
        validate(SmarConfig(), paths)
    assert "no-such-data" in str(error.value)
    assert not paths.validation.report.exists()


def test_a_failed_run_replaces_the_last_good_report(broken):
    data, paths = broken
    validate(SmarConfig(), paths)
    item = _item(data, 3)
    (data / item["image"]).unlink()
    _fails(paths, "image_file_exists", item["item_id"])
    _edit(data / "items.parquet", lambda f: f.drop(columns="title"))
    with pytest.raises(DatasetError):
        validate(SmarConfig(), paths)
    assert not paths.validation.report.exists()


BLANK = ["", " \t\r\n", "\u200b\u200c\u200d\u2060\ufeff", "\u00a0\u202f\u2007\u3000", "\u00ad\u180e", "\u3164\u2800"]
VISIBLE = ["Mug", "\u200bMug\u200b", "\u00a0mug", "soft\u00adtouch", "\u0301", "\U0001f375"]


def test_text_a_reader_sees_as_blank_fails_not_blank():
    assert [ok for ok, _ in not_blank(BLANK)] == [False] * len(BLANK)
    assert [ok for ok, _ in not_blank(VISIBLE + [None, b" ", 3])] == [True] * (len(VISIBLE) + 3)  # reported elsewhere
    assert not_blank(["\u200b\ufeff"])[0][1] == "only invisible characters (U+200B, U+FEFF)"


def test_control_characters_fail_except_tab_newline_and_carriage_return():
    controls = ["\x00", "a\x07b", "\x0b", "\x0c", "\x1b[0m", "\x7f", "\x85", "\x93quoted\x94"]
    assert [ok for ok, _ in no_control_characters(controls)] == [False] * len(controls)
    assert [ok for ok, _ in no_control_characters(["a\tb\r\nc", "\u200b\u00a0", None])] == [True] * 3
    assert (
        no_control_characters(["Mug\x00\x00\x1f"])[0][1]
        == "control characters U+0000 at character 4, U+001F at character 6"
    )


def test_manifest_that_is_not_json_fails_quietly_and_renders_in_the_data_docs(broken, caplog):
    """GX's data docs renderer of a failed distinct-values check logged a KeyError traceback
    (`unexpected_percent`) before smar's own message."""
    data, paths = broken
    (data / "dataset.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        _fails(paths, "dataset.json [content] is_json_object", "not valid JSON", "fix: ")
    assert not caplog.records, "\n".join(f"{r.name}: {r.getMessage()[:300]}" for r in caplog.records)
    [page] = (paths.validation.data_docs / "validations" / "dataset").rglob("*.html")
    assert "is_json_object" in page.read_text() and "not valid JSON" in page.read_text()
