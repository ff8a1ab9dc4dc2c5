"""Dataset generator at scale: time, peak memory and disk per preset of `smar data synth`.

    .venv/bin/python benchmarks/dataset_scale.py                          # tiny, small, medium; 3 runs each
    .venv/bin/python benchmarks/dataset_scale.py --presets large --runs 1  # one million items

Each run generates the preset into a scratch directory in a fresh process (so its peak
resident memory is its own) and is deleted afterwards. Writes
benchmarks/results/dataset_scale.json (every run) and dataset_scale.md (medians).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ONE_RUN = """
import json, resource, sys, time
from pathlib import Path
from smar.data.synth import PRESETS, synthesize
started = time.perf_counter()
manifest = synthesize(PRESETS[sys.argv[1]], Path(sys.argv[2]))
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "counts": manifest["counts"]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "medium"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    stem = args.results / "dataset_scale"
    runs = json.loads(stem.with_suffix(".json").read_text())["runs"] if stem.with_suffix(".json").exists() else []
    runs = [run for run in runs if run["preset"] not in args.presets]  # a new measurement replaces the old one
    for preset in args.presets:
        for attempt in range(args.runs):
            scratch = Path(tempfile.mkdtemp(prefix="smar-scale-"))
            try:
                done = subprocess.run(
                    [sys.executable, "-c", ONE_RUN, preset, str(scratch / "data")],
                    cwd=ROOT,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                run = json.loads(done.stdout.strip().splitlines()[-1])
                run |= {"preset": preset, "disk_mib": disk_mib(scratch / "data")}
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            runs.append(run)
            print(
                f"{preset} run {attempt + 1}: {run['seconds']:.1f} s, peak {run['peak_rss_mib']:.0f} MiB, "
                f"{run['disk_mib']:.0f} MiB on disk",
                flush=True,
            )
            write_report(runs, stem)
    print(stem.with_suffix(".md").read_text())


def disk_mib(directory: Path) -> float:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file()) / 2**20


def write_report(runs: list[dict], stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    lines = [
        "`smar data synth --preset P`, medians over the runs (one process per run, 2-core machine).",
        "",
        "| preset | items | queries | qrels | runs | seconds | items/s | peak memory (MiB) | disk (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for preset in dict.fromkeys(run["preset"] for run in runs):
        mine = [run for run in runs if run["preset"] == preset]
        counts = mine[0]["counts"]
        seconds = statistics.median(run["seconds"] for run in mine)
        peak = statistics.median(run["peak_rss_mib"] for run in mine)
        disk = statistics.median(run["disk_mib"] for run in mine)
        lines.append(
            f"| {preset} | {counts['items']:,} | {counts['queries']:,} | {counts['qrels']:,} | {len(mine)} | "
            f"{seconds:.1f} "
            f"| {counts['items'] / seconds:,.0f} | {peak:.0f} | {disk:.1f} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
