"""The default towers: frozen MiniLM and EfficientNet-Lite0 whose outputs are cached, with heads
that start as the identity, so the untrained model is off-the-shelf MiniLM title search."""

import numpy as np
import pytest
import torch

from smar.core.config import ModelConfig
from smar.data.image_cache import image_store
from smar.model import feature_cache
from smar.model.feature_cache import image_features, text_states
from smar.model.tokenizer import tokenize, train_tokenizer
from smar.model.towers import masked_mean, zero_shot_encoder
from smar.model.two_tower import RetrievalModel

TEXTS = ["Acme red striped ceramic mug (small)", "Nordic oak lamp | lamp | Nordic", "blue dotted cotton pillow", "mug"]


@pytest.fixture(scope="module")
def model():
    config = ModelConfig(image_size=32)
    torch.manual_seed(0)
    return RetrievalModel(config, vocab_size=0, pretrained=True).eval(), train_tokenizer([], config)


def zero_shot(texts):
    encoder, tokenizer = zero_shot_encoder(32)
    tokens = tokenize(tokenizer, texts)
    with torch.inference_mode():
        return torch.nn.functional.normalize(masked_mean(encoder.states(**tokens), tokens["attention_mask"]), dim=-1)


def test_untrained_towers_are_off_the_shelf_minilm(model, tiny_data):
    model, tokenizer = model
    tokens = tokenize(tokenizer, TEXTS)
    images = torch.from_numpy(np.array(image_store(tiny_data, tiny_data.parent / "cache-frozen", 32)[: len(TEXTS)]))
    with torch.inference_mode():
        queries = model.encode_queries(**tokens)
        items = model.encode_items(**tokens, images=images)
    expected = zero_shot(TEXTS)
    torch.testing.assert_close(queries, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(items["text"], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        items["multimodal"], expected, atol=1e-5, rtol=0
    )  # the fusion adds nothing until trained


def test_frozen_encoders_keep_their_weights_and_stay_in_eval_mode(model, tiny_data):
    model, tokenizer = model
    frozen = [model.query_encoder.bert, model.image_encoder.backbone]
    assert all(not p.requires_grad for module in frozen for p in module.parameters())
    before = [p.detach().clone() for module in frozen for p in module.parameters()]
    model.train()
    assert not model.query_encoder.bert.training and not model.image_encoder.backbone.training
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    tokens = tokenize(tokenizer, TEXTS)
    images = torch.from_numpy(np.array(image_store(tiny_data, tiny_data.parent / "cache-frozen", 32)[: len(TEXTS)]))
    vectors = model.encode_items(**tokens, images=images)
    loss = sum((vector @ model.encode_queries(**tokens).T).diagonal().sum() for vector in vectors.values())
    loss.backward()
    optimizer.step()
    after = [p.detach() for module in frozen for p in module.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    model.eval()


def test_cached_states_are_the_encoders_and_are_reused(model, tmp_path, monkeypatch):
    model, tokenizer = model
    states, mask = text_states(model.query_encoder, tokenizer, TEXTS, 32, tmp_path, "items")
    tokens = tokenize(tokenizer, TEXTS)
    with torch.inference_mode():
        direct = model.query_encoder.states(**tokens)
    width = tokens["input_ids"].shape[1]
    np.testing.assert_allclose(states[:, :width], direct.numpy(), atol=2e-3)  # float16 in the cache
    assert mask[:, :width].tolist() == tokens["attention_mask"].bool().tolist() and not mask[:, width:].any()

    monkeypatch.setattr(feature_cache, "_build_text", lambda *args: pytest.fail("the cache was rebuilt"))
    again, _ = text_states(model.query_encoder, tokenizer, TEXTS, 32, tmp_path, "items")
    assert again.filename == states.filename


def test_other_texts_weights_or_length_get_another_cache(model, tmp_path):
    model, tokenizer = model
    first = text_states(model.query_encoder, tokenizer, TEXTS, 32, tmp_path, "items")[0].filename
    other_texts = text_states(model.query_encoder, tokenizer, TEXTS[:-1], 32, tmp_path, "items")[0].filename
    other_length = text_states(model.query_encoder, tokenizer, TEXTS, 16, tmp_path, "items")[0].filename
    encoder, _ = zero_shot_encoder(32)
    with torch.no_grad():
        encoder.bert.embeddings.word_embeddings.weight[0, 0] += 1.0
    other_weights = text_states(encoder, tokenizer, TEXTS, 32, tmp_path, "items")[0].filename
    assert len({first, other_texts, other_length, other_weights}) == 4
    assert [p.name for p in tmp_path.iterdir()] == [other_weights.parent.name]  # a new cache of a name replaces the old


def test_a_crash_while_caching_leaves_no_cache(model, tmp_path):
    model, tokenizer = model

    class Failing:
        frozen, bert = True, model.query_encoder.bert
        calls = 0

        def states(self, input_ids, attention_mask):
            Failing.calls += 1
            if Failing.calls == 2:
                raise RuntimeError("killed mid-way")
            return model.query_encoder.states(input_ids, attention_mask)

    with pytest.raises(RuntimeError, match="killed mid-way"):
        text_states(Failing(), tokenizer, TEXTS * 3, 32, tmp_path, "items", batch_size=4)
    assert list(tmp_path.iterdir()) == []
    states, _ = text_states(model.query_encoder, tokenizer, TEXTS * 3, 32, tmp_path, "items", batch_size=4)
    assert states.shape == (12, 32, 384)


def test_image_features_are_keyed_by_catalog_and_backbone(model, tiny_data, tmp_path):
    model, _ = model
    pixels = image_store(tiny_data, tmp_path, 32)
    features = image_features(model.image_encoder, pixels, tmp_path)
    with torch.inference_mode():
        direct = model.image_encoder.patches(torch.from_numpy(np.array(pixels[:8])))
    np.testing.assert_allclose(features[:8], direct.numpy(), atol=2e-2, rtol=1e-2)
    assert features.shape[0] == len(pixels)
    other = RetrievalModel(
        ModelConfig(image_size=32), vocab_size=0, pretrained=False
    )  # same architecture, other weights
    assert image_features(other.image_encoder, pixels, tmp_path).filename != features.filename
