"""Every model kind builds the towers it needs and learns: a few steps on CPU lower its loss."""

import pandas as pd
import pytest
import torch

from smar.core.config import ModelConfig
from smar.core.contract import item_texts
from smar.data.image_cache import image_store, rows_to_tensor
from smar.model.kinds import KINDS, served_views
from smar.model.losses import multitask_loss
from smar.model.tokenizer import tokenize, train_tokenizer
from smar.model.towers import CrossAttentionFusion, MlpFusion, SumFusion
from smar.model.two_tower import RetrievalModel
from tests.conftest import SCRATCH_MODEL

SMALL = SCRATCH_MODEL | {
    "fusion_width": 16,
    "embedding_dim": 16,
    "text_hidden_size": 16,
    "text_layers": 1,
    "text_heads": 2,
    "vocab_size": 300,
    "image_size": 32,
}


@pytest.fixture(scope="module")
def batch(tiny_data, tmp_path_factory):
    items = pd.read_parquet(tiny_data / "items.parquet")
    qrels = pd.read_parquet(tiny_data / "qrels.parquet")
    queries = pd.read_parquet(tiny_data / "queries.parquet").set_index("query_id")
    pairs = qrels[qrels["split"] == "train"].drop_duplicates("item_id").head(24)
    rows = items.set_index("item_id").loc[pairs["item_id"]]
    catalog_rows = pd.Index(items["item_id"]).get_indexer(pairs["item_id"])
    images = rows_to_tensor(image_store(tiny_data, tmp_path_factory.mktemp("cache"), 32), catalog_rows)
    texts = item_texts(rows)
    query_texts = queries.loc[pairs["query_id"], "text"].tolist()
    tokenizer = train_tokenizer(texts + query_texts, ModelConfig(**SMALL))
    return {
        "vocab": tokenizer.get_vocab_size(),
        "queries": tokenize(tokenizer, query_texts),
        "items": tokenize(tokenizer, texts) | {"images": images},
        "ids": torch.arange(len(pairs)),
    }


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_kind_trains_with_falling_loss(kind, batch):
    torch.manual_seed(0)
    model = RetrievalModel(ModelConfig(kind=kind, **SMALL), batch["vocab"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    weights = {"text": 1.0, "image": 1.0, "multimodal": 1.0}
    losses = []
    for _ in range(12):
        queries = model.encode_queries(**batch["queries"])
        items = model.encode_items(**batch["items"], views=model.spec.losses)
        loss, _ = multitask_loss(model, queries, items, batch["ids"], batch["ids"], None, len(batch["ids"]), weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize(
    ("kind", "fusion", "losses", "served"),
    [
        ("smar", CrossAttentionFusion, ("text", "image", "multimodal"), ("multimodal", "text")),
        ("smar_fused_only", CrossAttentionFusion, ("multimodal",), ("multimodal",)),
        ("smar_no_xattn", MlpFusion, ("text", "image", "multimodal"), ("multimodal",)),
        ("late_fusion", SumFusion, ("multimodal",), ("multimodal",)),
        ("text_only", type(None), ("text",), ("text",)),
        ("image_only", type(None), ("image",), ("image",)),
    ],
)
def test_kind_has_the_towers_and_losses_it_promises(kind, fusion, losses, served):
    config = ModelConfig(kind=kind, adaptive_routing=kind == "smar", **SMALL)
    model = RetrievalModel(config, 100)
    assert isinstance(model.fusion, fusion)
    assert model.spec.losses == losses and set(model.logit_scales) == set(losses)
    assert served_views(config) == served
    assert (model.image_encoder is None) == (kind == "text_only")
    assert (model.title_encoder is None) == (kind == "image_only")
    assert (model.router is not None) == (kind == "smar")


def test_untrained_routing_head_sends_every_query_to_the_multimodal_index():
    model = RetrievalModel(ModelConfig(kind="smar", adaptive_routing=True, **SMALL), 100)
    assert model.route_to_multimodal(torch.randn(5, 16)).all()
    assert served_views(ModelConfig(kind="smar", adaptive_routing=False, **SMALL)) == ("multimodal",)


def test_routed_queries_are_ranked_in_their_chosen_view_alone(monkeypatch):
    """Split by the head, each query is ranked among its view's items only: as the dense scores through
    the head ranked it, in chunks smaller than the queries and items."""
    import smar.core.topk
    from smar.training.router import served_top_rows

    torch.manual_seed(0)
    model = RetrievalModel(ModelConfig(kind="smar", adaptive_routing=True, **SMALL), 100).eval()
    queries = torch.nn.functional.normalize(torch.randn(300, 16), dim=-1)
    torch.nn.init.normal_(model.router[-1].weight)  # a head that sends half the queries to each view
    with torch.no_grad():
        model.router[-1].bias -= model.router(queries).squeeze(-1).median()
    items = {view: torch.nn.functional.normalize(torch.randn(500, 16), dim=-1) for view in ("multimodal", "text")}
    with torch.no_grad():
        to_multimodal = model.route_to_multimodal(queries)
    assert 0 < to_multimodal.sum() < len(queries)
    dense = torch.where(to_multimodal[:, None], queries @ items["multimodal"].T, queries @ items["text"].T)
    monkeypatch.setattr(smar.core.topk, "QUERY_CHUNK", 64)
    monkeypatch.setattr(smar.core.topk, "ITEM_CHUNK", 128)

    rows = served_top_rows(model, queries, items, 10)

    assert (rows == dense.topk(10, dim=1).indices.numpy()).all()
