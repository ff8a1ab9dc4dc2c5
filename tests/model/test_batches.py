"""Hard negatives drawn from the catalog's structure: siblings only, never the item itself,
every sibling in turn, and the same draw however the pairs are split into batches."""

import collections

import pandas as pd
import pytest
import torch

from smar.training.negatives import Siblings

FAMILIES = pd.Series(["a", "b", "a", None, "a", "b", "c"])  # rows 0, 2, 4 and 1, 5 are families; 3, 6 alone


def test_a_sibling_is_drawn_from_the_family_and_never_the_item_itself():
    siblings = Siblings.of(FAMILIES)
    pairs = torch.arange(600)
    items = torch.tensor([0, 1, 2, 4, 5, 3]).repeat(100)
    drawn = siblings.draw(None, items, pairs, epoch=1)
    counts = {item: collections.Counter(drawn[items == item].tolist()) for item in (0, 1, 2, 4, 5)}
    assert counts[1].keys() == {5} and counts[5].keys() == {1}
    for item, others in ((0, {2, 4}), (2, {0, 4}), (4, {0, 2})):
        assert counts[item].keys() == others and min(counts[item].values()) > 30  # both, about evenly
    alone = drawn[items == 3]  # no family (a missing value): any catalog item, so the batch keeps its shape
    assert len(alone) == 100 and len(set(alone.tolist())) > 3 and alone.max() < len(FAMILIES)


def test_the_draw_depends_on_the_pair_and_the_epoch_not_the_batch():
    siblings = Siblings.of(pd.Series(["x"] * 50))
    pairs, items = torch.arange(40), torch.arange(40)
    whole = siblings.draw(None, items, pairs, epoch=3)
    halves = torch.cat([siblings.draw(None, items[:13], pairs[:13], 3), siblings.draw(None, items[13:], pairs[13:], 3)])
    assert torch.equal(whole, halves)  # what two ranks or two micro-batches draw is what one process draws
    assert not torch.equal(whole, siblings.draw(None, items, pairs, epoch=4))  # a new epoch, new negatives
    assert not (whole == items).any()


@pytest.fixture(scope="module")
def prepared(tiny_data, tiny_params, tmp_path_factory):
    """Training's own preparation of the tiny catalog with mined hard negatives: (config, model, data)."""
    from smar.core.config import load_config
    from smar.core.paths import Paths
    from smar.pipeline import steps
    from smar.training.distributed import Cluster
    from smar.training.loop import prepare

    config = load_config(tiny_params)
    config = config.model_copy(update={"train": config.train.model_copy(update={"hard_negatives": "mined"})})
    paths = Paths(tiny_data, tmp_path_factory.mktemp("mined") / "outputs")
    steps.validate(config, paths)
    steps.featurize(config, paths)
    torch.manual_seed(0)
    return (config, *prepare(config, paths, Cluster.start("cpu", config.train.batch_size)))


def test_mined_negatives_are_the_models_best_items_that_are_not_positives(prepared):
    """Each query's mined items are its top results under the model as it is, known positives
    left out; a batch draws from them."""
    from smar.data.image_cache import rows_to_tensor
    from smar.model.losses import is_known
    from smar.training.negatives import MINED_DEPTH, Mined

    _, model, data = prepared
    mined, pairs = data.pairs.negatives, data.pairs
    assert isinstance(mined, Mined) and (mined.rows == -1).all()
    mined.mine(model, pairs.query_tokens, data.catalog, data.known_pairs, "multimodal")

    num_items, every_query = len(data.catalog.item_ids), torch.arange(len(mined.rows))
    with torch.inference_mode():
        scores = model.encode_queries(**{k: rows_to_tensor(v, every_query) for k, v in pairs.query_tokens.items()}) @ (
            data.catalog.vectors(model, ["multimodal"])["multimodal"].T
        )
    everything = torch.arange(len(scores))[:, None] * num_items + torch.arange(num_items)[None, :]
    scores = scores.clone().masked_fill(is_known(everything, data.known_pairs), float("-inf"))
    best = scores.topk(MINED_DEPTH).values
    assert (mined.rows >= 0).all()  # the tiny catalog has 20 non-positives for every query
    torch.testing.assert_close(scores.gather(1, mined.rows), best)  # the best non-positives, best first

    batch = pairs[(1, list(range(16)))]
    for query, negative in zip(batch["queries"], batch["negatives"]):
        assert negative in mined.rows[query]
    assert batch["item_inputs"]["states"].shape[0] == 32  # the positives' inputs, then the negatives'


def test_micro_batches_with_hard_negatives_match_one_pass(prepared):
    """Micro-batches put each one's positives, then its negatives, back in the whole batch's order:
    the loss and every gradient are those of one pass."""
    from smar.training.distributed import Cluster
    from smar.training.step import Objective

    config, model, data = prepared
    data.pairs.negatives.mine(model, data.pairs.query_tokens, data.catalog, data.known_pairs, "multimodal")
    batch = data.pairs[(2, list(range(32)))]
    cluster = Cluster.start("cpu", 32)
    results = []
    for micro_batches in (1, 4):
        settings = config.train.model_copy(update={"accumulation_steps": micro_batches})
        model.zero_grad()
        loss, _ = Objective(model, model, data.known_pairs, len(data.catalog.item_ids), settings, cluster)(batch)
        results.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (one_loss, one_grads), (micro_loss, micro_grads) = results
    assert micro_loss == pytest.approx(one_loss, rel=1e-5) and one_grads.keys() == micro_grads.keys()
    for name, grad in one_grads.items():
        torch.testing.assert_close(micro_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)
