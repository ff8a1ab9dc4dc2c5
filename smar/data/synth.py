"""The default dataset: a synthetic catalog that reads like e-commerce, with real modality asymmetry.

- 32 categories, each drawn as its own shape (an outline plus a feature: plain, hole, stem);
- listings come in families of colour variants (same brand, material and title wording,
  another colour): the hard negatives of real catalogs;
- colour and pattern are always visible in the image, but only `title_attribute_rate` of the
  families state them in the title; brand, material and size appear only in text;
- titles mix brand, material, size and marketing words in varied order, with occasional typos;
- queries name a category (or a synonym) plus attributes, with synonyms and paraphrases, and
  their relevant items are the matching items that got clicks: labels are click counts,
  skewed by item popularity (a few items take most clicks);
- images vary in background, texture, lighting, scale, rotation and position;
- splits are by query, or (`split_by`) by groups of items: with `category`, test queries ask
  for kinds of product that no training query named.

Every item, family, image and query draws from its own generator seeded by (seed, index),
so the output does not depend on how it is chunked, and the same parameters give
byte-identical files (`dvc status` stays clean against the committed `data.dvc`). Items,
images and qrels are streamed to disk in chunks, so the `large` preset (a million items)
runs in bounded memory. The images (drawing and PNG encoding: nearly all of the time) are
drawn by a pool of worker processes, `IMAGE_CHUNK` items per task, each written straight to
its own file; the rows, the queries and the Parquet files stay in the parent, in order, so
the bytes do not depend on the number of workers.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections import deque
from pathlib import Path

from smar.core.config import DataConfig
from smar.core.contract import BY_QUERY, ITEMS, MANIFEST, QRELS, QUERIES
from smar.core.errors import SmarError
from smar.core.paths import replace_on_success
from smar.core.progress import Progress
from smar.data.splits import group_splits, majority_group

log = logging.getLogger(__name__)

# name: synonyms used by shoppers
CATEGORIES = {
    "mug": ("cup", "coffee cup"),
    "vase": ("flower vase",),
    "lamp": ("table lamp", "light"),
    "pillow": ("cushion",),
    "clock": ("wall clock",),
    "hat": ("cap",),
    "bag": ("handbag", "tote"),
    "shoe": ("sneaker",),
    "bottle": ("water bottle", "flask"),
    "rug": ("carpet", "mat"),
    "plate": ("dish",),
    "bowl": ("serving bowl",),
    "chair": ("seat",),
    "table": ("desk",),
    "candle": ("candle holder",),
    "mirror": ("wall mirror",),
    "basket": ("storage basket",),
    "towel": ("bath towel",),
    "blanket": ("throw",),
    "jacket": ("coat",),
    "shirt": ("tee", "t-shirt"),
    "dress": ("gown",),
    "scarf": ("shawl",),
    "sock": ("socks",),
    "glove": ("mitten",),
    "wallet": ("purse",),
    "backpack": ("rucksack",),
    "umbrella": ("parasol",),
    "watch": ("wristwatch",),
    "teapot": ("kettle",),
    "jar": ("container",),
    "frame": ("photo frame",),
}
OUTLINES = (
    "circle",
    "ellipse",
    "square",
    "tall",
    "triangle",
    "diamond",
    "pentagon",
    "hexagon",
    "octagon",
    "star",
    "cross",
)
FEATURES = ("plain", "hole", "stem")
CATEGORY_SHAPES = dict(zip(CATEGORIES, itertools.product(OUTLINES, FEATURES)))
COLOURS = {
    "red": ((205, 35, 35), ("crimson",)),
    "green": ((40, 150, 60), ("emerald",)),
    "blue": ((40, 85, 215), ("cobalt",)),
    "yellow": ((235, 200, 35), ("mustard",)),
    "purple": ((130, 55, 170), ("violet",)),
    "orange": ((240, 130, 30), ()),
    "black": ((28, 28, 28), ("jet black",)),
    "white": ((248, 248, 248), ("ivory",)),
    "pink": ((240, 130, 175), ("rose",)),
    "brown": ((120, 75, 40), ("chocolate",)),
    "grey": ((135, 135, 135), ("gray",)),
    "navy": ((25, 35, 95), ("dark blue",)),
}
PATTERNS = {
    "solid": ("plain",),
    "striped": ("stripe", "pinstripe"),
    "dotted": ("polka dot", "spotted"),
    "checked": ("plaid", "checkered"),
    "zigzag": ("chevron",),
}
MATERIALS = {
    "cotton": (),
    "ceramic": ("porcelain",),
    "glass": (),
    "leather": (),
    "wool": ("woolen",),
    "bamboo": (),
    "steel": ("metal", "stainless steel"),
    "linen": (),
    "oak": ("wooden", "wood"),
    "silk": (),
}
BRANDS = (
    "acme",
    "nordic",
    "zenit",
    "lumo",
    "kairo",
    "vesta",
    "orbit",
    "pinea",
    "tesso",
    "aurel",
    "brava",
    "calder",
    "delmar",
    "elara",
    "fjord",
    "gala",
    "helio",
    "istra",
    "juno",
    "kestrel",
    "lyra",
    "marlo",
    "nova",
    "oslo",
    "petra",
    "quill",
    "rivo",
    "sola",
    "terra",
    "umbra",
    "valen",
    "wren",
    "xeno",
    "yara",
    "zola",
    "alto",
    "birch",
    "cove",
    "dune",
    "ember",
)
SIZES = ("small", "medium", "large", "xl", "mini", "350 ml", "40 cm", "set of 2")
MARKETING = (
    "new",
    "premium",
    "best seller",
    "gift idea",
    "handmade",
    "eco friendly",
    "2026 collection",
    "limited edition",
    "free shipping",
    "sale",
    "top rated",
    "classic",
)
ATTRIBUTES = ("colour", "pattern", "brand", "material")
QUERY_ATTRIBUTE_RATES = {"colour": 0.75, "pattern": 0.4, "brand": 0.2, "material": 0.25}
SYNONYM_RATE = 0.3  # how often a query uses a synonym instead of the catalog word

PRESETS = {
    "tiny": DataConfig(num_items=200, num_queries=200, image_size=32, test_fraction=0.25),
    "small": DataConfig(),
    "medium": DataConfig(num_items=30_000, num_queries=20_000),
    "large": DataConfig(num_items=1_000_000, num_queries=100_000),
}
CHUNK = 10_000  # items written per Parquet row group
QRELS_CHUNK = 100_000  # qrels written per Parquet row group
IMAGE_CHUNK = 1_000  # images drawn per worker task: small enough to balance, large enough to cost little to send
TASKS_AHEAD_PER_WORKER = 2  # image tasks queued per worker: keeps workers busy, bounds the parent's memory


def synthesize(config: DataConfig, out_dir: Path, *, workers: int | None = None) -> dict:
    """Write a dataset in the data contract to `out_dir`; return its dataset.json content.

    `workers` processes draw the images (default: every core, `os.cpu_count()`); any number
    gives the same bytes.
    """
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise SmarError(f"workers={workers}: the synthetic dataset needs at least 1 worker process; pass 1 or more.")
    with replace_on_success(Path(out_dir)) as scratch:
        catalog = _write_items(config, scratch, workers)
        counts = _write_queries(config, catalog, scratch)
        manifest = {
            "name": "smar-synthetic",
            "version": "2",
            "source": {"generator": "smar.synth", "parameters": config.model_dump(mode="json")},
            "counts": {"items": config.num_items} | counts,
        }
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


# ---------------------------------------------------------------------------- items


def _families(config: DataConfig):
    """Yield item rows family by family until the catalog is full."""
    import numpy as np

    number = 0
    for family in itertools.count():
        rng = np.random.default_rng([config.seed, 1, family])
        category = _pick(rng, CATEGORIES)
        brand, material, size = _pick(rng, BRANDS), _pick(rng, MATERIALS), _pick(rng, SIZES)
        states_look = bool(rng.random() < config.title_attribute_rate)
        marketing = [str(m) for m in rng.choice(MARKETING, size=int(rng.integers(0, 3)), replace=False)]
        template, typo = int(rng.integers(4)), bool(rng.random() < config.typo_rate)
        shared_pattern = _pick(rng, PATTERNS) if rng.random() < 0.7 else None
        variants = min(int(rng.geometric(0.45)), 4)
        for colour in rng.choice(list(COLOURS), size=variants, replace=False):
            if number == config.num_items:
                return
            pattern = shared_pattern or _pick(rng, PATTERNS)
            look = f"{colour} {pattern}" if states_look else ""
            title = _title(template, brand, material, category, size, look, marketing)
            if typo:
                title = _with_typo(title, np.random.default_rng([config.seed, 4, family]))
            item_id = f"I{number:07d}"
            yield {
                "item_id": item_id,
                "title": title,
                "category": category,
                "brand": brand.title(),
                "image": f"images/{number // 1000:04d}/{item_id}.png",
                "colour": str(colour),
                "pattern": pattern,
                "material": material,
                "size": size,
                "family": f"F{family:07d}",
                "title_states_look": states_look,
                "popularity": float(np.random.default_rng([config.seed, 5, number]).pareto(1.3) + 1.0),
            }
            number += 1


def _pick(rng, options) -> str:
    return str(list(options)[int(rng.integers(len(options)))])


def _title(template: int, brand, material, category, size, look, marketing) -> str:
    brand, extra = brand.title(), (" - " + ", ".join(marketing)) if marketing else ""
    words = {
        0: f"{brand} {look} {material} {category} ({size}){extra}",
        1: f"{look} {material} {category} by {brand}, {size}{extra}",
        2: f"{brand} {category} {size} {look} {material}{extra}",
        3: f"{', '.join(marketing) + ': ' if marketing else ''}{material} {category} {look} | {brand} | {size}",
    }[template]
    title = " ".join(words.split()).replace(" ,", ",").strip(" -|:,")
    return title[:1].upper() + title[1:]


def _with_typo(title: str, rng) -> str:
    """Swap two inner letters of one word, as hurried sellers do."""
    words = title.split(" ")
    candidates = [i for i, word in enumerate(words) if len(word) >= 5 and word.isalpha()]
    if not candidates:
        return title
    i = candidates[int(rng.integers(len(candidates)))]
    j = int(rng.integers(1, len(words[i]) - 2))
    word = words[i]
    words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    return " ".join(words)


def _write_items(config: DataConfig, root: Path, workers: int) -> dict:
    """Stream items.parquet and the images; return compact attribute arrays for the queries."""
    import numpy as np

    codes = {
        "category": list(CATEGORIES),
        "colour": list(COLOURS),
        "pattern": list(PATTERNS),
        "brand": [b.title() for b in BRANDS],
        "material": list(MATERIALS),
    }
    arrays = {name: np.empty(config.num_items, dtype=np.int16) for name in codes}
    families = np.empty(config.num_items, dtype=np.int64)
    popularity = np.empty(config.num_items, dtype=np.float64)
    index = {name: {value: code for code, value in enumerate(values)} for name, values in codes.items()}
    writer, rows, drawing = None, [], []
    with _ImageDrawers(config, root, workers) as images:
        for row in _families(config):
            number = int(row["item_id"][1:])
            for name in codes:
                arrays[name][number] = index[name][row[name]]
            popularity[number] = row["popularity"]
            families[number] = int(row["family"][1:])
            rows.append(row)
            drawing.append({key: row[key] for key in ("image", "category", "colour", "pattern")} | {"number": number})
            if len(drawing) == IMAGE_CHUNK:
                images.submit(drawing)
                drawing = []
            if len(rows) == CHUNK:
                writer = _append(writer, rows, root / ITEMS)
                rows = []
        images.submit(drawing)
        writer = _append(writer, rows, root / ITEMS)
        writer.close()
    return {
        "codes": codes,
        "arrays": arrays,
        "families": families,
        "popularity": popularity,
        "by_category": _rows_by(arrays["category"]),
    }


def _item_groups(config: DataConfig, catalog: dict) -> list[str] | None:
    """Each item's `split_by` group, in row order (None when splitting by query)."""
    if config.split_by == BY_QUERY:
        return None
    if config.split_by == "family":
        return [f"F{family:07d}" for family in catalog["families"].tolist()]
    values = catalog["codes"][config.split_by]
    return [values[code] for code in catalog["arrays"][config.split_by].tolist()]


