"""Promotions from two hosts that share only the servers: separate working directories and
homes, the MLflow tracking server and the Prefect server that holds the promotion lock."""

import json
import subprocess
import sys
import time
import uuid

import pytest

from smar.registry.promotion import current_champion, history, move_champion
from tests.conftest import PROJECT

pytestmark = pytest.mark.slow
HOLD = 1.5  # seconds each host holds the lock
HOLDER = """
import sys, time
from smar.registry.lock import promotion_lock
from tests.production.racer import wait_for_the_start
wait_for_the_start()
with promotion_lock(sys.argv[1]):
    start = time.time(); time.sleep(float(sys.argv[2])); print(start, time.time())
"""


def on_hosts(topology, tmp_path, commands: dict[str, list[str]], *, prefect: bool = True) -> list[subprocess.Popen]:
    """Each command on a host of its own (its own working directory and home, the shared servers),
    all released at the same moment once every one is up (tests.production.racer.wait_for_the_start)."""
    processes, go = [], tmp_path / "go"
    for host, command in commands.items():
        env = topology.host_env(tmp_path / host) | {"PYTHONPATH": str(PROJECT), "SMAR_TEST_GO": str(go)}
        if not prefect:
            env.pop("PREFECT_API_URL")
        processes.append(
            subprocess.Popen(
                command, cwd=tmp_path / host, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    deadline = time.monotonic() + 120
    while not all((tmp_path / host / "ready").exists() for host in commands):
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes), [
            p.communicate() for p in processes if p.poll() is not None
        ]
        time.sleep(0.05)
    go.touch()
    return processes


def outputs(processes: list[subprocess.Popen]) -> list[str]:
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, stderr[-3000:]
        results.append(stdout.strip().splitlines()[-1])
    return results


def held_intervals(topology, tmp_path, *, prefect: bool) -> list[tuple[float, float]]:
    name = f"lock-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-c", HOLDER, name, str(HOLD)]
    hosts = on_hosts(topology, tmp_path, {"host-a": command, "host-b": command}, prefect=prefect)
    return sorted(tuple(map(float, line.split())) for line in outputs(hosts))


def test_the_lock_excludes_a_second_host(topology, tmp_path):
    (_, first_end), (second_start, _) = held_intervals(topology, tmp_path, prefect=True)
    assert second_start >= first_end  # the second host waited for the first


def test_a_file_lock_would_not(topology, tmp_path):
    """The control: without the Prefect server the lock is a file on each host, and both hold it at once."""
    (_, first_end), (second_start, _) = held_intervals(topology, tmp_path, prefect=False)
    assert second_start < first_end


def test_racing_promotions_from_two_hosts_leave_the_better_model_as_champion(topology, tmp_path):
    client = topology.client()
    name = f"race-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    run = client.create_run(client.get_experiment_by_name("Default").experiment_id).info.run_id
    champion, worse, better = (
        str(client.create_model_version(name, source=f"runs:/{run}/model-{n}", run_id=run).version) for n in range(3)
    )
    move_champion(client, name, champion, expected=None, reason="the champion before the race", by="force")
    recalls = json.dumps({champion: 0.4, worse: 0.5, better: 0.6})
    racer = [sys.executable, "-m", "tests.production.racer", name]
    hosts = on_hosts(topology, tmp_path, {f"host-{version}": [*racer, version, recalls] for version in (worse, better)})
    decisions = {d["version"]: d for d in map(json.loads, outputs(hosts))}

    assert current_champion(client, name) == better
    assert decisions[better]["promote"]
    events = history(client, name)
    moves = [event["version"] for event in events]
    assert moves in ([champion, better], [champion, worse, better])  # the worse one, if it moved first, was replaced
    if moves == [champion, better]:  # the worse one lost the race: judged again against the better, and refused
        assert not decisions[worse]["promote"] and decisions[worse]["champion"] == better
    for version in (worse, better):  # both decisions are on record
        assert client.get_model_version(name, version).tags["gate.decision"] in ("promoted", "rejected")
