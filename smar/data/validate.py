"""Step 1, validate: the dataset against Great Expectations suites.

Plain Python computes what GX cannot see in a column (image files, UTF-8, value types, the
features array); each such per-row result becomes a derived column that a GX expectation
asserts, so every check runs through GX, lands in the report and in the HTML data docs.

A failure raises `ValidationFailed` listing every failed check, one line each: the file, the
column, example rows (row number and ids) and a "fix: ..." hint. The report
(`outputs/validation/report.json`) and the data docs (`outputs/validation/data_docs/`) are
written either way, with `success` false on failure; `train` refuses to start unless the report
says the dataset passed. A structural problem (missing file or column, unreadable Parquet or
.npy) raises `DatasetError` before any check and leaves neither report nor data docs.

What is accepted (see also docs/data.md, "Data contract"):
- ids (`item_id`, `query_id`) and text (`title`, `category`, `brand`, `text`) must be strings:
  integers or floats are rejected, also when they are consistent across files. Text must be
  valid UTF-8 without U+FFFD replacement characters or lone surrogates; a binary Parquet column
  of valid UTF-8 (as Spark writes) is read as text by `load_dataset`, its undecodable values
  stay bytes and fail here.
- `label` must be a whole number >= 1: integer columns, or floats with integral values (a float
  column is what pandas makes of integers next to a missing value); strings, booleans, NaN,
  infinities and fractions are rejected.
- `split` in train/valid/test (never null: a row without a split would silently drop out of
  every split), one split per query; train and test need at least one query.
  valid may be empty (training then reports valid recall as NaN) unless `evaluate.split` is
  valid, because evaluation and the registration gate would have nothing to score.
- `image` may be null only when the dataset carries `image_features.npy` (float32,
  [num_items, F] or [num_items, T, F], rows in items.parquet order, all finite); a non-null
  path must name a non-empty file inside the dataset that decodes, with at most
  `validate.max_image_pixels` pixels (and below PIL's decompression-bomb limit).
- `image_url` (optional) is null or an absolute http(s) URL: the search page links to it.
- `dataset.json` may be missing; when present it must be one UTF-8 JSON object (training reads
  its name and version when it starts).

Data docs: one ephemeral GX context runs the suites; its in-memory validation results are
rendered by `build_data_docs` to a filesystem site added with `add_data_docs_site`, written to a
scratch folder that replaces `data_docs/` only when complete.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import re
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from smar.core.config import SmarConfig
from smar.core.contract import IMAGE_FEATURES, IMAGE_URL, ITEMS, MANIFEST, QRELS, QUERIES, SPLITS
from smar.core.errors import SmarError
from smar.core.paths import Paths, replace_on_success, require, write_text_atomic
from smar.core.progress import Progress
from smar.data.dataset import Dataset, load_dataset, load_image_features

FEATURE_ROWS_PER_CHUNK = 4096


@dataclass
class CheckResult:
    file: str
    column: str
    check: str
    success: bool
    unexpected_count: int = 0
    examples: list = field(default_factory=list)
    fix: str = ""

    def describe(self) -> str:
        failed = f"{self.unexpected_count} row(s) fail" if self.unexpected_count else "failed"
        examples = f", e.g. {' | '.join(map(_example_text, self.examples))}" if self.examples else ""
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"{self.file} [{self.column}] {self.check}: {failed}{examples}{fix}"


class ValidationFailed(SmarError):
    def __init__(self, data_dir: Path, failures: list[CheckResult]):
        self.failures = failures
        lines = "\n".join(f"  - {failure.describe()}" for failure in failures)
        super().__init__(
            f"{data_dir}: dataset failed validation ({len(failures)} check(s)); nothing downstream ran.\n{lines}\n"
            "Fix the listed rows in the source data (or re-run the importer) and run again."
        )


def data_docs_dir(paths: Paths) -> Path:
    """Great Expectations' HTML data docs of the latest validation (open index.html)."""
    return paths.validation_report.parent / "data_docs"


