"""Hard negatives drawn from the catalog's structure: siblings only, never the item itself,
every sibling in turn, and the same draw however the pairs are split into batches."""

import collections

import pandas as pd
import torch

from smar.training.batches import Siblings

FAMILIES = pd.Series(["a", "b", "a", None, "a", "b", "c"])  # rows 0, 2, 4 and 1, 5 are families; 3, 6 alone


def test_a_sibling_is_drawn_from_the_family_and_never_the_item_itself():
    siblings = Siblings.of(FAMILIES)
    pairs = torch.arange(600)
    items = torch.tensor([0, 1, 2, 4, 5, 3]).repeat(100)
    drawn = siblings.draw(items, pairs, epoch=1)
    counts = {item: collections.Counter(drawn[items == item].tolist()) for item in (0, 1, 2, 4, 5)}
    assert counts[1].keys() == {5} and counts[5].keys() == {1}
    for item, others in ((0, {2, 4}), (2, {0, 4}), (4, {0, 2})):
        assert counts[item].keys() == others and min(counts[item].values()) > 30  # both, about evenly
    alone = drawn[items == 3]  # no family (a missing value): any catalog item, so the batch keeps its shape
    assert len(alone) == 100 and len(set(alone.tolist())) > 3 and alone.max() < len(FAMILIES)


def test_the_draw_depends_on_the_pair_and_the_epoch_not_the_batch():
    siblings = Siblings.of(pd.Series(["x"] * 50))
    pairs, items = torch.arange(40), torch.arange(40)
    whole = siblings.draw(items, pairs, epoch=3)
    halves = torch.cat([siblings.draw(items[:13], pairs[:13], 3), siblings.draw(items[13:], pairs[13:], 3)])
    assert torch.equal(whole, halves)  # what two ranks or two micro-batches draw is what one process draws
    assert not torch.equal(whole, siblings.draw(items, pairs, epoch=4))  # a new epoch, new negatives
    assert not (whole == items).any()
