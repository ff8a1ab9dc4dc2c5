"""Export throughput: smar's export step against the reference loops of the libraries it builds on.

    .venv/bin/python benchmarks/export_throughput.py            # default catalog, 3 runs each
    .venv/bin/python benchmarks/export_throughput.py --runs 5

On the same catalog, in the same process, alternating run by run:
- text tower: `smar.retrieval.export.export` of a text_only model (start, shards, finish: tokenising,
  encoding, writing the files) against sentence-transformers' `encode` of the same tower
  (the same BERT, mean pooling, projection and normalisation, checked to give the same vectors);
- image tower: `export` of an image_only model (the timm backbone, then the patch Transformer)
  against timm's own inference loop (`timm.data.create_loader` over the image files, then the
  backbone alone), with the decoded-image cache warm (as every export after training finds
  it) and cold (the cache built inside the timed export);
- the whole SMAR model's export (text, image and fused towers), for scale.
The towers are untrained (the default sizes from params.yaml, `pretrained: finetune`, so that
export runs the encoders: frozen ones run once, in featurize): speed does not depend on the
weights. Writes benchmarks/results/export_throughput.json (every run) and .md (medians, and
the median of the per-run ratios ours / reference).
"""

from __future__ import annotations

import argparse
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
    parser.add_argument(
        "--loader-workers", type=int, default=2, help="timm loader workers (timm's inference script default)."
    )
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    import logging

    import smar  # noqa: F401  (torchvision import fix before sentence-transformers and timm)
    from smar.core.process import setup

    setup(logging.WARNING)
    from smar.core.config import load_config
    from smar.core.contract import item_texts
    from smar.data.dataset import load_dataset

    config = load_config(args.params)
    # Encoders that train run inside export; frozen ones run once in featurize (benchmarks/featurize_encoders.py).
    config = config.model_copy(update={"model": config.model.model_copy(update={"pretrained": "finetune"})})
    items = load_dataset(args.data).items
    texts = item_texts(items)
    scratch = Path(tempfile.mkdtemp(prefix="smar-export-bench-"))
    try:
        setups = {
            kind: model_outputs(config, kind, args.data, texts, scratch / kind)
            for kind in ("text_only", "image_only", "smar")
        }
        sentence_model = sentence_transformer(setups["text_only"], scratch / "st")
        check_same_text_vectors(setups["text_only"], sentence_model, texts)
        backbone = setups["image_only"]["model"].image_encoder.backbone.eval()

        runs = []
        for attempt in range(args.runs):
            run = {"items": len(texts)}
            run["smar_text"] = export_step(*setups["text_only"]["step"])
            run["sentence_transformers"] = timed(
                lambda: sentence_model.encode(texts, batch_size=config.export.batch_size, convert_to_numpy=True)
            )
            run["smar_image_cold_cache"] = export_step(*setups["image_only"]["step"], cold=True)
            run["smar_image"] = export_step(*setups["image_only"]["step"])
            run["timm_loop"] = timed(lambda: timm_inference(backbone, args.data, config, args.loader_workers))
            run["smar_full"] = export_step(*setups["smar"]["step"])
            runs.append(run)
            print(f"run {attempt + 1}: {json.dumps(run)}", flush=True)
            write_report(runs, args.results / "export_throughput", args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def model_outputs(config, kind: str, data: Path, texts: list[str], outputs: Path) -> dict:
    """An untrained model of `kind` saved where `smar export` reads it."""
    import torch

    from smar.core.paths import Paths
    from smar.model.checkpoint import save_model
    from smar.model.tokenizer import train_tokenizer
    from smar.model.two_tower import RetrievalModel

    torch.manual_seed(0)
    config = config.model_copy(update={"model": config.model.model_copy(update={"kind": kind})})
    tokenizer = train_tokenizer(texts, config.model)
    model = RetrievalModel(config.model, tokenizer.get_vocab_size()).eval()
    paths = Paths(data, outputs)
    paths.model.root.mkdir(parents=True)
    save_model(model, tokenizer, paths.model.root)
    return {"model": model, "tokenizer": tokenizer, "step": (config, paths)}


def export_step(config, paths, cold: bool = False) -> dict:
    """Seconds of the whole step, and of its shards (items read, tokenised, encoded and written)."""
    from smar.retrieval.export import export

    if cold:
        shutil.rmtree(paths.cache_dir, ignore_errors=True)
    started = time.perf_counter()
    summary = export(config, paths)
    step = time.perf_counter() - started
    return {"step": step, "shards": summary["seconds"]}


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def sentence_transformer(setup: dict, directory: Path):
    """The text tower as a SentenceTransformer: the BERT and tokenizer saved in Hugging Face
    format, mean pooling, the projection as a Dense layer, and normalisation."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import PreTrainedTokenizerFast

    model, tokenizer = setup["model"], setup["tokenizer"]
    config = model.config
    model.query_encoder.bert.save_pretrained(directory)
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=config.max_text_length,
    ).save_pretrained(directory)
    transformer = models.Transformer(str(directory), max_seq_length=config.max_text_length)
    pooling = models.Pooling(config.text_hidden_size, pooling_mode="mean")
    dense = models.Dense(
        config.text_hidden_size, config.embedding_dim, bias=True, activation_function=torch.nn.Identity()
    )
    dense.linear.load_state_dict(model.query_encoder.projection.state_dict())
    return SentenceTransformer(modules=[transformer, pooling, dense, models.Normalize()], device="cpu")


def check_same_text_vectors(setup: dict, sentence_model, texts: list[str]) -> None:
    import numpy as np

    from smar.model.inference import encode_texts

    ours = encode_texts(setup["model"], setup["tokenizer"], texts[:200]).numpy()
    theirs = sentence_model.encode(texts[:200], convert_to_numpy=True)
    difference = float(np.abs(ours - theirs).max())
    if difference > 1e-4:
        raise SystemExit(f"the sentence-transformers model is not the same tower: vectors differ by {difference}")


def timm_inference(backbone, data: Path, config, workers: int) -> None:
    """timm's inference loop (as its inference.py runs it): a loader over the image files, the model in eval mode."""
    import torch
    from timm.data import ImageDataset, create_loader

    size = config.model.image_size
    loader = create_loader(
        ImageDataset(str(data / "images")),
        input_size=(3, size, size),
        batch_size=config.export.batch_size,
        use_prefetcher=False,
        interpolation="bilinear",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        crop_pct=1.0,
        num_workers=workers,
    )
    with torch.inference_mode():
        for images, _ in loader:
            backbone.forward_features(images)


def write_report(runs: list[dict], stem: Path, args) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(
        json.dumps({"data": str(args.data), "loader_workers": args.loader_workers, "runs": runs}, indent=2) + "\n"
    )
    items = runs[0]["items"]

    def seconds(run: dict, key: str, part: str) -> float:
        return run[key][part] if isinstance(run[key], dict) else run[key]

    def rate(key: str, part: str = "shards") -> str:
        return f"{statistics.median(items / seconds(run, key, part) for run in runs):,.0f}"

    def ratio(ours: str, reference: str, part: str = "shards") -> str:
        return f"{statistics.median(seconds(run, reference, part) / seconds(run, ours, part) for run in runs):.2f}x"

    lines = [
        f"{items} items of `{args.data.name}`, {len(runs)} runs alternating. Items/s are medians; ratios are medians "
        f"of per-run "
        "ratios, reference time / our time (above 1: our export is faster). *Encoding* is the export's shards: items "
        "read, "
        "tokenised, encoded and written. *Whole step* adds loading the model, laying out the files and encoding the "
        "index's 1000 tuning queries.",
        "",
        "| tower | smar encoding items/s | smar whole step items/s | reference | reference items/s | encoding vs "
        "reference | whole step vs reference |",
        "|---|---|---|---|---|---|---|",
        f"| text (BERT, mean pool, projection) | {rate('smar_text')} | {rate('smar_text', 'step')} | "
        f"sentence-transformers `encode` | "
        f"{rate('sentence_transformers')} | {ratio('smar_text', 'sentence_transformers')} | "
        f"{ratio('smar_text', 'sentence_transformers', 'step')} |",
        f"| image, decoded-image cache warm (backbone + patch Transformer) | {rate('smar_image')} | "
        f"{rate('smar_image', 'step')} | "
        f"timm loader ({args.loader_workers} workers) + backbone only | {rate('timm_loop')} | "
        f"{ratio('smar_image', 'timm_loop')} | "
        f"{ratio('smar_image', 'timm_loop', 'step')} |",
        f"| image, the cache built inside the step | | {rate('smar_image_cold_cache', 'step')} | same | "
        f"{rate('timm_loop')} | | "
        f"{ratio('smar_image_cold_cache', 'timm_loop', 'step')} |",
        f"| SMAR, every tower (text, image, fused; two views) | {rate('smar_full')} | {rate('smar_full', 'step')} | "
        f"| | | |",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
