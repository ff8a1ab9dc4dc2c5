"""Promotion on live traffic (smar.registry.on_traffic) against a real MLflow registry and a search
log written by the server's own writer: the waiting challenger is promoted when shoppers prefer
it, rejected when they prefer the champion, waits between the fixed looks, and is called not
distinguishable once the experiment's searches are spent."""

import random
import uuid

import pytest

from smar.core import tracking
from smar.core.config import SmarConfig
from smar.registry.on_traffic import AWAITING, LOOKS, promote_on_traffic
from smar.registry.promotion import current_champion, history, move_champion
from smar.traffic.interleaving import SIDES, team_draft
from smar.traffic.log import SearchLog, now

BUDGET = 400  # interleaved searches an experiment may take here: looks at 100, 200, 300 and 400


@pytest.fixture
def waiting(tmp_path):
    """(config, client, champion, challenger): a model whose champion is version 1 and whose
    version 2 passed the offline gate and waits for traffic."""
    from mlflow import MlflowClient

    tracking.configure()
    client, name = MlflowClient(), f"on-traffic-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    champion, challenger = (str(client.create_model_version(name, f"file:///nowhere/{n}").version) for n in (1, 2))
    move_champion(client, name, champion, expected=None, reason="first", by="gate")
    client.set_registered_model_alias(name, "challenger", challenger)
    client.set_model_version_tag(name, challenger, "gate.decision", AWAITING)
    config = SmarConfig.model_validate({"register": {"model_name": name, "interleaving_searches": BUDGET}})
    return config, client, champion, challenger


def shoppers(log_dir, config, champion: str, challenger: str, searches: int, prefer: float, seed: int = 0):
    """`searches` interleaved searches in the log, each followed by a click on the first item of
    the challenger's side with probability `prefer`, else on the champion's side's first."""
    rng = random.Random(seed)
    log = SearchLog(log_dir, max_bytes=1 << 20, max_seconds=3600).start()
    for n in range(searches):
        ours, theirs = [f"c{n}-{i}" for i in range(10)], [f"d{n}-{i}" for i in range(10)]
        shown, sides = team_draft(ours, theirs, 10, rng)
        search_id = uuid.uuid4().hex
        log.search(
            {
                "time": now(),
                "search_id": search_id,
                "query": f"query {n}",
                "k": 10,
                "model_name": config.register_.model_name,
                "model_version": champion,
                "item_ids": shown,
                "scores": [1.0] * 10,
                "sides": sides,
                "challenger_version": challenger,
            }
        )
        side = SIDES[1] if rng.random() < prefer else SIDES[0]
        position = sides.index(side)
        log.event({"time": now(), "search_id": search_id, "item_id": shown[position], "event": "click"})
    log.close()


def test_a_challenger_shoppers_prefer_is_promoted_at_a_look_and_not_before(waiting, tmp_path):
    config, client, champion, challenger = waiting
    name = config.register_.model_name
    shoppers(tmp_path, config, champion, challenger, BUDGET // LOOKS - 1, prefer=0.8)
    early = promote_on_traffic(config, tmp_path)
    assert early["decision"] == "waiting" and "the first look is at 100" in early["reason"]
    assert current_champion(client, name) == champion

    shoppers(tmp_path, config, champion, challenger, 40, prefer=0.8, seed=2)
    decided = promote_on_traffic(config, tmp_path)
    assert decided["decision"] == "promoted" and decided["looks"] == 1, decided
    assert current_champion(client, name) == challenger
    [*_, move] = history(client, name)
    assert move["by"] == "interleaving" and "look 1 of 4" in move["reason"] and "(99.75%)" in move["reason"]
    assert client.get_model_version(name, challenger).tags["gate.decision"] == "promoted"
    assert promote_on_traffic(config, tmp_path)["decision"] == "nothing to decide"  # decided once


def test_a_challenger_shoppers_like_less_is_rejected_and_the_champion_stays(waiting, tmp_path):
    config, client, champion, challenger = waiting
    shoppers(tmp_path, config, champion, challenger, BUDGET // 2, prefer=0.2)
    decided = promote_on_traffic(config, tmp_path)
    assert decided["decision"] == "rejected" and decided["looks"] == 2
    assert current_champion(client, config.register_.model_name) == champion
    tags = client.get_model_version(config.register_.model_name, challenger).tags
    assert tags["gate.decision"] == "rejected" and tags["interleaving.searches"] == "200"


def test_no_preference_waits_between_looks_then_is_not_distinguishable(waiting, tmp_path):
    config, client, champion, challenger = waiting
    shoppers(tmp_path, config, champion, challenger, BUDGET // 2 + 10, prefer=0.5)
    middle = promote_on_traffic(config, tmp_path)
    assert middle["decision"] == "waiting" and "the next look at 300" in middle["reason"], middle
    shoppers(tmp_path, config, champion, challenger, BUDGET, prefer=0.5, seed=3)
    spent = promote_on_traffic(config, tmp_path)
    assert spent["decision"] == "not distinguishable" and spent["looks"] == LOOKS
    assert current_champion(client, config.register_.model_name) == champion
