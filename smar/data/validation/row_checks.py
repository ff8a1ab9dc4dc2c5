"""Checks computed in Python, one result per row, for what GX cannot see in a column: value types,
UTF-8 and image files. Each returns [(ok, detail)] that `Suite.derived` hands to GX; a failing
row's detail says what is wrong with it. Null passes: a not-null check reports it."""

from __future__ import annotations

import math
import numbers
import re
import warnings
from pathlib import Path

from smar.core.progress import Progress
from smar.data.dataset import Dataset


def is_missing(value) -> bool:
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(value, numbers.Number) and value != value  # NaN of any float type


def strings(values) -> list[tuple[bool, str]]:
    """Anything but null must be a str."""
    return [(is_missing(v) or isinstance(v, str), f"{type(v).__name__}, not str") for v in values]


def utf8_strings(values) -> list[tuple[bool, str | None]]:
    """Text must be a str that is valid UTF-8: no bytes (decodable or not), numbers, U+FFFD
    (text decoded with the wrong codec earlier) or lone surrogates."""
    rows = []
    for value in values:
        problem = None
        if is_missing(value):
            pass
        elif isinstance(value, (bytes, bytearray)):
            try:
                bytes(value).decode("utf-8")
                problem = "bytes, not str"
            except UnicodeDecodeError as error:
                problem = f"not UTF-8 ({error.reason} at byte {error.start})"
        elif not isinstance(value, str):
            problem = f"{type(value).__name__}, not str"
        else:
            if "\ufffd" in value:
                problem = "holds U+FFFD (the text was decoded with the wrong codec before)"
            else:
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    problem = "holds a lone surrogate"
        rows.append((problem is None, problem))
    return rows


def integers(values) -> list[tuple[bool, str]]:
    """Whole numbers pass (ints, or integral floats)."""
    rows = []
    for value in values:
        ok = is_missing(value) or (
            isinstance(value, numbers.Real)
            and not isinstance(value, bool)
            and type(value).__name__ not in ("bool", "bool_")  # numpy booleans
            and math.isfinite(value)
            and float(value).is_integer()
        )
        rows.append((ok, f"{type(value).__name__}, not a whole number"))
    return rows


def image_rows(dataset: Dataset, max_pixels: int) -> dict[str, tuple[str, list]]:
    """Per item: does its image file exist, hold bytes, decode, and stay within max_pixels.
    A row fails only its first failing check; a null path passes all (reported elsewhere)."""
    from PIL import Image

    root = dataset.root.resolve()
    checks = {
        "image_file_exists": "put the image at this path (relative to the dataset directory) or remove the item",
        "image_file_not_empty": "re-download or re-export the image, or remove the item",
        "image_decodes": "re-export the image (e.g. as PNG or JPEG) or remove the item",
        "image_within_max_pixels": f"downscale the image to at most {max_pixels} pixels (validate.max_image_pixels) "
        f"or remove the item",
    }
    rows: dict[str, list] = {check: [] for check in checks}
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb fails its row, never the run
        with Progress("validate images", len(dataset.items), "image") as progress:
            for relative in dataset.items["image"]:
                failed = _image_problem(root, relative, max_pixels) if not is_missing(relative) else None
                for check in checks:
                    rows[check].append((True, None) if failed is None or failed[0] != check else (False, failed[1]))
                progress.advance()
    return {check: (fix, rows[check]) for check, fix in checks.items()}


def _image_problem(root: Path, relative, max_pixels: int) -> tuple[str, str] | None:
    """(check, detail) of the first problem of one image, or None."""
    from PIL import Image

    if not isinstance(relative, str):
        return "image_file_exists", f"{type(relative).__name__}, not a path"
    path = (root / relative).resolve()
    if root not in path.parents or not path.is_file():
        return "image_file_exists", "outside the dataset directory" if root not in path.parents else "no such file"
    if path.stat().st_size == 0:
        return "image_file_not_empty", "0 bytes"
    try:
        with Image.open(path) as image:
            if image.width * image.height > max_pixels:
                return "image_within_max_pixels", f"{image.width}x{image.height} = {image.width * image.height} px"
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        return (
            "image_within_max_pixels",
            f"{pixels[1] + ' px, ' if pixels else ''}refused by PIL as a decompression bomb",
        )
    except Exception as error:  # PIL raises many types for a broken file
        return "image_decodes", f"{type(error).__name__}: {error}"
    return None
