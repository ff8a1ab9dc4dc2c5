"""The contrastive losses against hand-computed values, including what is masked."""

import math

import pytest
import torch

from smar.core.config import ModelConfig
from smar.model.losses import in_batch_softmax_loss, multitask_loss
from smar.model.two_tower import RetrievalModel
from tests.conftest import SCRATCH_MODEL

EYE = torch.eye(2)
LOG_TWO = torch.tensor(2.0).log()  # logit scale 2


def test_two_pairs_by_hand():
    # logits = 2 * I: each row is softmax([2, 0]) with the positive first
    loss = in_batch_softmax_loss(EYE, EYE, LOG_TWO, item_ids=torch.tensor([0, 1]))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2)))


def test_mismatched_pairs_by_hand():
    items = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # each query's positive is the other axis
    loss = in_batch_softmax_loss(EYE, items, LOG_TWO, item_ids=torch.tensor([0, 1]))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(2)))


def test_duplicate_positive_is_not_a_negative():
    # The same item twice: without masking each row would be softmax([2, 2]) -> log 2.
    items = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    queries = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert in_batch_softmax_loss(queries, items, LOG_TWO, item_ids=torch.tensor([7, 7])).item() == pytest.approx(0.0)
    assert in_batch_softmax_loss(queries, items, LOG_TWO, item_ids=torch.tensor([7, 8])).item() == pytest.approx(
        math.log(2)
    )


def test_other_known_positive_of_the_query_is_masked():
    # Query 0 is also relevant to item 1 (key 0 * 2 + 1): row 0 has no negative left.
    loss = in_batch_softmax_loss(
        EYE,
        EYE,
        LOG_TWO,
        item_ids=torch.tensor([0, 1]),
        query_ids=torch.tensor([0, 1]),
        known_pairs=torch.tensor([1]),
        num_items=2,
    )
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2)) / 2)


def test_hard_negatives_after_the_positives_are_every_querys_negatives():
    # Two pairs and one hard negative each (items 2 and 3): row 0 is softmax over [2, 0, 2 * 0.5, 0].
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.0], [0.0, 0.0]])
    loss = in_batch_softmax_loss(EYE, items, LOG_TWO, item_ids=torch.tensor([0, 1, 2, 3]))
    row_0 = math.log(1 + math.exp(-2) + math.exp(-1) + math.exp(-2))
    row_1 = math.log(1 + math.exp(-2) + math.exp(-2) + math.exp(-2))
    assert loss.item() == pytest.approx((row_0 + row_1) / 2)
    # a hard negative that is the positive of the other pair (or of its own, drawn by chance) is masked as such
    same = in_batch_softmax_loss(EYE, items[[0, 1, 0, 3]], LOG_TWO, item_ids=torch.tensor([0, 1, 0, 3]))
    assert same.item() == pytest.approx((math.log(1 + 2 * math.exp(-2)) + row_1) / 2)


def test_pair_weights_make_a_weighted_mean():
    items = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # row 0: softmax([2, 0]); row 1: softmax([0, 0])
    each = [math.log(1 + math.exp(-2)), math.log(2)]
    weights = torch.tensor([3.0, 1.0])
    loss = in_batch_softmax_loss(EYE, items, LOG_TWO, item_ids=torch.tensor([0, 1]), pair_weights=weights)
    assert loss.item() == pytest.approx((3 * each[0] + each[1]) / 4)


def test_temperature_is_learned_and_clamped_at_scale_100():
    scale = torch.tensor(1000.0).log().requires_grad_()
    loss = in_batch_softmax_loss(EYE, torch.tensor([[0.0, 1.0], [1.0, 0.0]]), scale, item_ids=torch.tensor([0, 1]))
    assert loss.item() == pytest.approx(100.0, rel=1e-4)  # log(1 + e^100) at scale 100, not 1000
    scale = LOG_TWO.clone().requires_grad_()
    in_batch_softmax_loss(EYE, EYE, scale, item_ids=torch.tensor([0, 1])).backward()
    assert scale.grad is not None and scale.grad.item() < 0  # a sharper softmax would lower this loss


def test_smar_loss_is_alpha_text_plus_beta_image_plus_gamma_fused():
    torch.manual_seed(0)
    model = RetrievalModel(
        ModelConfig(
            kind="smar",
            embedding_dim=8,
            text_hidden_size=8,
            text_heads=2,
            text_layers=1,
            image_size=32,
            fusion_width=8,
            **SCRATCH_MODEL,
        ),
        50,
    )
    queries = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    views = {view: torch.nn.functional.normalize(torch.randn(4, 8), dim=-1) for view in ("text", "image", "multimodal")}
    ids = torch.arange(4)
    total, parts = multitask_loss(
        model, queries, views, ids, ids, None, 4, {"text": 0.5, "image": 2.0, "multimodal": 3.0}
    )
    assert set(parts) == {"text", "image", "multimodal"}
    for view, part in parts.items():
        assert part.item() == pytest.approx(
            in_batch_softmax_loss(queries, views[view], model.logit_scales[view], ids).item()
        )
    assert total.item() == pytest.approx(
        0.5 * parts["text"].item() + 2.0 * parts["image"].item() + 3.0 * parts["multimodal"].item()
    )


def _loss_on_rank(rank: int, world_size: int, port: int, queries, items, item_ids, results) -> None:
    import os

    import torch.distributed as dist

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        share = slice(rank * len(queries) // world_size, (rank + 1) * len(queries) // world_size)
        loss = in_batch_softmax_loss(queries[share], items[share], LOG_TWO, item_ids[share])
        results.put((rank, loss.item()))
    finally:
        dist.destroy_process_group()


def test_two_ranks_gather_negatives_and_match_one_process():
    import socket

    import torch.multiprocessing as mp

    torch.manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(8, 4), dim=-1)
    items = torch.nn.functional.normalize(torch.randn(8, 4), dim=-1)
    item_ids = torch.tensor([0, 1, 2, 3, 4, 5, 6, 1])  # item 1 on both ranks: masked across ranks too
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("spawn")
    results = context.Queue()
    mp.start_processes(_loss_on_rank, args=(2, port, queries, items, item_ids, results), nprocs=2, start_method="spawn")
    per_rank = dict(results.get(timeout=60) for _ in range(2))
    single = in_batch_softmax_loss(queries, items, LOG_TWO, item_ids)
    assert (per_rank[0] + per_rank[1]) / 2 == pytest.approx(single.item(), rel=1e-5)
