"""Train/valid/test splits: by query, or by groups of items (category, family, product, ...).

Split by query, a test query is new but its relevant items were mostly seen in training,
through other queries. Split by an item column (`split_by`), whole groups of items go to one
split and each query follows the group that holds most of its relevance (the sum of its
labels), so test queries ask for items that no training query touched: the cold start a
shop meets with every new product. Both are functions of the seed and the ids alone.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable

from smar.core.contract import BY_QUERY, IMAGE_FEATURES, IMAGES_DIR, ITEMS, MANIFEST, QRELS, QUERIES
from smar.core.errors import DatasetError


def _draw(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def hash_split(query_id: str, seed: int, valid_fraction: float, test_fraction: float) -> str:
    """The split of one query: a function of (seed, query_id) alone."""
    draw = _draw(seed, query_id)
    return "test" if draw < test_fraction else "valid" if draw < test_fraction + valid_fraction else "train"


def group_splits(item_groups: Iterable, seed: int, valid_fraction: float, test_fraction: float) -> dict:
    """{group: split}. Groups are taken in a seeded hash order: test until it holds
    `test_fraction` of the items, then valid until `valid_fraction` more, the rest train. So a
    catalog of a few large groups (32 categories) still gets every split, in about the asked sizes."""
    sizes = Counter(item_groups)
    total, taken, splits = sum(sizes.values()), 0, {}
    for group in sorted(sizes, key=lambda g: (_draw(seed, str(g)), str(g))):
        if taken < test_fraction * total:
            splits[group] = "test"
        elif taken < (test_fraction + valid_fraction) * total:
            splits[group] = "valid"
        else:
            splits[group] = "train"
        taken += sizes[group]
    return splits


def majority_group(groups: Iterable, labels: Iterable[float]):
    """The group holding most of a query's relevance (ties: the smallest group name)."""
    mass: dict = {}
    for group, label in zip(groups, labels):
        mass[group] = mass.get(group, 0.0) + float(label)
    return min(mass, key=lambda g: (-mass[g], str(g)))


def query_splits_by_group(qrels, item_group: dict, group_split: dict) -> dict[str, str]:
    """{query_id: split}: each query goes to the split of its majority group."""
    splits = {}
    for query_id, rows in qrels.groupby("query_id", sort=False):
        group = majority_group((item_group[item] for item in rows["item_id"]), rows["label"])
        splits[query_id] = group_split[group]
    return splits


def item_groups(items, column: str, where: str, examples: int = 5) -> dict[str, object]:
    """{item_id: group} from `column`; DatasetError naming the column and rows when it is missing or null."""
    if column not in items.columns:
        raise DatasetError(
            f"{where}: split_by '{column}' is not an item column; the items have {', '.join(map(str, items.columns))}. "
            f"Fix: choose one of them (for example category, or a product or family id), or split_by: {BY_QUERY}."
        )
    missing = items[column].isna()
    if missing.any():
        rows = ", ".join(
            f"row={row} item_id={item}"
            for row, item in list(zip(items.index[missing], items.loc[missing, "item_id"]))[:examples]
        )
        raise DatasetError(
            f"{where}: split_by column '{column}' is null for {int(missing.sum())} item(s), e.g. {rows}. "
            f"Fix: give every item a {column}, drop those items, or split_by: {BY_QUERY}."
        )
    return dict(zip(items["item_id"].astype(str), items[column]))


def assign_splits(
    qrels, items, split_by: str, seed: int, valid_fraction: float, test_fraction: float, where: str
) -> dict[str, str]:
    """{query_id: split} for every query in `qrels`, by query hash or by groups of `split_by`."""
    query_ids = qrels["query_id"].unique()
    if split_by == BY_QUERY:
        return {q: hash_split(q, seed, valid_fraction, test_fraction) for q in query_ids}
    groups = item_groups(items, split_by, where)
    relevant = qrels[qrels["item_id"].isin(groups)]
    return query_splits_by_group(relevant, groups, group_splits(groups.values(), seed, valid_fraction, test_fraction))


def resplit(
    data_dir, out_dir, split_by: str, seed: int = 0, valid_fraction: float = 0.1, test_fraction: float = 0.15
) -> dict:
    """Write a copy of the dataset at `data_dir` to `out_dir` with its queries split again by
    `split_by`; image files are hard-linked where the file system allows. Returns the new dataset.json."""
    import json
    import shutil
    from pathlib import Path

    import pandas as pd

    from smar.core.paths import replace_on_success

    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir)
    items, qrels = pd.read_parquet(data_dir / ITEMS), pd.read_parquet(data_dir / QRELS)
    splits = assign_splits(qrels, items, split_by, seed, valid_fraction, test_fraction, str(data_dir / ITEMS))
    manifest = json.loads((data_dir / MANIFEST).read_text())
    manifest["source"] = {
        "resplit_of": str(data_dir),
        "split_by": split_by,
        "seed": seed,
        "from": manifest.get("source"),
    }
    with replace_on_success(out_dir) as scratch:
        copy_catalog(data_dir, scratch)
        shutil.copyfile(data_dir / QUERIES, scratch / QUERIES)
        qrels.assign(split=qrels["query_id"].map(splits)).to_parquet(scratch / QRELS, index=False)
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def copy_catalog(data_dir, target) -> None:
    """A dataset's items, images and image features into `target` (files hard-linked where the file
    system allows): the catalog a new version of its queries and labels shares."""
    import shutil
    from pathlib import Path

    data_dir, target = Path(data_dir), Path(target)
    shutil.copyfile(data_dir / ITEMS, target / ITEMS)
    if (data_dir / IMAGES_DIR).is_dir():
        shutil.copytree(data_dir / IMAGES_DIR, target / IMAGES_DIR, copy_function=link_or_copy)
    if (data_dir / IMAGE_FEATURES).is_file():
        link_or_copy(data_dir / IMAGE_FEATURES, target / IMAGE_FEATURES)


def link_or_copy(source, target) -> None:
    """A hard link to `source` at `target`, or a copy where the file system cannot link."""
    import os
    import shutil

    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
