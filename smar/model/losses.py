"""Stage 1's losses: one in-batch softmax (InfoNCE) per trained item view, weighted alpha/beta/gamma."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from smar.model.two_tower import RetrievalModel


def in_batch_softmax_loss(
    query_vectors, item_vectors, logit_scale, item_ids, query_ids=None, known_pairs=None, num_items=0
):
    """InfoNCE over in-batch negatives: row i's positive is item i, every other item a negative.

    Columns that are not negatives are masked out: the same item id as the positive (a
    duplicate in the batch) and, given `known_pairs` (sorted query_id * num_items + item_id
    keys), any other known positive of the query. Under torch.distributed the items of every
    rank are gathered (with gradients) as extra negatives; one process gives the same result
    as before.
    """
    all_items, all_item_ids, offset = _gather_items(item_vectors, item_ids)
    scale = logit_scale.clamp(max=torch.tensor(100.0).log()).exp()
    logits = scale * query_vectors.float() @ all_items.float().T
    targets = offset + torch.arange(len(logits), device=logits.device)
    not_negative = item_ids[:, None] == all_item_ids[None, :]
    if known_pairs is not None:
        not_negative |= _known(query_ids[:, None] * num_items + all_item_ids[None, :], known_pairs)
    not_negative[torch.arange(len(logits)), targets] = False
    return F.cross_entropy(logits.masked_fill(not_negative, float("-inf")), targets)


def multitask_loss(
    model: RetrievalModel, query_vectors, item_vectors: dict, item_ids, query_ids, known_pairs, num_items, weights: dict
):
    """Stage 1: the weighted sum of one InfoNCE loss per trained item view (alpha L_t + beta L_i + gamma L_m)."""
    parts = {
        view: in_batch_softmax_loss(
            query_vectors, item_vectors[view], model.logit_scales[view], item_ids, query_ids, known_pairs, num_items
        )
        for view in model.spec.losses
    }
    return sum(weights[view] * part for view, part in parts.items()), parts


def _known(keys: torch.Tensor, known_pairs: torch.Tensor) -> torch.Tensor:
    """Which `keys` are in the sorted `known_pairs`: a binary search each, O(B^2 log P) (torch.isin
    sorts all P pairs on every call, which at 100k training queries costs more than the step)."""
    if not len(known_pairs):
        return torch.zeros_like(keys, dtype=torch.bool)
    found = torch.searchsorted(known_pairs, keys).clamp(max=len(known_pairs) - 1)
    return known_pairs[found] == keys


def _gather_items(item_vectors: torch.Tensor, item_ids: torch.Tensor):
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return item_vectors, item_ids, 0
    from torch.distributed.nn.functional import all_gather

    ids = [torch.empty_like(item_ids) for _ in range(dist.get_world_size())]
    dist.all_gather(ids, item_ids)
    return torch.cat(all_gather(item_vectors)), torch.cat(ids), dist.get_rank() * len(item_vectors)
