"""A model's inputs for the whole catalog and its training queries: the frozen encoders' outputs
from `smar featurize` where an encoder is frozen, token ids and pixels where it trains."""

from __future__ import annotations

from smar.core.paths import Paths
from smar.features.step import Features, load_features


def features_for(model, paths: Paths) -> Features | None:
    """The featurize step's output when the model reads any of it (a frozen text or image encoder)."""
    image = model.image_encoder
    if not (model.item_text_encoder.frozen or model.query_encoder.frozen or (image is not None and image.frozen)):
        return None
    return load_features(paths, model.config)


def item_text(model, tokenizer, texts: list[str], features: Features | None):
    """The item text tower's input for every item: the frozen encoder's states, or token ids."""
    from smar.model.tokenizer import tokenize

    return features.item_text if model.item_text_encoder.frozen else tokenize(tokenizer, texts)


def item_images(model, paths: Paths, features: Features | None):
    """The image tower's input for every item: the frozen backbone's features, the dataset's own
    features, or decoded pixels (memory-mapped); None for a model without images."""
    from smar.data.image_cache import image_store

    if model.image_encoder is None:
        return None
    if model.image_encoder.frozen:
        return features.item_image
    return image_store(paths.data, paths.cache_dir, model.config.image_size)


def training_queries(model, tokenizer, texts: list[str], features: Features | None) -> dict:
    """The query tower's input for the training queries: the frozen encoder's pooled vectors, or token ids."""
    from smar.model.tokenizer import tokenize

    return {"pooled": features.queries} if model.query_encoder.frozen else tokenize(tokenizer, texts)
