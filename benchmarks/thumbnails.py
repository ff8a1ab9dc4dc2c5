"""Size and build time of the thumbnails the index step writes into a registered version.

    .venv/bin/python benchmarks/thumbnails.py          # about 2 minutes on 2 cores

Three kinds of catalog image, each thumbnailed by the index step's own code
(smar.retrieval.thumbnails.write_thumbnails) at 64, 96 (the default) and 128 px:
- "synthetic 64 px": the default synthetic catalog's images (`smar data synth`, 64 px PNGs,
  never enlarged, so they stay 64 px);
- "synthetic 256 px": the same generator at `data.image_size: 256`;
- "photos 800 px": product-photo-like JPEGs (quality 90, 800 px, as shops upload them): crops of
  the three photographs that ship with matplotlib and scikit-learn, each item another crop,
  scale and mirror, half of them on a white background.
For each: bytes per thumbnail, build time per item (all cores; Pillow decodes JPEGs at a
fraction of their size), and what a 1M-item catalog's version would carry. Writes
benchmarks/results/thumbnails.{json,md}.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = (64, 96, 128)
MILLION = 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1000, help="images per kind of catalog")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    from smar.core.process import setup

    setup()
    scratch = Path(tempfile.mkdtemp(prefix="smar-thumbnails-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    catalogs = {
        "synthetic 64 px": synthetic(scratch / "synthetic-64", 64, args.items),
        "synthetic 256 px": synthetic(scratch / "synthetic-256", 256, args.items),
        "photos 800 px": photos(scratch / "photos", args.items),
    }
    from smar.retrieval.thumbnails import JPEG_QUALITY

    results = {"items": args.items, "cpus": os.cpu_count(), "jpeg_quality": JPEG_QUALITY, "catalogs": {}}
    for name, (directory, images) in catalogs.items():
        source_bytes = sum((directory / image).stat().st_size for image in images)
        results["catalogs"][name] = {"source_bytes_per_item": round(source_bytes / len(images)), "sizes": {}}
        for size in SIZES:
            made = measure(directory, images, size, scratch / f"{len(results['catalogs'])}-{size}.bin")
            results["catalogs"][name]["sizes"][size] = made
            print(name, size, json.dumps(made), flush=True)
    write(results, args.results)


def synthetic(directory: Path, image_size: int, items: int) -> tuple[Path, list[str]]:
    """The synthetic generator's catalog at `image_size`, its first `items` image paths."""
    import pandas as pd

    from smar.data.synth import PRESETS, synthesize

    config = PRESETS["small"].model_copy(update={"num_items": items, "num_queries": 100, "image_size": image_size})
    synthesize(config, directory)
    return directory, pd.read_parquet(directory / "items.parquet")["image"].tolist()


def photos(directory: Path, items: int) -> tuple[Path, list[str]]:
    """Product-photo-like JPEGs: random crops of the photographs shipped with matplotlib and scikit-learn."""
    import matplotlib
    import sklearn
    from PIL import Image, ImageOps

    sources = [Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"] + [
        Path(sklearn.__file__).parent / "datasets" / "images" / name for name in ("china.jpg", "flower.jpg")
    ]
    pictures = [Image.open(path).convert("RGB") for path in sources]
    pick = random.Random(0)
    directory.mkdir(parents=True)
    names = []
    for n in range(items):
        picture = pick.choice(pictures)
        side = pick.randint(min(picture.size) // 3, min(picture.size))
        left, top = pick.randint(0, picture.width - side), pick.randint(0, picture.height - side)
        crop = picture.crop((left, top, left + side, top + side)).resize((800, 800), Image.Resampling.BICUBIC)
        if n % 2:  # a product on a white page
            crop = ImageOps.pad(crop.resize((560, 560)), (800, 800), color="white")
        if pick.random() < 0.5:
            crop = ImageOps.mirror(crop)
        names.append(f"{n:05d}.jpg")
        crop.save(directory / names[-1], quality=90)
    return directory, names


def measure(directory: Path, images: list[str], size: int, path: Path) -> dict:
    from smar.retrieval.thumbnails import write_thumbnails

    made = write_thumbnails(directory, images, size, path)
    per_item = made["file_bytes"] / len(images)
    return {
        "bytes_per_thumbnail": made["bytes_per_thumbnail"],
        "file_bytes_per_item": round(per_item, 1),
        "ms_per_item": round(1000 * made["seconds"] / len(images), 3),
        "million_items_gb": round(per_item * MILLION / 1e9, 2),
        "million_items_build_minutes": round(made["seconds"] / len(images) * MILLION / 60, 1),
        "failed": made["failed"],
    }


def write(results: dict, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "thumbnails.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"Thumbnails of {results['items']} images per catalog, written by the index step's code on "
        f"{results['cpus']} CPUs (JPEG quality {results['jpeg_quality']}, at most SIZE px a side, never enlarged).",
        "",
        "| images | source bytes/item | size (px) | bytes/thumbnail | build ms/item | 1M items: GB in the version "
        "| 1M items: build minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, catalog in results["catalogs"].items():
        for size, made in catalog["sizes"].items():
            lines.append(
                f"| {name} | {catalog['source_bytes_per_item']} | {size} | {made['bytes_per_thumbnail']} | "
                f"{made['ms_per_item']} | {made['million_items_gb']} | {made['million_items_build_minutes']} |"
            )
    (directory / "thumbnails.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
