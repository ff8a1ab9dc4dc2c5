"""Progress of long steps: a terminal bar, and inside a Prefect run a progress artifact in the UI."""

import pytest

from smar.core.progress import Progress


def test_outside_prefect_it_counts_and_creates_no_artifact():
    with Progress("work", total=4, unit="item") as progress:
        for _ in range(4):
            progress.advance()
    assert progress.done == 4 and progress.percent == 100.0 and progress._artifact is None


def test_an_empty_step_is_complete():
    with Progress("nothing to do", total=0) as progress:
        pass
    assert progress.percent == 100.0


@pytest.mark.slow
def test_inside_a_flow_run_the_ui_gets_a_progress_artifact_that_reaches_100(prefect_harness, monkeypatch):
    from prefect import flow
    from prefect.client.orchestration import get_client

    import smar.core.progress

    monkeypatch.setattr(smar.core.progress, "ARTIFACT_EVERY_SECONDS", 0.0)

    @flow
    def long_step() -> str:
        with Progress("long step", total=5, unit="batch") as progress:
            for _ in range(5):
                progress.advance()
        return str(progress._artifact)

    artifact_id = long_step()
    with get_client(sync_client=True) as client:
        artifact = client.read_artifacts()
    [ours] = [a for a in artifact if str(a.id) == artifact_id]
    assert ours.type == "progress" and float(ours.data) == 100.0 and "5/5 batch" in ours.description