def _append(writer, rows: list[dict], path: Path, *, via_pandas: bool = False):
    """Write `rows` as one row group, opening the writer on the first call."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False) if via_pandas else pa.Table.from_pylist(rows)
    if writer is None:
        writer = pq.ParquetWriter(path, table.schema)
    if rows:
        writer.write_table(table)
    return writer


def _rows_by(codes) -> dict[int, object]:
    import numpy as np

    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(codes.max() + 2))
    return {code: order[bounds[code] : bounds[code + 1]] for code in range(codes.max() + 1)}


# ---------------------------------------------------------------------------- queries


def _write_queries(config: DataConfig, catalog: dict, root: Path) -> dict:
    import numpy as np
    import pandas as pd

    codes, arrays, popularity = catalog["codes"], catalog["arrays"], catalog["popularity"]
    groups = _item_groups(config, catalog)
    group_split = group_splits(groups, config.seed, config.valid_fraction, config.test_fraction) if groups else None
    cumulative = np.cumsum(popularity) / popularity.sum()
    seen, queries, qrels, writer, written = set(), [], [], None, 0
    for attempt in range(config.num_queries * 20):
        if len(queries) == config.num_queries:
            break
        rng = np.random.default_rng([config.seed, 3, attempt])
        anchor = min(
            int(np.searchsorted(cumulative, rng.random())), config.num_items - 1
        )  # popular items get asked for
        named = {a: codes[a][arrays[a][anchor]] for a in ATTRIBUTES if rng.random() < QUERY_ATTRIBUTE_RATES[a]}
        if not named:
            named = {"colour": codes["colour"][arrays["colour"][anchor]]}
        category = codes["category"][arrays["category"][anchor]]
        text = _query_text(category, named, rng)
        if text in seen:
            continue
        seen.add(text)
        rows = catalog["by_category"][arrays["category"][anchor]]
        for attribute, value in named.items():
            rows = rows[arrays[attribute][rows] == codes[attribute].index(value)]
        rows = rows[np.argsort(-popularity[rows], kind="stable")[: config.max_relevant_per_query]]
        clicks = 1 + rng.poisson(np.minimum(popularity[rows], 40.0) * 0.5)
        draw = rng.random()
        split = (
            "test"
            if draw < config.test_fraction
            else "valid"
            if draw < config.test_fraction + config.valid_fraction
            else "train"
        )
        if group_split:
            split = group_split[majority_group((groups[row] for row in rows.tolist()), clicks.tolist())]
        query_id = f"Q{len(queries):07d}"
        queries.append(
            {"query_id": query_id, "text": text, "category": category, "split": split}
            | {a: named.get(a) for a in ATTRIBUTES}
        )
        qrels.extend(
            {"query_id": query_id, "item_id": f"I{row:07d}", "label": int(c), "split": split}
            for row, c in zip(rows.tolist(), clicks.tolist())
        )
        if len(qrels) >= QRELS_CHUNK:  # stream: a million-item catalog has millions of qrels
            writer = _append(writer, qrels[:QRELS_CHUNK], root / QRELS, via_pandas=True)
            written, qrels = written + QRELS_CHUNK, qrels[QRELS_CHUNK:]
    _append(writer, qrels, root / QRELS, via_pandas=True).close()  # pandas' schema, as data.dvc records
    frame = pd.DataFrame(queries)
    frame.drop(columns="split").to_parquet(root / QUERIES, index=False)
    return {"queries": len(frame), "qrels": written + len(qrels)} | {
        f"{split}_queries": int((frame["split"] == split).sum()) for split in ("train", "valid", "test")
    }


def _query_text(category: str, named: dict[str, str], rng) -> str:
    """A shopper's wording: synonyms, and several word orders."""

    def say(value: str, synonyms) -> str:
        return _pick(rng, synonyms) if synonyms and rng.random() < SYNONYM_RATE else value

    noun = say(category, CATEGORIES[category])
    words = {
        "brand": named.get("brand", "").lower(),
        "colour": say(named["colour"], COLOURS[named["colour"]][1]) if "colour" in named else "",
        "pattern": say(named["pattern"], PATTERNS[named["pattern"]]) if "pattern" in named else "",
        "material": say(named["material"], MATERIALS[named["material"]]) if "material" in named else "",
    }
    look = " ".join(w for w in (words["colour"], words["pattern"]) if w)
    form = int(rng.integers(4))
    if form == 0 or not look:
        text = f"{words['brand']} {look} {words['material']} {noun}"
    elif form == 1:
        text = f"{words['brand']} {words['material']} {noun} in {look}"
    elif form == 2:
        text = f"{noun} {look} {words['material']} {words['brand']}"
    else:
        text = (
            f"{look} {noun} {'made of ' + words['material'] if words['material'] else ''} "
            f"{'by ' + words['brand'] if words['brand'] else ''}"
        )
    return " ".join(text.split())


