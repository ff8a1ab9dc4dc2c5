"""Item thumbnails inside the index directory, so that a serving host needs no dataset.

The index step shrinks each item's image to at most `index.thumbnail_size` pixels a side,
encodes it as JPEG and writes all of them into one file (`IndexFiles.thumbnails`) that travels inside
the registered version with the indexes:

    JPEG bytes, back to back, in id_map.parquet's row order
    offsets   (rows + 1) little-endian int64: row i's JPEG is bytes offsets[i]:offsets[i + 1]
              (none when they are equal)
    rows      one little-endian int64
    MAGIC     8 bytes

`smar serve` reads the offsets once and one thumbnail per request, never the whole file.
Items whose catalog row has an `image_url` get no thumbnail: the search page links to the URL.
"""

from __future__ import annotations

import io
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from smar.core.paths import IndexFiles

log = logging.getLogger(__name__)

MAGIC = b"SMARTHB1"
JPEG_QUALITY = 75  # libjpeg's default: 1.0 KB per 96 px thumbnail on the default catalog (80: 1.1 KB)
CHUNK = 1024  # images decoded at a time (Pillow releases the GIL while it decodes, resizes and encodes)


def write_thumbnails(data_dir: Path, images: list, size: int, path: Path) -> dict:
    """Write the thumbnails of `images` (per id-map row: a path relative to `data_dir`, or None
    for no thumbnail) to `path`; return what was written. Images that cannot be read get none."""
    import numpy as np

    from smar.core.progress import Progress

    started = time.perf_counter()
    offsets, failed, first_failure = np.zeros(len(images) + 1, dtype="<i8"), 0, None
    with open(path, "wb") as out, ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        with Progress("index thumbnails", len(images), "image") as progress:
            for start in range(0, len(images), CHUNK):
                chunk = images[start : start + CHUNK]
                for row, made in enumerate(pool.map(lambda image: thumbnail(data_dir, image, size), chunk), start):
                    if isinstance(made, Exception):
                        failed += 1
                        first_failure = first_failure or f"{images[row]}: {made}"
                        made = b""
                    out.write(made)
                    offsets[row + 1] = offsets[row] + len(made)
                progress.advance(len(chunk))
        jpeg_bytes = int(offsets[-1])
        out.write(offsets.tobytes() + np.int64(len(images)).astype("<i8").tobytes() + MAGIC)
    if failed:
        log.warning("index: %d image(s) got no thumbnail (first: %s)", failed, first_failure)
    made = int(np.count_nonzero(np.diff(offsets)))
    return {
        "size": size,
        "items": made,
        "failed": failed,
        "jpeg_bytes": jpeg_bytes,
        "file_bytes": path.stat().st_size,
        "bytes_per_thumbnail": round(jpeg_bytes / made, 1) if made else None,
        "seconds": round(time.perf_counter() - started, 3),
    }


def thumbnail(data_dir: Path, image: str | None, size: int) -> bytes | Exception:
    """One image as a JPEG of at most `size` pixels a side (b"" for no image; the error when it cannot be read)."""
    from PIL import Image

    if not isinstance(image, str) or not image:
        return b""
    try:
        with Image.open(Path(data_dir) / image) as picture:
            picture.draft("RGB", (size, size))  # JPEG sources decode at a fraction of their size
            picture = flattened(picture)
            picture.thumbnail((size, size))
            encoded = io.BytesIO()
            picture.save(encoded, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        return encoded.getvalue()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return error


def flattened(picture):
    """RGB, with any transparency laid over white (JPEG has no alpha)."""
    from PIL import Image

    if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
        rgba = picture.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return picture.convert("RGB")


class Thumbnails:
    """The thumbnails file of an index directory, read one thumbnail at a time."""

    def __init__(self, path: Path):
        import numpy as np

        self.path = Path(path)
        with open(self.path, "rb") as file:
            file.seek(-16, os.SEEK_END)
            rows_bytes, magic = file.read(8), file.read(8)
            if magic != MAGIC:
                raise ValueError(f"{self.path}: not a thumbnails file (rebuild the index)")
            rows = int(np.frombuffer(rows_bytes, dtype="<i8")[0])
            file.seek(-16 - 8 * (rows + 1), os.SEEK_END)
            self.offsets = np.frombuffer(file.read(8 * (rows + 1)), dtype="<i8")

    @classmethod
    def open(cls, index_dir: Path) -> Thumbnails | None:
        """The index directory's thumbnails, or None when it has none (built without, or before they existed)."""
        path = IndexFiles(Path(index_dir)).thumbnails
        return cls(path) if path.is_file() else None

    def has(self, row: int) -> bool:
        return bool(self.offsets[row + 1] > self.offsets[row])

    def read(self, row: int) -> bytes | None:
        """Row `row`'s JPEG, or None when it has none."""
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        if end <= start:
            return None
        with open(self.path, "rb") as file:
            return os.pread(file.fileno(), end - start, start)
