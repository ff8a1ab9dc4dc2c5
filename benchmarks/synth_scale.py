"""Synthetic data over worker processes: `smar data synth --preset medium` at 1 and 2 workers.

    .venv/bin/python benchmarks/synth_scale.py                       # medium, workers 1 and 2, 3 runs each
    .venv/bin/python benchmarks/synth_scale.py --runs 1 --workers 1 2 4

Runs alternate between the worker counts (1, 2, 1, 2, ...) so that a neighbour's load on a
shared machine falls on both alike, and the speed-up is the ratio of the medians of this
one invocation. Each run is a fresh process writing into a scratch directory; its output is
hashed (every file, by path) and all runs must give the same digest, whatever the workers.
If the first round already takes longer than --budget-seconds / --runs, the rest are
skipped and the report says it is one run each. Before each run it waits (up to
--wait-seconds) until other jobs use less than --quiet-cores of the machine, and it reports
how many cores other jobs used during each run (from /proc/stat, less the run's own CPU).

The extrapolation to 1M and 10M items on N cores takes the work from the 1-worker runs (all
of it in one process: its CPU seconds) and the serial part of it from the parent's CPU at the
largest worker count (rows, Parquet, queries); the rest (the images) is divided over the
cores, and both scale linearly with the items at the preset's proportions:
seconds(N) = (serial + (one-process CPU - serial) / N) * items / preset items.
The workers' own CPU is reported but not used: on a shared machine it is inflated by the
other jobs' contention.

Writes benchmarks/results/synth-scale.json (every run) and synth-scale.md.
"""

from __future__ import annotations

import argparse
import hashlib
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
EXTRAPOLATE_ITEMS = (1_000_000, 10_000_000)
EXTRAPOLATE_CORES = (1, 2, 4, 8, 16, 32, 64)

