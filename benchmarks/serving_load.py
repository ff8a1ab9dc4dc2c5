"""Load test of `smar serve` on 127.0.0.1, beside the server a user would pick instead and the limit.

    make run                                        # a champion on the default catalog
    .venv/bin/python benchmarks/serving_load.py     # 60 s phases, 50 clients: limit, mlflow, 3 x (steady, swaps)

Closed-loop clients (each sends its next query when the last answer arrives) with the test
split's queries, against servers started as their own processes on free ports:
- "limit": no server: the same queries encoded and searched in batches of `serve.max_batch`
  inside one process, through the retriever every server uses (the most any server can do);
- "mlflow models serve": MLflow's own server on the champion version (`/invocations`);
- "smar serve, steady": the champion serves throughout;
- "smar serve, during two swaps": the champion's artifacts are registered again as a new
  version; the alias moves to it a third of the way in and back two thirds of the way in.
The steady and swap phases alternate `--repeat` times on one server (3 by default): a shared
machine is noisy, so the swap verdict is the median of the runs' swap/steady p99 ratios, and
the table shows the run with that median. Absolute times move 2x between machines of one kind,
so the verdicts are ratios taken in this one run. `--only-smar` skips the limit and MLflow's
server (quick checks). Writes benchmarks/results/serving.json and serving.md.

`--logging-cost` measures the search log instead: two `smar serve` processes, one logging
(into a scratch directory) and one not, steady phases alternated `--repeat` times; the
verdicts are the median on/off ratios of throughput and p99, and every search the logging
server answered is counted in its log after it stops. Then two failures, each on a server of
its own under the same load: `kill -9` (every search answered more than a second before the
kill must be in the log), and a full disk (the log on a tmpfs of 64 KiB, which needs root:
searches keep answering, /readyz says what is wrong, and says nothing once space is freed).
Writes serving-logging.{json,md}.

`--experiment-cost SHARE` measures the experiment instead: two `smar serve` processes, one
interleaving SHARE of its searches with a challenger (the champion's artifacts registered
again as a version; the alias `challenger` restored afterwards), one without; phases off,
scraped (/metrics read every second, 15x Prometheus' default rate) and experiment alternated
`--repeat` times; the verdicts are median ratios to off. Writes serving-experiment-SHARE%.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="steady and swap phases, alternated this many times")
    parser.add_argument("--only-smar", action="store_true", help="skip the limit and `mlflow models serve`")
    parser.add_argument("--logging-cost", action="store_true", help="logging on against off (serving-logging.md)")
    parser.add_argument(
        "--experiment-cost",
        type=float,
        metavar="SHARE",
        help="an experiment interleaving SHARE of searches against none, /metrics scraped"
        " (serving-experiment-SHARE%%.md)",
    )
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    from smar.core.process import setup

    setup()
    from mlflow import MlflowClient

    from smar.core import tracking
    from smar.core.config import load_config
    from smar.data.dataset import load_dataset
    from smar.registry.promotion import current_champion

    config = load_config(args.params)
    name = config.register_.model_name
    tracking.configure()
    client = MlflowClient()
    champion = current_champion(client, name)
    if champion is None:
        sys.exit(
            f"{name} has no champion in {os.environ.get('MLFLOW_TRACKING_URI', tracking.DEFAULT_TRACKING_URI)}: run "
            f"`make run` first."
        )
    queries = load_dataset(args.data).split_queries("test")["text"].tolist()
    gc.freeze()  # the client's own full garbage collections would otherwise show up as server latency

    results = {
        "meta": {
            "clients": args.clients,
            "seconds": args.seconds,
            "k": args.k,
            "cpus": os.cpu_count(),
            "champion": champion,
            "max_batch": config.serve.max_batch,
        }
    }
    if not args.only_smar:
        baselines(results, name, champion, queries, config.serve.max_batch, args)

    smar_command = [
        sys.executable,
        "-m",
        "smar",
        "serve",
        "--params",
        str(args.params),
        "--port",
    ]
    if args.logging_cost:
        return logging_cost(smar_command, queries, args, results["meta"])
    twin = register_twin(client, name, champion)
    if args.experiment_cost is not None:
        return experiment_cost(smar_command[:-3], queries, args, results["meta"], client, name, twin)
    runs = []
    with server(smar_command, "/readyz") as url:
        for number in range(1, args.repeat + 1):
            print(
                f"smar serve, steady ({number}/{args.repeat}): {args.clients} clients for {args.seconds:.0f} s",
                flush=True,
            )
            steady = asyncio.run(load(url, queries, args, smar_request))
            print(json.dumps(steady), flush=True)
            swaps = threading.Thread(
                target=swap_alias, args=(client, name, [(args.seconds / 3, twin), (2 * args.seconds / 3, champion)])
            )
            print(
                f"smar serve, swap ({number}/{args.repeat}): the alias moves {champion} -> {twin} -> {champion}",
                flush=True,
            )
            swaps.start()
            swap = asyncio.run(load(url, queries, args, smar_request))
            swaps.join()
            print(json.dumps(swap), flush=True)
            runs.append(
                {"steady": steady, "swap": swap, "swap_p99_vs_steady": round(swap["p99_ms"] / steady["p99_ms"], 3)}
            )
    median = sorted(runs, key=lambda run: run["swap_p99_vs_steady"])[(len(runs) - 1) // 2]
    results |= {"steady": median["steady"], "swap": median["swap"], "runs": runs}
    write_results(results, args.results)


def logging_cost(smar_command: list[str], queries: list[str], args, meta: dict) -> None:
    """Throughput and p99 of a logging server over a non-logging one, and its log counted."""
    import yaml

    from smar.traffic.log import read_log

    scratch = Path(tempfile.mkdtemp(prefix="smar-logging-"))
    settings = yaml.safe_load(args.params.read_text())
    params = {}
    for mode, serve in (("off", {"log": False}), ("on", {"log": True, "log_dir": str(scratch / "log")})):
        params[mode] = scratch / f"params-{mode}.yaml"
        params[mode].write_text(yaml.safe_dump(settings | {"serve": settings["serve"] | serve}))
    command = smar_command[:-3]  # without --params FILE --port
    runs = []
    with (
        server([*command, "--params", str(params["off"]), "--port"], "/readyz") as off_url,
        server([*command, "--params", str(params["on"]), "--port"], "/readyz") as on_url,
    ):
        for number in range(1, args.repeat + 1):
            run = {}
            for mode, url in (("off", off_url), ("on", on_url)):
                print(f"logging {mode} ({number}/{args.repeat}): {args.clients} clients for {args.seconds:.0f} s")
                run[mode] = asyncio.run(load(url, queries, args, smar_request))
                print(json.dumps(run[mode]), flush=True)
            run["throughput_on_vs_off"] = round(run["on"]["throughput_rps"] / run["off"]["throughput_rps"], 3)
            run["p99_on_vs_off"] = round(run["on"]["p99_ms"] / run["off"]["p99_ms"], 3)
            runs.append(run)
    answered = sum(run["on"]["requests"] - run["on"]["errors"] for run in runs)
    found = read_log(scratch / "log", "searches")  # the server has stopped: its segments are closed
    median = {key: statistics.median(run[key] for run in runs) for key in ("throughput_on_vs_off", "p99_on_vs_off")}
    results = {"meta": meta, "runs": runs, "median": median, "answered": answered, "logged": len(found.records)}
    results["log"] = {"segments": found.segments, "open_segments": found.open_segments}
    results["kill_9"] = kill_under_load([*command, "--params", str(params["on"]), "--port"], queries, args)
    results["full_disk"] = full_disk_under_load(command, settings, scratch, queries, args)
    shutil.rmtree(scratch, ignore_errors=True)
    kill, full = results["kill_9"], results["full_disk"]
    lines = [
        f"{meta['clients']} closed-loop clients on 127.0.0.1, {args.seconds:.0f} s per phase, k={meta['k']}, "
        f"{meta['cpus']} CPUs; two `smar serve` processes, one logging every search, one not; "
        f"{len(runs)} pairs of phases.",
        "",
        "| run | throughput off (req/s) | throughput on (req/s) | on/off | p99 off (ms) | p99 on (ms) | on/off |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {n} | {run['off']['throughput_rps']} | {run['on']['throughput_rps']} | {run['throughput_on_vs_off']} | "
            f"{run['off']['p99_ms']} | {run['on']['p99_ms']} | {run['p99_on_vs_off']} |"
            for n, run in enumerate(runs, start=1)
        ),
        "",
        f"- throughput with logging: {median['throughput_on_vs_off']:.3f}x without, the median (target >= 0.9)",
        f"- p99 with logging: {median['p99_on_vs_off']:.3f}x without, the median (target <= 1.1)",
        f"- searches answered by the logging server: {answered:,}; in its log: {results['logged']:,} "
        f"({found.segments} segments, {found.open_segments} left open)",
        f"- `kill -9` after {kill['killed_after_s']} s under load: {kill['answered']:,} searches answered, "
        f"{kill['logged']:,} in the log; of those answered more than {kill['grace_s']} s before the kill, "
        f"{kill['lost_before_grace']} missing (target 0); the oldest missing answered {kill['oldest_lost_s']} s "
        f"before the kill",
        "- full disk: "
        + (
            f"{full['answered']:,} searches answered while the log's disk was full, {full['errors']} errors "
            f"(target 0); /readyz said: {full['readyz_full']!r}; once space was freed: {full['readyz_freed']!r}"
            if "answered" in full
            else f"not measured ({full['skipped']})"
        ),
    ]
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "serving-logging.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.results / "serving-logging.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def experiment_cost(command: list[str], queries: list[str], args, meta: dict, client, name: str, twin: str) -> None:
    """Throughput and p99 of a server interleaving `--experiment-cost` of its searches with a
    challenger (the champion's artifacts registered again: the same work as any challenger), and
    of one scraped every second, over the same server with neither; both log their searches."""
    import httpx
    import yaml

    scratch = Path(tempfile.mkdtemp(prefix="smar-experiment-"))
    settings = yaml.safe_load(args.params.read_text())
    was = alias_of(client, name, "challenger")
    client.set_registered_model_alias(name, "challenger", twin)
    params = {}
    for mode, share in (("plain", 0.0), ("experiment", args.experiment_cost)):
        serve = settings["serve"] | {"experiment_share": share, "log_dir": str(scratch / f"log-{mode}")}
        params[mode] = scratch / f"params-{mode}.yaml"
        params[mode].write_text(yaml.safe_dump(settings | {"serve": serve}))
    phases = {"off": "plain", "scraped": "plain", "experiment": "experiment"}  # phase -> server
    runs = []
    try:
        with (
            server([*command, "--params", str(params["plain"]), "--port"], "/readyz") as plain,
            server([*command, "--params", str(params["experiment"]), "--port"], "/readyz") as experimenting,
        ):
            urls = {"plain": plain, "experiment": experimenting}
            probe = {"query": queries[0], "k": args.k}
            deadline = time.monotonic() + 300
            while httpx.post(f"{experimenting}/compare", json=probe, timeout=30).status_code != 200:
                assert time.monotonic() < deadline, "the challenger did not load in 300 s"
                time.sleep(1)
            before = interleaved_share(experimenting)
            for number in range(1, args.repeat + 1):
                run = {}
                order = list(phases)[number - 1 :] + list(phases)[: number - 1]  # each phase first once in 3
                for phase in order:
                    host = phases[phase]
                    print(f"{phase} ({number}/{args.repeat}): {args.clients} clients for {args.seconds:.0f} s")
                    with scraping(urls[host], every=1.0, enabled=phase != "off") as scrapes:
                        run[phase] = asyncio.run(load(urls[host], queries, args, smar_request))
                    run[phase]["scrapes"] = sum(scrapes)
                    print(json.dumps(run[phase]), flush=True)
                for phase in ("scraped", "experiment"):
                    run[f"throughput_{phase}_vs_off"] = round(
                        run[phase]["throughput_rps"] / run["off"]["throughput_rps"], 3
                    )
                    run[f"p99_{phase}_vs_off"] = round(run[phase]["p99_ms"] / run["off"]["p99_ms"], 3)
                runs.append(run)
            after = interleaved_share(experimenting)
    finally:
        if was is None:
            client.delete_registered_model_alias(name, "challenger")
        else:
            client.set_registered_model_alias(name, "challenger", was)
        shutil.rmtree(scratch, ignore_errors=True)
    keys = [f"{what}_{phase}_vs_off" for phase in ("scraped", "experiment") for what in ("throughput", "p99")]
    median = {key: statistics.median(run[key] for run in runs) for key in keys}
    searched = int(after["searches"] - before["searches"])
    interleaved = (after["interleaved"] - before["interleaved"]) / searched if searched else 0.0
    results = {"meta": meta | {"experiment_share": args.experiment_cost}, "runs": runs, "median": median}
    results["interleaved_share"] = round(interleaved, 4)
    lines = [
        f"{meta['clients']} closed-loop clients on 127.0.0.1, {args.seconds:.0f} s per phase, k={meta['k']}, "
        f"{meta['cpus']} CPUs; two `smar serve` processes logging their searches, one with an experiment "
        f"interleaving {args.experiment_cost:.0%} of searches with a challenger (the champion's artifacts as another "
        f"version), one without; the phases off (no experiment, not scraped), scraped (the same server, /metrics "
        f"read every second) and experiment (scraped too) alternated {len(runs)} times, each first in turn.",
        "",
        "| run | off (req/s) | scraped (req/s) | experiment (req/s) | scraped/off | experiment/off | p99 off (ms) | "
        "p99 scraped (ms) | p99 experiment (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {n} | {run['off']['throughput_rps']} | {run['scraped']['throughput_rps']} | "
            f"{run['experiment']['throughput_rps']} | {run['throughput_scraped_vs_off']} | "
            f"{run['throughput_experiment_vs_off']} | {run['off']['p99_ms']} | {run['scraped']['p99_ms']} | "
            f"{run['experiment']['p99_ms']} |"
            for n, run in enumerate(runs, start=1)
        ),
        "",
        f"- throughput with the experiment on: {median['throughput_experiment_vs_off']:.3f}x off, the median "
        f"(target >= 0.85); p99 {median['p99_experiment_vs_off']:.3f}x",
        f"- throughput while /metrics is scraped every second: {median['throughput_scraped_vs_off']:.3f}x off, the "
        f"median; p99 {median['p99_scraped_vs_off']:.3f}x",
        f"- searches the experiment server interleaved: {interleaved:.1%} of {searched:,} (its /metrics)",
        f"- errors: {sum(run[phase]['errors'] for run in runs for phase in phases)} (target 0)",
    ]
    args.results.mkdir(parents=True, exist_ok=True)
    stem = f"serving-experiment-{round(100 * args.experiment_cost)}"
    (args.results / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.results / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def alias_of(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


@contextlib.contextmanager
def scraping(url: str, every: float, enabled: bool = True):
    """GET /metrics every `every` seconds in a thread while the block runs; yields a list that
    holds the number of scrapes once the block has ended."""
    import httpx

    stop, counted = threading.Event(), []

    def scrape() -> None:
        scrapes = 0
        with httpx.Client(timeout=30) as http:
            while not stop.wait(every):
                http.get(f"{url}/metrics").raise_for_status()
                scrapes += 1
        counted.append(scrapes)

    thread = threading.Thread(target=scrape) if enabled else None
    if thread:
        thread.start()
    try:
        yield counted
    finally:
        stop.set()
        if thread:
            thread.join()


def interleaved_share(url: str) -> dict:
    """The server's own count of searches and of interleaved ones, from /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    values = {"searches": 0.0, "interleaved": 0.0}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == "smar_requests_total" and sample.labels.get("route") == "/search":
                values["searches"] += sample.value
            elif sample.name == "smar_experiment_searches_total":
                values["interleaved"] += sample.value
    return values


def kill_under_load(command: list[str], queries: list[str], args, seconds: float = 8.0) -> dict:
    """A logging server killed with SIGKILL while under load: which answered searches reached its log."""
    from smar.traffic.log import FSYNC_SECONDS, read_log

    log_dir = Path(command[command.index("--params") + 1]).parent / "log"
    shutil.rmtree(log_dir, ignore_errors=True)
    killed, answers = [], []
    with server_process(command, "/readyz") as (url, process):

        def kill() -> None:
            time.sleep(seconds)
            os.killpg(process.pid, signal.SIGKILL)
            killed.append(datetime.now(UTC))

        killer = threading.Thread(target=kill)
        killer.start()
        asyncio.run(load(url, queries, lasting(args, seconds + 1), smar_request, answers))
        killer.join()
    logged = set(read_log(log_dir, "searches").records["search_id"])
    grace = FSYNC_SECONDS + 0.1  # the fsync interval, and the answer's way back to the client
    lost = [(killed[0] - at).total_seconds() for at, search_id in answers if search_id not in logged]
    return {
        "killed_after_s": seconds,
        "answered": len(answers),
        "logged": len(logged),
        "grace_s": grace,
        "lost_before_grace": sum(age > grace for age in lost),
        "oldest_lost_s": round(max(lost, default=0.0), 3),
    }


def full_disk_under_load(command: list[str], settings: dict, scratch: Path, queries: list[str], args) -> dict:
    """A logging server whose log directory is on a full disk (a 64 KiB tmpfs): answers, and what /readyz says."""
    import httpx
    import yaml

    disk = scratch / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        return {"skipped": f"mount -t tmpfs failed: {mounted.stderr.decode().strip() or 'needs root'}"}
    try:
        params = scratch / "params-full.yaml"
        params.write_text(yaml.safe_dump(settings | {"serve": settings["serve"] | {"log": True, "log_dir": str(disk)}}))
        with server([*command, "--params", str(params), "--port"], "/readyz") as url:
            full = asyncio.run(load(url, queries, lasting(args, 10), smar_request))
            said_full = httpx.get(f"{url}/readyz").json()["problems"].get("search_log")
            for segment in disk.rglob("*.jsonl"):
                segment.unlink()  # the space freed: a second later the writer opens a new segment
            for query in queries[:8]:  # a few searches (a load would fill the 64 KiB again at once)
                httpx.post(f"{url}/search", json={"query": query, "k": args.k})
                time.sleep(0.25)
            said_freed = httpx.get(f"{url}/readyz").json()["problems"].get("search_log")
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    return {
        "answered": full["requests"] - full["errors"],
        "errors": full["errors"],
        "readyz_full": said_full,
        "readyz_freed": said_freed,
    }


def lasting(args, seconds: float) -> argparse.Namespace:
    """The benchmark's arguments with a phase of `seconds`."""
    return argparse.Namespace(**vars(args) | {"seconds": seconds})


def baselines(results: dict, name: str, champion: str, queries: list[str], batch: int, args) -> None:
    """The limit (no server) and `mlflow models serve`, into `results`."""
    print(f"limit: batches of {batch} in one process for {args.seconds:.0f} s", flush=True)
    results["limit"] = in_process_limit(name, champion, queries, batch, args)
    print(json.dumps(results["limit"]), flush=True)
    mlflow_command = [
        "mlflow",
        "models",
        "serve",
        "-m",
        f"models:/{name}/{champion}",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
    ]
    with server(mlflow_command + ["--port"], "/ping") as url:
        print(
            f"mlflow models serve: {args.clients} clients for {args.seconds:.0f} s against version {champion}",
            flush=True,
        )
        results["mlflow"] = asyncio.run(load(url, queries, args, mlflow_request))
        print(json.dumps(results["mlflow"]), flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def server(command: list[str], ready_path: str):
    """A server process on a free port (the port appended to `command`); yields its URL once
    `ready_path` answers 200, and stops it afterwards."""
    with server_process(command, ready_path) as (url, _):
        yield url


@contextlib.contextmanager
def server_process(command: list[str], ready_path: str):
    """`server`, yielding the process too."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp(prefix="smar-load-")) / "server.log"
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    }  # mlflow starts uvicorn through bash
    process = subprocess.Popen(
        command + [str(port)], stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    try:
        wait_ready(f"{url}{ready_path}", process, log)
        yield url, process
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed already
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def wait_ready(url: str, process, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{url}: the server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    sys.exit(f"{url}: not ready in 300 s:\n{log.read_text()[-3000:]}")


def in_process_limit(name: str, version: str, queries: list[str], batch: int, args) -> dict:
    """Queries per second when the retriever encodes and searches batches with no server around it."""
    import mlflow

    from smar.retrieval.retriever import Retriever

    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}")) / "artifacts"
    retriever = Retriever(local / "model", local / "index")
    pick, done, latencies = random.Random(0), 0, []
    deadline = time.monotonic() + args.seconds
    started = time.monotonic()
    while time.monotonic() < deadline:
        texts = [pick.choice(queries) for _ in range(batch)]
        began = time.perf_counter()
        retriever.search(texts, args.k)
        latencies.append(time.perf_counter() - began)
        done += len(texts)
    elapsed = time.monotonic() - started
    return {
        "queries": done,
        "batch": batch,
        "throughput_rps": round(done / elapsed, 1),
        "batch_p50_ms": round(1000 * statistics.median(latencies), 2),
    }


def smar_request(url: str, query: str, k: int):
    return f"{url}/search", {"query": query, "k": k}, lambda body: body["model_version"]


def mlflow_request(url: str, query: str, k: int):
    return f"{url}/invocations", {"dataframe_records": [{"query": query}], "params": {"k": k}}, lambda body: "mlflow"


def register_twin(client, name: str, version: str) -> str:
    """Register the champion's artifacts again, as a new version to swap to."""
    import mlflow

    from smar.registry.register import log_version

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


async def load(url: str, queries: list[str], args, request, answers: list | None = None) -> dict:
    """Closed-loop clients on one aiohttp session (lighter on the shared CPUs than httpx);
    `request(url, query, k)` gives the endpoint, the JSON body and how to read the answering version.
    With `answers`, each answer's arrival (UTC) and search_id is appended to it."""
    import aiohttp

    latencies, errors, versions = [], [], {}
    deadline = time.monotonic() + args.seconds

    async def client(seed: int, http) -> None:
        pick = random.Random(seed)
        while time.monotonic() < deadline:
            endpoint, payload, version_of = request(url, pick.choice(queries), args.k)
            started = time.perf_counter()
            try:
                async with http.post(endpoint, json=payload) as response:
                    body = await response.json(content_type=None)
                if response.status == 200:
                    latencies.append(time.perf_counter() - started)
                    version = version_of(body)
                    versions[version] = versions.get(version, 0) + 1
                    if answers is not None:
                        answers.append((datetime.now(UTC), body["search_id"]))
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


PHASES = {
    "mlflow": "`mlflow models serve`",
    "steady": "`smar serve`, steady",
    "swap": "`smar serve`, during two alias swaps",
}


def write_results(results: dict, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    results["ratios"] = ratios(results)
    (directory / "serving.json").write_text(json.dumps(results, indent=2) + "\n")
    meta, limit = results["meta"], results.get("limit")
    lines = [
        f"{meta['clients']} closed-loop clients on 127.0.0.1, {meta['seconds']:.0f} s per phase, k={meta['k']}, "
        f"{meta['cpus']} CPUs shared by server and clients; champion version {meta['champion']}; steady and swap "
        f"phases {len(results['runs'])} times each (the run with the median swap/steady p99 ratio shown).",
        "",
        "| phase | requests | errors | throughput (req/s) | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if limit:
        lines.append(
            f"| limit: batches of {limit['batch']} in one process, no server | {limit['queries']} | 0 | "
            f"{limit['throughput_rps']} | | | | |"
        )
    for phase, label in PHASES.items():
        if phase not in results:
            continue
        r = results[phase]
        lines.append(
            f"| {label} | {r['requests']} | {r['errors']} | {r['throughput_rps']} | {r['p50_ms']} | {r['p95_ms']} | "
            f"{r['p99_ms']} | {r['max_ms']} |"
        )
    lines += ["", *(f"- {line}" for line in results["ratios"]["lines"])]
    (directory / "serving.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def ratios(results: dict) -> dict:
    """The verdicts, as ratios within this run: smar serve against the limit and against MLflow's server."""
    steady, swap, runs = results["steady"], results["swap"], results["runs"]
    each = [run["swap_p99_vs_steady"] for run in runs]
    values = {
        "swap_p99_vs_steady": round(swap["p99_ms"] / steady["p99_ms"], 3),  # the median run's
        "swap_p99_vs_steady_runs": each,
        "errors": sum(run["steady"]["errors"] + run["swap"]["errors"] for run in runs),
    }
    lines = []
    if "limit" in results:
        mlflow, limit = results["mlflow"], results["limit"]
        values |= {
            "throughput_vs_limit": round(steady["throughput_rps"] / limit["throughput_rps"], 3),
            "throughput_vs_mlflow": round(steady["throughput_rps"] / mlflow["throughput_rps"], 2),
            "p99_vs_mlflow": round(steady["p99_ms"] / mlflow["p99_ms"], 3),
        }
        lines += [
            f"throughput: {values['throughput_vs_limit']:.2f} of the limit (target >= 0.7), "
            f"{values['throughput_vs_mlflow']:.1f}x `mlflow models serve`",
            f"p99: {values['p99_vs_mlflow']:.2f}x `mlflow models serve`'s",
        ]
    lines += [
        f"p99 during the swaps: {values['swap_p99_vs_steady']:.2f}x steady, the median of "
        f"{', '.join(f'{ratio:.2f}' for ratio in each)} (target <= 1.25)",
        f"errors in `smar serve`'s phases: {values['errors']} (target 0)",
    ]
    values["lines"] = lines
    return values


if __name__ == "__main__":
    main()
