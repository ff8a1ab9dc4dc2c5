"""The chunked top-k (smar.core.topk): the dense ranking, in memory bounded by the chunk sizes."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from smar.core.topk import balanced_spans, top_k

PROJECT = Path(__file__).resolve().parents[2]


def dense_top_k(queries, items, k):
    """The reference: every score at once, ranked best first (lower row first among equal scores)."""
    scores = queries.astype(np.float64) @ items.astype(np.float64).T
    rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, rows, 1), rows


CHUNKS = [(5, 1), (1, 7), (7, 9), (16, 100), (13, 333), (37, 1000), (None, None)]  # below k, not dividing, whole


@pytest.mark.parametrize(("query_chunk", "item_chunk"), CHUNKS)
@pytest.mark.parametrize("as_tensor", [False, True])
def test_chunked_top_k_is_the_dense_ranking(query_chunk, item_chunk, as_tensor):
    rng = np.random.default_rng(0)
    queries, items = rng.normal(size=(37, 16)).astype(np.float32), rng.normal(size=(1000, 16)).astype(np.float32)
    expected_scores, expected_rows = dense_top_k(queries, items, 10)
    inputs = (torch.from_numpy(queries), torch.from_numpy(items)) if as_tensor else (queries, items)

    scores, rows = top_k(*inputs, 10, query_chunk=query_chunk, item_chunk=item_chunk)

    assert rows.dtype == np.int64 and scores.dtype == np.float32 and rows.shape == (37, 10)
    assert (rows == expected_rows).all()
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)


def test_top_k_of_a_catalog_smaller_than_k_and_of_no_queries():
    rng = np.random.default_rng(1)
    queries, items = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(6, 8)).astype(np.float32)
    scores, rows = top_k(queries, items, 10, item_chunk=4)
    assert rows.shape == (5, 6) and (rows == dense_top_k(queries, items, 10)[1]).all()
    assert top_k(queries[:0], items, 10)[1].shape == (0, 6)
    assert top_k(queries, items[:0], 10)[1].shape == (5, 0)


@pytest.mark.parametrize(("query_chunk", "item_chunk"), CHUNKS)
def test_equal_scores_come_lower_row_first_whatever_the_chunks(query_chunk, item_chunk):
    """Small whole numbers: scores are exact, and most of them tie (torch.topk alone orders ties at random)."""
    rng = np.random.default_rng(3)
    queries, items = rng.integers(-1, 2, (37, 4)).astype(np.float32), rng.integers(-1, 2, (1000, 4)).astype(np.float32)
    scores, rows = top_k(queries, items, 10, query_chunk=query_chunk, item_chunk=item_chunk)
    expected_scores, expected_rows = dense_top_k(queries, items, 10)
    assert (rows == expected_rows).all() and (scores == expected_scores).all()


def test_prepare_maps_each_item_chunk_before_scoring():
    rng = np.random.default_rng(2)
    queries, items = rng.normal(size=(9, 8)).astype(np.float32), rng.normal(size=(300, 8)).astype(np.float32)
    unit = items / np.linalg.norm(items, axis=1, keepdims=True)
    chunks = []

    def normalise(chunk):
        chunks.append(len(chunk))
        return chunk / np.linalg.norm(chunk, axis=1, keepdims=True)

    rows = top_k(queries, items, 10, prepare=normalise, item_chunk=64)[1]
    assert (rows == dense_top_k(queries, unit, 10)[1]).all()
    assert chunks == [64] * 4 + [44]  # each chunk once, none a sliver


@pytest.mark.parametrize(
    ("total", "chunk", "lengths"),
    [
        (10, 3, [3, 3, 3, 1]),
        (10, 4, [4, 4, 2]),
        (4097, 4096, [2064, 2033]),  # not 4096 and a sliver of 1
        (300_000, 4096, [4064] * 73 + [3328]),
        (8, 8, [8]),
        (1, 5, [1]),
        (0, 4, []),
    ],
)
def test_balanced_spans_cover_the_total_in_the_fewest_chunks(total, chunk, lengths):
    spans = balanced_spans(total, chunk)
    assert [stop - start for start, stop in spans] == lengths
    assert [start for start, _ in spans] == [0, *(stop for _, stop in spans[:-1])][: len(spans)]  # contiguous


MEASURE = """
import json, re
import numpy as np, torch
from smar.core.topk import top_k

def peak_growth_mib(run):
    open("/proc/self/clear_refs", "w").write("5")  # the peak resident memory starts again from now
    status = lambda: open("/proc/self/status").read()
    now = int(re.search(r"VmRSS:\\s+(\\d+)", status())[1])
    result = run()
    return int(re.search(r"VmHWM:\\s+(\\d+)", status())[1]) / 1024 - now / 1024, result

rng = np.random.default_rng(0)
queries = torch.from_numpy(rng.normal(size=(1000, 8)).astype(np.float32))
items = torch.from_numpy(rng.normal(size=(100_000, 8)).astype(np.float32))
top_k(queries[:300], items[:5000], 10, query_chunk=250, item_chunk=4000)  # the libraries' own buffers, once
chunked, rows = peak_growth_mib(lambda: top_k(queries, items, 10, query_chunk=250, item_chunk=4000)[1])
dense, dense_rows = peak_growth_mib(lambda: (queries @ items.T).topk(10, dim=1).indices.numpy())
print(json.dumps({"chunked": chunked, "dense": dense, "same": bool((rows == dense_rows).all())}))
"""


def test_top_k_memory_is_bounded_by_the_chunks_not_the_catalog():
    """1000 queries x 100k items: the dense scores are 381 MiB, one chunk's 250 x 4000 are 3.8 MiB. The
    process's peak memory grows by under a tenth of the dense matrix, which the same measure does see."""
    environment = os.environ | {
        "PYTHONPATH": str(PROJECT),
        "OMP_NUM_THREADS": "1",
        "MALLOC_MMAP_THRESHOLD_": "65536",  # large blocks go back to the system when freed: the peak is live memory
    }
    measured = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MEASURE)], env=environment, capture_output=True, text=True, check=True
    )
    grown = json.loads(measured.stdout.splitlines()[-1])
    dense_mib = 1000 * 100_000 * 4 / 2**20
    assert grown["dense"] > 0.8 * dense_mib, grown  # the measure sees a dense matrix
    assert grown["chunked"] < dense_mib / 10, grown
    assert grown["same"]
