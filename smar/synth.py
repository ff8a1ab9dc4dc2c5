"""The default dataset: a small synthetic catalog with real modality asymmetry.

- each category is drawn as a distinct shape;
- colour and pattern are always visible in the image, but a title states them only for a
  fraction of items (`title_attribute_rate`);
- brand and material appear only in the text;
- a query names a category plus attributes, and its relevant items are exactly the items
  whose attributes match;
- splits are by query.
Everything is drawn from one seeded generator, so the same parameters give byte-identical
files (and `dvc status` stays clean against the committed `data.dvc`).
"""

from __future__ import annotations

import json
from pathlib import Path

from smar.config import DataConfig
from smar.paths import replace_on_success

CATEGORY_SHAPES = {
    "mug": "circle",
    "lamp": "triangle",
    "pillow": "square",
    "vase": "diamond",
    "clock": "hexagon",
    "hat": "ellipse",
    "bag": "trapezoid",
    "shoe": "star",
    "bottle": "bar",
    "rug": "cross",
}
COLOURS = {
    "red": (215, 35, 35),
    "green": (35, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 205, 30),
    "purple": (135, 50, 175),
    "orange": (245, 135, 25),
    "black": (25, 25, 25),
    "white": (250, 250, 250),
}
PATTERNS = ("solid", "striped", "dotted", "checked")
BRANDS = ("acme", "nordic", "zenit", "lumo", "kairo", "vesta", "orbit", "pinea", "tesso", "aurel")
MATERIALS = ("cotton", "ceramic", "glass", "leather", "wool", "bamboo")
BACKGROUND = (128, 128, 128)

PRESETS = {
    "small": DataConfig(),
    "tiny": DataConfig(num_items=160, num_queries=160, image_size=32, valid_fraction=0.1, test_fraction=0.25),
}

# Probability that a query names each attribute beyond the category.
QUERY_ATTRIBUTE_RATES = {"colour": 0.8, "pattern": 0.5, "brand": 0.25, "material": 0.25}


