"""The production topology as real processes on loopback, for the tests in tests/production/.

PostgreSQL (Debian's binaries) holds the MLflow backend store and the Prefect server's
database; `mlflow server` proxies artifacts to a directory of its own; `prefect server start`
serves the API and UI; `prefect worker start` runs deployments from a process work pool; and
`smar serve` answers from the tracking server's registry. Each is a `Service`: a process, a
URL, a log file that a failed wait prints.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    url: str
    log: Path
    scratch: Path | None = None  # removed once the process has stopped

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL what is left after 10 s; then remove its scratch directory."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(app):
    """An ASGI `app` served by uvicorn in a thread of this process on a free port: its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                if http_ok(f"{url}/healthz"):
                    break
            assert time.monotonic() < deadline, f"{url}: not listening in 60 s"
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def start(
    name: str,
    command: list[str],
    url: str,
    log_dir: Path,
    *,
    env: dict | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> Service:
    """Start `command` in its own process group, logging to `log_dir/name.log`."""
    log = log_dir / f"{name}.log"
    if user:
        command = ["runuser", "-u", user, "--", *command]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    return Service(name, process, url, log)


def run_cli(command: list[str], env: dict, cwd: Path | None = None, timeout: float = 300) -> str:
    """Run a command line to completion; on failure, raise with everything it printed."""
    done = subprocess.run(command, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


def wait_until(check, service: Service, timeout: float = 120, what: str = "ready") -> None:
    """Poll `check()` until it is true; fail with the service's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(
                f"{service.name} exited ({service.process.returncode}) before it was {what}:\n{service.log_tail()}"
            )
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{service.name} was not {what} after {timeout:.0f} s:\n{service.log_tail()}")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


# --- PostgreSQL ---------------------------------------------------------------------------------


def postgres_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as Debian's `postgres` user."""
    return "postgres" if os.geteuid() == 0 else None


def start_postgres(log_dir: Path) -> tuple[Service, str]:
    """A throwaway cluster on a free port (trust auth on loopback); returns it and its base DSN."""
    if not (POSTGRES_BIN / "initdb").exists():
        raise RuntimeError(f"PostgreSQL 15 is not installed ({POSTGRES_BIN}): apt-get install postgresql-15")
    user = postgres_user()
    root = Path(tempfile.mkdtemp(prefix="smar-postgres-"))  # under /tmp: the postgres user can reach it
    if user:
        shutil.chown(root, user, user)
    data = root / "data"
    subprocess.run(
        _as(user, [str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    port = free_port()
    command = [
        str(POSTGRES_BIN / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-k",
        str(root),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=200",
    ]
    service = start("postgres", command, f"postgresql://postgres@127.0.0.1:{port}", log_dir, user=user)
    service.scratch = root
    pg_isready = [str(POSTGRES_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)]
    wait_until(lambda: subprocess.run(pg_isready, capture_output=True).returncode == 0, service, timeout=60)
    return service, service.url


def create_database(dsn: str, name: str) -> str:
    import psycopg

    with psycopg.connect(f"{dsn}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{dsn}/{name}"


def _as(user: str | None, command: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *command] if user else command


# --- MLflow, Prefect, the worker, smar serve ----------------------------------------------------


def start_mlflow(backend_uri: str, root: Path, log_dir: Path, port: int | None = None) -> Service:
    """`mlflow server` on `backend_uri`, proxying artifacts to `root/artifacts` (clients never see the path)."""
    port = port or free_port()
    command = [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        str(root / "artifacts"),
        "--serve-artifacts",
    ]
    service = start("mlflow", command, f"http://127.0.0.1:{port}", log_dir, env={"PATH": f"{BIN}:{os.environ['PATH']}"})
    wait_until(lambda: http_ok(f"{service.url}/health"), service, timeout=180)
    return service


def start_prefect(database_url: str, home: Path, log_dir: Path) -> Service:
    """`prefect server start` (API and UI) with its database on PostgreSQL."""
    port = free_port()
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
    }
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    service = start("prefect", command, f"http://127.0.0.1:{port}/api", log_dir, env=env)
    wait_until(lambda: http_ok(f"{service.url}/health"), service, timeout=180)
    return service


def start_worker(pool: str, env: dict, cwd: Path, log_dir: Path) -> Service:
    """`prefect worker start` on a process work pool (created if missing)."""
    command = [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process", "--name", f"{pool}-worker"]
    service = start(f"worker-{pool}", command, env["PREFECT_API_URL"], log_dir, env=env, cwd=cwd)
    wait_until(lambda: "started!" in service.log.read_text(errors="replace"), service, timeout=120, what="polling")
    return service


def start_smar_serve(params: Path, env: dict, log_dir: Path, name: str = "serve") -> Service:
    """`smar serve` following the tracking server's registry (ready once a champion is loaded), run
    in a directory of its own under `log_dir`, where its search log goes (serve.log_dir)."""
    port = free_port()
    command = [str(BIN / "smar"), "serve", "--params", str(params), "--port", str(port)]
    (home := log_dir / f"{name}-cwd").mkdir(exist_ok=True)
    return start(name, command, f"http://127.0.0.1:{port}", log_dir, env=env, cwd=home)
