"""The frozen encoders' speed in the featurize step, side by side with the reference loops.

    .venv/bin/python benchmarks/featurize_encoders.py              # default catalog (data/), 3 runs each
    .venv/bin/python benchmarks/featurize_encoders.py --runs 5 --titles 3000 --images 512

In one process, alternating run by run, on the same inputs:
- MiniLM over the catalog's item texts: featurize's path (ONNX Runtime, batches of similar
  length padded to their longest) against sentence-transformers' `encode` of the same model
  (its own length sorting, PyTorch) and against the path it replaces (PyTorch, every text
  padded to `max_text_length`);
- the EfficientNet-Lite0 backbone's patch tokens at 64 and 224 px: featurize's path (ONNX
  Runtime) against timm eager (PyTorch) and timm eager with channels_last, from the same
  decoded pixels;
- decoding: the catalog's images re-encoded as 800 px JPEGs, decoded for a 224 px model with
  Pillow's draft mode (featurize's `load_pixels`) and without.
Writes benchmarks/results/featurize-encoders.{json,md}: medians, and the median of the per-run
ratios ours / reference.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--titles", type=int, default=3000, help="Item texts encoded per run.")
    parser.add_argument("--images", type=int, default=256, help="Images encoded per run, at each size.")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    import smar  # noqa: F401  (torchvision import fix before sentence-transformers and timm)
    from smar.core.process import setup

    setup()
    import torch

    from smar.core.config import load_config
    from smar.core.contract import item_texts
    from smar.data.dataset import load_dataset

    config = load_config(args.params)
    dataset = load_dataset(args.data)
    texts = item_texts(dataset.items)[: args.titles]
    image_paths = [args.data / path for path in dataset.items["image"][: args.images]]
    cases = {
        "text": text_cases(config.model, texts),
        **{f"image {size} px": image_cases(config.model, image_paths, size) for size in (64, 224)},
    }
    scratch = Path(tempfile.mkdtemp(prefix="smar-featurize-bench-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    cases["decode for 224 px"] = decode_cases(image_paths, scratch)
    counts = {"text": len(texts), "image 64 px": len(image_paths), "image 224 px": len(image_paths)}
    counts["decode for 224 px"] = len(image_paths)
    runs = {case: {name: [] for name in loops} for case, loops in cases.items()}
    for _ in range(args.runs):
        for case, loops in cases.items():
            for name, loop in loops.items():
                started = time.perf_counter()
                loop()
                runs[case][name].append(time.perf_counter() - started)
    results = {
        "threads": torch.get_num_threads(),
        "runs": args.runs,
        "counts": counts,
        "seconds": runs,
        "per_second": {
            case: {name: round(counts[case] / statistics.median(seconds), 1) for name, seconds in loops.items()}
            for case, loops in runs.items()
        },
    }
    write(results, args.results)


def text_cases(model_config, texts: list[str]) -> dict:
    """featurize's MiniLM path, sentence-transformers `encode`, and padding to max_text_length in PyTorch."""
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer, models

    from smar.features.encoders import _text_encoder, encode_texts
    from smar.model.pretrained import minilm_dir
    from smar.model.towers import masked_mean

    length, batch = model_config.max_text_length, 128
    ours = _text_encoder(length, "cpu")
    list(encode_texts(model_config, texts[:8], "cpu", batch))  # the runtime is built before the clock starts
    transformer = models.Transformer(str(minilm_dir()), max_seq_length=length)
    reference = SentenceTransformer(modules=[transformer, models.Pooling(384, "mean")], device="cpu")
    padded = ours.tokenizer.__class__.from_str(ours.tokenizer.to_str())
    padded.enable_padding(length=length, pad_id=0)

    def fixed_padding():
        with torch.inference_mode():
            for start in range(0, len(texts), 256):
                encodings = padded.encode_batch(texts[start : start + 256])
                ids = torch.tensor([e.ids for e in encodings])
                mask = torch.tensor([e.attention_mask for e in encodings])
                ours.encoder.states(ids, mask)

    def featurize_path():
        vectors = np.zeros((len(texts), 384), dtype=np.float32)
        for rows, states, lengths in encode_texts(model_config, texts, "cpu", batch):
            mask = torch.from_numpy(np.arange(states.shape[1])[None] < lengths[:, None])
            vectors[rows] = masked_mean(torch.from_numpy(states), mask).numpy()
        return vectors

    check = reference.encode(texts[:64], batch_size=batch, convert_to_numpy=True)
    difference = float(np.abs(featurize_path()[:64] - check).max())
    if difference > 1e-3:
        raise SystemExit(f"sentence-transformers' MiniLM is not featurize's: pooled vectors differ by {difference}")
    return {
        "featurize (ONNX Runtime, length buckets)": featurize_path,
        "sentence-transformers encode": lambda: reference.encode(texts, batch_size=batch, convert_to_numpy=True),
        "PyTorch, padded to max_text_length": fixed_padding,
    }


def image_cases(model_config, image_paths: list[Path], size: int) -> dict:
    import torch

    from smar.data.image_cache import decode_images
    from smar.features.encoders import _image_encoder

    pixels = decode_images(image_paths, size)
    ours = _image_encoder(size, "cpu")
    ours.run(pixels[:2])  # the runtime is built before the clock starts
    patches, batch = ours.run.module, 64

    def eager(channels_last: bool):
        def run():
            with torch.inference_mode():
                for start in range(0, len(pixels), batch):
                    tensor = torch.from_numpy(pixels[start : start + batch])
                    if channels_last:
                        tensor = tensor.contiguous(memory_format=torch.channels_last)
                    patches(tensor)

        return run

    def featurize_path():
        for start in range(0, len(pixels), batch):
            ours.run(pixels[start : start + batch])

    return {
        "featurize (ONNX Runtime)": featurize_path,
        "timm eager": eager(False),
        "timm eager, channels_last": eager(True),
    }


def decode_cases(image_paths: list[Path], scratch: Path) -> dict:
    from PIL import Image

    from smar.data.image_cache import load_pixels

    photos = []
    for i, path in enumerate(image_paths):
        with Image.open(path) as image:
            photo = scratch / f"{i}.jpg"
            image.convert("RGB").resize((800, 800), Image.BICUBIC).save(photo, quality=90)
            photos.append(photo)

    def full_decode():
        for photo in photos:
            with Image.open(photo) as image:
                image.convert("RGB").resize((224, 224), Image.BILINEAR)

    return {"featurize (draft mode)": lambda: [load_pixels(photo, 224) for photo in photos], "full decode": full_decode}


def write(results: dict, directory: Path) -> None:
    seconds = results["seconds"]
    lines = [
        f"# Frozen encoders in featurize, against the reference loops ({results['threads']} threads, "
        f"medians of {results['runs']} alternating runs)",
        "",
        "| work | loop | per second | ours / this (median of per-run ratios) |",
        "|---|---|---|---|",
    ]
    for case, loops in seconds.items():
        ours = next(iter(loops))
        for name, times in loops.items():
            ratio = statistics.median(b / a for a, b in zip(loops[ours], times))
            lines.append(
                f"| {case} ({results['counts'][case]}) | {name} | {results['per_second'][case][name]} | "
                f"{'' if name == ours else f'{ratio:.2f}x'} |"
            )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "featurize-encoders.json").write_text(json.dumps(results, indent=2) + "\n")
    (directory / "featurize-encoders.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
