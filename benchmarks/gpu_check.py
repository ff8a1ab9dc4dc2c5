"""GPU check: the GPU preset's training on CUDA (bf16) beside the same first steps on the CPU, the export, featurize.

    bash benchmarks/gpu_check.sh              # on the CUDA machine (see gpu_check.sh)
    .venv/bin/python benchmarks/gpu_check.py --cuda-steps 20 --cpu-steps 3    # the same code path on a CPU machine

Generates the default catalog, trains `params.gpu.yaml` (MiniLM and EfficientNet-Lite0 fine-tuned
end to end, batch 512) for `--cuda-steps` steps on CUDA, exports every item, then trains the
first `--cpu-steps` steps again on the CPU from the same seed, then runs the featurize step
(shipped settings, 224 px images) on CUDA and on the CPU. Prints and writes
(benchmarks/results/gpu_check.{json,md}, and $OUT when set) pairs/s, GPU utilisation and peak
memory, the export's items/s, the loss of each of the first steps on both devices, and
featurize's rows/s per part on both and how far apart their features are.

With `--random-weights` (what gpu_check.sh does where the weight packages are missing: MiniLM's
88 MB cannot travel to a machine with no registry) the towers have the shipped architectures,
tokenizer and sizes, with random weights: speed, memory and the CPU/CUDA agreement do not
depend on the weights' values, the quality does (the quality benchmark measures it).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=ROOT / "params.gpu.yaml")
    parser.add_argument("--cuda-steps", type=int, default=300)
    parser.add_argument("--cpu-steps", type=int, default=3)
    parser.add_argument(
        "--random-weights",
        type=Path,
        metavar="MINILM_DIR",
        help="A folder with MiniLM's config.json and tokenizer.json: build the towers with random weights.",
    )
    parser.add_argument(
        "--validation-report",
        type=Path,
        help="A validation report of this very catalog, made where the validator runs.",
    )
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    import logging

    import torch

    import smar  # noqa: F401  (before timm: smar makes a CPU torch and a CUDA torchvision import together)
    from smar.core.process import setup

    setup()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    scratch = Path(tempfile.mkdtemp(prefix="smar-gpu-check-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # gigabytes of models and caches
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{scratch / 'mlflow.db'}")
    if args.random_weights:
        use_random_weights(args.random_weights)

    from smar.core.config import load_config
    from smar.core.paths import Paths
    from smar.core.tracking import MlflowTracker
    from smar.data.synth import synthesize
    from smar.pipeline import steps as pipeline_steps

    config = load_config(args.params)
    data = scratch / "data"
    synthesize(config.data, data)
    cuda = torch.cuda.is_available()
    results = {
        "device": torch.cuda.get_device_name() if cuda else "cpu only",
        "torch": torch.__version__,
        "params": str(args.params.name),
        "random_weights": bool(args.random_weights),
        "batch_size": config.train.batch_size,
    }
    runs = {}
    for device, steps in (("cuda", args.cuda_steps), ("cpu", args.cpu_steps)) if cuda else (("cpu", args.cpu_steps),):
        paths = Paths(data, scratch / device)
        validated(paths, args.validation.report, config)
        settings = config.train.model_copy(
            update={
                "device": device,
                "max_steps": steps,
                "epochs": 1000,
                "checkpoint_every_steps": 0,
                "loader_workers": config.train.loader_workers if device == "cuda" else 0,
            }
        )
        run_config = config.model_copy(
            update={"train": settings, "export": config.export.model_copy(update={"device": device})}
        )
        started = time.perf_counter()
        trained = pipeline_steps.train(
            run_config, paths, MlflowTracker()
        )  # its per-step losses are read back from the run
        runs[device] = {"steps": steps, "train_seconds": round(time.perf_counter() - started, 1)} | run_metrics(
            trained["run_id"]
        )
        if len(runs) == 1:  # the export, on the first (fastest) device
            exported = pipeline_steps.export(run_config, paths)
            runs[device]["export_items_per_second"] = round(exported["items"] / exported["seconds"], 1)
        print(f"{device}: {json.dumps(runs[device])}", flush=True)
    results["runs"] = runs
    results["featurize"] = featurize_check(data, scratch, args.validation_report, cuda)
    write(results, [args.results] + ([Path(os.environ["OUT"])] if os.environ.get("OUT") else []))


def featurize_check(data: Path, scratch: Path, report: Path | None, cuda: bool) -> dict:
    """The featurize step at the shipped settings but 224 px images (the heavy path), on CUDA
    (PyTorch fp16) and on the CPU (ONNX Runtime): rows/s per part, and how far apart the two are."""
    import numpy as np

    from smar.core.config import load_config
    from smar.core.paths import Paths
    from smar.features.step import featurize, load_features

    base = load_config(ROOT / "params.yaml")
    checked = {}
    for device in ("cuda", "cpu") if cuda else ("cpu",):
        config = base.model_copy(
            update={
                "model": base.model.model_copy(update={"image_size": 224}),
                "featurize": base.featurize.model_copy(update={"device": device}),
            }
        )
        paths = Paths(data, scratch / f"featurize-{device}")
        validated(paths, report, config)
        started = time.perf_counter()
        summary = featurize(config, paths)
        features = load_features(paths, config.model)
        rows = np.arange(min(256, len(features.item_image)))
        checked[device] = {
            "seconds": round(time.perf_counter() - started, 2),
            "item_bytes_per_item": summary["item_bytes_per_item"],
            "rows_per_second": {
                part: round(done["computed_rows"] / done["seconds"], 1)
                for part, done in summary["parts"].items()
                if done["seconds"]
            },
            "_sample": (features.item_text.rows(rows)["states"].numpy(), features.item_image.rows(rows).numpy()),
        }
        print(f"featurize on {device}: {json.dumps({k: v for k, v in checked[device].items() if k != '_sample'})}")
    if len(checked) == 2:
        (text_cuda, image_cuda), (text_cpu, image_cpu) = checked["cuda"]["_sample"], checked["cpu"]["_sample"]
        checked["largest_difference"] = {
            "text_states": float(np.abs(text_cuda - text_cpu).max()),
            "image_tokens": float(np.abs(image_cuda - image_cpu).max()),
            "image_scale": float(np.abs(image_cpu).max()),
        }
    for run in checked.values():
        if isinstance(run, dict):
            run.pop("_sample", None)
    return checked


def use_random_weights(minilm_dir: Path) -> None:
    """Towers with the shipped architectures and tokenizer, random weights (see the module doc)."""
    import timm
    from transformers import BertConfig, BertModel

    from smar.model import pretrained

    pretrained.minilm_dir = lambda: minilm_dir
    pretrained.minilm_bert = lambda: BertModel(BertConfig.from_pretrained(str(minilm_dir)), add_pooling_layer=False)
    pretrained.efficientnet_lite0 = lambda num_classes=1000: timm.create_model(
        "tf_efficientnet_lite0", pretrained=False, num_classes=num_classes
    )


def validated(paths, report: Path | None, config) -> None:
    """The catalog's validation: run here, or a report made elsewhere for the same bytes (its data hash must match)."""
    from smar.data.dataset import dvc_directory_md5
    from smar.data.validation import validate

    if report is None:
        validate(config, paths)
        return
    stored = json.loads(report.read_text())
    if stored.get("data_md5") != dvc_directory_md5(paths.data):
        raise SystemExit(f"{report}: made for other data ({stored.get('data_md5')}); run gpu_check.sh --prepare again.")
    paths.validation.root.mkdir(parents=True, exist_ok=True)
    paths.validation.report.write_text(json.dumps(stored["report"]))


