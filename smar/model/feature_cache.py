"""Outputs of the frozen pretrained encoders, computed once and reused by every epoch, run and export.

With `model.pretrained: frozen`, MiniLM and the ImageNet backbone never change, so what they
compute for a catalog is a function of its texts and images alone. It is computed once into
`outputs/cache/`:

- `text-<name>-<key>/`: `states.npy` float16 [N, L, H] (the BERT's last hidden states, padded
  to `max_text_length`) and `mask.npy` bool [N, L], for a list of texts (the item texts, the
  training queries);
- `image-<key>.npy`: float16 [N, T, C], the backbone's patch tokens for every item image.

The key hashes the inputs (the texts, or the decoded-image cache's name, itself a hash of the
catalog's images) AND the encoder: its weights, and for text the tokenizer and length. A
changed catalog, model or setting gets a new cache and never reads an old one. Each cache is
written under a temporary name and renamed into place when complete, so a crash never leaves
a half-written cache; a new cache of the same name replaces the older ones.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path

log = logging.getLogger(__name__)

STATES, MASK = "states.npy", "mask.npy"


def text_inputs(encoder, tokenizer, texts: list[str], max_length: int, cache_dir: Path, name: str) -> dict:
    """A text tower's inputs for `texts`: the frozen encoder's cached states, or token ids."""
    if not encoder.frozen:
        from smar.model.tokenizer import tokenize

        return tokenize(tokenizer, texts)
    states, mask = text_states(encoder, tokenizer, texts, max_length, cache_dir, name)
    return {"states": states, "attention_mask": mask}


def item_images(model, data_dir: Path, cache_dir: Path):
    """The image tower's input for every item, memory-mapped: the frozen backbone's cached
    features, the dataset's own features, or decoded pixels; None for a model without images."""
    from smar.data.image_cache import image_store

    if model.image_encoder is None:
        return None
    store = image_store(data_dir, cache_dir, model.config.image_size)
    return image_features(model.image_encoder, store, cache_dir) if model.image_encoder.frozen else store


def weights_fingerprint(module) -> str:
    """A hash of a module's class and every tensor in its state dict (names, shapes, bytes)."""
    import torch

    digest = hashlib.sha256(type(module).__name__.encode())
    for name, tensor in module.state_dict().items():
        value = tensor.detach().cpu().contiguous().view(-1)
        digest.update(f"{name}\0{tuple(tensor.shape)}\0{tensor.dtype}\0".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def text_states(
    encoder, tokenizer, texts: list[str], max_length: int, cache_dir: Path, name: str, batch_size: int = 256
):
    """(states float16 [N, L, H], mask bool [N, L]) of the frozen text `encoder` for `texts`,
    memory-mapped from the cache (computed on the encoder's device when missing)."""
    import numpy as np

    digest = hashlib.sha256(f"{weights_fingerprint(encoder.bert)}\0{tokenizer.to_str()}\0{max_length}\0".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    directory = Path(cache_dir) / f"text-{name}-{digest.hexdigest()[:16]}"
    if not directory.is_dir():
        _build_text(encoder, tokenizer, texts, max_length, directory, batch_size)
    return np.load(directory / STATES, mmap_mode="r"), np.load(directory / MASK, mmap_mode="r")


def image_features(encoder, pixels, cache_dir: Path, batch_size: int = 256):
    """float16 [N, T, C]: the frozen backbone's patch tokens for every row of the decoded-image
    cache `pixels` (uint8 [N, 3, H, W], memory-mapped), memory-mapped from the cache."""
    import numpy as np

    source = Path(getattr(pixels, "filename", "") or "").name
    if not source:
        raise ValueError(
            "image_features needs the memory-mapped decoded-image cache (smar.data.image_cache.image_store)"
        )
    key = hashlib.sha256(f"{weights_fingerprint(encoder.backbone)}\0{source}\0".encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"image-{key}.npy"
    if not path.is_file():
        _build_image(encoder, pixels, path, batch_size)
    return np.load(path, mmap_mode="r")


def _build_text(encoder, tokenizer, texts, max_length: int, directory: Path, batch_size: int) -> None:
    import numpy as np
    import torch

    started, device = time.perf_counter(), next(encoder.bert.parameters()).device
    scratch = _scratch(directory)
    scratch.mkdir(parents=True)
    try:
        states = np.lib.format.open_memmap(
            scratch / STATES,
            mode="w+",
            dtype=np.float16,
            shape=(len(texts), max_length, encoder.bert.config.hidden_size),
        )
        mask = np.lib.format.open_memmap(scratch / MASK, mode="w+", dtype=np.bool_, shape=(len(texts), max_length))
        for start in range(0, len(texts), batch_size):
            encodings = tokenizer.encode_batch(list(texts[start : start + batch_size]))
            ids = np.zeros((len(encodings), max_length), dtype=np.int64)
            attention = np.zeros((len(encodings), max_length), dtype=np.int64)
            for row, encoding in enumerate(encodings):
                length = min(len(encoding.ids), max_length)
                ids[row, :length], attention[row, :length] = encoding.ids[:length], encoding.attention_mask[:length]
            with torch.inference_mode():
                batch = encoder.states(torch.from_numpy(ids).to(device), torch.from_numpy(attention).to(device))
            states[start : start + len(encodings)] = batch.float().cpu().numpy().astype(np.float16)
            mask[start : start + len(encodings)] = attention.astype(bool)
            _progress(f"text cache {directory.name}", start + len(encodings), len(texts), batch_size)
        states.flush()
        mask.flush()
        del states, mask
        _publish(scratch, directory)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("text cache: %d texts in %.1f s -> %s", len(texts), time.perf_counter() - started, directory)


def _build_image(encoder, pixels, path: Path, batch_size: int) -> None:
    import numpy as np
    import torch

    started, device = time.perf_counter(), next(encoder.backbone.parameters()).device
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        features = None
        for start in range(0, len(pixels), batch_size):
            batch = torch.from_numpy(np.array(pixels[start : start + batch_size])).to(device)
            with torch.inference_mode():
                tokens = encoder.patches(batch).float().cpu().numpy()
            if features is None:
                features = np.lib.format.open_memmap(
                    scratch, mode="w+", dtype=np.float16, shape=(len(pixels), *tokens.shape[1:])
                )
            features[start : start + len(tokens)] = tokens.astype(np.float16)
            _progress(f"image cache {path.name}", start + len(tokens), len(pixels), batch_size)
        features.flush()
        del features
        for stale in path.parent.glob("image-*.npy"):  # older catalogs' or models' features
            stale.unlink(missing_ok=True)
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
    log.info("image cache: %d images in %.1f s -> %s", len(pixels), time.perf_counter() - started, path)


def _scratch(directory: Path) -> Path:
    return directory.with_name(f".{directory.name}.{os.getpid()}.tmp")


def _publish(scratch: Path, directory: Path) -> None:
    """Rename the finished cache into place; older caches of the same name (text-<name>-*) go."""
    prefix = directory.name.rsplit("-", 1)[0]
    for stale in directory.parent.glob(f"{prefix}-*"):
        if stale.is_dir() and stale != directory:
            shutil.rmtree(stale, ignore_errors=True)
    try:
        os.replace(scratch, directory)
    except OSError:  # another process published the same cache first: theirs is identical
        if not directory.is_dir():
            raise


def _progress(what: str, done: int, total: int, batch_size: int) -> None:
    step = max(batch_size, total // 10)
    if done == total or done // step != (done - batch_size) // step:
        log.info("%s: %d/%d", what, done, total)
