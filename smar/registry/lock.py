"""The promotion lock: one `champion` move at a time per registered model, across hosts.

Where a Prefect server is configured ($PREFECT_API_URL, as on every worker and every host
of the production topology), the lock is a Prefect global concurrency limit of one slot,
`smar-promotion-<model>`, on that server: every host that shares the server shares the lock.
Its slot is leased, so a holder that dies frees it when the lease runs out.

Without a Prefect server (one machine, `smar pipeline` on a laptop), it is a file lock beside
the tracking store, which serialises the processes of that machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

from smar.core.errors import SmarError

WAIT_SECONDS = 600  # a promotion that cannot get the lock in this long fails and changes nothing
LEASE_SECONDS = 120  # a holder that dies frees the slot after this long


@contextlib.contextmanager
def promotion_lock(model_name: str):
    """Exclusive while held: on the Prefect server when one is configured, else on this machine."""
    lock = _prefect_lock if os.environ.get("PREFECT_API_URL") else _file_lock
    with lock(model_name):
        yield


def lock_name(model_name: str) -> str:
    return "smar-promotion-" + re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")


@contextlib.contextmanager
def _prefect_lock(model_name: str):
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    name = lock_name(model_name)
    with get_client(sync_client=True) as client:
        try:
            client.upsert_global_concurrency_limit_by_name(name, limit=1)
        except ObjectAlreadyExists:  # another host created it first
            pass
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(
                concurrency(name, occupy=1, timeout_seconds=WAIT_SECONDS, lease_duration=LEASE_SECONDS, strict=True)
            )
        except TimeoutError:
            raise SmarError(
                f"{model_name}: another promotion has held the lock '{name}' on the Prefect server for "
                f"{WAIT_SECONDS} s; "
                "nothing was moved. See the server's Concurrency page."
            ) from None
        yield


@contextlib.contextmanager
def _file_lock(model_name: str):
    import fcntl

    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith("sqlite:///"):
        directory = Path(uri.removeprefix("sqlite:///")).parent
    else:
        directory = Path.home() / ".cache" / "smar" / "locks" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f".{model_name}.promotion.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
