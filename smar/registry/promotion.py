"""Moving the `champion` alias: a compare-and-set, with every move recorded.

Every move goes through `move_champion`. Under a lock beside the tracking store it reads
where `champion` points and moves it only if that is still the version the caller decided
against, so two promotions racing cannot leave the worse model as champion: the loser is
told (`ChampionMoved`) and decides again against the new champion.

Each move is recorded twice:
- on the promoted version, tags `promotion.promoted_at`, `promotion.previous_champion`,
  `promotion.reason`, `promotion.by` (gate, force or rollback) and its metrics;
- on the registered model, one tag per move (`champion.history.000001`, ...), a JSON event
  that `smar registry history` lists and `rollback` replays: gate and forced promotions
  push a version, a rollback pops one.

The lock is a file lock, so it serialises promotions on one machine (or on machines
sharing the SQLite store's directory). With a remote tracking server, promote from one
place, such as the Prefect worker that runs the pipeline.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from smar.errors import SmarError

CHAMPION = "champion"
HISTORY_TAG = "champion.history."


class ChampionMoved(SmarError):
    """The alias no longer points where the caller expected."""

    def __init__(self, expected: str | None, found: str | None):
        super().__init__(f"champion moved while deciding: expected version {expected or 'none'}, found {found or 'none'}")
        self.expected, self.found = expected, found


def current_champion(client, model_name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, CHAMPION).version)
    except MlflowException:
        return None


@contextlib.contextmanager
def promotion_lock(model_name: str):
    """An exclusive file lock for moving `model_name`'s champion."""
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


def move_champion(client, model_name: str, version: str, *, expected: str | None, reason: str, by: str, metrics: dict | None = None) -> dict:
    """Point `champion` at `version` if it still points at `expected`; record and return the event."""
    with promotion_lock(model_name):
        found = current_champion(client, model_name)
        if found != expected:
            raise ChampionMoved(expected, found)
        event = {
            "version": version,
            "previous_champion": expected,
            "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "by": by,
            "reason": reason,
            "metrics": metrics or {},
        }
        number = len(history(client, model_name)) + 1
        client.set_registered_model_alias(model_name, CHAMPION, version)
        client.set_registered_model_tag(model_name, f"{HISTORY_TAG}{number:06d}", json.dumps(event))
        tags = {f"promotion.{key}": value for key, value in event.items() if key not in ("version", "metrics")}
        tags |= {f"promotion.{name}": str(value) for name, value in event["metrics"].items()}
        for key, value in tags.items():
            client.set_model_version_tag(model_name, version, key, str(value) if value is not None else "none")
    return event


def history(client, model_name: str) -> list[dict]:
    """Every recorded move of the champion, oldest first."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(model_name).tags
    except MlflowException:
        return []
    return [json.loads(tags[key]) for key in sorted(tags) if key.startswith(HISTORY_TAG)]


def rollback(client, model_name: str, reason: str) -> dict:
    """Move `champion` back to the version it held before the current one took it."""
    stack: list[str] = []
    for event in history(client, model_name):
        if event["by"] == "rollback":
            stack.pop()
        else:
            stack.append(event["version"])
    current = current_champion(client, model_name)
    if not stack:
        raise SmarError(f"{model_name}: no champion moves are on record (champion: version {current or 'none'}); nothing to roll back to.")
    if stack[-1] != current:
        raise SmarError(
            f"{model_name}: champion is version {current or 'none'}, but the recorded history ends at version {stack[-1]}; "
            "it was moved outside smar. Use `smar registry promote VERSION --force --reason ...`."
        )
    if len(stack) < 2:
        raise SmarError(f"{model_name}: version {current} is the first champion on record; there is nothing to roll back to.")
    return move_champion(client, model_name, stack[-2], expected=current, reason=reason, by="rollback")
