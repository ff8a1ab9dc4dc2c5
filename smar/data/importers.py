"""`smar data import`: build a dataset in the data contract from a user's catalog.

Two source formats.

**table** (`format: table`): three files, each CSV (`.csv`), TSV (`.tsv`), JSON lines
(`.jsonl`, `.ndjson`) or Parquet (`.parquet`, `.pq`), chosen by extension:

- items: one row per item with an id, a title, a category, an optional brand and an image;
- queries: one row per query with an id and its text;
- interactions: one row per (query, item) event or judgement, with an optional label column
  and an optional split column.

`mapping` names the source column of each contract column, per table, e.g.
``{"items": {"item_id": "sku", "title": "name", "image": "img"}, "interactions": {"label": "clicks", "split": None}}``;
a contract column left out maps to a source column of the same name. `None` means "the source
has no such column": allowed for `items.brand` (every brand is null), `interactions.split`
(split by query hash, below) and `interactions.label` (each interaction row is one click).
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

**jd_tsv** (`format: jd_tsv`): an id-encoded release, as JD.com-style datasets ship text
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

**Both formats**: when the source gives no split, queries are split by a hash of
(seed, query_id): the same source and seed always give the same split, whatever the row
order, and adding queries never moves existing ones. With `split_by` naming an item column
(category, a product or family id), whole groups of items go to one split instead and each
query follows the group holding most of its relevance (`smar.splits`): test queries then ask
for items no training query touched. Rows are sorted by id and
dataset.json is written with sorted keys, so the same inputs give byte-identical files.
The dataset is written to a scratch directory that replaces the output only on success.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

from pydantic import ValidationError

from smar.config import CLI_OPTION, ImportConfig
from smar.data.contract import (
    BY_QUERY,
    IMAGE_FEATURES,
    IMAGES_DIR,
    ITEMS,
    MANIFEST,
    OPTIONAL_SOURCE_COLUMNS,
    QRELS,
    QUERIES,
    SOURCE_TABLES,
    SPLITS,
)
from smar.data.splits import assign_splits
from smar.errors import ConfigError, DatasetError, describe_invalid
from smar.paths import replace_on_success

log = logging.getLogger("smar.importers")

TABLE_READERS = {".csv": "CSV", ".tsv": "TSV", ".jsonl": "JSON lines", ".ndjson": "JSON lines", ".parquet": "Parquet", ".pq": "Parquet"}
JD_FILES = ("items.tsv", "queries.tsv", "interactions.tsv", "image_features.npy", "image_feature_ids.txt")
EXAMPLES = 5


def config_from_options(
    *, format: str, items=None, queries=None, interactions=None, images=None, source=None, maps=(), **settings
) -> ImportConfig:
    """Build an ImportConfig from command-line options; `maps` are "table.column=source" strings
    ("table.column=" unmaps an optional column)."""
    mapping: dict[str, dict[str, str | None]] = {}
    for entry in maps:
        key, sep, value = entry.partition("=")
        table, dot, column = key.strip().partition(".")
        if not sep or not dot or not table or not column:
            raise ConfigError(
                f"--map {entry!r}: expected TABLE.COLUMN=SOURCE_COLUMN, e.g. --map items.item_id=sku "
                f"(TABLE is one of {', '.join(SOURCE_TABLES)}; an empty SOURCE_COLUMN means the source has none)."
            )
        mapping.setdefault(table, {})[column] = value.strip() or None
    fields = dict(
        format=format.replace("-", "_"), items=items, queries=queries, interactions=interactions,
        images_dir=images, source_dir=source, mapping=mapping, **settings,
    )
    try:
        return ImportConfig(**fields)
    except ValidationError as error:
        raise ConfigError(f"invalid import options:\n{describe_invalid(error)}") from None


def import_catalog(config: ImportConfig, out_dir: Path) -> dict:
    """Write a dataset in the data contract to `out_dir` from `config`'s source; return its
    dataset.json content. Nothing is written unless the whole import succeeds."""
    out_dir = Path(out_dir)
    sources = _source_paths(config)
    _refuse_overwriting_sources(out_dir, sources.values())
    if config.format == "table":
        parts = _read_table_source(config)
    else:
        parts = _read_jd_source(config)
    qrels, stats = _qrels(config, parts)
    items, queries, features = parts["items"], parts["queries"], parts.get("features")
    counts = {"items": len(items), "queries": len(queries), "qrels": len(qrels)} | {
        f"{split}_queries": int(qrels.loc[qrels["split"] == split, "query_id"].nunique()) for split in SPLITS
    }
    counts["queries_without_qrels"] = int((~queries["query_id"].isin(qrels["query_id"])).sum())
    for split in ("train", "test"):
        if counts[f"{split}_queries"] == 0:
            log.warning("the %s split has no queries; validation will reject the dataset (adjust the fractions or the split column)", split)
    manifest = {
        "name": config.name,
        "version": config.version,
        "source": {
            "importer": "smar.importers",
            "format": config.format,
            "parameters": config.model_dump(mode="json"),
            "files": {role: {"path": str(path), "sha256": _sha256(path)} for role, path in sources.items() if path.is_file()},
            "dropped": stats,
        },
        "counts": counts,
    }
    if features is not None:
        manifest["image_features"] = {"file": IMAGE_FEATURES, "dtype": "float32", "shape": list(features.shape)}
    with replace_on_success(out_dir) as scratch:
        (scratch / IMAGES_DIR).mkdir()
        for source, target in parts.get("copies", ()):
            _copy(source, scratch / target)
        try:
            items.to_parquet(scratch / ITEMS, index=False)
        except Exception as error:  # pyarrow refuses some attribute columns (mixed or nested values)
            extra = ", ".join(c for c in items.columns if c not in SOURCE_TABLES["items"]) or "none"
            raise DatasetError(
                f"items.parquet: cannot be written ({type(error).__name__}: {error}); attribute columns: {extra}. "
                f"Fix: choose the attribute columns to keep (item_attributes) or clean their values."
            ) from None
        queries.to_parquet(scratch / QUERIES, index=False)
        qrels.to_parquet(scratch / QRELS, index=False)
        if features is not None:
            import numpy as np

            np.save(scratch / IMAGE_FEATURES, features, allow_pickle=False)
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


# ---------------------------------------------------------------------------------------------
# shared steps


def _source_paths(config: ImportConfig) -> dict[str, Path]:
    if config.format == "table":
        paths = {role: Path(getattr(config, role)) for role in CLI_OPTION}
        if config.images_dir is not None:
            paths["images_dir"] = Path(config.images_dir)
        return paths
    return {name.split(".")[0]: Path(config.source_dir) / name for name in JD_FILES}


def _refuse_overwriting_sources(out_dir: Path, sources) -> None:
    target = out_dir.resolve()
    for source in sources:
        resolved = Path(source).resolve()
        if resolved == target or target in resolved.parents:
            raise ConfigError(
                f"{out_dir}: the output directory holds the source {source}, and an import replaces the whole directory. "
                f"Fix: write the dataset elsewhere (--data DIR)."
            )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy(source: Path, target: Path) -> None:
    import shutil

    try:
        shutil.copyfile(source, target)
    except OSError as error:
        raise DatasetError(f"{source}: cannot be copied into the dataset ({error}). Fix: check the file's permissions.") from None


def _examples(values) -> str:
    values = [str(v) for v in values]
    shown = ", ".join(values[:EXAMPLES])
    return shown + (f" (and {len(values) - EXAMPLES} more)" if len(values) > EXAMPLES else "")


def _as_strings(series):
    """Values as pandas strings, nulls kept; integral floats (an id column with a gap, read as
    float) lose their ".0", and surrounding blanks are stripped."""
    from pandas.api import types

    if types.is_float_dtype(series.dtype):
        present = series.dropna()
        if len(present) and bool((present == present.round()).all()):
            series = series.astype("Int64")
    elif types.is_object_dtype(series.dtype):
        series = series.map(lambda v: v if v is None or isinstance(v, str) or v != v else str(v))
    return series.astype("str").str.strip()


def _ids(series, where: str, column: str, what: str, fix: str):
    """A required id or text column: strings, none null or blank."""
    values = _as_strings(series)
    blank = values.isna() | (values == "")
    if blank.any():
        rows = list(blank[blank].index[:EXAMPLES])
        raise DatasetError(
            f"{where}: column '{column}' ({what}) is empty in {int(blank.sum())} row(s), e.g. row(s) {_examples(rows)} "
            f"(counting from 0). Fix: {fix}"
        )
    return values.reset_index(drop=True)


def _unique(frame, column: str, where: str, source_column: str) -> None:
    duplicated = frame[column].duplicated(keep=False)
    if duplicated.any():
        values = sorted(frame.loc[duplicated, column].unique())
        raise DatasetError(
            f"{where}: column '{source_column}' ({column}) must be unique; {len(values)} value(s) repeat: {_examples(values)}. "
            f"Fix: remove the duplicate rows or map {column} to a unique column."
        )


def _labels(series, where: str, column: str, label: str):
    import pandas as pd

    numbers = pd.to_numeric(series, errors="coerce")
    bad = numbers.isna() | (numbers < 0) | (numbers != numbers.round())
    if bad.any():
        examples = [series.iloc[i] for i in range(len(series)) if bad.iloc[i]]
        raise DatasetError(
            f"{where}: column '{column}' ({'click counts' if label == 'clicks' else 'graded labels'}) must hold non-negative integers; "
            f"{int(bad.sum())} row(s) do not, e.g. {_examples(examples)}. Fix: clean the column or map interactions.label to another one."
        )
    return numbers.astype("int64").reset_index(drop=True)


def _splits(series, where: str, column: str):
    values = _as_strings(series).str.lower()
    bad = ~values.isin(SPLITS)
    if bad.any():
        found = sorted({str(v) for v in values[bad]})
        raise DatasetError(
            f"{where}: column '{column}' (split) must be one of {', '.join(SPLITS)}; found {_examples(found)}. "
            f"Fix: rename the values, or unmap the column (--map interactions.split=) to split queries by hash."
        )
    return values.reset_index(drop=True)


def _qrels(config: ImportConfig, parts: dict):
    """Interactions -> qrels: ids checked, labels aggregated, one split per query."""
    import pandas as pd

    interactions = parts["interactions"]
    where, names = parts["interactions_where"], parts["interactions_columns"]
    items_where, queries_where = parts["items_where"], parts["queries_where"]
    for column, known, file in (("query_id", parts["queries"]["query_id"], queries_where), ("item_id", parts["all_item_ids"], items_where)):
        unknown = ~interactions[column].isin(known)
        if unknown.any():
            values = sorted(interactions.loc[unknown, column].unique())
            raise DatasetError(
                f"{where}: {int(unknown.sum())} row(s) in column '{names[column]}' refer to {len(values)} {column}(s) not in {file}: "
                f"{_examples(values)}. Fix: add them to {file}, remove those rows, or check the --map of {column}."
            )
    stats: dict[str, int] = {}
    if "split" in interactions and config.split_by != BY_QUERY:
        raise DatasetError(
            f"{where}: has a split column ('{names['split']}') and split_by is '{config.split_by}'. "
            f"Fix: unmap the column (--map interactions.split=) to split by {config.split_by}, or leave split_by as {BY_QUERY}."
        )
    if "split" in interactions:
        per_query = interactions.groupby("query_id", sort=True)["split"].nunique()
        mixed = per_query[per_query > 1]
        if len(mixed):
            raise DatasetError(
                f"{where}: column '{names['split']}' (split) must be the same on every row of a query (splits are by query); "
                f"{len(mixed)} query(ies) have several: {_examples(mixed.index)}. "
                f"Fix: give each query one split, or unmap the column (--map interactions.split=) to split queries by hash."
            )
        query_split = interactions.drop_duplicates("query_id").set_index("query_id")["split"]
    if config.label == "clicks":
        qrels = interactions.groupby(["query_id", "item_id"], sort=True, as_index=False)["label"].sum()
        stats["zero_click_pairs"] = int((qrels["label"] == 0).sum())
    else:
        duplicated = interactions.duplicated(["query_id", "item_id"], keep=False)
        if duplicated.any():
            pairs = interactions.loc[duplicated, ["query_id", "item_id"]].drop_duplicates()
            raise DatasetError(
                f"{where}: with graded labels each (query, item) pair must appear once; {len(pairs)} pair(s) repeat, e.g. "
                f"{_examples(f'{q}/{i}' for q, i in pairs.itertuples(index=False))}. Fix: keep one row per pair, or use --label clicks to sum them."
            )
        qrels = interactions[["query_id", "item_id", "label"]].sort_values(["query_id", "item_id"], kind="stable")
        stats["zero_label_pairs"] = int((qrels["label"] == 0).sum())
    qrels = qrels[qrels["label"] > 0]
    dropped_items = parts.get("dropped_item_ids")
    if dropped_items is not None:
        without = qrels["item_id"].isin(dropped_items)
        stats["qrels_of_items_without_features"] = int(without.sum())
        qrels = qrels[~without]
    qrels = qrels.reset_index(drop=True)
    if "split" in interactions:
        split = qrels["query_id"].map(query_split)
    else:
        splits = assign_splits(qrels, parts["items"], config.split_by, config.seed, config.valid_fraction, config.test_fraction, items_where)
        split = qrels["query_id"].map(splits)
    qrels = pd.DataFrame(
        {
            "query_id": qrels["query_id"].astype("str"),
            "item_id": qrels["item_id"].astype("str"),
            "label": qrels["label"].astype("int64"),
            "split": split.astype("str"),
        }
    )
    stats.update(parts.get("stats", {}))
    return qrels, stats


# ---------------------------------------------------------------------------------------------
# table


def _read_frame(path: Path, role: str, string_columns):
    import pandas as pd

    path = Path(path)
    kind = TABLE_READERS.get(path.suffix.lower())
    if kind is None:
        raise DatasetError(
            f"{path}: unknown extension '{path.suffix}' for the {role} file; use .csv, .tsv, .jsonl (.ndjson) or .parquet (.pq). "
            f"Fix: convert the file or rename it to the extension of its format."
        )
    if not path.is_file():
        raise DatasetError(f"{path}: no such {role} file. Fix: pass {CLI_OPTION[role]} FILE with the path of the {role} table.")
    try:
        if kind in ("CSV", "TSV"):
            dtype = {column: "str" for column in string_columns if column}
            frame = pd.read_csv(path, sep="," if kind == "CSV" else "\t", dtype=dtype, keep_default_na=False, na_values=[""])
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
        f"{path}: column '{source}' ({table}.{column}{'' if mapped else ', mapped by default to the same name'}) not found; "
        f"the file has: {', '.join(frame.columns) or 'no columns'}. "
        f"Fix: --map {table}.{column}=<one of those columns>" + (" (or leave it empty to unmap it)." if (table, column) in OPTIONAL_SOURCE_COLUMNS else ".")
    )


def _read_table_source(config: ImportConfig) -> dict:
    import pandas as pd

    paths = {role: Path(getattr(config, role)) for role in CLI_OPTION}
    ids = {table: [config.source_column(table, c) for c in SOURCE_TABLES[table] if c.endswith("_id")] for table in SOURCE_TABLES}
    raw = {role: _read_frame(paths[role], role, ids[role]) for role in CLI_OPTION}

    # items
    path, frame = paths["items"], raw["items"]
    items = {}
    used = []
    for column in SOURCE_TABLES["items"]:
        values, source = _column(frame, config, "items", column, path)
        used.append(source)
        if column == "brand":
            items[column] = _as_strings(values).replace("", None).reset_index(drop=True) if values is not None else pd.Series([None] * len(frame), dtype="str")
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

    # queries
    path, frame = paths["queries"], raw["queries"]
    queries = {}
    for column in SOURCE_TABLES["queries"]:
        values, source = _column(frame, config, "queries", column, path)
        queries[column] = _ids(values, str(path), source, f"queries.{column}", f"fill the column, or drop those rows from {path.name}.")
        if column == "query_id":
            query_id_source = source
    queries = pd.DataFrame(queries)
    _unique(queries, "query_id", str(path), query_id_source)
    queries = queries.sort_values("query_id", kind="stable").reset_index(drop=True)

    # interactions
    path, frame = paths["interactions"], raw["interactions"]
    interactions, names = {}, {}
    for column in SOURCE_TABLES["interactions"]:
        values, source = _column(frame, config, "interactions", column, path)
        names[column] = source
        if column in ("query_id", "item_id"):
            interactions[column] = _ids(values, str(path), source, f"interactions.{column}", f"fill the column, or drop those rows from {path.name}.")
        elif column == "label":
            interactions[column] = _labels(values, str(path), source, config.label) if values is not None else pd.Series([1] * len(frame), dtype="int64")
        elif values is not None:
            interactions[column] = _splits(values, str(path), source)
    return {
        "items": items,
        "queries": queries,
        "interactions": pd.DataFrame(interactions),
        "all_item_ids": items["item_id"],
        "copies": copies,
        "items_where": paths["items"].name,
        "queries_where": paths["queries"].name,
        "interactions_where": str(paths["interactions"]),
        "interactions_columns": names,
    }


def _attributes(frame, config: ImportConfig, used, path: Path) -> list[str]:
    others = [c for c in frame.columns if c not in used]
    if config.item_attributes is None:
        clashing = [c for c in others if c in SOURCE_TABLES["items"]]
        if clashing:
            log.warning("%s: column(s) %s are not carried over: their names are contract columns mapped elsewhere", path, ", ".join(clashing))
        return [c for c in others if c not in SOURCE_TABLES["items"]]
    missing = [c for c in config.item_attributes if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"{path}: attribute column(s) {', '.join(missing)} (item_attributes) not found; the file has: {', '.join(frame.columns)}. "
            f"Fix: list only columns of the items file."
        )
    clashing = [c for c in config.item_attributes if c in SOURCE_TABLES["items"] or c in used]
    if clashing:
        raise DatasetError(f"{path}: item_attributes {', '.join(clashing)} are contract or mapped columns. Fix: leave them out of item_attributes.")
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
        name if name == item_id and lowered[name.lower()] == 1 else f"{name}-{hashlib.sha1(item_id.encode()).hexdigest()[:10]}"
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
        where = f"the images folder {base}" if config.images_dir is not None else f"the items file's folder {base} (or absolute)"
        raise DatasetError(
            f"{items_path}: column '{image_column}' (items.image): {len(missing)} image file(s) not found, relative to {where}; "
            f"item_id(s) {_examples(f'{i} ({v})' for i, v in missing)}. "
            + ("The column holds URLs: download the images first. " if urls else "")
            + "Fix: pass --images DIR with the folder that holds the files, or correct the paths in the column."
        )
    names = image_file_names(list(items["item_id"]))
    targets = [f"images/{name}{source.suffix.lower()}" for name, source in zip(names, sources)]
    import pandas as pd

    return list(zip(sources, targets)), pd.Series(targets, dtype="str")


# ---------------------------------------------------------------------------------------------
# jd_tsv


_TOKENS = re.compile(r"\s*(\d+(\s+\d+)*)?\s*")


def _read_tsv(path: Path, columns: tuple[str, ...], optional: int = 0):
    import csv

    import pandas as pd

    if not path.is_file():
        raise DatasetError(
            f"{path}: missing from the jd_tsv release. Fix: a release directory holds {', '.join(JD_FILES)} (see smar/importers.py)."
        )
    try:
        frame = pd.read_csv(
            path, sep="\t", header=None, dtype="str", keep_default_na=False, na_values=[""], quoting=csv.QUOTE_NONE,
            names=list(range(len(columns))), on_bad_lines="error", engine="c",
        )
    except Exception as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        expected = f"{len(columns) - optional} or {len(columns)}" if optional else str(len(columns))
        raise DatasetError(
            f"{path}: cannot be read as headerless TSV with {expected} columns ({', '.join(columns)}) ({type(error).__name__}: {detail}). "
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
            f"{int((bad | empty).sum())} row(s) do not, id(s) {_examples(rows)}. Fix: correct those rows or remove them."
        )
    return prefix + values.str.strip().str.replace(r"\s+", f" {prefix}", regex=True)


def _read_jd_source(config: ImportConfig) -> dict:
    import numpy as np
    import pandas as pd

    root = Path(config.source_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such release directory. Fix: pass --source DIR with {', '.join(JD_FILES)}.")

    path = root / "items.tsv"
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
    items = items.sort_values("item_id", kind="stable").reset_index(drop=True)

    path = root / "queries.tsv"
    raw = _read_tsv(path, ("query_id", "text"))
    query_ids = _ids(raw["query_id"], str(path), "1 (query_id)", "queries.query_id", "fill the column or drop those rows.")
    queries = pd.DataFrame({"query_id": query_ids, "text": _tokens(raw["text"], path, "2 (query token ids)", query_ids, "w")})
    _unique(queries, "query_id", str(path), "1")
    queries = queries.sort_values("query_id", kind="stable").reset_index(drop=True)

    path = root / "interactions.tsv"
    raw = _read_tsv(path, ("query_id", "item_id", "clicks", "split"), optional=1)
    interactions = pd.DataFrame(
        {
            "query_id": _ids(raw["query_id"], str(path), "1 (query_id)", "interactions.query_id", "fill the column or drop those rows."),
            "item_id": _ids(raw["item_id"], str(path), "2 (item_id)", "interactions.item_id", "fill the column or drop those rows."),
            "label": _labels(raw["clicks"], str(path), "3 (clicks)", "clicks"),
        }
    )
    if raw["split"].notna().any():
        interactions["split"] = _splits(raw["split"], str(path), "4 (split)")

    features, dropped, stats = _features(root, items, config)
    all_item_ids = items["item_id"]
    if dropped:
        log.warning(
            "%s: %d item(s) have no feature row and are dropped with their interactions (drop_items_without_features): %s",
            root / "image_feature_ids.txt", len(dropped), _examples(dropped),
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
        "interactions_where": str(path),
        "interactions_columns": {"query_id": "1", "item_id": "2", "label": "3", "split": "4"},
    }


def _features(root: Path, items, config: ImportConfig):
    """Feature rows in items' order; (features, dropped item ids, stats)."""
    import numpy as np

    ids_path, array_path = root / "image_feature_ids.txt", root / "image_features.npy"
    for path in (ids_path, array_path):
        if not path.is_file():
            raise DatasetError(f"{path}: missing from the jd_tsv release. Fix: a release directory holds {', '.join(JD_FILES)}.")
    try:
        array = np.load(array_path, mmap_mode="r", allow_pickle=False)
    except Exception as error:
        raise DatasetError(f"{array_path}: cannot be read as a .npy array ({type(error).__name__}: {error}). Fix: write it with numpy.save.") from None
    if array.ndim not in (2, 3) or not np.issubdtype(array.dtype, np.number):
        raise DatasetError(
            f"{array_path}: expected a numeric array [num_items, F] or [num_items, T, F], got shape {list(array.shape)} of {array.dtype}. "
            f"Fix: save one feature row (or token grid) per item."
        )
    try:
        feature_ids = [line.strip() for line in ids_path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{ids_path}: cannot be read as UTF-8 text ({error}). Fix: one item id per line.") from None
    while feature_ids and feature_ids[-1] == "":
        feature_ids.pop()
    if len(feature_ids) != array.shape[0]:
        raise DatasetError(
            f"{ids_path}: {len(feature_ids)} id line(s) for {array.shape[0]} row(s) of {array_path.name}. "
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
            f"{ids_path}: item ids must be unique and non-empty; " + (f"repeated: {_examples(sorted(set(repeated)))}. " if repeated else "a line is empty. ")
            + "Fix: one feature row per item."
        )
    without = [item_id for item_id in items["item_id"] if item_id not in row_of]
    if without and not config.drop_items_without_features:
        raise DatasetError(
            f"{ids_path}: {len(without)} item(s) of items.tsv have no image feature row: {_examples(without)}. "
            f"Fix: add their features, remove them from items.tsv, or set drop_items_without_features (--drop-items-without-features)."
        )
    rows = [row_of[item_id] for item_id in items["item_id"] if item_id in row_of]
    features = np.asarray(array[np.asarray(rows, dtype=np.int64)], dtype=np.float32) if rows else np.zeros((0, *array.shape[1:]), np.float32)
    finite = np.isfinite(features.reshape(len(features), -1)).all(axis=1)
    if not finite.all():
        kept = [item_id for item_id in items["item_id"] if item_id in row_of]
        bad = [kept[i] for i in np.flatnonzero(~finite)]
        raise DatasetError(f"{array_path}: {len(bad)} feature row(s) hold NaN or infinity, item(s) {_examples(bad)}. Fix: recompute those features.")
    stats = {"items_without_features": len(without), "unused_feature_rows": len(row_of) - len(rows)}
    return features, without, stats
