"""The champion alias on a real MLflow registry: compare-and-set, history, promote and rollback."""

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from smar.cli import app
from smar.core import tracking
from smar.core.errors import SmarError
from smar.registry.gate import gate, promotion_decision
from smar.registry.promotion import (
    ChampionMoved,
    current_champion,
    history,
    move_champion,
    record_outside_move,
    rollback,
)
from tests.comparisons import scored


def judged_by(compare):
    """The gate's judge for comparisons made by `compare(champion_version)`, at threshold 0.1 and tolerance 0."""

    def judge(champion_version):
        comparison = compare(champion_version)
        return promotion_decision(comparison, threshold=0.1), comparison

    return judge


@pytest.fixture
def registry():
    """(client, model name, [version "1", "2", "3"]): a fresh registered model with three versions."""
    from mlflow import MlflowClient

    tracking.configure()
    client, name = MlflowClient(), f"promotion-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    versions = [str(client.create_model_version(name, source=f"file:///nowhere/{n}").version) for n in range(3)]
    return client, name, versions


def test_move_is_recorded_on_the_version_and_in_the_history(registry):
    client, name, (first, second, _) = registry
    move_champion(client, name, first, expected=None, reason="first", by="gate", metrics={"recall_at_10": 0.5})
    event = move_champion(
        client, name, second, expected=first, reason="better", by="gate", metrics={"recall_at_10": 0.6}
    )
    assert current_champion(client, name) == second
    assert [(e["version"], e["previous_champion"], e["reason"]) for e in history(client, name)] == [
        (first, None, "first"),
        (second, first, "better"),
    ]
    tags = client.get_model_version(name, second).tags
    assert (
        tags["promotion.previous_champion"] == first
        and tags["promotion.reason"] == "better"
        and tags["promotion.by"] == "gate"
    )
    assert tags["promotion.promoted_at"] == event["promoted_at"] and tags["promotion.recall_at_10"] == "0.6"


def test_move_against_a_stale_champion_is_refused_and_changes_nothing(registry):
    client, name, (first, second, third) = registry
    move_champion(client, name, first, expected=None, reason="first", by="gate")
    move_champion(client, name, second, expected=first, reason="second", by="gate")
    with pytest.raises(ChampionMoved, match=f"expected version {first}, found {second}"):
        move_champion(client, name, third, expected=first, reason="decided against the first", by="gate")
    assert current_champion(client, name) == second and len(history(client, name)) == 2
    assert "promotion.reason" not in client.get_model_version(name, third).tags


def test_racing_promotions_never_leave_the_worse_model_as_champion(registry):
    """A (0.5) and B (0.6) both pass against champion C (0.4). A decides first but moves last:
    its compare-and-set fails, it is judged again against B, and rejected."""
    client, name, (champion, worse, better) = registry
    recall = {champion: 0.4, worse: 0.5, better: 0.6}
    move_champion(client, name, champion, expected=None, reason="start", by="gate")
    a_measured_champion, b_promoted = threading.Event(), threading.Event()
    outcome = {}

    def compared(candidate, champion_version):
        return scored(recall[candidate], recall.get(champion_version))

    def slow_comparison(champion_version):  # A measures C, then waits until B has promoted
        a_measured_champion.set()
        assert b_promoted.wait(timeout=60)
        return compared(worse, champion_version)

    def judge_a():
        outcome["a"] = gate(client, name, worse, judged_by(slow_comparison))

    racer = threading.Thread(target=judge_a)
    racer.start()
    assert a_measured_champion.wait(timeout=60)
    decision_b, champion_b, _ = gate(
        client, name, better, judged_by(lambda champion_version: compared(better, champion_version))
    )
    b_promoted.set()
    racer.join(timeout=60)

    assert decision_b.promote and champion_b == champion
    decision_a, champion_a, comparison_a = outcome["a"]
    assert not decision_a.promote and champion_a == better and comparison_a.champion == 0.6
    assert "worse than the champion's 0.6000" in decision_a.reason
    assert current_champion(client, name) == better
    assert [e["version"] for e in history(client, name)] == [champion, better]


def test_gating_the_champion_again_moves_nothing(registry):
    """A register retried after its promotion went through finds its version champion already."""
    client, name, (version, _, _) = registry
    move_champion(client, name, version, expected=None, reason="first", by="gate")
    decision, champion, _ = gate(client, name, version, judged_by(lambda champion_version: scored(0.5, None)))
    assert decision.promote and champion == version and "champion already" in decision.reason
    assert len(history(client, name)) == 1


def test_rollback_walks_back_through_forced_and_gated_promotions(registry):
    client, name, (first, second, third) = registry
    move_champion(client, name, first, expected=None, reason="first", by="gate")
    move_champion(client, name, second, expected=first, reason="second", by="gate")
    move_champion(client, name, third, expected=second, reason="hotfix", by="force")
    assert rollback(client, name, "hotfix misbehaves")["version"] == second
    assert rollback(client, name, "second misbehaves too")["version"] == first
    with pytest.raises(SmarError, match="first champion on record"):
        rollback(client, name, "again")
    assert current_champion(client, name) == first
    assert client.get_model_version(name, first).tags["promotion.by"] == "rollback"
    assert client.get_model_version(name, first).tags["promotion.previous_champion"] == second


