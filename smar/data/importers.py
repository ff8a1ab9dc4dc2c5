"""`smar data import`: build a dataset in the data contract from a user's catalog.

Two source formats, each read by its own module:

- **table** (`format: table`, `smar/data/import_table.py`): items, queries and interactions
  as three CSV, TSV, JSON lines or Parquet files, with a column mapping, attribute columns and
  image files copied into the dataset;
- **jd_tsv** (`format: jd_tsv`, `smar/data/import_jd.py`): an id-encoded release directory of
  headerless TSV files (token ids as words) and precomputed image features.

Each reader returns the same parts (items, queries, interactions, ...); this module holds the
steps after it: interactions to qrels, splits, counts, dataset.json, and writing the dataset.
Helpers both formats use are in `smar/data/import_common.py`.

**Both formats**: when the source gives no split, queries are split by a hash of
(seed, query_id): the same source and seed always give the same split, whatever the row
order, and adding queries never moves existing ones. With `split_by` naming an item column
(category, a product or family id), whole groups of items go to one split instead and each
query follows the group holding most of its relevance (smar.data.splits): test queries then ask
for items no training query touched. Rows are sorted by id and
dataset.json is written with sorted keys, so the same inputs give byte-identical files.
The dataset is written to a scratch directory that replaces the output only on success.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from pydantic import ValidationError

from smar.core.config import ImportConfig
from smar.core.contract import (
    BY_QUERY,
    IMAGE_FEATURES,
    IMAGES_DIR,
    ITEMS,
    MANIFEST,
    QRELS,
    QUERIES,
    SOURCE_TABLES,
    SPLITS,
)
from smar.core.errors import ConfigError, DatasetError, describe_invalid
from smar.core.paths import replace_on_success
from smar.data.import_common import _examples
from smar.data.import_jd import JD_FILES, read_jd_source
from smar.data.import_table import read_table_source
from smar.data.splits import assign_splits

log = logging.getLogger("smar.importers")


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
        format=format.replace("-", "_"),
        items=items,
        queries=queries,
        interactions=interactions,
        images_dir=images,
        source_dir=source,
        mapping=mapping,
        **settings,
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
        parts = read_table_source(config)
    else:
        parts = read_jd_source(config)
    qrels, stats = _qrels(config, parts)
    counts = dataset_counts(parts["items"], parts["queries"], qrels)
    _warn_about_empty_splits(counts)
    manifest = _manifest(config, sources, stats, counts, parts.get("features"))
    _write_dataset(out_dir, parts, qrels, manifest)
    return manifest


def dataset_counts(items, queries, qrels) -> dict[str, int]:
    """Rows per file, queries per split, and queries that no qrel mentions."""
    counts = {"items": len(items), "queries": len(queries), "qrels": len(qrels)} | {
        f"{split}_queries": int(qrels.loc[qrels["split"] == split, "query_id"].nunique()) for split in SPLITS
    }
    counts["queries_without_qrels"] = int((~queries["query_id"].isin(qrels["query_id"])).sum())
    return counts


def _warn_about_empty_splits(counts: dict[str, int]) -> None:
    for split in ("train", "test"):
        if counts[f"{split}_queries"] == 0:
            log.warning(
                "the %s split has no queries; validation will reject the dataset (adjust the fractions or the split "
                "column)",
                split,
            )


def _manifest(config: ImportConfig, sources: dict[str, Path], stats: dict, counts: dict, features) -> dict:
    """dataset.json's content: the import's source (parameters, file hashes, dropped rows) and counts."""
    manifest = {
        "name": config.name,
        "version": config.version,
        "source": {
            "importer": "smar.importers",
            "format": config.format,
            "parameters": config.model_dump(mode="json"),
            "files": {
                role: {"path": str(path), "sha256": _sha256(path)} for role, path in sources.items() if path.is_file()
            },
            "dropped": stats,
        },
        "counts": counts,
    }
    if features is not None:
        manifest["image_features"] = {"file": IMAGE_FEATURES, "dtype": "float32", "shape": list(features.shape)}
    return manifest


def _write_dataset(out_dir: Path, parts: dict, qrels, manifest: dict) -> None:
    """Write every file of the dataset to a scratch directory that replaces `out_dir` on success."""
    features = parts.get("features")
    with replace_on_success(out_dir) as scratch:
        (scratch / IMAGES_DIR).mkdir()
        for source, target in parts.get("copies", ()):
            _copy(source, scratch / target)
        _write_items(parts["items"], scratch / ITEMS)
        parts["queries"].to_parquet(scratch / QUERIES, index=False)
        qrels.to_parquet(scratch / QRELS, index=False)
        if features is not None:
            import numpy as np

            np.save(scratch / IMAGE_FEATURES, features, allow_pickle=False)
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _write_items(items, path: Path) -> None:
    try:
        items.to_parquet(path, index=False)
    except Exception as error:  # pyarrow refuses some attribute columns (mixed or nested values)
        extra = ", ".join(c for c in items.columns if c not in SOURCE_TABLES["items"]) or "none"
        raise DatasetError(
            f"{ITEMS}: cannot be written ({type(error).__name__}: {error}); attribute columns: {extra}. "
            f"Fix: choose the attribute columns to keep (item_attributes) or clean their values."
        ) from None


# ---------------------------------------------------------------------------------------------
# shared steps


def _source_paths(config: ImportConfig) -> dict[str, Path]:
    if config.format == "table":
        paths = {role: Path(getattr(config, role)) for role in SOURCE_TABLES}
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
                f"{out_dir}: the output directory holds the source {source}, and an import replaces the whole "
                f"directory. "
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
        raise DatasetError(
            f"{source}: cannot be copied into the dataset ({error}). Fix: check the file's permissions."
        ) from None


def _qrels(config: ImportConfig, parts: dict):
    """Interactions -> qrels: ids checked, labels aggregated, one split per query."""
    interactions = parts["interactions"]
    _check_interaction_ids(parts)
    query_split = None
    if "split" in interactions:
        query_split = _split_per_query(config, interactions, parts["interactions_where"], parts["interactions_columns"])
    qrels, stats = _labels_per_pair(config, interactions, parts["interactions_where"])
    qrels = qrels[qrels["label"] > 0]
    dropped_items = parts.get("dropped_item_ids")
    if dropped_items is not None:
        without = qrels["item_id"].isin(dropped_items)
        stats["qrels_of_items_without_features"] = int(without.sum())
        qrels = qrels[~without]
    qrels = qrels.reset_index(drop=True)
    if query_split is not None:
        split = qrels["query_id"].map(query_split)
    else:
        splits = assign_splits(
            qrels,
            parts["items"],
            config.split_by,
            config.seed,
            config.valid_fraction,
            config.test_fraction,
            parts["items_where"],
        )
        split = qrels["query_id"].map(splits)
    qrels = _qrels_frame(qrels, split)
    stats.update(parts.get("stats", {}))
    return qrels, stats


def _check_interaction_ids(parts: dict) -> None:
    """Every interaction's query_id is in the queries and its item_id in the items."""
    interactions = parts["interactions"]
    where, names = parts["interactions_where"], parts["interactions_columns"]
    items_where, queries_where = parts["items_where"], parts["queries_where"]
    for column, known, file in (
        ("query_id", parts["queries"]["query_id"], queries_where),
        ("item_id", parts["all_item_ids"], items_where),
    ):
        unknown = ~interactions[column].isin(known)
        if unknown.any():
            values = sorted(interactions.loc[unknown, column].unique())
            raise DatasetError(
                f"{where}: {int(unknown.sum())} row(s) in column '{names[column]}' refer to {len(values)} "
                f"{column}(s) not in {file}: "
                f"{_examples(values)}. Fix: add them to {file}, remove those rows, or check the --map of {column}."
            )


