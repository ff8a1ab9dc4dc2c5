"""Training throughput: pairs per second of `smar train`'s loop, and whether the input pipeline keeps up.

    .venv/bin/python benchmarks/training_throughput.py                       # default catalog and params, CPU
    .venv/bin/python benchmarks/training_throughput.py --workers 0 1 --runs 5 --steps 60

Each run is a fresh `smar train` process (max `--steps` steps) with its own outputs and
MLflow store; its `train_pairs_per_second` metric covers the training loop (batches in,
forward, backward, optimiser), not start-up or validation. Runs alternate over the
DataLoader worker counts. The decoded-image cache is built once, before the first run, as a
second training of the same catalog finds it. Beside them, the input pipeline alone
(the same Loader, no model) shows how far ahead of the model it runs.

On a CUDA machine the same command measures the GPU path (bf16 autocast, channels_last,
fused AdamW) and adds GPU utilisation and peak memory. Writes
benchmarks/results/training_throughput[-cuda].json (every run) and .md (medians).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
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
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    import torch
    import yaml

    device = "cuda" if torch.cuda.is_available() else "cpu"
    scratch = Path(tempfile.mkdtemp(prefix="smar-train-bench-"))
    environment = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{scratch / 'mlflow.db'}", "PYTHONPATH": str(ROOT)}
    base = scratch / "base"
    try:
        smar(["validate", "--params", str(args.params), "--data", str(args.data), "--out", str(base)], environment)
        stem = args.results / ("training_throughput" + ("-cuda" if device == "cuda" else ""))
        runs, loader = [], []
        for attempt in range(args.runs):
            for workers in args.workers:
                params = yaml.safe_load(args.params.read_text())
                params["train"].update(
                    {"loader_workers": workers, "max_steps": args.steps, "epochs": 1, "checkpoint_every_steps": 0}
                )
                outputs = scratch / f"run-{attempt}-{workers}"
                shutil.copytree(base, outputs)  # the validation report, and the image cache after the first run
                (outputs / "params.yaml").write_text(yaml.safe_dump(params))
                smar(
                    [
                        "train",
                        "--params",
                        str(outputs / "params.yaml"),
                        "--data",
                        str(args.data),
                        "--out",
                        str(outputs),
                    ],
                    environment,
                )
                run = {
                    "workers": workers,
                    "device": device,
                    "batch_size": params["train"]["batch_size"],
                    "steps": args.steps,
                }
                run |= run_metrics(outputs, environment)
                if (outputs / "cache").is_dir() and not (base / "cache").is_dir():
                    shutil.copytree(outputs / "cache", base / "cache")
                shutil.rmtree(outputs)
                runs.append(run)
                print(
                    f"run {attempt + 1}, {workers} loader workers: {run['train_pairs_per_second']:.0f} pairs/s",
                    flush=True,
                )
            loader.append(loader_only_pairs_per_second(args, base))
            write_report(runs, loader, stem, args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def smar(arguments: list[str], environment: dict) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smar", *arguments], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"smar {arguments[0]} failed:\n{done.stderr[-3000:]}")


def run_metrics(outputs: Path, environment: dict) -> dict:
    os.environ["MLFLOW_TRACKING_URI"] = environment["MLFLOW_TRACKING_URI"]
    from mlflow import MlflowClient

    from smar.core.tracking import run_id_of

    metrics = MlflowClient().get_run(run_id_of(outputs / "model")).data.metrics
    keep = ("train_pairs_per_second", "train_loop_seconds", "gpu_utilization_percent", "gpu_max_memory_mib")
    return {name: metrics[name] for name in keep if name in metrics}


def loader_only_pairs_per_second(args, outputs: Path, batches: int = 40) -> float:
    """The training input pipeline alone: the same batches, assembled in the training process, no model."""
    from smar.core.config import load_config
    from smar.core.paths import Paths
    from smar.training.distributed import Cluster
    from smar.training.loop import prepare

    config = load_config(args.params)
    cluster = Cluster.start("cpu", config.train.batch_size)
    _, data = prepare(config, Paths(args.data, outputs), cluster)
    schedule = cluster.epoch_batches(len(data.pairs), 0, 1)[:batches]
    loader = data.pairs.loader(0, cluster)
    started = time.perf_counter()
    count = sum(len(batch["items"]) for batch in loader.epoch(schedule))
    return count / (time.perf_counter() - started)


def write_report(runs: list[dict], loader: list[float], stem: Path, args) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(
        json.dumps({"data": str(args.data), "runs": runs, "loader_only_pairs_per_second": loader}, indent=2) + "\n"
    )
    device = runs[0]["device"]
    lines = [
        f"`smar train` on `{args.data.name}` ({device}, batch {runs[0]['batch_size']}, {runs[0]['steps']} steps per "
        f"run, params.yaml "
        f"otherwise); medians of {len(runs) // len(args.workers)} runs per setting, alternating.",
        "",
        "| DataLoader workers | pairs/s (training loop) | vs 0 workers |"
        + (" GPU util % | GPU peak MiB |" if device == "cuda" else ""),
        "|---|---|---|" + ("---|---|" if device == "cuda" else ""),
    ]

    def median(workers: int, key: str) -> float:
        return statistics.median(run[key] for run in runs if run["workers"] == workers and key in run)

    baseline = median(args.workers[0], "train_pairs_per_second")
    for workers in args.workers:
        rate = median(workers, "train_pairs_per_second")
        row = f"| {workers} | {rate:,.0f} | {rate / baseline:.2f}x |"
        if device == "cuda":
            row += f" {median(workers, 'gpu_utilization_percent'):.0f} | {median(workers, 'gpu_max_memory_mib'):,.0f} |"
        lines.append(row)
    lines += [
        "",
        f"The input pipeline alone (same batches, no model, in the training process): "
        f"{statistics.median(loader):,.0f} pairs/s.",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
