"""Checks computed in Python, one result per row, for what GX cannot see in a column: value types,
UTF-8, invisible and control characters, and image files. Each returns [(ok, detail)] that
`Suite.derived` hands to GX; a failing row's detail says what is wrong with it. Null passes: a
not-null check reports it."""

from __future__ import annotations

import functools
import math
import numbers
import re
import sys
import unicodedata
import warnings
from pathlib import Path

from smar.core.progress import Progress
from smar.data.dataset import Dataset

# Never legitimate in text: C0 controls but tab, newline and carriage return (whitespace, which the
# tokenizer splits on like a space), DEL, and the C1 controls (what cp1252 text decoded as latin-1 leaves).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Shown as nothing, besides whitespace and categories Cc and Cf: Unicode's other default-ignorable
# code points (combining grapheme joiner, Hangul fillers, variation selectors, ...) and the blank U+2800.
_INVISIBLE_RANGES = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xE0000, 0xE0FFF),
)
_LISTED = 6  # characters a problem names before "..."


def is_missing(value) -> bool:
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(value, numbers.Number) and value != value  # NaN of any float type


def http_urls(values) -> list[tuple[bool, str]]:
    """Anything but null must be an absolute http(s) URL (what a page's <img> may load)."""
    url = re.compile(r"https?://[^\s/]+\S*")
    return [(is_missing(v) or (isinstance(v, str) and bool(url.fullmatch(v))), "not an http(s) URL") for v in values]


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


def not_blank(values) -> list[tuple[bool, str | None]]:
    """Text must show something: not empty, nor only whitespace and invisible characters (zero-width
    spaces, joiners, BOMs, no-break spaces, controls). Anything but a str passes (reported elsewhere)."""
    visible = _visible_character()
    rows = []
    for value in values:
        problem = None
        if isinstance(value, str) and not visible.search(value):
            problem = f"only invisible characters ({_code_points(dict.fromkeys(value))})" if value else "empty"
        rows.append((problem is None, problem))
    return rows


def no_control_characters(values) -> list[tuple[bool, str | None]]:
    """Text must hold no control characters (`_CONTROL`); a problem names each one and where it first is."""
    rows = []
    for value in values:
        if not isinstance(value, str) or not _CONTROL.search(value):
            rows.append((True, None))
            continue
        first: dict[str, int] = {}
        for match in _CONTROL.finditer(value):
            first.setdefault(match.group(), match.start() + 1)
        found = [f"U+{ord(char):04X} at character {position}" for char, position in first.items()]
        listed = ", ".join(found[:_LISTED]) + (", ..." if len(found) > _LISTED else "")
        rows.append((False, f"control character{'s' if len(found) > 1 else ''} {listed}"))
    return rows


@functools.cache
def _visible_character() -> re.Pattern:
    """A regex matching one character that is not invisible (built once, from a scan of every code point)."""
    invisible = {code for low, high in _INVISIBLE_RANGES for code in range(low, high + 1)} | {
        code
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)) in ("Cc", "Cf") or chr(code).isspace()
    }
    ranges, start = [], None
    for code in range(sys.maxunicode + 2):
        if code in invisible and start is None:
            start = code
        elif code not in invisible and start is not None:
            ranges.append(f"{re.escape(chr(start))}-{re.escape(chr(code - 1))}")
            start = None
    return re.compile(f"[^{''.join(ranges)}]")


def _code_points(chars) -> str:
    chars = list(chars)
    return ", ".join(f"U+{ord(char):04X}" for char in chars[:_LISTED]) + (", ..." if len(chars) > _LISTED else "")


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