def run_metrics(run_id: str) -> dict:
    from mlflow import MlflowClient

    client = MlflowClient()
    metrics = client.get_run(run_id).data.metrics
    keep = ("train_pairs_per_second", "gpu_utilization_percent", "gpu_max_memory_mib")
    losses = [round(m.value, 5) for m in sorted(client.get_metric_history(run_id, "train_loss"), key=lambda m: m.step)]
    return {name: round(metrics[name], 1) for name in keep if name in metrics} | {"losses": losses}


def write(results: dict, directories: list[Path]) -> None:
    runs = results["runs"]
    lines = [
        f"GPU check on {results['device']} (torch {results['torch']}), `{results['params']}`, batch "
        f"{results['batch_size']}"
        + (", random weights in the shipped architectures" if results["random_weights"] else "")
        + ".",
        "",
        "| device | steps | pairs/s | GPU util % | GPU peak MiB | export items/s | final loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for device, run in runs.items():
        lines.append(
            f"| {device} | {run['steps']} | {run.get('train_pairs_per_second', '')} | "
            f"{run.get('gpu_utilization_percent', '')} | "
            f"{run.get('gpu_max_memory_mib', '')} | {run.get('export_items_per_second', '')} | "
            f"{run['losses'][-1] if run['losses'] else ''} |"
        )
    if len(runs) == 2:
        cuda, cpu = runs["cuda"]["losses"], runs["cpu"]["losses"]
        shared = min(len(cuda), len(cpu))
        results["largest_loss_difference"] = (
            max(abs(a - b) for a, b in zip(cuda[:shared], cpu[:shared])) if shared else None
        )
        lines += [
            "",
            f"Loss of the first {shared} steps, CUDA (bf16) vs CPU (fp32), from the same weights and batches "
            f"(dropout draws differ): "
            + ", ".join(f"{a:.4f}/{b:.4f}" for a, b in zip(cuda[:shared], cpu[:shared]))
            + f"; largest difference {results['largest_loss_difference']:.4f}.",
        ]
    featurized = results.get("featurize", {})
    devices = [device for device in ("cuda", "cpu") if device in featurized]
    if devices:
        lines += [
            "",
            "Featurize at the shipped settings with 224 px images (CUDA: PyTorch fp16; CPU: ONNX Runtime):",
            "",
            "| device | seconds | item texts/s | images/s | queries/s | feature bytes per item |",
            "|---|---|---|---|---|---|",
        ]
        for device in devices:
            run, rates = featurized[device], featurized[device]["rows_per_second"]
            lines.append(
                f"| {device} | {run['seconds']} | {rates.get('text', '')} | {rates.get('image', '')} | "
                f"{rates.get('query', '')} | {run['item_bytes_per_item']} |"
            )
        if "largest_difference" in featurized:
            difference = featurized["largest_difference"]
            lines.append(
                f"\nLargest difference CUDA vs CPU: text states {difference['text_states']:.3g}, image tokens "
                f"{difference['image_tokens']:.3g} (largest image token {difference['image_scale']:.3g})."
            )
    text = "\n".join(lines) + "\n"
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n")
        (directory / "gpu_check.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
