"""Moving the `champion` alias: a compare-and-set, with every move recorded.

Every move goes through `move_champion`. Under the promotion lock it reads
where `champion` points and moves it only if that is still the version the caller decided
against, so two promotions racing cannot leave the worse model as champion: the loser is
told (`ChampionMoved`) and decides again against the new champion.

Each move is recorded twice:
- on the promoted version, tags `promotion.promoted_at`, `promotion.previous_champion`,
  `promotion.reason`, `promotion.by` (gate, force, rollback or outside) and its metrics;
- on the registered model, one tag per move (`champion.history.000001`, ...), a JSON event
  that `smar registry history` lists and `rollback` replays: gate and forced promotions
  push a version, a rollback pops one.

Users also move `champion` by hand, in the MLflow UI. Such a move is detected wherever the
history is read or written (`smar registry history`, rollback, every promotion) and recorded
as an event `by: outside`, from which version to which. MLflow records neither the time nor the
user of an alias move, so the event says what is known: it happened after the last move on
record (`moved_after`) and no later than when smar noticed it (`promoted_at`).

The lock (smar.registry.lock) is a global concurrency limit on the Prefect server every
host shares, or a file lock on a machine without one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from smar.core.errors import SmarError
from smar.registry.lock import promotion_lock

CHAMPION = "champion"
HISTORY_TAG = "champion.history."
OUTSIDE = "outside"  # `by` of a move made outside smar


class ChampionMoved(SmarError):
    """The alias no longer points where the caller expected."""

    def __init__(self, expected: str | None, found: str | None):
        super().__init__(
            f"champion moved while deciding: expected version {expected or 'none'}, found {found or 'none'}"
        )
        self.expected, self.found = expected, found


def current_champion(client, model_name: str) -> str | None:
    return alias_version(client, model_name, CHAMPION)


def alias_version(client, model_name: str, alias: str) -> str | None:
    """The version `alias` points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def move_champion(
    client, model_name: str, version: str, *, expected: str | None, reason: str, by: str, metrics: dict | None = None
) -> dict:
    """Point `champion` at `version` if it still points at `expected`; record and return the event."""
    with promotion_lock(model_name):
        found = current_champion(client, model_name)
        if found != expected:
            raise ChampionMoved(expected, found)
        _record_outside_move(client, model_name)  # a move made in the MLflow UI since the last one on record
        event = {
            "version": version,
            "previous_champion": expected,
            "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "by": by,
            "reason": reason,
            "metrics": metrics or {},
        }
        client.set_registered_model_alias(model_name, CHAMPION, version)
        _record(client, model_name, event)
    return event


def record_outside_move(client, model_name: str) -> dict | None:
    """Record a move of `champion` made outside smar (the MLflow UI's alias editor, the API, a
    script) that the history does not hold yet; return its event, or None when there was none."""
    with promotion_lock(model_name):
        return _record_outside_move(client, model_name)


def _record_outside_move(client, model_name: str) -> dict | None:
    events = history(client, model_name)
    current, on_record = current_champion(client, model_name), champion_on_record(events)
    if current == on_record:
        return None
    # MLflow records no time for an alias move: it came after the last move on record, and no later than now
    event = {
        "version": current,
        "previous_champion": on_record,
        "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "moved_after": events[-1]["promoted_at"] if events else None,
        "by": OUTSIDE,
        "reason": "champion moved outside smar (the MLflow UI or API); MLflow records no time and no user for "
        "alias moves",
        "metrics": {},
    }
    _record(client, model_name, event)
    return event


def when(event: dict) -> str:
    """When the move was made, as far as it is known: a move made outside smar only within bounds."""
    if event["by"] != OUTSIDE:
        return event["promoted_at"]
    noticed = event.get("detected_at", event["promoted_at"])  # events recorded before moved_after existed
    if event.get("moved_after"):
        return f"moved after {event['moved_after']}, by {noticed} (when noticed)"
    return f"moved by {noticed} (when noticed)"


def _record(client, model_name: str, event: dict) -> None:
    """The event as the next history tag on the registered model, and as tags on the version it names."""
    number = len(history(client, model_name)) + 1
    client.set_registered_model_tag(model_name, f"{HISTORY_TAG}{number:06d}", json.dumps(event))
    if event["version"] is None:  # the alias was deleted
        return
    tags = {f"promotion.{key}": value for key, value in event.items() if key not in ("version", "metrics")}
    tags |= {f"promotion.{name}": str(value) for name, value in event["metrics"].items()}
    for key, value in tags.items():
        client.set_model_version_tag(model_name, event["version"], key, str(value) if value is not None else "none")


def champion_on_record(events: list[dict]) -> str | None:
    """Where the recorded history says `champion` points: replaying pushes and rollback's pops."""
    stack = _replayed(events)
    return stack[-1] if stack else None


def _replayed(events: list[dict]) -> list[str | None]:
    stack: list[str | None] = []
    for event in events:
        if event["by"] == "rollback":
            stack.pop()
        else:
            stack.append(event["version"])
    return stack


def history(client, model_name: str) -> list[dict]:
    """Every recorded move of the champion, oldest first."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(model_name).tags
    except MlflowException:
        return []
    return [json.loads(tags[key]) for key in sorted(tags) if key.startswith(HISTORY_TAG)]


def rollback(client, model_name: str, reason: str) -> dict:
    """Move `champion` back to the version it held before the current one took it (a move made
    outside smar is recorded first, so rollback walks back over it too)."""
    record_outside_move(client, model_name)
    stack = _replayed(history(client, model_name))
    current = current_champion(client, model_name)
    if not stack:
        raise SmarError(
            f"{model_name}: no champion moves are on record (champion: version {current or 'none'}); nothing to roll "
            f"back to."
        )
    if len(stack) < 2 or stack[-2] is None:
        raise SmarError(
            f"{model_name}: version {current} is the first champion on record; there is nothing to roll back to."
        )
    return move_champion(client, model_name, stack[-2], expected=current, reason=reason, by="rollback")
