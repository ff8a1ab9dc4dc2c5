"""Promotion on evidence from live traffic: the challenger takes `champion` once shoppers prefer it.

With `register.await_interleaving`, a version the offline gate would promote is tagged
`gate.decision: awaiting interleaving` and stays `challenger`; `smar serve` with
`serve.experiment_share` interleaves its rankings with the champion's, and the `smar-promote`
flow (scheduled) reads the search log and decides (smar.traffic.interleaving):
- promoted: shoppers prefer the challenger (the preference's interval lies above 0.5);
- rejected: they prefer the champion (it lies below);
- not distinguishable: neither after `register.interleaving_searches` interleaved searches;
- otherwise it waits.

Looking at a growing experiment again and again, and stopping at the first look that shows a
winner, finds winners where there are none far more often than its confidence says. So the
experiment is looked at only at LOOKS fixed points, after each quarter of the searches it may
take, every look at confidence 1 - (1 - register.interleaving_confidence) / LOOKS (Bonferroni
over the looks); however often the flow runs, the chance of a wrong winner stays within
1 - register.interleaving_confidence. Each look reads the first searches up to its point, in time order.
"""

from __future__ import annotations

from pathlib import Path

from smar.core.config import SmarConfig
from smar.traffic.interleaving import Preference, logged_outcomes, preference

AWAITING = "awaiting interleaving"  # gate.decision of a version the offline gate passed, waiting for traffic
LOOKS = 4


def promote_on_traffic(config: SmarConfig, log_dir: Path) -> dict:
    """Decide on the waiting challenger from the interleaved searches in `log_dir`; return what was decided."""
    from mlflow import MlflowClient

    from smar.registry.promotion import alias_version, current_champion, move_champion

    settings = config.register_
    client, name = MlflowClient(), settings.model_name
    champion, challenger = current_champion(client, name), alias_version(client, name, config.serve.challenger_alias)
    result = {"model_name": name, "champion_version": champion, "challenger_version": challenger}
    waiting = challenger is not None and challenger != champion
    if waiting:
        decision_tag = client.get_model_version(name, challenger).tags.get("gate.decision")
        waiting = decision_tag == AWAITING
    if not waiting:
        return result | {"decision": "nothing to decide", "reason": f"no challenger of {name} is {AWAITING}"}

    outcomes = logged_outcomes(log_dir).get((name, champion, challenger), [])
    looked = look(outcomes, settings.interleaving_searches, settings.interleaving_confidence)
    result |= looked
    if looked["decision"] == "promoted":
        move_champion(
            client,
            name,
            challenger,
            expected=champion,
            reason=f"shoppers prefer it; {looked['reason']}",
            by="interleaving",
        )
    if looked["decision"] == "waiting":
        return result
    tags = {
        "gate.decision": looked["decision"],
        "interleaving.reason": looked["reason"],
        "interleaving.searches": str(looked["looked_at"]),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, challenger, key, value)
    return result


def look(outcomes: list[str | None], budget: int, confidence: float) -> dict:
    """The decision on an experiment's outcomes so far (in time order): at the last fixed look
    they reach, "promoted", "rejected" or, at the last look, "not distinguishable"; else "waiting"."""
    looks = min(LOOKS, len(outcomes) * LOOKS // budget)
    decided = {"searches": len(outcomes), "looks": looks, "budget": budget}
    if not looks:
        reason = f"{len(outcomes):,} interleaved searches; the first look is at {budget // LOOKS:,}"
        return decided | {"decision": "waiting", "reason": reason}
    looked_at = looks * budget // LOOKS
    found = preference(outcomes[:looked_at], 1 - (1 - confidence) / LOOKS)
    said = f"look {looks} of {LOOKS}: {_described(found)}"
    decided |= {"looked_at": looked_at, "preference": _described(found), "reason": said}
    if found.verdict == "challenger better":
        return decided | {"decision": "promoted"}
    if found.verdict == "challenger worse":
        return decided | {"decision": "rejected"}
    if looks == LOOKS:
        return decided | {"decision": "not distinguishable"}
    return decided | {"decision": "waiting", "reason": f"{said}; the next look at {(looks + 1) * budget // LOOKS:,}"}


def _described(found: Preference) -> str:
    share = "no decided search" if found.share is None else f"challenger preferred in {found.share:.3f}"
    interval = f" [{found.low:.3f}, {found.high:.3f}] ({found.confidence:.2%})" if found.low is not None else ""
    return (
        f"{share}{interval} of {found.wins + found.losses:,} decided searches ({found.wins:,} won, {found.losses:,} "
        f"lost, {found.ties:,} tied)"
    )
