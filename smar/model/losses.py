"""Stage 1's losses: one in-batch softmax (InfoNCE) per trained item view, weighted alpha/beta/gamma."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from smar.model.two_tower import RetrievalModel

# A colour variant's title is often its sibling's word for word: the text view cannot tell the two
# apart, so hard negatives are scored in the views that see the image.
HARD_NEGATIVE_VIEWS = ("image", "multimodal")


def in_batch_softmax_loss(
    query_vectors,
    item_vectors,
    logit_scale,
    item_ids,
    query_ids=None,
    known_pairs=None,
    num_items=0,
    pair_weights=None,
):
    """InfoNCE over in-batch negatives: row i's positive is item i, every other item a negative.

    `item_vectors` may hold more items than there are queries (hard negatives after the
    positives): they are negatives of every query. Columns that are not negatives are masked
    out: the same item id as the positive (a duplicate in the batch) and, given `known_pairs`
    (sorted query_id * num_items + item_id keys), any other known positive of the query.
    `pair_weights` weigh each row's loss (a weighted mean). Under torch.distributed the items of
    every rank are gathered (with gradients) as extra negatives; one process gives the same
    result as before.
    """
    all_items, all_item_ids, offset = _gather_items(item_vectors, item_ids)
    scale = logit_scale.clamp(max=torch.tensor(100.0).log()).exp()
    logits = scale * query_vectors.float() @ all_items.float().T
    targets = offset + torch.arange(len(logits), device=logits.device)
    not_negative = item_ids[: len(logits), None] == all_item_ids[None, :]
    if known_pairs is not None:
        not_negative |= is_known(query_ids[:, None] * num_items + all_item_ids[None, :], known_pairs)
    not_negative[torch.arange(len(logits)), targets] = False
    losses = F.cross_entropy(logits.masked_fill(not_negative, float("-inf")), targets, reduction="none")
    if pair_weights is None:
        return losses.mean()
    return (losses * pair_weights).sum() / pair_weights.sum()


def multitask_loss(
    model: RetrievalModel,
    query_vectors,
    item_vectors: dict,
    item_ids,
    query_ids,
    known_pairs,
    num_items,
    weights: dict,
    pair_weights=None,
):
    """Stage 1: the weighted sum of one InfoNCE loss per trained item view (alpha L_t + beta L_i + gamma L_m).
    Hard negatives (the items after the positives) count in the views that can tell them apart."""
    pairs = len(query_vectors)
    parts = {}
    for view in model.spec.losses:
        end = None if view in HARD_NEGATIVE_VIEWS else pairs
        parts[view] = in_batch_softmax_loss(
            query_vectors,
            item_vectors[view][:end],
            model.logit_scales[view],
            item_ids[:end],
            query_ids,
            known_pairs,
            num_items,
            pair_weights,
        )
    return sum(weights[view] * part for view, part in parts.items()), parts


def is_known(keys: torch.Tensor, known_pairs: torch.Tensor) -> torch.Tensor:
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