def validate(config: SmarConfig, paths: Paths, tracker=None) -> dict:
    """Validate `paths.data`; write the report to `paths.validation_report`, the HTML data docs to
    `data_docs_dir(paths)`, and return the report."""
    docs = data_docs_dir(paths)
    # The report and the data docs only ever describe the data as it is now.
    paths.validation_report.unlink(missing_ok=True)
    shutil.rmtree(docs, ignore_errors=True)
    dataset = load_dataset(paths.data)
    features = load_image_features(paths.data) if dataset.image_features_file else None
    suites = _suites(dataset, features, config)
    with replace_on_success(docs) as scratch:  # a crash never leaves half-written docs
        scratch.chmod(0o755)  # mkdtemp makes it private; the docs are meant to be browsed
        results = _run_suites(suites, config, scratch)
    failures = [r for r in results if not r.success]
    report = {
        "data": str(paths.data),
        "success": not failures,
        "counts": {"items": len(dataset.items), "queries": len(dataset.queries), "qrels": len(dataset.qrels)}
        | ({"image_features": list(features.shape)} if features is not None else {}),
        "data_docs": str(docs / "index.html"),
        "checks": [asdict(r) for r in results],
    }
    write_text_atomic(paths.validation_report, json.dumps(report, indent=2) + "\n")
    if failures:
        raise ValidationFailed(paths.data, failures)
    return report


def require_passed(paths: Paths) -> None:
    """Training starts only from a dataset whose latest validation passed."""
    report = json.loads(require(paths.validation_report, "validate").read_text())
    if not report.get("success"):
        raise ValidationFailed(paths.data, [CheckResult(**check) for check in report["checks"] if not check["success"]])


# --- suites -------------------------------------------------------------------------------


class _Suite:
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


def _suites(dataset: Dataset, features, config: SmarConfig) -> list[_Suite]:
    return (
        [_items_suite(dataset, features, config), _queries_suite(dataset), _qrels_suite(dataset, config)]
        + ([_features_suite(dataset, features)] if features is not None else [])
        + ([_manifest_suite(dataset.root / MANIFEST)] if (dataset.root / MANIFEST).is_file() else [])
    )


def _ids(frame, *columns: str) -> dict[str, list]:
    return {"row": list(range(len(frame)))} | {column: [_json_safe(v) for v in frame[column]] for column in columns}


def _items_suite(dataset: Dataset, features, config: SmarConfig) -> _Suite:
    import great_expectations as gx

    e = gx.expectations
    items = dataset.items
    suite = _Suite(ITEMS, _ids(items, "item_id"))
    for column in ("title", "category", "brand", "image"):
        suite.frame[column] = [_json_safe(v) for v in items[column]]
    suite.derived(
        "item_id",
        "is_string",
        "store item_id as strings (items['item_id'].astype(str)) in every file that holds item ids",
        _strings(items["item_id"]),
    )
    suite.add(e.ExpectColumnValuesToNotBeNull, "item_id", "give every item an item_id", column="item_id")
    suite.add(
        e.ExpectColumnValuesToBeUnique,
        "item_id",
        "give every item a unique item_id (drop or merge the duplicate rows)",
        column="item_id",
    )
    suite.derived("title", "is_utf8_string", _TEXT_FIX, _utf8_strings(items["title"]))
    suite.add(e.ExpectColumnValuesToNotBeNull, "title", "give every item a title (or remove the item)", column="title")
    suite.add(
        e.ExpectColumnValuesToMatchRegex,
        "title",
        "give every item a non-blank title (or remove the item)",
        column="title",
        regex=r"\S",
    )
    suite.derived("category", "is_utf8_string", _TEXT_FIX, _utf8_strings(items["category"]))
    suite.add(e.ExpectColumnValuesToNotBeNull, "category", "give every item a category", column="category")
    suite.derived("brand", "is_utf8_string", _TEXT_FIX + " (or null: no brand)", _utf8_strings(items["brand"]))
    if features is None:
        suite.add(
            e.ExpectColumnValuesToNotBeNull,
            "image",
            f"give every item an image path relative to the dataset directory, or ship {IMAGE_FEATURES}",
            column="image",
        )
    for check, (fix, rows) in _image_rows(dataset, config.validate_.max_image_pixels).items():
        suite.derived("image", check, fix, rows)
    if IMAGE_URL in items:
        suite.frame[IMAGE_URL] = [_json_safe(v) for v in items[IMAGE_URL]]
        suite.derived(
            IMAGE_URL,
            "is_http_url",
            "give image_url as an absolute http:// or https:// URL, or null (the item then shows its thumbnail)",
            _http_urls(items[IMAGE_URL]),
        )
    return suite


