"""One host's promotion, for the race in test_promotion_lock.py: gate `version` of `model`
against the tracking server's champion, with recalls given on the command line, once every
host is up ($SMAR_TEST_GO exists).

    python -m tests.production.racer MODEL VERSION RECALLS_JSON
"""

import json
import os
import sys
import time
from pathlib import Path

from mlflow import MlflowClient

from smar.core.config import RegisterConfig
from smar.registry.gate import gate, promotion_decision
from smar.registry.register import gate_tags
from tests.comparisons import scored


def wait_for_the_start() -> None:
    """Say this host is up (`ready` in its working directory), then wait for the go."""
    Path("ready").touch()
    go = Path(os.environ["SMAR_TEST_GO"])
    while not go.exists():
        time.sleep(0.01)


def main(model: str, version: str, recalls: dict[str, float]) -> None:
    client = MlflowClient()
    wait_for_the_start()  # both hosts start deciding at the same moment

    def compare(champion_version):
        time.sleep(1.0)  # measuring takes time: both hosts judge against the same champion
        return scored(recalls[version], recalls.get(champion_version))

    def judge(champion_version):
        measured = compare(champion_version)
        return promotion_decision(measured, threshold=0.1), measured

    decision, champion, comparison = gate(client, model, version, judge)
    for key, value in gate_tags(decision, comparison, champion, RegisterConfig(threshold=0.1), "test").items():
        client.set_model_version_tag(model, version, key, value)
    print(
        json.dumps({"version": version, "promote": decision.promote, "champion": champion, "reason": decision.reason})
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
