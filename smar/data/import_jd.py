"""The **jd_tsv** source format of `smar data import` (`format: jd_tsv`); the shared steps are in
`smar.data.importers`.

An id-encoded release, as JD.com-style datasets ship text
as vocabulary ids and images as precomputed features. The real layout is not public; this
is the one `smar` defines. A directory (`source_dir`) with, all tab-separated, UTF-8, no
header:

- `items.tsv`: item_id, title token ids (space-separated non-negative integers), category id,
  brand id (may be empty: no brand);
- `queries.tsv`: query_id, query token ids (space-separated non-negative integers);
- `interactions.tsv`: query_id, item_id, clicks (a non-negative integer), and optionally a
  4th column split (train/valid/test);
- `image_features.npy`: a float array [N, F] or [N, T, F] (T patch tokens of F features);
- `image_feature_ids.txt`: N lines, the item id of each row of `image_features.npy`.

Tokens are kept as text words so the project's tokenizer can train on them: title and query
token 12 becomes "w12" (one shared vocabulary), category 3 becomes "c3", brand 7 "b7".
`image_features.npy` is written re-ordered to items.parquet's row order, as float32, and the
items' `image` column is null. An item without a feature row is an error, or is dropped
(with its interactions, and a warning) when `drop_items_without_features` is set; feature
rows of unknown items are ignored.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from smar.core.config import ImportConfig
from smar.core.errors import DatasetError
from smar.data.import_common import _as_strings, _examples, _ids, _labels, _splits, _unique

log = logging.getLogger("smar.importers")

JD_FILES = ("items.tsv", "queries.tsv", "interactions.tsv", "image_features.npy", "image_feature_ids.txt")

_TOKENS = re.compile(r"\s*(\d+(\s+\d+)*)?\s*")


def _read_tsv(path: Path, columns: tuple[str, ...], optional: int = 0):
    import csv

    import pandas as pd

    if not path.is_file():
        raise DatasetError(
            f"{path}: missing from the jd_tsv release. Fix: a release directory holds {', '.join(JD_FILES)} (see "
            f"smar/data/import_jd.py)."
        )
    try:
        frame = pd.read_csv(
            path,
            sep="\t",
            header=None,
            dtype="str",
            keep_default_na=False,
            na_values=[""],
            quoting=csv.QUOTE_NONE,
            names=list(range(len(columns))),
            on_bad_lines="error",
            engine="c",
        )
    except Exception as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        expected = f"{len(columns) - optional} or {len(columns)}" if optional else str(len(columns))
        raise DatasetError(
            f"{path}: cannot be read as headerless TSV with {expected} columns ({', '.join(columns)}) "
            f"({type(error).__name__}: {detail}). "
            f"Fix: one record per line, fields separated by tabs."
        ) from None
    frame.columns = list(columns)
    return frame


def _tokens(series, path: Path, column: str, key, prefix: str):
    values = series.fillna("")
    bad = ~values.str.fullmatch(_TOKENS.pattern)
    empty = values.str.strip() == ""
    if (bad | empty).any():
        rows = list(key[bad | empty])
        raise DatasetError(
            f"{path}: column {column} must hold space-separated non-negative integer token ids, at least one; "
            f"{int((bad | empty).sum())} row(s) do not, id(s) {_examples(rows)}. Fix: correct those rows or remove "
            f"them."
        )
    return prefix + values.str.strip().str.replace(r"\s+", f" {prefix}", regex=True)


def read_jd_source(config: ImportConfig) -> dict:
    import numpy as np

    root = Path(config.source_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such release directory. Fix: pass --source DIR with {', '.join(JD_FILES)}.")
    items = _read_jd_items(root / "items.tsv")
    queries = _read_jd_queries(root / "queries.tsv")
    interactions = _read_jd_interactions(root / "interactions.tsv")
    features, dropped, stats = _features(root, items, config)
    all_item_ids = items["item_id"]
    if dropped:
        log.warning(
            "%s: %d item(s) have no feature row and are dropped with their interactions "
            "(drop_items_without_features): %s",
            root / "image_feature_ids.txt",
            len(dropped),
            _examples(dropped),
        )
        items = items[~items["item_id"].isin(dropped)].reset_index(drop=True)
    return {
        "items": items,
        "queries": queries,
        "interactions": interactions,
        "features": np.ascontiguousarray(features, dtype=np.float32),
        "all_item_ids": all_item_ids,
        "dropped_item_ids": dropped,
        "stats": stats,
        "items_where": "items.tsv",
        "queries_where": "queries.tsv",
        "interactions_where": str(root / "interactions.tsv"),
        "interactions_columns": {"query_id": "1", "item_id": "2", "label": "3", "split": "4"},
    }


def _read_jd_items(path: Path):
    """items.tsv as the items table sorted by item_id: tokens as words, no image."""
    import pandas as pd

    raw = _read_tsv(path, ("item_id", "title", "category", "brand"), optional=1)
    item_ids = _ids(raw["item_id"], str(path), "1 (item_id)", "items.item_id", "fill the column or drop those rows.")
    category = _ids(raw["category"], str(path), "3 (category id)", "items.category", "give every item a category id.")
    brand = _as_strings(raw["brand"]).replace("", None)
    items = pd.DataFrame(
        {
            "item_id": item_ids,
            "title": _tokens(raw["title"], path, "2 (title token ids)", item_ids, "w"),
            "category": "c" + category,
            "brand": ("b" + brand).astype("str"),
            "image": pd.Series([None] * len(raw), dtype="str"),
        }
    )
    _unique(items, "item_id", str(path), "1")
    return items.sort_values("item_id", kind="stable").reset_index(drop=True)


def _read_jd_queries(path: Path):
    """queries.tsv as the queries table sorted by query_id, tokens as words."""
    import pandas as pd

    raw = _read_tsv(path, ("query_id", "text"))
    query_ids = _ids(
        raw["query_id"], str(path), "1 (query_id)", "queries.query_id", "fill the column or drop those rows."
    )
    queries = pd.DataFrame(
        {"query_id": query_ids, "text": _tokens(raw["text"], path, "2 (query token ids)", query_ids, "w")}
    )
    _unique(queries, "query_id", str(path), "1")
    return queries.sort_values("query_id", kind="stable").reset_index(drop=True)


def _read_jd_interactions(path: Path):
    """interactions.tsv: ids, clicks as the label, and the split where the 4th column has one."""
    import pandas as pd

    raw = _read_tsv(path, ("query_id", "item_id", "clicks", "split"), optional=1)
    interactions = pd.DataFrame(
        {
            "query_id": _ids(
                raw["query_id"],
                str(path),
                "1 (query_id)",
                "interactions.query_id",
                "fill the column or drop those rows.",
            ),
            "item_id": _ids(
                raw["item_id"], str(path), "2 (item_id)", "interactions.item_id", "fill the column or drop those rows."
            ),
            "label": _labels(raw["clicks"], str(path), "3 (clicks)", "clicks"),
        }
    )
    if raw["split"].notna().any():
        interactions["split"] = _splits(raw["split"], str(path), "4 (split)")
    return interactions


def _features(root: Path, items, config: ImportConfig):
    """Feature rows in items' order; (features, dropped item ids, stats)."""
    import numpy as np

    ids_path, array_path = root / "image_feature_ids.txt", root / "image_features.npy"
    for path in (ids_path, array_path):
        if not path.is_file():
            raise DatasetError(
                f"{path}: missing from the jd_tsv release. Fix: a release directory holds {', '.join(JD_FILES)}."
            )
    array = _load_feature_array(array_path)
    row_of = _feature_rows(ids_path, array_path, array.shape[0])
    without = [item_id for item_id in items["item_id"] if item_id not in row_of]
    if without and not config.drop_items_without_features:
        raise DatasetError(
            f"{ids_path}: {len(without)} item(s) of items.tsv have no image feature row: {_examples(without)}. "
            f"Fix: add their features, remove them from items.tsv, or set drop_items_without_features "
            f"(--drop-items-without-features)."
        )
    rows = [row_of[item_id] for item_id in items["item_id"] if item_id in row_of]
    features = (
        np.asarray(array[np.asarray(rows, dtype=np.int64)], dtype=np.float32)
        if rows
        else np.zeros((0, *array.shape[1:]), np.float32)
    )
    _check_finite_features(features, items, row_of, array_path)
    stats = {"items_without_features": len(without), "unused_feature_rows": len(row_of) - len(rows)}
    return features, without, stats


