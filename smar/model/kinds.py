"""The model kinds: SMAR, its baselines and ablations, as how they fuse and which item views they train and serve."""

from __future__ import annotations

from dataclasses import dataclass

from smar.core.config import ModelConfig


@dataclass(frozen=True)
class KindSpec:
    """How a model kind fuses the item's modalities and which item views it trains and serves."""

    fusion: str | None  # "cross_attention", "mlp", "sum", or None for a single modality
    losses: tuple[str, ...]  # item views aligned to the query, each by its own InfoNCE loss
    serve: str  # the item view that is indexed ("multimodal", "text" or "image")


KINDS = {
    "smar": KindSpec("cross_attention", ("text", "image", "multimodal"), "multimodal"),
    "smar_fused_only": KindSpec("cross_attention", ("multimodal",), "multimodal"),
    "smar_no_xattn": KindSpec("mlp", ("text", "image", "multimodal"), "multimodal"),
    "late_fusion": KindSpec("sum", ("multimodal",), "multimodal"),
    "text_only": KindSpec(None, ("text",), "text"),
    "image_only": KindSpec(None, ("image",), "image"),
}


def served_views(config: ModelConfig) -> tuple[str, ...]:
    """The item views that get an index. Two views: the routing head picks one per query."""
    spec = KINDS[config.kind]
    if config.kind == "smar" and config.adaptive_routing:
        return ("multimodal", "text")
    return (spec.serve,)


def uses_images(config: ModelConfig) -> bool:
    """Whether the model kind has an image tower (else the item side reads text alone)."""
    spec = KINDS[config.kind]
    return spec.fusion is not None or "image" in spec.losses + served_views(config)
