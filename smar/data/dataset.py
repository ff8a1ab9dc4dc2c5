"""Reading a dataset directory in the data contract (smar.core.contract)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from smar.core.contract import COLUMNS, IMAGE_FEATURES, ITEMS, MANIFEST, QRELS, QUERIES
from smar.core.errors import DatasetError

if TYPE_CHECKING:  # pandas stays out of import time
    import pandas as pd


@dataclass(frozen=True)
class Dataset:
    root: Path
    items: pd.DataFrame
    queries: pd.DataFrame
    qrels: pd.DataFrame

    @property
    def image_features_file(self) -> Path | None:
        """`image_features.npy` when the dataset carries precomputed image features, else None."""
        path = self.root / IMAGE_FEATURES
        return path if path.is_file() else None

    def split_qrels(self, split: str):
        return self.qrels[self.qrels["split"] == split]

    def relevant_items(self, split: str) -> dict[str, dict[str, int]]:
        """query_id -> {item_id: label} for one split."""
        relevant: dict[str, dict[str, int]] = {}
        for row in self.split_qrels(split).itertuples(index=False):
            relevant.setdefault(row.query_id, {})[row.item_id] = int(row.label)
        return relevant

    def cold_queries(self, split: str) -> set[str]:
        """Queries of `split` none of whose relevant items was relevant to any training query:
        the queries about products training never saw."""
        qrels = self.split_qrels(split)
        seen = qrels["item_id"].isin(set(self.split_qrels("train")["item_id"]))
        touched = seen.groupby(qrels["query_id"]).any()
        return set(touched.index[~touched])

    def split_queries(self, split: str):
        ids = self.split_qrels(split)["query_id"].unique()
        return self.queries[self.queries["query_id"].isin(ids)].reset_index(drop=True)


def load_dataset(root: str | Path) -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"{root}: no such dataset directory. Fix: create one with `smar data synth` or `smar data import`, or "
            f"pass --data DIR."
        )
    frames = {}
    for name, columns in COLUMNS.items():
        path = root / name
        if not path.is_file():
            raise DatasetError(
                f"{path}: missing. Fix: a dataset needs {', '.join(COLUMNS)} (see ARCHITECTURE.md); "
                "re-run the importer or `smar data synth`."
            )
        frame = _read_parquet(path, text_columns=[c for c in columns if c != "label"])
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DatasetError(
                f"{path}: missing column(s) {', '.join(missing)}; found "
                f"{', '.join(map(str, frame.columns)) or 'none'}. "
                f"Fix: rename or add them to match the data contract."
            )
        frames[name] = frame
    return Dataset(root, frames[ITEMS], frames[QUERIES], frames[QRELS])


def _read_parquet(path: Path, text_columns=()):
    """A Parquet file as a DataFrame. Text is str: a binary `text_columns` column (as Spark writes)
    is decoded as UTF-8, and a string column holding bytes that are not UTF-8 does not fail the
    file (or, worse, the first later use of the column): those values, and only those, stay
    bytes, for validation to name."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        decode = [
            c.name
            for c in table.schema
            if c.name in text_columns and (pa.types.is_binary(c.type) or pa.types.is_large_binary(c.type))
        ]
        invalid = []
        for index, column in enumerate(table.schema):
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                try:
                    table.column(index).validate(full=True)
                except pa.ArrowInvalid:  # invalid UTF-8: read it as bytes
                    binary = pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary()
                    chunks = [chunk.view(binary) for chunk in table.column(index).chunks]
                    table = table.set_column(index, column.with_type(binary), pa.chunked_array(chunks, binary))
                    invalid.append(column.name)
        if invalid and b"pandas" in (table.schema.metadata or {}):  # else pandas casts them back to str
            meta = json.loads(table.schema.metadata[b"pandas"])
            for column in meta.get("columns", []):
                if column.get("field_name") in invalid:
                    column.update(pandas_type="bytes", numpy_type="object")
            table = table.replace_schema_metadata(table.schema.metadata | {b"pandas": json.dumps(meta).encode()})
        frame = table.to_pandas()
        for name in decode + invalid:
            frame[name] = [_decoded(value) for value in frame[name]]
        return frame
    except Exception as error:  # pyarrow raises several types for a corrupt file
        raise DatasetError(
            f"{path}: cannot be read as Parquet ({error}). Fix: rewrite it with pandas.to_parquet."
        ) from None


def _decoded(value):
    try:
        return value.decode("utf-8") if isinstance(value, bytes) else value
    except UnicodeDecodeError:
        return value


def load_image_features(root: str | Path):
    """`image_features.npy`, memory-mapped: float32 [num_items, F] or [num_items, T, F], rows in
    items.parquet order. DatasetError when the file cannot be read or has no such shape."""
    import numpy as np

    path = Path(root) / IMAGE_FEATURES
    try:
        with path.open("rb") as stream:
            if stream.read(6) != b"\x93NUMPY":  # else numpy.load tries it as a pickle
                raise ValueError("no .npy header")
        features = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as error:  # not .npy, truncated, or an object array
        raise DatasetError(
            f"{path}: cannot be read as a .npy array ({type(error).__name__}: {error}). "
            "Fix: write it with numpy.save(path, features.astype(numpy.float32))."
        ) from None
    if features.ndim not in (2, 3) or 0 in features.shape[1:]:
        raise DatasetError(
            f"{path}: shape {list(features.shape)}; expected [num_items, F] or [num_items, T, F] with F > 0. "
            "Fix: save one feature row (or one [T, F] block) per item, in items.parquet row order."
        )
    return features


def data_version(root: str | Path) -> dict[str, str]:
    """Identify the data a run used: its DVC directory hash, whether `<root>.dvc` records that
    same hash, and the name@version from dataset.json."""
    root = Path(root)
    version = {"dvc_md5": dvc_directory_md5(root)}
    pointer = root.with_name(root.name + ".dvc")
    if pointer.is_file():
        import yaml

        outs = (yaml.safe_load(pointer.read_text()) or {}).get("outs") or [{}]
        version["matches_dvc_pointer"] = str(outs[0].get("md5") == version["dvc_md5"]).lower()
    manifest = root / MANIFEST
    if manifest.is_file():
        meta = json.loads(manifest.read_text())
        version["dataset"] = f"{meta.get('name', '?')}@{meta.get('version', '?')}"
    return version


def dvc_directory_md5(root: Path) -> str:
    """The hash `dvc add` records for a directory: md5 of the sorted (relpath, file md5) listing."""
    import hashlib
    import os

    entries = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            digest = hashlib.md5()
            with path.open("rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
            entries.append({"md5": digest.hexdigest(), "relpath": path.relative_to(root).as_posix()})
    entries.sort(key=lambda entry: entry["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"
