"""The **table** source format of `smar data import` (`format: table`); the shared steps are in
`smar.data.importers`.

Three files, each CSV (`.csv`), TSV (`.tsv`), JSON lines
(`.jsonl`, `.ndjson`) or Parquet (`.parquet`, `.pq`), chosen by extension:

- items: one row per item with an id, a title, a category, an optional brand and an image;
- queries: one row per query with an id and its text;
- interactions: one row per (query, item) event or judgement, with an optional label column
  and an optional split column.

`mapping` names the source column of each contract column, per table, e.g.
``{"items": {"item_id": "sku", "title": "name", "image": "img"}, "interactions": {"label": "clicks", "split": None}}``;
a contract column left out maps to a source column of the same name. `None` means "the source
has no such column": allowed for `items.brand` (every brand is null), `interactions.split`
(split by query hash, see `smar.data.importers`) and `interactions.label` (each interaction row is one click).
Every other column of the items file is carried over as an attribute column
(`item_attributes` narrows that).

Labels: with `label: clicks` (the default) the label column holds click counts; rows are summed
per (query, item) and pairs with 0 clicks are dropped, so label = number of clicks >= 1. With
`label: graded` the column holds graded relevance, taken as is (rows with 0 are dropped as
not relevant; a (query, item) pair must appear once).

Images: with `images_dir` the image column holds a file name or a path relative to that folder;
without it, a path that is absolute or relative to the items file's folder. Each image is
COPIED to `images/<safe item id><ext>` in the dataset, so the dataset is self-contained.

Ids are converted to strings (an integer id 7 becomes "7", also when a CSV or JSON reader saw
it as a float) and stripped of surrounding blanks. In CSV/TSV only empty fields are missing
values ("NA" or "null" are text).
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

from smar.core.config import ImportConfig
from smar.core.contract import OPTIONAL_SOURCE_COLUMNS, SOURCE_TABLES
from smar.core.errors import DatasetError
from smar.data.import_common import _as_strings, _examples, _ids, _labels, _splits, _unique

log = logging.getLogger("smar.importers")

TABLE_READERS = {
    ".csv": "CSV",
    ".tsv": "TSV",
    ".jsonl": "JSON lines",
    ".ndjson": "JSON lines",
    ".parquet": "Parquet",
    ".pq": "Parquet",
}


def _read_frame(path: Path, role: str, string_columns):
    import pandas as pd

    path = Path(path)
    kind = TABLE_READERS.get(path.suffix.lower())
    if kind is None:
        raise DatasetError(
            f"{path}: unknown extension '{path.suffix}' for the {role} file; use .csv, .tsv, .jsonl (.ndjson) or "
            f".parquet (.pq). "
            f"Fix: convert the file or rename it to the extension of its format."
        )
    if not path.is_file():
        raise DatasetError(f"{path}: no such {role} file. Fix: pass --{role} FILE with the path of the {role} table.")
    try:
        if kind in ("CSV", "TSV"):
            dtype = {column: "str" for column in string_columns if column}
            frame = pd.read_csv(
                path, sep="," if kind == "CSV" else "\t", dtype=dtype, keep_default_na=False, na_values=[""]
            )
        elif kind == "JSON lines":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_parquet(path)
    except Exception as error:  # the readers raise many types for a malformed file
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise DatasetError(
            f"{path}: cannot be read as {kind} ({type(error).__name__}: {detail}). "
            f"Fix: check that the {role} file is valid {kind}, or give it the extension of its real format."
        ) from None
    frame.columns = [str(column) for column in frame.columns]
    return frame.reset_index(drop=True)


def _column(frame, config: ImportConfig, table: str, column: str, path: Path):
    """The source column of a contract column, or None where it is optional and absent."""
    source = config.source_column(table, column)
    if source is None:
        return None, None
    if source in frame.columns:
        return frame[source], source
    mapped = column in config.mapping.get(table, {})
    if not mapped and (table, column) in OPTIONAL_SOURCE_COLUMNS:
        return None, None
    raise DatasetError(
        f"{path}: column '{source}' ({table}.{column}{'' if mapped else ', mapped by default to the same name'}) not "
        f"found; "
        f"the file has: {', '.join(frame.columns) or 'no columns'}. "
        f"Fix: --map {table}.{column}=<one of those columns>"
        + (" (or leave it empty to unmap it)." if (table, column) in OPTIONAL_SOURCE_COLUMNS else ".")
    )


def read_table_source(config: ImportConfig) -> dict:
    paths = {role: Path(getattr(config, role)) for role in SOURCE_TABLES}
    ids = {
        table: [config.source_column(table, c) for c in SOURCE_TABLES[table] if c.endswith("_id")]
        for table in SOURCE_TABLES
    }
    raw = {role: _read_frame(paths[role], role, ids[role]) for role in SOURCE_TABLES}
    items, copies = _items_from_table(config, paths["items"], raw["items"])
    queries = _queries_from_table(config, paths["queries"], raw["queries"])
    interactions, names = _interactions_from_table(config, paths["interactions"], raw["interactions"])
    return {
        "items": items,
        "queries": queries,
        "interactions": interactions,
        "all_item_ids": items["item_id"],
        "copies": copies,
        "items_where": paths["items"].name,
        "queries_where": paths["queries"].name,
        "interactions_where": str(paths["interactions"]),
        "interactions_columns": names,
    }


def _items_from_table(config: ImportConfig, path: Path, frame):
    """The items table sorted by item_id, with its attribute columns, and (source, target) per image to copy."""
    import pandas as pd

    items = {}
    used = []
    for column in SOURCE_TABLES["items"]:
        values, source = _column(frame, config, "items", column, path)
        used.append(source)
        if column == "brand":
            items[column] = (
                _as_strings(values).replace("", None).reset_index(drop=True)
                if values is not None
                else pd.Series([None] * len(frame), dtype="str")
            )
        else:
            fix = f"fill the column, or drop those rows from {path.name}."
            items[column] = _ids(values, str(path), source, f"items.{column}", fix)
    items = pd.DataFrame(items)
    _unique(items, "item_id", str(path), used[0])
    attributes = _attributes(frame, config, used, path)
    for name in attributes:
        values = frame[name]
        items[name] = _as_strings(values) if values.dtype == object else values.reset_index(drop=True)
    copies, items["image"] = _images(items, config, path, used[SOURCE_TABLES["items"].index("image")])
    order = items["item_id"].argsort(kind="stable")
    items = items.iloc[order].reset_index(drop=True)
    copies = [copies[i] for i in order]
    return items, copies


def _queries_from_table(config: ImportConfig, path: Path, frame):
    """The queries table sorted by query_id."""
    import pandas as pd

    queries = {}
    for column in SOURCE_TABLES["queries"]:
        values, source = _column(frame, config, "queries", column, path)
        queries[column] = _ids(
            values, str(path), source, f"queries.{column}", f"fill the column, or drop those rows from {path.name}."
        )
        if column == "query_id":
            query_id_source = source
    queries = pd.DataFrame(queries)
    _unique(queries, "query_id", str(path), query_id_source)
    return queries.sort_values("query_id", kind="stable").reset_index(drop=True)


def _interactions_from_table(config: ImportConfig, path: Path, frame):
    """The interactions (ids, labels and the split where the source has one) and the source column of each."""
    import pandas as pd

    interactions, names = {}, {}
    for column in SOURCE_TABLES["interactions"]:
        values, source = _column(frame, config, "interactions", column, path)
        names[column] = source
        if column in ("query_id", "item_id"):
            interactions[column] = _ids(
                values,
                str(path),
                source,
                f"interactions.{column}",
                f"fill the column, or drop those rows from {path.name}.",
            )
        elif column == "label":
            interactions[column] = (
                _labels(values, str(path), source, config.label)
                if values is not None
                else pd.Series([1] * len(frame), dtype="int64")
            )
        elif values is not None:
            interactions[column] = _splits(values, str(path), source)
    return pd.DataFrame(interactions), names


def _attributes(frame, config: ImportConfig, used, path: Path) -> list[str]:
    others = [c for c in frame.columns if c not in used]
    if config.item_attributes is None:
        clashing = [c for c in others if c in SOURCE_TABLES["items"]]
        if clashing:
            log.warning(
                "%s: column(s) %s are not carried over: their names are contract columns mapped elsewhere",
                path,
                ", ".join(clashing),
            )
        return [c for c in others if c not in SOURCE_TABLES["items"]]
    missing = [c for c in config.item_attributes if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"{path}: attribute column(s) {', '.join(missing)} (item_attributes) not found; the file has: "
            f"{', '.join(frame.columns)}. "
            f"Fix: list only columns of the items file."
        )
    clashing = [c for c in config.item_attributes if c in SOURCE_TABLES["items"] or c in used]
    if clashing:
        raise DatasetError(
            f"{path}: item_attributes {', '.join(clashing)} are contract or mapped columns. Fix: leave them out of "
            f"item_attributes."
        )
    return list(config.item_attributes)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def image_file_names(item_ids) -> list[str]:
    """A stable file name stem per item id: the id itself where it is a safe file name, else a
    sanitised id plus a short hash of the id (also where names would clash on a
    case-insensitive file system)."""
    safe = []
    for item_id in item_ids:
        name = _UNSAFE.sub("_", item_id)
        if name.startswith("."):
            name = "_" + name[1:]
        safe.append(name[:100])
    lowered: dict[str, int] = {}
    for name in safe:
        lowered[name.lower()] = lowered.get(name.lower(), 0) + 1
    return [
        name
        if name == item_id and lowered[name.lower()] == 1
        else f"{name}-{hashlib.sha1(item_id.encode()).hexdigest()[:10]}"
        for name, item_id in zip(safe, item_ids)
    ]


def _images(items, config: ImportConfig, items_path: Path, image_column: str):
    """(source, images/<name>) per item, in items' row order, and the new image column."""
    base = Path(config.images_dir) if config.images_dir is not None else items_path.parent
    sources, missing = [], []
    for item_id, value in zip(items["item_id"], items["image"]):
        path = Path(value)
        source = path if path.is_absolute() else base / path
        sources.append(source)
        if not source.is_file():
            missing.append((item_id, value))
    if missing:
        urls = any(re.match(r"^[a-z]+://", value) for _, value in missing)
        where = (
            f"the images folder {base}"
            if config.images_dir is not None
            else f"the items file's folder {base} (or absolute)"
        )
        raise DatasetError(
            f"{items_path}: column '{image_column}' (items.image): {len(missing)} image file(s) not found, relative "
            f"to {where}; "
            f"item_id(s) {_examples(f'{i} ({v})' for i, v in missing)}. "
            + ("The column holds URLs: download the images first. " if urls else "")
            + "Fix: pass --images DIR with the folder that holds the files, or correct the paths in the column."
        )
    names = image_file_names(list(items["item_id"]))
    targets = [f"images/{name}{source.suffix.lower()}" for name, source in zip(names, sources)]
    import pandas as pd

    return list(zip(sources, targets)), pd.Series(targets, dtype="str")