ONE_RUN = """
import json, resource, sys, time
from pathlib import Path
from smar.data.synth import PRESETS, synthesize
started = time.perf_counter()
manifest = synthesize(PRESETS[sys.argv[1]], Path(sys.argv[2]), workers=int(sys.argv[3]))
seconds = time.perf_counter() - started
own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": seconds, "counts": manifest["counts"],
                  "parent_cpu_s": own.ru_utime + own.ru_stime,
                  "workers_cpu_s": children.ru_utime + children.ru_stime}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--budget-seconds", type=float, default=480.0, help="Stop after one round if it would exceed.")
    parser.add_argument("--quiet-cores", type=float, default=0.3, help="Wait for other jobs to use fewer cores.")
    parser.add_argument("--wait-seconds", type=float, default=120.0, help="The longest wait for a quiet machine.")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    runs = []
    for round_number in range(args.runs):
        for workers in args.workers:
            wait_for_quiet(args.quiet_cores, args.wait_seconds)
            run = one_run(args.preset, workers) | {"round": round_number + 1}
            runs.append(run)
            print(
                f"round {round_number + 1}, {workers} workers: {run['seconds']:.1f} s "
                f"(parent CPU {run['parent_cpu_s']:.1f} s, workers' CPU {run['workers_cpu_s']:.1f} s, "
                f"other jobs {run['other_jobs_cores']:.2f} cores)",
                flush=True,
            )
        round_seconds = sum(run["process_seconds"] for run in runs)  # the waits for a quiet machine not counted
        if round_number == 0 and args.runs > 1 and round_seconds * args.runs > args.budget_seconds:
            print(
                f"one round took {round_seconds:.0f} s: {args.runs} would exceed the budget; one run each", flush=True
            )
            runs[0]["cut_to_one_round"] = True
            break
    digests = {run["digest"] for run in runs}
    if len(digests) != 1:
        raise SystemExit(f"runs differ in their bytes: {sorted((r['workers'], r['digest']) for r in runs)}")
    write_report(args.preset, runs, args.results / "synth-scale")
    print((args.results / "synth-scale.md").read_text())


def one_run(preset: str, workers: int) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="smar-synth-scale-"))
    try:
        busy_before, started = busy_cpu_seconds(), time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", ONE_RUN, preset, str(scratch / "data"), str(workers)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        run = json.loads(done.stdout.strip().splitlines()[-1])
        others = busy_cpu_seconds() - busy_before - run["parent_cpu_s"] - run["workers_cpu_s"]
        run["process_seconds"] = time.perf_counter() - started
        run["other_jobs_cores"] = max(others, 0.0) / run["process_seconds"]
        return run | {"workers": workers, "digest": dataset_digest(scratch / "data")}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def busy_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (Linux /proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(quiet_cores: float, wait_seconds: float, sample_seconds: float = 5.0) -> None:
    deadline = time.monotonic() + wait_seconds
    while True:
        before = busy_cpu_seconds()
        time.sleep(sample_seconds)
        cores = (busy_cpu_seconds() - before) / sample_seconds
        if cores < quiet_cores or time.monotonic() > deadline:
            return
        print(f"other jobs use {cores:.2f} cores; waiting", flush=True)


def dataset_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def write_report(preset: str, runs: list[dict], stem: Path) -> None:
    counts = runs[0]["counts"]
    by_workers = {}
    for workers in dict.fromkeys(run["workers"] for run in runs):
        mine = [run for run in runs if run["workers"] == workers]
        by_workers[workers] = {
            "runs": len(mine),
            "seconds": statistics.median(run["seconds"] for run in mine),
            "parent_cpu_s": statistics.median(run["parent_cpu_s"] for run in mine),
            "workers_cpu_s": statistics.median(run["workers_cpu_s"] for run in mine),
            "other_jobs_cores": statistics.median(run["other_jobs_cores"] for run in mine),
        }
        by_workers[workers]["items_per_s"] = counts["items"] / by_workers[workers]["seconds"]
    base, widest = min(by_workers), max(by_workers)
    for summary in by_workers.values():
        summary["speedup"] = by_workers[base]["seconds"] / summary["seconds"]
    work = by_workers[base]["parent_cpu_s"] + by_workers[base]["workers_cpu_s"]
    serial = by_workers[widest]["parent_cpu_s"] if widest > 1 else 0.0
    parallel = work - serial
    extrapolated = {
        str(items): {str(cores): (serial + parallel / cores) * items / counts["items"] for cores in EXTRAPOLATE_CORES}
        for items in EXTRAPOLATE_ITEMS
    }
    result = {
        "preset": preset,
        "counts": counts,
        "cpus": os.cpu_count(),
        "identical_bytes": len({run["digest"] for run in runs}) == 1,
        "digest": runs[0]["digest"],
        "by_workers": by_workers,
        "extrapolated_seconds": extrapolated,
        "runs": runs,
    }
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")

    runs_note = (
        f"medians of {by_workers[base]['runs']} runs each"
        if by_workers[base]["runs"] > 1
        else "one run each (more would have taken too long)"
        if runs[0].get("cut_to_one_round")
        else "one run each"
    )
    lines = [
        f"`smar data synth --preset {preset} --workers W` ({counts['items']:,} items, {counts['queries']:,} queries, "
        f"{counts['qrels']:,} qrels), {runs_note}, runs alternating between the worker counts, on a machine with "
        f"{os.cpu_count()} cores shared with other jobs. Every run wrote the same bytes: "
        f"{'yes' if result['identical_bytes'] else 'NO'} (sha256 of all files {result['digest'][:16]}...).",
        "",
        "| workers | runs | seconds | items/s | speed-up | parent CPU (s) | workers' CPU (s) | other jobs (cores) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for workers, summary in by_workers.items():
        lines.append(
            f"| {workers} | {summary['runs']} | {summary['seconds']:.1f} | {summary['items_per_s']:,.0f} | "
            f"{summary['speedup']:.2f}x | {summary['parent_cpu_s']:.1f} | {summary['workers_cpu_s']:.1f} | "
            f"{summary['other_jobs_cores']:.2f} |"
        )
    lines += [
        "",
        f"Extrapolated, at this preset's proportions: the {base}-worker runs' CPU ({work:.1f} s per "
        f"{counts['items']:,} items), of which the parent's at {widest} workers "
        f"({serial:.1f} s: rows, Parquet, queries) is serial and the rest ({parallel:.1f} s: the images) "
        "is divided over N cores, one worker each; minutes:",
        "",
        "| items | " + " | ".join(f"N={cores}" for cores in EXTRAPOLATE_CORES) + " |",
        "|---|" + "---|" * len(EXTRAPOLATE_CORES),
    ]
    for items, per_cores in extrapolated.items():
        lines.append(
            f"| {int(items):,} | " + " | ".join(f"{seconds / 60:,.1f}" for seconds in per_cores.values()) + " |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
