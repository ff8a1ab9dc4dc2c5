"""The data contract: what a dataset directory holds. Every reader and writer imports these names.

items.parquet     item_id, title, category, brand (nullable), image (path relative to the
                  dataset, or null when the dataset ships image_features.npy), any attributes;
                  optional: image_url (an http(s) URL of the item's picture, for the search page)
queries.parquet   query_id, text
qrels.parquet     query_id, item_id, label (relevance grade >= 1), split (train/valid/test)
dataset.json      name, version, source and counts (valid JSON)
images/           the image files items.parquet names
image_features.npy  optional: float32 [num_items, F] or [num_items, T, F], items.parquet order
"""

from __future__ import annotations

ITEMS, QUERIES, QRELS = "items.parquet", "queries.parquet", "qrels.parquet"
MANIFEST = "dataset.json"
IMAGES_DIR = "images"
IMAGE_FEATURES = "image_features.npy"  # optional: precomputed image features instead of image files

COLUMNS = {
    ITEMS: ("item_id", "title", "category", "brand", "image"),
    QUERIES: ("query_id", "text"),
    QRELS: ("query_id", "item_id", "label", "split"),
}
IMAGE_URL = "image_url"  # optional items column: the search page links to it instead of a thumbnail
ITEM_TEXT_COLUMNS = ("title", "category", "brand")
SPLITS = ("train", "valid", "test")


def item_text(title: str, category: str | None, brand: str | None) -> str:
    """What the item text tower reads: the title plus the catalog's structured fields."""
    return " | ".join(part for part in (title, category, brand) if isinstance(part, str) and part)


def item_texts(items) -> list[str]:
    """`item_text` of every row of an items frame (or any mapping of the ITEM_TEXT_COLUMNS to lists)."""
    return [item_text(*row) for row in zip(*(items[column] for column in ITEM_TEXT_COLUMNS))]


# `smar data import` reads three source tables; each maps onto a contract file's columns.
SOURCE_TABLES = {"items": COLUMNS[ITEMS], "queries": COLUMNS[QUERIES], "interactions": COLUMNS[QRELS]}
OPTIONAL_SOURCE_COLUMNS = {("items", "brand"), ("interactions", "label"), ("interactions", "split")}

EVENTS = ("click", "add_to_cart", "purchase")  # what a shopper does with a search result, weakest first
BY_TIME = "time"  # `smar data from-logs`' split_by: the latest days' queries are the test split

BY_QUERY = "query"  # split_by: each query draws its split (else an item column: whole groups of items per split)
