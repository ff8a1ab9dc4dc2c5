"""What is checked in each file: one `Suite` per file, a frame for GX and the expectations on it.

Native GX expectations check what a column shows (nulls, uniqueness, ranges, sets); what only
Python can see comes from `row_checks` as a derived per-row column that a GX expectation
asserts (`Suite.derived`), so every check runs through GX.
"""

from __future__ import annotations

import json
import numbers
import re
from pathlib import Path

from smar.core.config import SmarConfig
from smar.core.contract import IMAGE_FEATURES, IMAGE_URL, ITEMS, MANIFEST, QRELS, QUERIES, SPLITS
from smar.data.dataset import Dataset
from smar.data.validation import row_checks

FEATURE_ROWS_PER_CHUNK = 4096
TEXT_FIX = (
    "store text as UTF-8 str: decode the source with its real encoding (e.g. cp1252), not as bytes, numbers or U+FFFD"
)
CONTROL_FIX = (
    "remove the control characters (tab, newline and carriage return may stay); U+0080-U+009F usually are cp1252 "
    "punctuation read as latin-1: decode it as cp1252"
)
BLANK = "whitespace and invisible characters such as U+200B or U+FEFF alone are blank"


class Suite:
    """One file's checks: a frame for GX (id columns, checked columns, derived per-row results)
    and the expectations on it. Each expectation's meta says how to report it."""

    def __init__(self, file: str, ids: dict[str, list]):
        import pandas as pd

        self.file = file
        self.id_columns = list(ids)
        self.frame = pd.DataFrame(ids)
        self.expectations: list = []
        self.derived_columns: list[str] = []

    def add(self, expectation_type, name: str, fix: str, check: str | None = None, examples=None, **kwargs):
        """A native GX expectation on a column already in the frame; `name` is the column (or
        columns) the report names."""
        meta = {"file": self.file, "column": name, "check": check, "fix": fix, "examples": examples}
        check = check or re.sub(r"(?<!^)(?=[A-Z])", "_", expectation_type.__name__).lower()
        self.expectations.append(expectation_type(meta=meta, description=_description(name, check, fix), **kwargs))

    def add_file_value(self, column: str, check: str, fix: str, value_set: list[str], example: str | None):
        """One value for the whole file (dataset.json's state, the features' dtype), held in `column` on
        every row, must be in value_set. ExpectColumnMostCommonValueToBeInSet, as GX's data docs cannot
        render a failed ExpectColumnDistinctValuesToBeInSet: it logs a KeyError ('unexpected_percent')
        traceback that reads as a crash."""
        import great_expectations as gx

        expectation = gx.expectations.ExpectColumnMostCommonValueToBeInSet
        self.add(expectation, column, fix, check=check, examples=[example], column=column, value_set=value_set)

    @property
    def index_columns(self) -> list[str]:
        """Columns GX quotes for each failing row: ids, checked values and problem details."""
        return [column for column in self.frame.columns if column not in self.derived_columns]

    def derived(self, column: str, check: str, fix: str, rows: list[tuple[bool, str | None]]):
        """A per-row result computed in Python: GX asserts every row is True; a failing row's
        detail (what is wrong with it) is quoted in the examples as `problem`."""
        import great_expectations as gx

        name = f"{column}__{check}"
        self.frame[name] = [bool(ok) for ok, _ in rows]
        self.frame[name + "__detail"] = [None if ok else detail for ok, detail in rows]
        self.derived_columns.append(name)
        meta = {"file": self.file, "column": column, "check": check, "fix": fix, "detail": name + "__detail"}
        self.expectations.append(
            gx.expectations.ExpectColumnValuesToBeInSet(
                column=name, value_set=[True], meta=meta, description=_description(column, check, fix)
            )
        )


def build_suites(dataset: Dataset, features, config: SmarConfig) -> list[Suite]:
    return (
        [_items_suite(dataset, features, config), _queries_suite(dataset), _qrels_suite(dataset, config)]
        + ([_features_suite(dataset, features)] if features is not None else [])
        + ([_manifest_suite(dataset.root / MANIFEST)] if (dataset.root / MANIFEST).is_file() else [])
    )


def _ids(frame, *columns: str) -> dict[str, list]:
    return {"row": list(range(len(frame)))} | {column: [json_safe(v) for v in frame[column]] for column in columns}


