"""The query slices every comparison is reported on: all queries, the cold ones, and the kinds
of query a shopper writes (naming a brand, a colour or pattern, a material, only a category),
with the colour and pattern queries split by whether the relevant item's title states the look
or only its image shows it. The kinds come from the query attributes a catalog records
(`brand`, `colour`, `pattern`, `material` columns of queries.parquet; the synthetic catalogs
have them); a catalog without them has the overall and cold slices only.
"""

from __future__ import annotations

OVERALL, COLD = "overall", "cold"


def query_slices(dataset, split: str) -> dict[str, dict[str, dict[str, int]]]:
    """{slice name: {query_id: {item_id: label}}}, every slice of `split` that has queries."""
    import pandas as pd

    relevant = dataset.relevant_items(split)
    cold = dataset.cold_queries(split)
    slices = {OVERALL: relevant, COLD: {q: items for q, items in relevant.items() if q in cold}}
    queries = dataset.queries.set_index("query_id")
    named = {
        column: queries[column].notna() for column in ("brand", "colour", "pattern", "material") if column in queries
    }
    if named:
        look = named.get("colour", False) | named.get("pattern", False)
        kinds = {
            "names a brand": named.get("brand"),
            "names a colour or pattern": look,
            "names a material": named.get("material"),
        }
        kinds["names only a category"] = ~pd.concat(list(named.values()), axis=1).any(axis=1)
        for name, mask in kinds.items():
            if mask is not None:
                slices[name] = {q: items for q, items in relevant.items() if bool(mask.get(q, False))}
        if "title_states_look" in dataset.items:
            states_look = dict(zip(dataset.items["item_id"], dataset.items["title_states_look"]))
            for name, stated in {"look in title": True, "look only in image": False}.items():
                subsets = {
                    q: {i: label for i, label in relevant[q].items() if states_look[i] == stated}
                    for q in slices["names a colour or pattern"]
                }
                slices[name] = {q: subset for q, subset in subsets.items() if subset}
    return {name: relevant for name, relevant in slices.items() if relevant}