def _load_feature_array(array_path: Path):
    """image_features.npy, memory-mapped: a numeric array [N, F] or [N, T, F]."""
    import numpy as np

    try:
        array = np.load(array_path, mmap_mode="r", allow_pickle=False)
    except Exception as error:
        raise DatasetError(
            f"{array_path}: cannot be read as a .npy array ({type(error).__name__}: {error}). Fix: write it with "
            f"numpy.save."
        ) from None
    if array.ndim not in (2, 3) or not np.issubdtype(array.dtype, np.number):
        raise DatasetError(
            f"{array_path}: expected a numeric array [num_items, F] or [num_items, T, F], got shape "
            f"{list(array.shape)} of {array.dtype}. "
            f"Fix: save one feature row (or token grid) per item."
        )
    return array


def _feature_rows(ids_path: Path, array_path: Path, num_rows: int) -> dict[str, int]:
    """image_feature_ids.txt as {item id: row of the feature array}; one unique, non-empty id per row."""
    try:
        feature_ids = [line.strip() for line in ids_path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{ids_path}: cannot be read as UTF-8 text ({error}). Fix: one item id per line.") from None
    while feature_ids and feature_ids[-1] == "":
        feature_ids.pop()
    if len(feature_ids) != num_rows:
        raise DatasetError(
            f"{ids_path}: {len(feature_ids)} id line(s) for {num_rows} row(s) of {array_path.name}. "
            f"Fix: one item id per feature row, in the same order."
        )
    row_of: dict[str, int] = {}
    repeated = []
    for row, item_id in enumerate(feature_ids):
        if item_id in row_of:
            repeated.append(item_id)
        row_of[item_id] = row
    if repeated or "" in row_of:
        raise DatasetError(
            f"{ids_path}: item ids must be unique and non-empty; "
            + (f"repeated: {_examples(sorted(set(repeated)))}. " if repeated else "a line is empty. ")
            + "Fix: one feature row per item."
        )
    return row_of


def _check_finite_features(features, items, row_of: dict[str, int], array_path: Path) -> None:
    import numpy as np

    finite = np.isfinite(features.reshape(len(features), -1)).all(axis=1)
    if not finite.all():
        kept = [item_id for item_id in items["item_id"] if item_id in row_of]
        bad = [kept[i] for i in np.flatnonzero(~finite)]
        raise DatasetError(
            f"{array_path}: {len(bad)} feature row(s) hold NaN or infinity, item(s) {_examples(bad)}. Fix: recompute "
            f"those features."
        )