def _items_suite(dataset: Dataset, features, config: SmarConfig) -> Suite:
    import great_expectations as gx

    e = gx.expectations
    items = dataset.items
    suite = Suite(ITEMS, _ids(items, "item_id"))
    for column in ("title", "category", "brand", "image"):
        suite.frame[column] = [json_safe(v) for v in items[column]]
    suite.derived(
        "item_id",
        "is_string",
        "store item_id as strings (items['item_id'].astype(str)) in every file that holds item ids",
        row_checks.strings(items["item_id"]),
    )
    suite.add(e.ExpectColumnValuesToNotBeNull, "item_id", "give every item an item_id", column="item_id")
    suite.add(
        e.ExpectColumnValuesToBeUnique,
        "item_id",
        "give every item a unique item_id (drop or merge the duplicate rows)",
        column="item_id",
    )
    suite.derived("title", "is_utf8_string", TEXT_FIX, row_checks.utf8_strings(items["title"]))
    suite.add(e.ExpectColumnValuesToNotBeNull, "title", "give every item a title (or remove the item)", column="title")
    suite.derived(
        "title",
        "not_blank",
        f"give every item a non-blank title ({BLANK}), or remove the item",
        row_checks.not_blank(items["title"]),
    )
    suite.derived("category", "is_utf8_string", TEXT_FIX, row_checks.utf8_strings(items["category"]))
    suite.add(e.ExpectColumnValuesToNotBeNull, "category", "give every item a category", column="category")
    suite.derived("brand", "is_utf8_string", TEXT_FIX + " (or null: no brand)", row_checks.utf8_strings(items["brand"]))
    for column in ("title", "category", "brand"):
        suite.derived(column, "no_control_characters", CONTROL_FIX, row_checks.no_control_characters(items[column]))
    if features is None:
        suite.add(
            e.ExpectColumnValuesToNotBeNull,
            "image",
            f"give every item an image path relative to the dataset directory, or ship {IMAGE_FEATURES}",
            column="image",
        )
    for check, (fix, rows) in row_checks.image_rows(dataset, config.validate_.max_image_pixels).items():
        suite.derived("image", check, fix, rows)
    if IMAGE_URL in items:
        suite.frame[IMAGE_URL] = [json_safe(v) for v in items[IMAGE_URL]]
        suite.derived(
            IMAGE_URL,
            "is_http_url",
            "give image_url as an absolute http:// or https:// URL, or null (the item then shows its thumbnail)",
            row_checks.http_urls(items[IMAGE_URL]),
        )
    return suite


def _queries_suite(dataset: Dataset) -> Suite:
    import great_expectations as gx

    e = gx.expectations
    queries = dataset.queries
    suite = Suite(QUERIES, _ids(queries, "query_id"))
    suite.frame["text"] = [json_safe(v) for v in queries["text"]]
    suite.derived(
        "query_id",
        "is_string",
        "store query_id as strings (queries['query_id'].astype(str)) in every file that holds query ids",
        row_checks.strings(queries["query_id"]),
    )
    suite.add(e.ExpectColumnValuesToNotBeNull, "query_id", "give every query a query_id", column="query_id")
    suite.add(
        e.ExpectColumnValuesToBeUnique,
        "query_id",
        "give every query a unique query_id (drop or merge the duplicate rows)",
        column="query_id",
    )
    suite.derived("text", "is_utf8_string", TEXT_FIX, row_checks.utf8_strings(queries["text"]))
    suite.add(
        e.ExpectColumnValuesToNotBeNull,
        "text",
        "give every query a text (or remove the query and its qrels)",
        column="text",
    )
    suite.derived(
        "text",
        "not_blank",
        f"give every query a non-blank text ({BLANK}), or remove the query and its qrels",
        row_checks.not_blank(queries["text"]),
    )
    suite.derived("text", "no_control_characters", CONTROL_FIX, row_checks.no_control_characters(queries["text"]))
    return suite


