"""Reading a dataset directory in the data contract (see ARCHITECTURE.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from smar.errors import DatasetError

REQUIRED_COLUMNS = {
    "items.parquet": ("item_id", "title", "category", "brand", "image"),
    "queries.parquet": ("query_id", "text"),
    "qrels.parquet": ("query_id", "item_id", "label", "split"),
}
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Dataset:
    root: Path
    items: object  # pandas.DataFrame, typed loosely to keep pandas out of import time
    queries: object
    qrels: object

    def split_qrels(self, split: str):
        return self.qrels[self.qrels["split"] == split]

    def relevant_items(self, split: str) -> dict[str, dict[str, int]]:
        """query_id -> {item_id: label} for one split."""
        relevant: dict[str, dict[str, int]] = {}
        for row in self.split_qrels(split).itertuples(index=False):
            relevant.setdefault(row.query_id, {})[row.item_id] = int(row.label)
        return relevant

    def split_queries(self, split: str):
        ids = self.split_qrels(split)["query_id"].unique()
        return self.queries[self.queries["query_id"].isin(ids)].reset_index(drop=True)


def load_dataset(root: str | Path) -> Dataset:
    import pandas as pd

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset directory. Create one with `smar data synth` or pass --data DIR.")
    frames = {}
    for name, columns in REQUIRED_COLUMNS.items():
        path = root / name
        if not path.is_file():
            raise DatasetError(f"{path}: missing. A dataset needs {', '.join(REQUIRED_COLUMNS)} (see ARCHITECTURE.md).")
        try:
            frame = pd.read_parquet(path)
        except Exception as error:  # pyarrow raises several types for a corrupt file
            raise DatasetError(f"{path}: cannot be read as Parquet ({error}). Rewrite it with pandas.to_parquet.") from None
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DatasetError(
                f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns)) or 'none'}. "
                f"Rename or add them to match the data contract."
            )
        frames[name] = frame
    return Dataset(root, frames["items.parquet"], frames["queries.parquet"], frames["qrels.parquet"])


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
    manifest = root / "dataset.json"
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