def _split_per_query(config: ImportConfig, interactions, where: str, names: dict):
    """The source's split column as one split per query_id (a Series indexed by query_id)."""
    if config.split_by != BY_QUERY:
        raise DatasetError(
            f"{where}: has a split column ('{names['split']}') and split_by is '{config.split_by}'. "
            f"Fix: unmap the column (--map interactions.split=) to split by {config.split_by}, or leave split_by as "
            f"{BY_QUERY}."
        )
    per_query = interactions.groupby("query_id", sort=True)["split"].nunique()
    mixed = per_query[per_query > 1]
    if len(mixed):
        raise DatasetError(
            f"{where}: column '{names['split']}' (split) must be the same on every row of a query (splits are by "
            f"query); "
            f"{len(mixed)} query(ies) have several: {_examples(mixed.index)}. "
            f"Fix: give each query one split, or unmap the column (--map interactions.split=) to split queries by hash."
        )
    return interactions.drop_duplicates("query_id").set_index("query_id")["split"]


def _labels_per_pair(config: ImportConfig, interactions, where: str):
    """One row per (query, item), sorted, with its label: clicks summed, or the graded label as is;
    and the stats of pairs with label 0 (not yet dropped)."""
    stats: dict[str, int] = {}
    if config.label == "clicks":
        qrels = interactions.groupby(["query_id", "item_id"], sort=True, as_index=False)["label"].sum()
        stats["zero_click_pairs"] = int((qrels["label"] == 0).sum())
        return qrels, stats
    duplicated = interactions.duplicated(["query_id", "item_id"], keep=False)
    if duplicated.any():
        pairs = interactions.loc[duplicated, ["query_id", "item_id"]].drop_duplicates()
        raise DatasetError(
            f"{where}: with graded labels each (query, item) pair must appear once; {len(pairs)} pair(s) repeat, e.g. "
            f"{_examples(f'{q}/{i}' for q, i in pairs.itertuples(index=False))}. Fix: keep one row per pair, or use "
            f"--label clicks to sum them."
        )
    qrels = interactions[["query_id", "item_id", "label"]].sort_values(["query_id", "item_id"], kind="stable")
    stats["zero_label_pairs"] = int((qrels["label"] == 0).sum())
    return qrels, stats


def _qrels_frame(qrels, split):
    """The qrels table in the contract's column order and types."""
    import pandas as pd

    return pd.DataFrame(
        {
            "query_id": qrels["query_id"].astype("str"),
            "item_id": qrels["item_id"].astype("str"),
            "label": qrels["label"].astype("int64"),
            "split": split.astype("str"),
        }
    )
