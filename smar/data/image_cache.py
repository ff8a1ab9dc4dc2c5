"""Decoded item images, cached once per catalog and image size, for every epoch, run and step.

Decoding and resizing thousands of PNG or JPEG files costs more than the model's own work on
small images, so training and export never do it per batch. `image_store` returns a uint8
array [N, 3, size, size] in items.parquet row order, memory-mapped from
`outputs/cache/images-<size>px-<key>.npy`. The key hashes items.parquet and the size and
modification time of every image, so a changed catalog or image file gets a new cache (and
the old one for that size is removed). The cache is built by a pool of threads (Pillow
decodes and resizes without holding the GIL) and appears under its name only when complete:
a killed build leaves no half-written cache.

A dataset that ships precomputed image features (`image_features.npy`) is its own store.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

from smar.core.contract import ITEMS

log = logging.getLogger(__name__)

CHUNK = 256  # images decoded per thread job


def image_store(data_dir: str | Path, cache_dir: str | Path, size: int):
    """The image tower's input for every item, memory-mapped: the dataset's precomputed features
    (float32 [N, F] or [N, T, F]) when it has them, else cached decoded pixels (uint8 [N, 3, size, size])."""
    from smar.core.contract import IMAGE_FEATURES
    from smar.data.dataset import load_image_features

    data_dir = Path(data_dir)
    if (data_dir / IMAGE_FEATURES).is_file():
        return load_image_features(data_dir)
    return cached_pixels(data_dir, Path(cache_dir), size)


def cached_pixels(data_dir: Path, cache_dir: Path, size: int):
    import numpy as np
    import pandas as pd

    paths = [data_dir / p for p in pd.read_parquet(data_dir / ITEMS, columns=["image"])["image"]]
    cache = cache_dir / f"images-{size}px-{catalog_key(data_dir, paths, size)}.npy"
    if not cache.is_file():
        build_cache(paths, size, cache)
    return np.load(cache, mmap_mode="r")


def catalog_key(data_dir: Path, image_paths: list[Path], size: int) -> str:
    """Changes when items.parquet, any image file (size or mtime) or the pixel size changes."""
    digest = hashlib.sha256(f"{size}\n".encode())
    digest.update((data_dir / ITEMS).read_bytes())
    for path in image_paths:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def build_cache(image_paths: list[Path], size: int, cache: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    started = time.perf_counter()
    cache.parent.mkdir(parents=True, exist_ok=True)
    for stale in cache.parent.glob(f"images-{size}px-*.npy"):  # an older catalog's cache for this size
        stale.unlink(missing_ok=True)
    scratch = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    try:
        store = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.uint8, shape=(len(image_paths), 3, size, size))
        chunks = [
            (store, start, image_paths[start : start + CHUNK], size) for start in range(0, len(image_paths), CHUNK)
        ]
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            for done, _ in enumerate(pool.map(_decode_chunk, chunks), start=1):
                if done % 50 == 0 or done == len(chunks):
                    log.info("image cache: decoded %d/%d images", min(done * CHUNK, len(image_paths)), len(image_paths))
        store.flush()
        del store
        os.replace(scratch, cache)
    finally:
        scratch.unlink(missing_ok=True)
    log.info(
        "image cache: %d images at %dpx in %.1f s -> %s", len(image_paths), size, time.perf_counter() - started, cache
    )


def _decode_chunk(chunk) -> None:
    store, start, paths, size = chunk
    for row, path in enumerate(paths, start=start):
        store[row] = load_pixels(path, size)


def load_pixels(path: Path, size: int):
    """uint8 [3, size, size]: the image at `path`, decoded at about the model's size and resized.

    A JPEG decodes at the smallest power-of-two scale still at least `size` (Pillow's draft
    mode: a 1000 px photo for a 224 px model decodes at 250 px, several times faster).
    """
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        image.draft("RGB", (size, size))
        return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR)).transpose(2, 0, 1)


def decode_images(paths: list[Path], size: int):
    """uint8 [N, 3, size, size]: `paths` decoded by a pool of threads (Pillow releases the GIL while it decodes)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    pixels = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    chunks = [(pixels, start, paths[start : start + CHUNK], size) for start in range(0, len(paths), CHUNK)]
    with ThreadPoolExecutor(min(len(chunks), os.cpu_count() or 1) or 1) as pool:
        list(pool.map(_decode_chunk, chunks))
    return pixels


def rows_to_tensor(store, rows):
    """Rows of a tensor, or of a (memory-mapped) array as a tensor read in file order: uint8
    pixels and bool masks as they are, floating-point features as float32."""
    import numpy as np
    import torch

    if isinstance(store, torch.Tensor):
        return store[torch.as_tensor(rows)]
    if hasattr(store, "rows"):  # feature shards (smar.features.store)
        return store.rows(rows)
    rows = np.asarray(rows)
    order = np.argsort(rows, kind="stable")  # memory-mapped reads in file order
    chosen = np.empty((len(rows), *store.shape[1:]), dtype=store.dtype)
    chosen[order] = store[rows[order]]
    tensor = torch.from_numpy(chosen)
    return tensor.float() if tensor.is_floating_point() else tensor
