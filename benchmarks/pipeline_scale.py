"""The whole pipeline as the catalog grows: seconds, peak memory and disk per item, step by step.

    .venv/bin/python benchmarks/pipeline_scale.py                                # 3k and 30k items, 1 epoch
    .venv/bin/python benchmarks/pipeline_scale.py --items 300000 --max-steps 300  # a step budget
    .venv/bin/python benchmarks/pipeline_scale.py --items 1000000 --only featurize --runners threads dask

For each catalog size: `smar data synth` makes it (queries: a tenth of the items, at least
3,000), then every step runs in a fresh process as `dvc repro` runs it (validate, featurize,
train, export, index, evaluate, register; MLflow on SQLite in the scratch directory), each
reporting its wall seconds and peak resident memory; after each step the bytes its output
directory holds, per catalog item. `--runners` runs featurize on each task runner in turn
(threads, or a local Dask cluster of `--workers` workers) from an empty features directory.
Writes benchmarks/results/pipeline-scale.{json,md}, a step's row as soon as it ends (with
`--only`, the steps run replace those of an earlier run of that size). `--keep DIR` keeps each
size's catalog under DIR/<items> and reuses it in a later run (a 1M-item catalog takes half an
hour to make).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["validate", "featurize", "train", "export", "index", "evaluate", "register"]
OUTPUTS = {"featurize": "features", "train": "model", "export": "embeddings", "index": "index"}

ONE_STEP = """
import json, resource, sys, time
from pathlib import Path
from smar.core.process import setup
setup()
from smar.core.config import load_config
from smar.core.paths import Paths
name, params, data, outputs, runner, workers = sys.argv[1:7]
config, paths = load_config(params), Paths(Path(data), Path(outputs))
started = time.perf_counter()
if runner == "steps":
    from smar.pipeline.steps import run_step
    summary = run_step(name, config, paths)
else:
    from smar.core.config import ClusterConfig
    from smar.pipeline.flow import featurize_flow, shard_runner
    config = config.model_copy(update={"cluster": ClusterConfig(task_runner=runner, workers=int(workers))})
    summary = featurize_flow.with_options(task_runner=shard_runner(config.cluster))(config, paths)
