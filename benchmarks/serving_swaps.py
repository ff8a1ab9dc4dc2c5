"""Resident memory of `smar serve` across model swaps: one process swapping between two versions.

    .venv/bin/python benchmarks/serving_swaps.py                 # 50 swaps, about 3 minutes on 2 cores
    .venv/bin/python benchmarks/serving_swaps.py --baseline OLD.json   # beside an earlier run's numbers
    .venv/bin/python benchmarks/serving_swaps.py --model smar-retriever --versions 1 2 --swaps 10 \
        --name serving-swaps-champion                            # two versions of the project's store

A scratch MLflow store gets two registered versions of one tiny model (the tiny preset, the
encoders trained from scratch, as the tests train them). The service's `AliasFollower`, in this
process, swaps between them `--swaps` times (the alias moved, then one registry check, as the
follower's thread does every `serve.poll_seconds`); after each swap it records the resident
memory (RSS), `gc.get_freeze_count()` (objects frozen out of garbage collection) and how many
swapped-out retrievers are still alive, and the swap's time and CPU time. With `--model` it
swaps between two versions already registered in the configured store instead (through an
alias of its own, `swaps-benchmark`, removed at the end; the champion never moves). Writes
benchmarks/results/serving-swaps.{json,md} (`--name`).
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL_NAME = ALIAS = "swaps-benchmark"
# The tests' tiny model (tests/conftest.py: TINY_PARAMS and SCRATCH_MODEL): trains in seconds.
TINY = {
    "model": {"text_encoder": "scratch", "image_backbone": "test_efficientnet", "image_weights": "none"}
    | {"fusion_width": 32, "image_size": 32},
    "train": {"epochs": 2, "batch_size": 32, "learning_rate": 0.003, "checkpoint_every_steps": 0},
}
RESULTS = "serving-swaps"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--swaps", type=int, default=50)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--baseline", type=Path, help="An earlier results file: its runs shown beside this one.")
    parser.add_argument("--label", default="this run", help="What this run measures, e.g. the code's version.")
    parser.add_argument("--model", help="A registered model of the configured store to swap between two versions of.")
    parser.add_argument("--versions", nargs=2, help="With --model: the two versions.")
    parser.add_argument("--name", default=RESULTS, help="Results file name, without extension.")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)  # the child that trains and registers
    args = parser.parse_args()

    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if args.model:
        from smar.core import tracking
        from smar.core.process import setup

        setup()
        tracking.configure()
        result = {"label": args.label, "swaps": args.swaps, "model": args.model, "versions": args.versions}
        write(result | swap(args.model, args.versions, args.swaps), args)
        return
    scratch = args.prepare or Path(tempfile.mkdtemp(prefix="smar-swaps-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch / 'mlruns' / 'mlflow.db'}"  # never the project's store
    from smar.core.process import setup

    setup()
    if args.prepare:
        print(json.dumps(register_two_versions(scratch, args.params)))
        return
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    # trained in a process of its own, so this one holds only what a serving process holds
    prepared = subprocess.run(
        [sys.executable, __file__, "--prepare", str(scratch), "--params", str(args.params)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    versions = json.loads(prepared.stdout.strip().splitlines()[-1])
    result = {"label": args.label, "swaps": args.swaps, "model": MODEL_NAME, "versions": versions}
    write(result | swap(MODEL_NAME, versions, args.swaps), args)


def register_two_versions(scratch: Path, params: Path) -> list[str]:
    """Train the tiny model once and register its artifacts as two versions."""

    from smar.core import tracking
    from smar.core.config import load_config
    from smar.core.paths import Paths
    from smar.data.synth import PRESETS, synthesize
    from smar.pipeline import steps
    from smar.registry.register import log_version

    config = load_config(params, overrides=TINY)
    paths = Paths(scratch / "data", scratch / "outputs")
    synthesize(PRESETS["tiny"], paths.data)
    for name in ("validate", "featurize", "train", "export", "index"):
        steps.run_step(name, config, paths)
    mlflow = tracking.configure()
    with mlflow.start_run(run_id=tracking.run_id_of(paths.model.root)):
        versions = [log_version(MODEL_NAME, paths.model.root, paths.index.root) for _ in range(2)]
    return versions


def swap(model_name: str, versions: list[str], swaps: int) -> dict:
    """The follower swapping between `versions` of `model_name` `swaps` times, measured after each swap."""
    from mlflow import MlflowClient

    from smar.serving.follower import AliasFollower

    client = MlflowClient()
    client.set_registered_model_alias(model_name, ALIAS, versions[0])
    try:
        follower = AliasFollower(model_name, ALIAS, poll_seconds=1)
        follower.check_once()
        assert follower.current and follower.current.version == versions[0], follower.problems
        swapped_out: list[weakref.ref] = []
        rows = [measure(0, swapped_out, 0.0, 0.0)]
        for number in range(1, swaps + 1):
            outgoing = weakref.ref(follower.current.retriever)
            client.set_registered_model_alias(model_name, ALIAS, versions[number % 2])
            started, cpu = time.perf_counter(), thread_cpu_seconds()
            follower.check_once()
            seconds, cpu = time.perf_counter() - started, thread_cpu_seconds() - cpu
            assert follower.current.version == versions[number % 2], follower.problems
            swapped_out.append(outgoing)
            rows.append(measure(number, swapped_out, seconds, cpu))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        client.delete_registered_model_alias(model_name, ALIAS)
    return {"rows": rows, "summary": summary(rows)}


def thread_cpu_seconds() -> float:
    """CPU time of this thread, where the follower loads (the check runs here, as in its own thread)."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def measure(swap_number: int, swapped_out: list[weakref.ref], seconds: float, cpu: float) -> dict:
    return {
        "swap": swap_number,
        "rss_mb": round(resident_bytes() / 2**20, 1),
        "rss_mb_trimmed": round(trimmed_resident_bytes() / 2**20, 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "frozen_objects": gc.get_freeze_count(),
        "swapped_out_retrievers_alive": sum(ref() is not None for ref in swapped_out),
        "threads": threading.active_count(),
        "swap_seconds": round(seconds, 2),
        "swap_cpu_seconds": round(cpu, 3),
    }


def resident_bytes() -> int:
    """The process's resident set now (Linux: /proc/self/statm's second field, in pages)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def trimmed_resident_bytes() -> int:
    """The resident set once glibc's malloc has handed its free pages back (malloc_trim): what the
    process holds, without what the allocator keeps for reuse."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return resident_bytes()


def summary(rows: list[dict]) -> dict:
    """RSS after the first swap and after the last, and the growth per swap over the second half
    (past the allocator's warm-up)."""
    first, middle, last = rows[1], rows[len(rows) // 2], rows[-1]
    return {
        "rss_mb_after_first_swap": first["rss_mb"],
        "rss_mb_after_last_swap": last["rss_mb"],
        "rss_growth_mb": round(last["rss_mb"] - first["rss_mb"], 1),
        "rss_mb_trimmed_after_first_swap": first["rss_mb_trimmed"],
        "rss_mb_trimmed_after_last_swap": last["rss_mb_trimmed"],
        "rss_growth_mb_per_swap_second_half": round(
            (last["rss_mb"] - middle["rss_mb"]) / (last["swap"] - middle["swap"]), 2
        ),
        "frozen_objects_after_first_swap": first["frozen_objects"],
        "frozen_objects_after_last_swap": last["frozen_objects"],
        "swapped_out_retrievers_alive": last["swapped_out_retrievers_alive"],
        "threads_after_first_swap": first["threads"],
        "threads_after_last_swap": last["threads"],
        "median_swap_seconds": sorted(row["swap_seconds"] for row in rows[1:])[(len(rows) - 2) // 2],
        "median_swap_cpu_seconds": sorted(row["swap_cpu_seconds"] for row in rows[1:])[(len(rows) - 2) // 2],
    }


def what(result: dict) -> str:
    if result["model"] == MODEL_NAME:
        return "the tiny model (scratch encoders)"
    return f"{result['model']} (versions {' and '.join(result['versions'])})"


def write(result: dict, args) -> None:
    args.results.mkdir(parents=True, exist_ok=True)
    runs = (json.loads(args.baseline.read_text())["runs"] if args.baseline else []) + [result]
    (args.results / f"{args.name}.json").write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    labels = {
        "rss_mb_after_first_swap": "RSS after swap 1 (MB)",
        "rss_mb_after_last_swap": f"RSS after swap {result['swaps']} (MB)",
        "rss_growth_mb": "RSS growth, swap 1 to the last (MB)",
        "rss_growth_mb_per_swap_second_half": "RSS growth per swap, second half (MB)",
        "rss_mb_trimmed_after_first_swap": "RSS after swap 1, malloc trimmed (MB)",
        "rss_mb_trimmed_after_last_swap": f"RSS after swap {result['swaps']}, malloc trimmed (MB)",
        "frozen_objects_after_first_swap": "objects frozen out of collection, after swap 1",
        "frozen_objects_after_last_swap": "objects frozen out of collection, after the last swap",
        "swapped_out_retrievers_alive": "swapped-out retrievers still alive at the end",
        "threads_after_first_swap": "threads after swap 1",
        "threads_after_last_swap": "threads after the last swap",
        "median_swap_seconds": "median swap (load, warm-up, swap) (s)",
        "median_swap_cpu_seconds": "median CPU time of a swap, in the loading thread (s)",
    }
    lines = [
        f"One process swapping between two registered versions of {what(result)} {result['swaps']} times, "
        f"{os.cpu_count()} CPUs.",
        "",
        "| | " + " | ".join(run["label"] for run in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for key, label in labels.items():
        lines.append(f"| {label} | " + " | ".join(str(run["summary"].get(key, "")) for run in runs) + " |")
    lines += ["", "RSS (MB) after swaps " + ", ".join(str(n) for n in range(0, result["swaps"] + 1, 10)) + ":", ""]
    for run in runs:
        rss = [f"{row['rss_mb']} ({row['rss_mb_trimmed']} trimmed)" for row in run["rows"][::10]]
        lines.append(f"- {run['label']}: {', '.join(rss)}")
    (args.results / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
