"""Load test of `smar serve` on 127.0.0.1: latency, throughput and errors, steady and during alias swaps.

    make run                                        # a champion on the default catalog
    .venv/bin/python benchmarks/serving_load.py     # 60 s steady + 60 s with two swaps, 50 clients

Starts `smar serve` as its own process on a free port, then runs closed-loop clients
(each sends its next query when the last answer arrives) with the test split's queries.
Phase "steady": the champion serves throughout. Phase "swap": the champion's artifacts are
registered again as a new version; the alias moves to it a third of the way in and back
two thirds of the way in, so the service loads and swaps twice under load. Writes
benchmarks/results/serving.json and serving.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    from mlflow import MlflowClient

    from smar import tracking
    from smar.config import load_config
    from smar.dataset import load_dataset
    from smar.promotion import current_champion

    config = load_config(args.params)
    name = config.register_.model_name
    tracking.configure()
    client = MlflowClient()
    champion = current_champion(client, name)
    if champion is None:
        sys.exit(f"{name} has no champion in {os.environ.get('MLFLOW_TRACKING_URI', tracking.DEFAULT_TRACKING_URI)}: run `make run` first.")
    queries = load_dataset(args.data).split_queries("test")["text"].tolist()
    gc.freeze()  # the client's own full garbage collections would otherwise show up as server latency

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp(prefix="smar-load-")) / "serve.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "smar", "serve", "--params", str(args.params), "--data", str(args.data), "--port", str(port)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_ready(url, server, log)
        results = {"meta": {"clients": args.clients, "seconds": args.seconds, "k": args.k, "cpus": os.cpu_count(), "champion": champion}}
        print(f"steady: {args.clients} clients for {args.seconds:.0f} s against version {champion}", flush=True)
        results["steady"] = asyncio.run(load(url, queries, args))
        print(json.dumps(results["steady"]), flush=True)

        twin = register_twin(client, name, champion)
        swaps = threading.Thread(target=swap_alias, args=(client, name, [(args.seconds / 3, twin), (2 * args.seconds / 3, champion)]))
        print(f"swap: the alias moves {champion} -> {twin} -> {champion} under load", flush=True)
        swaps.start()
        results["swap"] = asyncio.run(load(url, queries, args))
        swaps.join()
        print(json.dumps(results["swap"]), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    write_results(results, args.results)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(url: str, server, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"smar serve exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    sys.exit(f"smar serve did not become ready in 300 s:\n{log.read_text()[-3000:]}")


def register_twin(client, name: str, version: str) -> str:
    """Register the champion's artifacts again, as a new version to swap to."""
    import mlflow

    from smar.register import log_version

    source = client.get_model_version(name, version)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}")) / "artifacts"
    with mlflow.start_run(run_id=source.run_id):
        return log_version(name, local / "model", local / "index")


def swap_alias(client, name: str, schedule: list[tuple[float, str]]) -> None:
    started = time.monotonic()
    for at, version in schedule:
        time.sleep(max(0.0, at - (time.monotonic() - started)))
        client.set_registered_model_alias(name, "champion", version)
        print(f"  {time.monotonic() - started:5.1f} s: champion -> version {version}", flush=True)


async def load(url: str, queries: list[str], args) -> dict:
    """Closed-loop clients on one aiohttp session (lighter on the shared CPUs than httpx)."""
    import aiohttp

    latencies, errors, versions = [], [], {}
    deadline = time.monotonic() + args.seconds

    async def client(seed: int, http) -> None:
        pick = random.Random(seed)
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                async with http.post(f"{url}/search", json={"query": pick.choice(queries), "k": args.k}) as response:
                    body = await response.json(content_type=None)
                if response.status == 200:
                    latencies.append(time.perf_counter() - started)
                    versions[body["model_version"]] = versions.get(body["model_version"], 0) + 1
                else:
                    errors.append(f"{response.status}: {str(body)[:200]}")
            except (TimeoutError, aiohttp.ClientError) as error:
                errors.append(f"{type(error).__name__}: {error}")

    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=args.clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        await asyncio.gather(*(client(n, http) for n in range(args.clients)))
    elapsed = time.monotonic() - started
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {
        "requests": len(latencies) + len(errors),
        "errors": len(errors),
        "error_examples": errors[:5],
        "throughput_rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * quantiles[49], 2),
        "p95_ms": round(1000 * quantiles[94], 2),
        "p99_ms": round(1000 * quantiles[98], 2),
        "max_ms": round(1000 * max(latencies), 2) if latencies else None,
        "answers_by_version": versions,
    }


def write_results(results: dict, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "serving.json").write_text(json.dumps(results, indent=2) + "\n")
    meta = results["meta"]
    lines = [
        f"`smar serve` on 127.0.0.1, {meta['clients']} closed-loop clients, {meta['seconds']:.0f} s per phase, k={meta['k']}, "
        f"{meta['cpus']} CPUs shared by server and clients.",
        "",
        "| phase | requests | errors | throughput (req/s) | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for phase in ("steady", "swap"):
        r = results[phase]
        lines.append(f"| {phase} | {r['requests']} | {r['errors']} | {r['throughput_rps']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['max_ms']} |")
    (directory / "serving.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
