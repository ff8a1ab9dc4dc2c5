"""The promotion gate: a candidate takes `champion` only if its Recall@10 passes the threshold
and is not worse (beyond `tolerance`) than the champion's on the same queries."""

from __future__ import annotations

from dataclasses import dataclass

from smar.errors import SmarError


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def promotion_decision(candidate: float, champion: float | None, threshold: float, tolerance: float = 0.0) -> Decision:
    """The gate, on Recall@10: above the threshold, and not worse than the champion."""
    if candidate < threshold:
        return Decision(False, f"Recall@10 {candidate:.4f} is below the threshold {threshold:.4f}")
    if champion is None:
        return Decision(True, f"Recall@10 {candidate:.4f} passes the threshold {threshold:.4f}; there is no champion yet")
    if candidate < champion - tolerance:
        return Decision(False, f"Recall@10 {candidate:.4f} is worse than the champion's {champion:.4f} on the same queries")
    return Decision(
        True, f"Recall@10 {candidate:.4f} passes the threshold {threshold:.4f} and matches or beats the champion's {champion:.4f}"
    )


def gate(client, model_name: str, version: str, candidate: float, champion_recall, threshold: float, tolerance: float, attempts: int = 5):
    """Decide against the current champion and, on a pass, move the alias by compare-and-set.

    `champion_recall(version)` measures a champion on the same queries as the candidate. When
    another promotion moves the champion between the decision and the move, the candidate is
    judged again against the new champion. Returns (decision, champion version, its recall).
    """
    from smar.registry.promotion import ChampionMoved, current_champion, move_champion

    measured: dict[str, float] = {}
    for _ in range(attempts):
        champion_version = current_champion(client, model_name)
        if champion_version is not None and champion_version not in measured:
            measured[champion_version] = champion_recall(champion_version)
        champion = measured.get(champion_version)
        decision = promotion_decision(candidate, champion, threshold, tolerance)
        if not decision.promote:
            return decision, champion_version, champion
        try:
            move_champion(client, model_name, version, expected=champion_version, reason=decision.reason, by="gate",
                          metrics={"recall_at_10": round(candidate, 6)})
            return decision, champion_version, champion
        except ChampionMoved:
            continue
    raise SmarError(f"{model_name}: the champion moved {attempts} times while version {version} was judged; it stays challenger. Run again.")