def synthesize(config: DataConfig, out_dir: Path) -> dict:
    """Write a dataset in the data contract to `out_dir`; return its dataset.json content."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(config.seed)
    items = _make_items(config, rng)
    queries, qrels = _make_queries(config, items, rng)
    manifest = {
        "name": "smar-synthetic",
        "version": "1",
        "source": {"generator": "smar.synth", "parameters": config.model_dump(mode="json")},
        "counts": {"items": len(items), "queries": len(queries), "qrels": len(qrels)}
        | {f"{split}_queries": int((queries["split"] == split).sum()) for split in ("train", "valid", "test")},
    }
    with replace_on_success(Path(out_dir)) as scratch:
        (scratch / "images").mkdir()
        for item in items.itertuples():
            _draw_item(item, config.image_size, rng).save(scratch / item.image, format="PNG")
        items.to_parquet(scratch / "items.parquet", index=False)
        queries.drop(columns="split").to_parquet(scratch / "queries.parquet", index=False)
        pd.DataFrame(qrels).to_parquet(scratch / "qrels.parquet", index=False)
        (scratch / "dataset.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _make_items(config: DataConfig, rng):
    import pandas as pd

    rows = []
    for number in range(config.num_items):
        category = str(rng.choice(list(CATEGORY_SHAPES)))
        colour = str(rng.choice(list(COLOURS)))
        pattern = str(rng.choice(PATTERNS))
        brand = str(rng.choice(BRANDS))
        material = str(rng.choice(MATERIALS))
        states_look = bool(rng.random() < config.title_attribute_rate)
        item_id = f"I{number:06d}"
        rows.append(
            {
                "item_id": item_id,
                "title": _title(brand, material, category, colour, pattern, states_look, rng),
                "category": category,
                "brand": brand,
                "image": f"images/{item_id}.png",
                "colour": colour,
                "pattern": pattern,
                "material": material,
                "title_states_look": states_look,
            }
        )
    return pd.DataFrame(rows)


def _title(brand, material, category, colour, pattern, states_look, rng) -> str:
    look = f"{colour} {pattern} " if states_look else ""
    template = int(rng.integers(3))
    if template == 0:
        return f"{brand.title()} {look}{material} {category}"
    if template == 1:
        return f"{look}{material} {category} by {brand.title()}".capitalize()
    return f"{brand.title()} {category}, {look}{material}"


def _make_queries(config: DataConfig, items, rng):
    import pandas as pd

    attributes = ("colour", "pattern", "brand", "material")
    seen: set[str] = set()
    queries, qrels = [], []
    for _ in range(config.num_queries * 20):
        if len(queries) == config.num_queries:
            break
        anchor = items.iloc[int(rng.integers(len(items)))]
        named = {a: anchor[a] for a in attributes if rng.random() < QUERY_ATTRIBUTE_RATES[a]}
        if not named:
            named = {"colour": anchor["colour"]}
        order = ("brand", "colour", "pattern", "material")
        text = " ".join([str(named[a]) for a in order if a in named] + [anchor["category"]])
        if text in seen:
            continue
        seen.add(text)
        match = items["category"] == anchor["category"]
        for attribute, value in named.items():
            match &= items[attribute] == value
        query_id = f"Q{len(queries):06d}"
        draw = rng.random()
        split = "test" if draw < config.test_fraction else "valid" if draw < config.test_fraction + config.valid_fraction else "train"
        queries.append(
            {"query_id": query_id, "text": text, "category": anchor["category"], "split": split}
            | {a: named.get(a) for a in attributes}
        )
        qrels.extend({"query_id": query_id, "item_id": i, "label": 1, "split": split} for i in items.loc[match, "item_id"])
    return pd.DataFrame(queries), qrels


def _draw_item(item, size: int, rng):
    from PIL import Image, ImageDraw

    scale = size * float(rng.uniform(0.36, 0.44))
    cx = size / 2 + float(rng.uniform(-0.06, 0.06)) * size
    cy = size / 2 + float(rng.uniform(-0.06, 0.06)) * size
    mask = Image.new("L", (size, size), 0)
    _draw_shape(ImageDraw.Draw(mask), CATEGORY_SHAPES[item.category], cx, cy, scale)
    fill = _pattern_layer(item.colour, item.pattern, size)
    image = Image.new("RGB", (size, size), BACKGROUND)
    image.paste(fill, (0, 0), mask)
    return image


def _draw_shape(draw, shape: str, cx: float, cy: float, r: float) -> None:
    import math

    def polygon(points):
        draw.polygon([(cx + x * r, cy + y * r) for x, y in points], fill=255)

    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "ellipse":
        draw.ellipse([cx - r, cy - 0.55 * r, cx + r, cy + 0.55 * r], fill=255)
    elif shape == "square":
        polygon([(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)])
    elif shape == "triangle":
        polygon([(0, -1), (1, 0.8), (-1, 0.8)])
    elif shape == "diamond":
        polygon([(0, -1), (0.75, 0), (0, 1), (-0.75, 0)])
    elif shape == "hexagon":
        polygon([(math.cos(a), math.sin(a)) for a in (k * math.pi / 3 for k in range(6))])
    elif shape == "trapezoid":
        polygon([(-0.5, -0.7), (0.5, -0.7), (1, 0.7), (-1, 0.7)])
    elif shape == "star":
        points = []
        for k in range(10):
            radius = 1.0 if k % 2 == 0 else 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((radius * math.cos(angle), radius * math.sin(angle)))
        polygon(points)
    elif shape == "bar":
        polygon([(-0.4, -1), (0.4, -1), (0.4, 1), (-0.4, 1)])
    elif shape == "cross":
        polygon([(-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3), (0.3, 0.3),
                 (0.3, 1), (-0.3, 1), (-0.3, 0.3), (-1, 0.3), (-1, -0.3), (-0.3, -0.3)])
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _pattern_layer(colour: str, pattern: str, size: int):
    from PIL import Image, ImageDraw

    base = COLOURS[colour]
    accent = tuple(int(c * 0.45) for c in base) if sum(base) > 200 else (235, 235, 235)
    layer = Image.new("RGB", (size, size), base)
    draw = ImageDraw.Draw(layer)
    step = max(4, size // 8)
    if pattern == "striped":
        for x in range(0, size, step):
            draw.rectangle([x, 0, x + step // 2 - 1, size], fill=accent)
    elif pattern == "dotted":
        radius = max(1, step // 4)
        for x in range(step // 2, size, step):
            for y in range(step // 2, size, step):
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=accent)
    elif pattern == "checked":
        for x in range(0, size, step):
            for y in range(0, size, step):
                if (x // step + y // step) % 2:
                    draw.rectangle([x, y, x + step - 1, y + step - 1], fill=accent)
    return layer
