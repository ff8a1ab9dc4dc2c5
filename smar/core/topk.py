"""The k best items of each query by inner product, in memory bounded by the chunk sizes.

Items are scored a chunk at a time against a chunk of queries, and each item chunk's top k is
merged into the running top k, so one step holds at most `query_chunk x item_chunk` scores
whatever the catalog and query counts (1M items x 100k queries as one dense matrix is 400 GB).
Training's validation and routing head, the index's tuning and evaluation's exact search all
rank through `top_k`.

PyTorch scores the chunks: it gives the very scores of a dense `queries @ items.T`, so rankings
are the dense ones, and items with equal vectors score exactly equal. FAISS's flat search over the
same chunks is about 25% faster on idle cores but rounds one pair of equal vectors in five apart
(benchmarks/results/chunked-topk.md, docs/scale.md).
"""

from __future__ import annotations

QUERY_CHUNK = 1024  # queries scored at a time
ITEM_CHUNK = 4096  # items scored at a time: with QUERY_CHUNK, 16 MiB of float32 scores per step
ALIGN = 16  # chunk lengths a multiple of this: the matrix product runs 15-25% slower on others (MKL, AVX-512)


def top_k(queries, items, k: int, *, prepare=None, query_chunk: int | None = None, item_chunk: int | None = None):
    """(scores float32, rows int64), numpy arrays of [queries, min(k, items)]: for each query the rows of
    `items` with the highest inner product, best first.

    `queries` [Q, D] and `items` [N, D] are numpy arrays (memory-mapped too) or tensors, scored on
    the queries' device. `prepare` maps each item chunk before scoring (L2 normalisation, say), so a
    catalog is never copied whole. Chunk sizes default to QUERY_CHUNK and ITEM_CHUNK. Equal scores
    come lower row first, as a stable sort of all the scores ranks them, whatever the chunks.
    """
    import numpy as np
    import torch

    query_chunk, item_chunk = query_chunk or QUERY_CHUNK, item_chunk or ITEM_CHUNK
    k = min(k, len(items))
    if not len(queries) or not k:
        return np.empty((len(queries), k), dtype=np.float32), np.empty((len(queries), k), dtype=np.int64)
    queries, scores, rows = _float_tensor(queries), None, None
    with torch.inference_mode():
        for item_start, item_stop in balanced_spans(len(items), item_chunk):
            chunk = items[item_start:item_stop]
            chunk = _float_tensor(prepare(chunk) if prepare else chunk).to(queries.device)
            found = [
                best_columns(queries[start:stop] @ chunk.T, min(k, len(chunk)))
                for start, stop in balanced_spans(len(queries), query_chunk)
            ]
            chunk_scores, chunk_rows = torch.cat([f[0] for f in found]), torch.cat([f[1] for f in found]) + item_start
            if scores is not None:  # the running best hold lower rows: a stable sort keeps them first among equals
                chunk_scores, chunk_rows = torch.cat([scores, chunk_scores], 1), torch.cat([rows, chunk_rows], 1)
                order = chunk_scores.sort(dim=1, descending=True, stable=True).indices[:, :k]
                chunk_scores, chunk_rows = chunk_scores.gather(1, order), chunk_rows.gather(1, order)
            scores, rows = chunk_scores, chunk_rows
    return scores.cpu().numpy(), rows.cpu().numpy()


def best_columns(scores, k: int):
    """(values, columns) of the k best of each row of `scores`, best first, equal values lower column first."""
    values, columns = scores.topk(min(k + 1, scores.shape[1]), dim=1)  # which equal values it keeps is unspecified
    crowded = values[:, k] == values[:, k - 1] if values.shape[1] > k else None  # the k-th value goes on past k
    values, columns = values[:, :k].contiguous(), columns[:, :k].contiguous()
    if crowded is not None and crowded.any():
        order = scores[crowded].sort(dim=1, descending=True, stable=True).indices[:, :k]
        columns[crowded], values[crowded] = order, scores[crowded].gather(1, order)
    columns, by_column = columns.sort(dim=1)
    values, by_value = values.gather(1, by_column).sort(dim=1, descending=True, stable=True)
    return values, columns.gather(1, by_value)


def balanced_spans(total: int, chunk: int) -> list[tuple[int, int]]:
    """(start, stop) of the fewest spans of at most `chunk` that cover `total`, of near-equal lengths (a
    multiple of ALIGN where `chunk` allows; the last takes the rest), so that no span is a sliver of a few rows."""
    if total <= 0:
        return []
    size = -(-total // -(-total // chunk))
    if chunk >= ALIGN:
        size = min(chunk, -(-size // ALIGN) * ALIGN)
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def _float_tensor(array):
    import numpy as np
    import torch

    if isinstance(array, torch.Tensor):
        return array.float()
    return torch.from_numpy(np.array(array, dtype=np.float32))  # a copy: memory-mapped arrays are read-only