def test_a_move_made_in_the_mlflow_ui_is_recorded_and_rollback_walks_back_over_it(registry):
    client, name, (first, second, third) = registry
    move_champion(client, name, first, expected=None, reason="first", by="gate")
    move_champion(client, name, second, expected=first, reason="second", by="gate")
    client.set_registered_model_alias(name, "champion", third)  # by hand, as the MLflow UI's alias editor does
    event = record_outside_move(client, name)
    assert (event["version"], event["previous_champion"], event["by"]) == (third, second, "outside")
    assert event["promoted_at"] and event["moved_after"] and "MLflow records no time and no user" in event["reason"]
    assert record_outside_move(client, name) is None  # recorded once
    assert client.get_model_version(name, third).tags["promotion.by"] == "outside"
    assert rollback(client, name, "undo the hand-made move")["version"] == second
    assert rollback(client, name, "and the one before")["version"] == first
    assert [e["by"] for e in history(client, name)] == ["gate", "gate", "outside", "rollback", "rollback"]


def test_a_hand_made_move_is_dated_between_the_last_move_on_record_and_when_it_was_noticed(registry, tmp_path):
    """MLflow records no time for an alias move (nor does it change the registered model's
    last_updated_timestamp): what is known is that the move came after the last recorded event
    and no later than when smar noticed it."""
    client, name, (first, second, _) = registry
    time.sleep(1.1)  # the versions' registration, a second before any move (the times are to the second)
    gated = move_champion(client, name, first, expected=None, reason="first", by="gate")
    client.set_registered_model_alias(name, "champion", second)  # by hand, as the MLflow UI's alias editor does
    moved = datetime.now(UTC).replace(microsecond=0)
    event = record_outside_move(client, name)
    noticed = datetime.fromisoformat(event["promoted_at"])
    assert moved <= noticed <= datetime.now(UTC)  # not the version's registration time
    assert event["moved_after"] == gated["promoted_at"]  # the bound: the last move on record
    assert client.get_model_version(name, second).tags["promotion.moved_after"] == gated["promoted_at"]

    listed = CliRunner().invoke(app, ["registry", "history", "--params", str(_params(tmp_path, name))])
    assert listed.exit_code == 0, listed.output
    line = next(line for line in listed.output.splitlines() if " outside " in line)
    assert f"moved after {gated['promoted_at']}, by {event['promoted_at']} (when noticed)" in line, line


def test_the_first_champion_set_by_hand_has_no_lower_bound(registry, tmp_path):
    client, name, (first, _, _) = registry
    client.set_registered_model_alias(name, "champion", first)
    event = record_outside_move(client, name)
    assert event["moved_after"] is None and event["promoted_at"]
    listed = CliRunner().invoke(app, ["registry", "history", "--params", str(_params(tmp_path, name))])
    assert f"moved by {event['promoted_at']} (when noticed)" in listed.output, listed.output


def _params(directory, name: str):
    """A params file that names the registered model `name`."""
    params = directory / "params.yaml"
    params.write_text(f"register:\n  model_name: {name}\n")
    return params


def test_a_promotion_after_a_hand_made_move_records_both(registry):
    client, name, (first, second, third) = registry
    move_champion(client, name, first, expected=None, reason="first", by="gate")
    client.set_registered_model_alias(name, "champion", second)
    move_champion(client, name, third, expected=second, reason="better", by="gate")
    assert [(e["version"], e["by"]) for e in history(client, name)] == [
        (first, "gate"),
        (second, "outside"),
        (third, "gate"),
    ]


def test_cli_promote_needs_force_and_a_reason_then_records_them(registry, tmp_path):
    client, name, (first, second, _) = registry
    params = tmp_path / "params.yaml"
    params.write_text(f"register:\n  model_name: {name}\n")
    runner = CliRunner()
    refused = runner.invoke(app, ["registry", "promote", first, "--reason", "try", "--params", str(params)])
    assert refused.exit_code == 1 and "pass --force" in refused.output and current_champion(client, name) is None
    missing = runner.invoke(app, ["registry", "promote", "99", "--force", "--reason", "try", "--params", str(params)])
    assert missing.exit_code == 1 and "no version '99'" in missing.output
    for version in (first, second):
        done = runner.invoke(
            app, ["registry", "promote", version, "--force", "--reason", f"ship {version}", "--params", str(params)]
        )
        assert done.exit_code == 0, done.output
    back = runner.invoke(app, ["registry", "rollback", "--reason", "regression", "--params", str(params)])
    assert back.exit_code == 0 and f"rolled back to version {first} (from {second})" in back.output
    listed = runner.invoke(app, ["registry", "history", "--params", str(params)])
    assert listed.exit_code == 0 and f"champion: version {first}" in listed.output and "regression" in listed.output
    assert [e["by"] for e in history(client, name)] == ["force", "force", "rollback"]