# ---------------------------------------------------------------------------- images


class _ImageDrawers:
    """Draws chunks of item images, in this process (1 worker) or in a pool of worker processes.

    Each chunk's images go straight to their files under `root`, so finishing order does not
    matter; chunks are awaited in submission order for the progress log. A failed chunk stops
    the pool and raises, naming the chunk, before `replace_on_success` removes the scratch.
    """

    def __init__(self, config: DataConfig, root: Path, workers: int):
        self.config, self.root = config, root
        self.workers = min(workers, -(-config.num_items // IMAGE_CHUNK))  # no idle processes for a tiny catalog
        self.pool, self.pending, self.drawn = None, deque(), 0
        self.progress = Progress("synth images", total=config.num_items, unit="image")

    def __enter__(self) -> _ImageDrawers:
        if self.workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: a fresh interpreter, never a fork of a parent holding threads or locks
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
            log.info("drawing %d images in %d worker processes", self.config.num_items, self.workers)
        self.progress.__enter__()
        return self

    def submit(self, chunk: list[dict]) -> None:
        if not chunk:
            return
        if self.pool is None:
            self._done(chunk, _draw_chunk(self.config, self.root, chunk))
            return
        try:
            future = self.pool.submit(_draw_chunk, self.config, self.root, chunk)
        except Exception as failure:  # the pool broke: a worker died before its failure was awaited
            raise self._failed(self.pending[0][0] if self.pending else chunk, failure) from failure
        self.pending.append((chunk, future))
        while len(self.pending) > self.workers * TASKS_AHEAD_PER_WORKER:
            self._await_oldest()

    def __exit__(self, kind, error, traceback) -> None:
        try:
            while error is None and self.pending:
                self._await_oldest()
        finally:
            if self.pool is not None:  # on failure: drop queued chunks, wait for running ones to stop writing
                self.pool.shutdown(wait=True, cancel_futures=True)
            self.progress.__exit__(kind, error, traceback)

    def _await_oldest(self) -> None:
        chunk, future = self.pending.popleft()
        try:
            count = future.result()
        except Exception as failure:
            raise self._failed(chunk, failure) from failure
        self._done(chunk, count)

    def _failed(self, chunk: list[dict], failure: Exception) -> SmarError:
        from concurrent.futures.process import BrokenProcessPool

        first, last = chunk[0]["number"], chunk[-1]["number"]
        cause = (
            "it ended abruptly: killed, out of memory, or unable to start, as when the calling program is neither a "
            "module nor a script file that a new process can import"
            if isinstance(failure, BrokenProcessPool)
            else f"{type(failure).__name__}: {failure}"
        )
        return SmarError(
            f"drawing the images of items I{first:07d}..I{last:07d} failed in a worker process ({cause}); the "
            "dataset directory is left as it was. Fix the cause and run again; --workers 1 draws in this process "
            "and shows the full traceback."
        )

    def _done(self, chunk: list[dict], count: int) -> None:
        previous, self.drawn = self.drawn, self.drawn + count
        self.progress.advance(count)
        if self.drawn // CHUNK > previous // CHUNK or self.drawn == self.config.num_items:
            log.info("generated %d/%d items", self.drawn, self.config.num_items)


def _draw_chunk(config: DataConfig, root: Path, chunk: list[dict]) -> int:
    """Draw and save one chunk's images (in a worker process); return how many."""
    for item in chunk:
        image_path = root / item["image"]
        image_path.parent.mkdir(parents=True, exist_ok=True)
        _draw_item(item, config, item["number"]).save(image_path, format="PNG")
    return len(chunk)


def _draw_item(item: dict, config: DataConfig, number: int):
    import numpy as np
    from PIL import Image, ImageDraw, ImageEnhance

    rng = np.random.default_rng([config.seed, 2, number])
    size = config.image_size
    image = _background(size, rng)
    radius = size * float(rng.uniform(0.26, 0.4))
    cx, cy = (size / 2 + float(rng.uniform(-0.08, 0.08)) * size for _ in range(2))
    mask = Image.new("L", (size, size), 0)
    outline, feature = CATEGORY_SHAPES[item["category"]]
    _draw_shape(ImageDraw.Draw(mask), outline, feature, cx, cy, radius)
    angle = float(rng.uniform(-30, 30))
    mask = mask.rotate(angle, resample=Image.BILINEAR, center=(cx, cy))
    fill = _pattern_layer(item["colour"], item["pattern"], size).rotate(angle, resample=Image.BILINEAR, center=(cx, cy))
    image.paste(fill, (0, 0), mask)
    image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.75, 1.2)))  # lighting
    noise = rng.normal(0, 5, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


def _background(size: int, rng):
    """A soft vertical gradient between two muted tones."""
    import numpy as np
    from PIL import Image

    top, bottom = rng.uniform(110, 235, 3), rng.uniform(110, 235, 3)
    ramp = np.linspace(0, 1, size)[:, None, None]
    pixels = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (size, size, 3))
    return Image.fromarray(pixels.astype(np.uint8))


