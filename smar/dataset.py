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
    """Identify the data a run used: the DVC hash from `<root>.dvc` when it exists, and dataset.json."""
    root = Path(root)
    version: dict[str, str] = {}
    pointer = root.with_name(root.name + ".dvc")
    if pointer.is_file():
        import yaml

        outs = (yaml.safe_load(pointer.read_text()) or {}).get("outs") or [{}]
        version["dvc_md5"] = str(outs[0].get("md5", ""))
    manifest = root / "dataset.json"
    if manifest.is_file():
        meta = json.loads(manifest.read_text())
        version["dataset"] = f"{meta.get('name', '?')}@{meta.get('version', '?')}"
    return version