def _queries_suite(dataset: Dataset) -> _Suite:
    import great_expectations as gx

    e = gx.expectations
    queries = dataset.queries
    suite = _Suite(QUERIES, _ids(queries, "query_id"))
    suite.frame["text"] = [_json_safe(v) for v in queries["text"]]
    suite.derived(
        "query_id",
        "is_string",
        "store query_id as strings (queries['query_id'].astype(str)) in every file that holds query ids",
        _strings(queries["query_id"]),
    )
    suite.add(e.ExpectColumnValuesToNotBeNull, "query_id", "give every query a query_id", column="query_id")
    suite.add(
        e.ExpectColumnValuesToBeUnique,
        "query_id",
        "give every query a unique query_id (drop or merge the duplicate rows)",
        column="query_id",
    )
    suite.derived("text", "is_utf8_string", _TEXT_FIX, _utf8_strings(queries["text"]))
    suite.add(
        e.ExpectColumnValuesToNotBeNull,
        "text",
        "give every query a text (or remove the query and its qrels)",
        column="text",
    )
    suite.add(
        e.ExpectColumnValuesToMatchRegex,
        "text",
        "give every query a non-blank text (or remove the query and its qrels)",
        column="text",
        regex=r"\S",
    )
    return suite


def _qrels_suite(dataset: Dataset, config: SmarConfig) -> _Suite:
    import great_expectations as gx
    import pandas as pd

    e = gx.expectations
    qrels = dataset.qrels
    suite = _Suite(QRELS, _ids(qrels, "query_id", "item_id"))
    for column in ("label", "split"):
        suite.frame[column] = [_json_safe(v) for v in qrels[column]]
    for column, file, owner, noun in (
        ("query_id", QUERIES, dataset.queries, "queries"),
        ("item_id", ITEMS, dataset.items, "items"),
    ):
        suite.derived(
            column,
            "is_string",
            f"store {column} as strings ({column}.astype(str)) here and in {file}",
            _strings(qrels[column]),
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
        _integers(qrels["label"]),
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


def _features_suite(dataset: Dataset, features) -> _Suite:
    import great_expectations as gx
    import numpy as np

    e = gx.expectations
    items = dataset.items["item_id"].tolist()
    rows = len(features)
    suite = _Suite(
        IMAGE_FEATURES,
        {"row": list(range(rows)), "item_id": [_json_safe(items[r]) if r < len(items) else None for r in range(rows)]},
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
    suite.add(
        e.ExpectColumnDistinctValuesToBeInSet,
        "dtype",
        "save the features as float32: numpy.save(path, features.astype(numpy.float32))",
        check="dtype_is_float32",
        examples=[f"dtype is {features.dtype}"],
        column="dtype",
        value_set=["float32"],
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


def _manifest_suite(path: Path) -> _Suite:
    """dataset.json (only when present): one JSON object, as `data_version` reads it when training starts."""
    import great_expectations as gx

    problem = _manifest_problem(path)
    suite = _Suite(MANIFEST, {})
    suite.frame["content"] = [problem or "a JSON object"]
    suite.add(
        gx.expectations.ExpectColumnDistinctValuesToBeInSet,
        "content",
        f"make {MANIFEST} one UTF-8 JSON object with name, version, source and counts: correct it where the "
        "error points (line, column), or re-run the importer or `smar data synth` to rewrite it",
        check="is_json_object",
        examples=[problem],
        column="content",
        value_set=["a JSON object"],
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


# --- per-row checks computed in Python ----------------------------------------------------

_TEXT_FIX = (
    "store text as UTF-8 str: decode the source with its real encoding (e.g. cp1252), not as bytes, numbers or U+FFFD"
)


def _missing(value) -> bool:
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(value, numbers.Number) and value != value  # NaN of any float type


def _http_urls(values) -> list[tuple[bool, str]]:
    """Null passes; anything else must be an absolute http(s) URL (what a page's <img> may load)."""
    url = re.compile(r"https?://[^\s/]+\S*")
    return [(_missing(v) or (isinstance(v, str) and bool(url.fullmatch(v))), "not an http(s) URL") for v in values]


def _strings(values) -> list[tuple[bool, str]]:
    """Null passes (a not-null check reports it); anything else must be a str."""
    return [(_missing(v) or isinstance(v, str), f"{type(v).__name__}, not str") for v in values]


def _utf8_strings(values) -> list[tuple[bool, str | None]]:
    """Text must be a str that is valid UTF-8: no bytes (decodable or not), numbers, U+FFFD
    (text decoded with the wrong codec earlier) or lone surrogates. Null passes."""
    rows = []
    for value in values:
        problem = None
        if _missing(value):
            pass
        elif isinstance(value, (bytes, bytearray)):
            try:
                bytes(value).decode("utf-8")
                problem = "bytes, not str"
            except UnicodeDecodeError as error:
                problem = f"not UTF-8 ({error.reason} at byte {error.start})"
        elif not isinstance(value, str):
            problem = f"{type(value).__name__}, not str"
        else:
            if "\ufffd" in value:
                problem = "holds U+FFFD (the text was decoded with the wrong codec before)"
            else:
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    problem = "holds a lone surrogate"
        rows.append((problem is None, problem))
    return rows


def _integers(values) -> list[tuple[bool, str]]:
    """Whole numbers pass (ints, or integral floats); null passes (a not-null check reports it)."""
    rows = []
    for value in values:
        ok = _missing(value) or (
            isinstance(value, numbers.Real)
            and not isinstance(value, bool)
            and type(value).__name__ not in ("bool", "bool_")  # numpy booleans
            and math.isfinite(value)
            and float(value).is_integer()
        )
        rows.append((ok, f"{type(value).__name__}, not a whole number"))
    return rows


def _image_rows(dataset: Dataset, max_pixels: int) -> dict[str, tuple[str, list]]:
    """Per item: does its image file exist, hold bytes, decode, and stay within max_pixels.
    A row fails only its first failing check; a null path passes all (reported elsewhere)."""
    from PIL import Image

    root = dataset.root.resolve()
    checks = {
        "image_file_exists": "put the image at this path (relative to the dataset directory) or remove the item",
        "image_file_not_empty": "re-download or re-export the image, or remove the item",
        "image_decodes": "re-export the image (e.g. as PNG or JPEG) or remove the item",
        "image_within_max_pixels": f"downscale the image to at most {max_pixels} pixels (validate.max_image_pixels) "
        f"or remove the item",
    }
    rows: dict[str, list] = {check: [] for check in checks}
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb fails its row, never the run
        with Progress("validate images", len(dataset.items), "image") as progress:
            for relative in dataset.items["image"]:
                failed = _image_problem(root, relative, max_pixels) if not _missing(relative) else None
                for check in checks:
                    rows[check].append((True, None) if failed is None or failed[0] != check else (False, failed[1]))
                progress.advance()
    return {check: (fix, rows[check]) for check, fix in checks.items()}


def _image_problem(root: Path, relative, max_pixels: int) -> tuple[str, str] | None:
    """(check, detail) of the first problem of one image, or None."""
    from PIL import Image

    if not isinstance(relative, str):
        return "image_file_exists", f"{type(relative).__name__}, not a path"
    path = (root / relative).resolve()
    if root not in path.parents or not path.is_file():
        return "image_file_exists", "outside the dataset directory" if root not in path.parents else "no such file"
    if path.stat().st_size == 0:
        return "image_file_not_empty", "0 bytes"
    try:
        with Image.open(path) as image:
            if image.width * image.height > max_pixels:
                return "image_within_max_pixels", f"{image.width}x{image.height} = {image.width * image.height} px"
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        return (
            "image_within_max_pixels",
            f"{pixels[1] + ' px, ' if pixels else ''}refused by PIL as a decompression bomb",
        )
    except Exception as error:  # PIL raises many types for a broken file
        return "image_decodes", f"{type(error).__name__}: {error}"
    return None


# --- running GX -----------------------------------------------------------------------------


def _run_suites(suites: list[_Suite], config: SmarConfig, docs_dir: Path) -> list[CheckResult]:
    """Run every suite in one ephemeral GX context and build its data docs into `docs_dir`."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX sets this logger to INFO on import; it then logs each ephemeral context's unused docs dir.
    logging.getLogger(ProgressBarsConfig.__module__).setLevel(logging.WARNING)

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    # Validation results of an ephemeral context are kept in memory; build_data_docs renders them
    # (and the suites) to a filesystem site of our own.
    context.add_data_docs_site(
        "smar",
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            # Result pages list every expectation with its outcome; suite pages would repeat them.
            "site_section_builders": {"expectations": "0", "profiling": "0"},
        },
    )
    source = context.data_sources.add_pandas("dataset")
    results = []
    with Progress("validate", len(suites), "file") as progress:
        for suite in suites:
            batch = source.add_dataframe_asset(suite.file).add_batch_definition_whole_dataframe("all rows")
            gx_suite = context.suites.add(gx.ExpectationSuite(name=suite.file, expectations=suite.expectations))
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=suite.file, data=batch, suite=gx_suite)
            )
            outcome = definition.run(
                batch_parameters={"dataframe": suite.frame},
                # SUMMARY: counts plus the first failing rows (COMPLETE would list every failing row,
                # in the report and in the HTML, and costs more even when nothing fails).
                result_format={
                    "result_format": "SUMMARY",
                    "partial_unexpected_count": max(20, config.validate_.example_rows),
                    "unexpected_index_column_names": suite.index_columns,
                },
            )
            results.extend(_check_result(suite, result, config.validate_.example_rows) for result in outcome.results)
            progress.advance()
    context.build_data_docs(site_names=["smar"])
    return results


def _check_result(suite: _Suite, result, example_rows: int) -> CheckResult:
    meta = result.expectation_config.meta or {}
    success = bool(result.success)
    column = meta.get("column", "")
    detail = meta.get("detail")
    examples: list = []
    if not success:
        errors = _exception_messages(result.exception_info)
        if errors:
            examples = [f"the check could not run: {'; '.join(errors)}"]
        for entry in (result.result.get("partial_unexpected_index_list") or [])[:example_rows]:
            example = {key: entry.get(key) for key in suite.id_columns}
            example.update({key: entry[key] for key in column.split(",") if key in entry and key not in example})
            if detail:
                example["problem"] = entry.get(detail)
            examples.append(_plain(example))
        if not examples:
            examples = list(meta.get("examples") or [])
    return CheckResult(
        file=meta.get("file", suite.file),
        column=column,
        check=meta.get("check") or result.expectation_config.type,
        success=success,
        # a count of rows only where GX checked rows (not for table or distinct-value checks)
        unexpected_count=int(result.result.get("unexpected_count") or 0)
        if "partial_unexpected_index_list" in result.result
        else 0,
        examples=examples,
        fix=meta.get("fix", ""),
    )


def _exception_messages(info) -> list[str]:
    """Messages of exceptions GX caught while checking ({...} or {metric id: {...}})."""
    if not isinstance(info, dict):
        return []
    if info.get("raised_exception"):
        return [str(info.get("exception_message"))]
    return sorted({message for value in info.values() for message in _exception_messages(value)})


def _description(column: str, check: str, fix: str) -> str:
    """What the data docs show for an expectation (they do not render notes on result pages)."""
    return f"{column}: {check} (fix: {fix})"


# --- formatting -----------------------------------------------------------------------------


def _json_safe(value):
    """A value GX can serialise into results and data docs: bytes and other objects as repr."""
    if _missing(value):
        return None
    if isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return repr(value)


def _short(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plain(example: dict) -> dict:
    """JSON-friendly example row: numpy scalars to Python, NaN to None."""
    plain = {}
    for key, value in example.items():
        value = value.item() if hasattr(value, "item") else value
        plain[key] = None if _missing(value) else value
    return plain


def _example_text(example) -> str:
    """row=3 item_id=I0000003 title='  ': problem"""
    if not isinstance(example, dict):
        return str(example)
    fields = " ".join(f"{key}={_value_text(value)}" for key, value in example.items() if key != "problem")
    return f"{fields}: {example['problem']}" if example.get("problem") else fields


def _value_text(value) -> str:
    if isinstance(value, str) and value and value == value.strip() and value.isprintable():
        return value if len(value) <= 60 else value[:57] + "..."
    return _short(value, 60)