print("RESULT " + json.dumps({"seconds": time.perf_counter() - started,
      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "summary": summary}, default=str))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[3_000, 30_000])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, help="A training step budget in place of --epochs.")
    parser.add_argument("--only", nargs="+", choices=STEPS, help="Steps to run (their inputs are made first).")
    parser.add_argument("--runners", nargs="+", default=["steps"], help="featurize's runners: steps, threads, dask.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="Keep each size's catalog and outputs here, and reuse them.")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    import yaml

    results_file = args.results / "pipeline-scale.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {"sizes": {}}
    for items in args.items:
        if args.keep:
            scratch = args.keep / str(items)
            scratch.mkdir(parents=True, exist_ok=True)
        else:
            scratch = Path(tempfile.mkdtemp(prefix=f"smar-scale-{items}-"))
        try:
            params = yaml.safe_load(args.params.read_text())
            params["data"].update({"num_items": items, "num_queries": max(3_000, items // 10)})
            params["train"].update({"epochs": args.epochs, "max_steps": args.max_steps, "checkpoint_every_steps": 0})
            params_file = scratch / "params.yaml"
            data, outputs = scratch / "data", scratch / "outputs"
            made = scratch / "catalog-made.yaml"  # the data settings of a whole catalog kept here
            if not (made.is_file() and yaml.safe_load(made.read_text()) == params["data"]):
                params_file.write_text(yaml.safe_dump(params))
                shutil.rmtree(data, ignore_errors=True)
                synthesize(params_file, data)
                made.write_text(yaml.safe_dump(params["data"]))
            params_file.write_text(yaml.safe_dump(params))
            size = {"items": items, "queries": params["data"]["num_queries"], "epochs": args.epochs}
            size |= {"max_steps": args.max_steps, "steps": {}}
            wanted = STEPS if not args.only else STEPS[: max(STEPS.index(s) for s in args.only) + 1]
            for step in wanted:
                runners = args.runners if step == "featurize" else ["steps"]
                for runner in runners:
                    if step == "featurize":
                        shutil.rmtree(outputs / "features", ignore_errors=True)
                    run = one_step(step, params_file, data, outputs, runner, args.workers, scratch)
                    key = step if runner == "steps" else f"{step} ({runner}, {args.workers} workers)"
                    if step == "train" and args.only and args.max_steps:  # beside the size's full run
                        key = f"train ({args.max_steps} steps)"
                    folder = outputs / OUTPUTS.get(step, "")
                    if step in OUTPUTS:
                        run["bytes_per_item"] = round(directory_bytes(folder) / items, 1)
                    size["steps"][key] = run
                    print(f"{items} items, {key}: {json.dumps({k: v for k, v in run.items() if k != 'summary'})}")
                    if args.only:  # a partial run updates the steps it ran, each as it ends
                        results["sizes"].setdefault(str(items), size | {"steps": {}})["steps"][key] = run
                        write(results, args.results)
            if not args.only:
                kept = sum(directory_bytes(outputs / name) for name in ("features", "cache", "embeddings", "index"))
                size["kept_beside_model_bytes_per_item"] = round(kept / items, 1)
                results["sizes"][str(items)] = size
                write(results, args.results)
        finally:
            if not args.keep:
                shutil.rmtree(scratch, ignore_errors=True)


def synthesize(params: Path, data: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smar", "data", "synth", "--params", str(params), "--data", str(data)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])


def one_step(step: str, params: Path, data: Path, outputs: Path, runner: str, workers: int, scratch: Path) -> dict:
    environment = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{scratch / 'mlflow.db'}", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", ONE_STEP, step, str(params), str(data), str(outputs), runner, str(workers)],
        capture_output=True,
        text=True,
        env=environment,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{step} failed:\n{done.stderr[-4000:]}")
    run = json.loads(lines[-1].removeprefix("RESULT "))
    run["seconds"], run["peak_rss_mib"] = round(run["seconds"], 1), round(run["peak_rss_mib"])
    keep = ("computed", "item_bytes_per_item", "parts", "pairs_per_second", "items", "factory", "build_seconds")
    run["summary"] = {k: v for k, v in (run["summary"] or {}).items() if k in keep}
    return run


def directory_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def write(results: dict, directory: Path) -> None:
    lines = [
        "# The whole pipeline as the catalog grows (2-core CPU machine, one process per step)",
        "",
        "| items | step | seconds | peak RSS MiB | output bytes per item | notes |",
        "|---|---|---|---|---|---|",
    ]
    for items, size in sorted(results["sizes"].items(), key=lambda kv: int(kv[0])):
        for step, run in size["steps"].items():
            summary, notes = run.get("summary", {}), ""
            if "parts" in summary:  # rows over the seconds its shards took, summed over the workers
                notes = ", ".join(
                    f"{part} {done['computed_rows'] / done['seconds']:.0f}/s"
                    for part, done in summary["parts"].items()
                    if done["seconds"]
                ) + (" per worker" if "workers" in step else "")
            if summary.get("pairs_per_second"):
                notes = f"{summary['pairs_per_second']:.0f} pairs/s"
            lines.append(
                f"| {int(items):,} | {step} | {run['seconds']} | {run['peak_rss_mib']:,} | "
                f"{run.get('bytes_per_item', '')} | {notes} |"
            )
        if "kept_beside_model_bytes_per_item" in size:
            lines.append(
                f"| {int(items):,} | kept beside the model (features, caches, embeddings, index) | | | "
                f"{size['kept_beside_model_bytes_per_item']} | |"
            )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pipeline-scale.json").write_text(json.dumps(results, indent=2) + "\n")
    (directory / "pipeline-scale.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
