"""Splits by groups of items (split_by): whole groups per split, queries follow their items,
cold test queries, and clear errors on a missing or null group column."""

import pandas as pd
import pytest

from smar.core.config import DataConfig, ImportConfig
from smar.core.errors import DatasetError
from smar.data.dataset import load_dataset
from smar.data.importers import import_catalog
from smar.data.splits import assign_splits, group_splits, majority_group, resplit
from smar.data.synth import synthesize
from tests.data.test_importers import MAPPING, make_catalog, table_config


def test_groups_are_split_whole_in_about_the_asked_sizes():
    groups = [f"g{n % 40}" for n in range(4000)]  # 40 groups of 100 items
    splits = group_splits(groups, seed=0, valid_fraction=0.1, test_fraction=0.15)
    assert set(splits) == set(groups) and set(splits.values()) == {"train", "valid", "test"}
    share = {split: sum(100 for s in splits.values() if s == split) / 4000 for split in ("test", "valid")}
    assert 0.15 <= share["test"] <= 0.15 + 100 / 4000 and 0.1 - 100 / 4000 <= share["valid"] <= 0.1 + 100 / 4000
    assert group_splits(groups, 0, 0.1, 0.15) == splits and group_splits(groups, 1, 0.1, 0.15) != splits


def test_a_query_follows_the_group_holding_most_of_its_relevance():
    assert majority_group(["a", "b", "b"], [5, 1, 1]) == "a"
    assert majority_group(["a", "b", "b"], [1, 1, 1]) == "b"
    assert majority_group(["b", "a"], [2, 2]) == "a"  # a tie goes to the smallest name
    items = pd.DataFrame({"item_id": ["i1", "i2", "i3"], "product": ["p1", "p1", "p2"]})
    qrels = pd.DataFrame({"query_id": ["q1", "q1", "q2"], "item_id": ["i1", "i3", "i3"], "label": [3, 1, 1]})
    splits = assign_splits(qrels, items, "product", 0, 0.0, 0.5, "items.parquet")
    product_split = group_splits(["p1", "p1", "p2"], 0, 0.0, 0.5)
    assert splits == {"q1": product_split["p1"], "q2": product_split["p2"]}


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (
            pd.DataFrame({"item_id": ["i1", "i2"], "title": ["a", "b"]}),
            r"split_by 'product' is not an item column; the items have item_id, title",
        ),
        (
            pd.DataFrame({"item_id": ["i1", "i2"], "product": ["p1", None]}),
            r"split_by column 'product' is null for 1 item\(s\), e.g. row=1 item_id=i2",
        ),
    ],
)
def test_a_missing_or_null_group_column_is_named_with_its_rows(items, expected):
    qrels = pd.DataFrame({"query_id": ["q1"], "item_id": ["i1"], "label": [1]})
    with pytest.raises(DatasetError, match=expected) as error:
        assign_splits(qrels, items, "product", 0, 0.1, 0.15, "shop/items.csv")
    assert str(error.value).startswith("shop/items.csv: ") and "Fix:" in str(error.value)


def test_synthetic_catalog_split_by_category_has_only_cold_test_queries(tmp_path):
    data = tmp_path / "data"
    synthesize(DataConfig(num_items=300, num_queries=300, image_size=16, split_by="category"), data)
    dataset = load_dataset(data)
    categories = (
        dataset.qrels.merge(dataset.items[["item_id", "category"]], on="item_id").groupby("split")["category"].agg(set)
    )
    assert not categories["test"] & categories["train"] and not categories["valid"] & categories["train"]
    test_queries = set(dataset.split_queries("test")["query_id"])
    assert test_queries and dataset.cold_queries("test") == test_queries


def test_split_by_query_leaves_few_cold_test_queries(tmp_path):
    data = tmp_path / "data"
    synthesize(DataConfig(num_items=300, num_queries=300, image_size=16, split_by="query"), data)
    dataset = load_dataset(data)
    assert len(dataset.cold_queries("test")) < 0.5 * len(
        dataset.split_queries("test")
    )  # 9 of 45 here; 6 of 449 in the default catalog


def test_import_splits_by_an_item_column(tmp_path):
    paths = make_catalog(tmp_path / "source", num_items=30, num_queries=24)
    manifest = import_catalog(table_config(paths, split_by="category", test_fraction=0.3), tmp_path / "data")
    dataset = load_dataset(tmp_path / "data")
    qrels = dataset.qrels.merge(dataset.items[["item_id", "category"]], on="item_id")
    top = qrels.sort_values("label", ascending=False, kind="stable").drop_duplicates("query_id").set_index("query_id")
    assert (
        top.groupby("category")["split"].nunique() == 1
    ).all()  # each query follows its top item's category (3 clicks of 4)
    assert {"train", "test"} <= set(top["split"])
    assert manifest["source"]["parameters"]["split_by"] == "category"


def test_import_split_by_a_missing_column_fails_and_keeps_the_old_dataset(tmp_path):
    paths = make_catalog(tmp_path / "source")
    import_catalog(table_config(paths), tmp_path / "data")
    before = (tmp_path / "data" / "qrels.parquet").read_bytes()
    with pytest.raises(DatasetError, match=r"items\.csv: split_by 'product' is not an item column"):
        import_catalog(table_config(paths, split_by="product"), tmp_path / "data")
    assert (tmp_path / "data" / "qrels.parquet").read_bytes() == before


def test_import_with_both_a_split_column_and_split_by_is_refused(tmp_path):
    paths = make_catalog(tmp_path / "source")
    frame = pd.read_csv(paths["interactions"]).assign(part="train")
    frame.to_csv(paths["interactions"], index=False)
    mapping = MAPPING | {"interactions": MAPPING["interactions"] | {"split": "part"}}
    config = ImportConfig(format="table", mapping=mapping, split_by="category", **paths)
    with pytest.raises(DatasetError, match=r"has a split column \('part'\) and split_by is 'category'"):
        import_catalog(config, tmp_path / "data")


def test_resplit_copies_the_dataset_with_new_splits(tmp_path):
    data = tmp_path / "data"
    synthesize(DataConfig(num_items=200, num_queries=200, image_size=16, split_by="query"), data)
    manifest = resplit(data, tmp_path / "by-category", "category")
    before, after = load_dataset(data), load_dataset(tmp_path / "by-category")
    pd.testing.assert_frame_equal(before.items, after.items)
    pd.testing.assert_frame_equal(before.qrels.drop(columns="split"), after.qrels.drop(columns="split"))
    assert after.cold_queries("test") == set(after.split_queries("test")["query_id"])
    assert manifest["source"]["split_by"] == "category"
    assert (tmp_path / "by-category" / after.items["image"].iloc[0]).is_file()
