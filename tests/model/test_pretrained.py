"""The packaged pretrained weights load offline and compute what their originals compute."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from smar.model import pretrained


def _images(size: int = 224) -> torch.Tensor:
    """Four deterministic uint8 [4, 3, size, size] images: gradients, shapes, stripes, noise."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    arrays = [
        np.stack(
            [ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1), 255 - ramp[None, :].repeat(size, 0)], -1
        )
    ]
    canvas = Image.new("RGB", (size, size), (240, 235, 220))
    draw = ImageDraw.Draw(canvas)
    draw.ellipse((40, 50, 180, 190), fill=(200, 30, 40))
    draw.rectangle((90, 20, 200, 110), fill=(20, 90, 200))
    arrays.append(np.asarray(canvas, dtype=np.float32))
    stripes = (np.arange(size)[:, None] // 16 % 2) * np.array([230.0, 200.0, 40.0]) + 10.0
    arrays.append(np.broadcast_to(stripes[:, None, :], (size, size, 3)))
    arrays.append(rng.integers(0, 256, (size, size, 3)).astype(np.float32))
    stacked = np.stack(arrays).clip(0, 255).astype(np.uint8)
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return _images()


def test_efficientnet_lite0_matches_the_original_port(images):
    from efficientnet_lite_pytorch import EfficientNet

    original = EfficientNet.from_name("efficientnet-lite0")
    original.load_state_dict(torch.load(pretrained.lite0_weights_path(), map_location="cpu", weights_only=True))
    original.eval()
    ours = pretrained.efficientnet_lite0()
    assert not ours.training

    pixels = pretrained.lite0_pixels(images)
    assert pixels.dtype == torch.float32 and pixels.shape == (4, 3, 224, 224)
    assert pixels.min() >= -127 / 128 and pixels.max() <= 128 / 128
    with torch.no_grad():
        expected, actual = original(pixels), ours(pixels)
    assert actual.shape == (4, 1000)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    assert torch.equal(actual.argmax(1), expected.argmax(1))


def test_efficientnet_lite0_without_classifier_gives_features(images):
    model = pretrained.efficientnet_lite0(num_classes=0)
    with torch.no_grad():
        features = model(pretrained.lite0_pixels(images))
        feature_map = model.forward_features(pretrained.lite0_pixels(images))
    assert features.shape == (4, 1280) and torch.isfinite(features).all()
    assert feature_map.shape == (4, 1280, 7, 7)
    assert features.std(0).mean() > 0  # different images, different features


def _embed(bert, tokenizer, texts: list[str]) -> torch.Tensor:
    """all-MiniLM-L6-v2 sentence embeddings: attention-masked mean of the last hidden state, L2-normalised."""
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    encodings = tokenizer.encode_batch(texts)
    ids = torch.tensor([e.ids for e in encodings])
    mask = torch.tensor([e.attention_mask for e in encodings])
    with torch.no_grad():
        tokens = bert(input_ids=ids, attention_mask=mask).last_hidden_state
    weights = mask.unsqueeze(-1).float()
    return torch.nn.functional.normalize((tokens * weights).sum(1) / weights.sum(1), dim=-1)


def test_minilm_loads_offline_and_embeds_meaningfully():
    tokenizer, bert = pretrained.minilm_tokenizer(), pretrained.minilm_bert()
    assert (pretrained.minilm_dir() / "model.safetensors").is_file()
    assert bert.config.hidden_size == 384 and not bert.training
    assert tokenizer.get_vocab_size() == 30522
    assert [tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 100, 101, 102, 103]
    assert tokenizer.encode("red striped ceramic mug").tokens[0] == "[CLS]"
    assert len(tokenizer.encode("mug").ids) == 3  # no fixed-length padding from tokenizer.json

    mug, cup, bicycle = _embed(bert, tokenizer, ["red striped ceramic mug", "ceramic coffee cup", "mountain bicycle"])
    assert mug.shape == (384,) and torch.isfinite(mug).all()
    assert mug @ cup > mug @ bicycle + 0.1