def _qrels_suite(dataset: Dataset, config: SmarConfig) -> Suite:
    import great_expectations as gx
    import pandas as pd

    e = gx.expectations
    qrels = dataset.qrels
    suite = Suite(QRELS, _ids(qrels, "query_id", "item_id"))
    for column in ("label", "split"):
        suite.frame[column] = [json_safe(v) for v in qrels[column]]
    for column, file, owner, noun in (
        ("query_id", QUERIES, dataset.queries, "queries"),
        ("item_id", ITEMS, dataset.items, "items"),
    ):
        suite.derived(
            column,
            "is_string",
            f"store {column} as strings ({column}.astype(str)) here and in {file}",
            row_checks.strings(qrels[column]),
        )
        suite.add(
            e.ExpectColumnValuesToNotBeNull, column, f"give every qrels row a {column} (or drop the row)", column=column
        )
        known = qrels[column].isin(owner[column]).tolist()
        suite.derived(
            column,
            f"is_in_{noun}",
            f"add the missing {noun} to {file} or drop these qrels rows",
            [(ok or pd.isna(value), f"not in {file}") for ok, value in zip(known, qrels[column])],
        )
    suite.add(
        e.ExpectCompoundColumnsToBeUnique,
        "query_id,item_id",
        "keep one row per (query_id, item_id) pair (sum or max the labels of duplicates)",
        column_list=["query_id", "item_id"],
    )
    suite.add(
        e.ExpectColumnValuesToNotBeNull,
        "label",
        "give every qrels row a label >= 1 (drop rows of unknown relevance)",
        column="label",
    )
    suite.derived(
        "label",
        "is_integer",
        "store label as whole numbers (int64 relevance grades >= 1); map scores to integer grades",
        row_checks.integers(qrels["label"]),
    )
    numeric = "label"
    if not pd.api.types.is_numeric_dtype(qrels["label"]) or pd.api.types.is_bool_dtype(qrels["label"]):
        numeric = "label_as_number"  # the numbers among other values (those fail is_integer)
        suite.frame[numeric] = [
            v if isinstance(v, numbers.Real) and not isinstance(v, bool) else None for v in suite.frame["label"]
        ]
    suite.add(
        e.ExpectColumnValuesToBeBetween,
        "label",
        "labels are relevance grades >= 1: drop non-relevant rows (label <= 0) instead of keeping them",
        column=numeric,
        min_value=1,
    )
    suite.add(
        e.ExpectColumnValuesToNotBeNull,
        "split",
        "give every qrels row a split (train, valid or test; the same as the query's other rows), or drop the row",
        column="split",
    )
    suite.add(
        e.ExpectColumnValuesToBeInSet,
        "split",
        "set split to one of train, valid, test",
        column="split",
        value_set=list(SPLITS),
    )
    required = ("train", "test") + (("valid",) if config.evaluate.split == "valid" else ())
    observed = sorted(map(str, qrels["split"].dropna().unique()))
    for split in required:
        why = (
            "evaluate.split is valid"
            if split == "valid"
            else ("training needs queries" if split == "train" else "evaluation needs queries")
        )
        suite.add(
            e.ExpectColumnDistinctValuesToContainSet,
            "split",
            f"assign some queries to the {split} split ({why})",
            check=f"split_{split}_is_not_empty",
            examples=[f"no qrels row has split '{split}'; splits present: {', '.join(observed) or 'none'}"],
            column="split",
            value_set=[split],
        )
    splits_per_query = qrels.groupby("query_id", dropna=True)["split"].transform("nunique")
    suite.derived(
        "split",
        "one_split_per_query",
        "put every qrels row of a query in the same split (splits are by query)",
        [
            (not (count > 1), f"query has rows in {int(count)} splits")
            for q, count in zip(qrels["query_id"], splits_per_query.fillna(1))
        ],
    )
    return suite


def _features_suite(dataset: Dataset, features) -> Suite:
    import great_expectations as gx
    import numpy as np

    e = gx.expectations
    items = dataset.items["item_id"].tolist()
    rows = len(features)
    suite = Suite(
        IMAGE_FEATURES,
        {"row": list(range(rows)), "item_id": [json_safe(items[r]) if r < len(items) else None for r in range(rows)]},
    )
    suite.add(
        e.ExpectTableRowCountToEqual,
        "rows",
        "save one feature row per item, in items.parquet row order",
        check="rows_match_items",
        examples=[f"{rows} feature rows for {len(items)} items in {ITEMS}"],
        value=len(items),
    )
    suite.frame["dtype"] = str(features.dtype)
    if rows:  # an empty column has no most common value (nor features of a wrong type)
        suite.add_file_value(
            "dtype",
            "dtype_is_float32",
            "save the features as float32: numpy.save(path, features.astype(numpy.float32))",
            ["float32"],
            f"dtype is {features.dtype}",
        )
    finite = np.ones(rows, dtype=bool)
    for start in range(0, rows, FEATURE_ROWS_PER_CHUNK):
        chunk = np.asarray(features[start : start + FEATURE_ROWS_PER_CHUNK])
        finite[start : start + len(chunk)] = np.isfinite(chunk.reshape(len(chunk), -1)).all(axis=1)
    suite.derived(
        "values",
        "all_finite",
        "recompute the features of these items (they hold NaN or infinity)",
        [(bool(ok), "holds NaN or infinity") for ok in finite],
    )
    return suite


def _manifest_suite(path: Path) -> Suite:
    """dataset.json (only when present): one JSON object, as `data_version` reads it when training starts."""
    problem = _manifest_problem(path)
    suite = Suite(MANIFEST, {})
    suite.frame["content"] = [problem or "a JSON object"]
    suite.add_file_value(
        "content",
        "is_json_object",
        f"make {MANIFEST} one UTF-8 JSON object with name, version, source and counts: correct it where the "
        "error points (line, column), or re-run the importer or `smar data synth` to rewrite it",
        ["a JSON object"],
        problem,
    )
    return suite


def _manifest_problem(path: Path) -> str | None:
    """What keeps dataset.json from being read as a JSON object, or None."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        return f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
    except UnicodeDecodeError as error:
        return f"not UTF-8 ({error.reason} at byte {error.start})"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if not isinstance(manifest, dict):
        kinds = {
            list: "an array",
            str: "a string",
            bool: "a boolean",
            int: "a number",
            float: "a number",
            type(None): "null",
        }
        return f"{kinds[type(manifest)]}, not a JSON object"
    return None


def _description(column: str, check: str, fix: str) -> str:
    """What the data docs show for an expectation (they do not render notes on result pages)."""
    return f"{column}: {check} (fix: {fix})"


def json_safe(value):
    """A value GX can serialise into results and data docs: bytes and other objects as repr."""
    if row_checks.is_missing(value):
        return None
    if isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return repr(value)
