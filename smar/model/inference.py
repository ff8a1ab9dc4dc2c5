"""Running a model: the device, mixed precision, and query and item vectors in batches."""

from __future__ import annotations

import torch

from smar.model.tokenizer import tokenize
from smar.model.two_tower import RetrievalModel


def resolve_device(requested: str) -> str:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is visible; set train.device to 'auto' or 'cpu'.")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def autocast(device: str, dtype: torch.dtype = torch.bfloat16):
    """Mixed precision on CUDA (bf16 for training, fp16 for export); full precision on CPU."""
    return torch.autocast("cuda", dtype=dtype, enabled=device.startswith("cuda"))


@torch.inference_mode()
def encode_texts(model: RetrievalModel, tokenizer, texts: list[str], batch_size: int = 512) -> torch.Tensor:
    device = next(model.parameters()).device.type
    vectors = []
    for start in range(0, len(texts), batch_size):
        tokens = {k: v.to(device) for k, v in tokenize(tokenizer, texts[start : start + batch_size]).items()}
        with autocast(device):
            vectors.append(model.encode_queries(**tokens).float().cpu())
    return torch.cat(vectors) if vectors else torch.empty(0, model.config.embedding_dim)


@torch.inference_mode()
def encode_item_batch(
    model: RetrievalModel, tokens: dict, images: torch.Tensor | None, views=None
) -> dict[str, torch.Tensor]:
    """Item vectors (float32, on the CPU) for one batch of tokenised texts and images (None for
    a model without an image tower); fp16 on CUDA."""
    device = next(model.parameters()).device.type
    inputs = {k: v.to(device, non_blocking=True) for k, v in tokens.items()}
    inputs["images"] = images.to(device, non_blocking=True) if images is not None else None
    with autocast(device, torch.float16):
        vectors = model.encode_items(**inputs, views=views)
    return {view: vector.float().cpu() for view, vector in vectors.items()}