def _draw_shape(draw, outline: str, feature: str, cx: float, cy: float, r: float) -> None:
    import math

    def polygon(points, scale=1.0):
        draw.polygon([(cx + x * r * scale, cy + y * r * scale) for x, y in points], fill=255)

    def regular(sides: int, turn: float = -math.pi / 2):
        return [
            (math.cos(turn + 2 * math.pi * k / sides), math.sin(turn + 2 * math.pi * k / sides)) for k in range(sides)
        ]

    if feature == "stem":  # a stand below the body
        draw.rectangle([cx - 0.15 * r, cy + 0.4 * r, cx + 0.15 * r, cy + 1.25 * r], fill=255)
        r *= 0.8
    if outline == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif outline == "ellipse":
        draw.ellipse([cx - r, cy - 0.55 * r, cx + r, cy + 0.55 * r], fill=255)
    elif outline == "square":
        polygon([(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)])
    elif outline == "tall":
        polygon([(-0.45, -1), (0.45, -1), (0.45, 1), (-0.45, 1)])
    elif outline == "triangle":
        polygon([(0, -1), (1, 0.8), (-1, 0.8)])
    elif outline == "diamond":
        polygon([(0, -1), (0.75, 0), (0, 1), (-0.75, 0)])
    elif outline in ("pentagon", "hexagon", "octagon"):
        polygon(regular({"pentagon": 5, "hexagon": 6, "octagon": 8}[outline]))
    elif outline == "star":
        outer, inner = regular(5), regular(5, -math.pi / 2 + math.pi / 5)
        polygon([p for pair in zip(outer, [(x * 0.45, y * 0.45) for x, y in inner]) for p in pair])
    elif outline == "cross":
        polygon(
            [
                (-0.3, -1),
                (0.3, -1),
                (0.3, -0.3),
                (1, -0.3),
                (1, 0.3),
                (0.3, 0.3),
                (0.3, 1),
                (-0.3, 1),
                (-0.3, 0.3),
                (-1, 0.3),
                (-1, -0.3),
                (-0.3, -0.3),
            ]
        )
    else:
        raise ValueError(f"unknown outline {outline!r}")
    if feature == "hole":
        draw.ellipse([cx - 0.3 * r, cy - 0.3 * r, cx + 0.3 * r, cy + 0.3 * r], fill=0)


def _pattern_layer(colour: str, pattern: str, size: int):
    from PIL import Image, ImageDraw

    base = COLOURS[colour][0]
    accent = tuple(int(c * 0.45) for c in base) if sum(base) > 250 else (235, 235, 235)
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
    elif pattern == "zigzag":
        for y in range(0, size + step, step):
            points = [(x, y + (step // 2 if (x // step) % 2 else 0)) for x in range(0, size + step, step)]
            draw.line(points, fill=accent, width=max(1, step // 3))
    return layer
