"""Progress of a long step, where its user is watching: a bar in the terminal, and inside a
Prefect run a progress artifact in the UI, both updated as the work goes.

    with Progress("train epoch 3/10", total=len(batches), unit="batch") as progress:
        for batch in batches:
            ...
            progress.advance()

The bar goes to stderr and only when stderr is a terminal (logs and CI stay clean). The
artifact is updated at most every `ARTIFACT_EVERY_SECONDS` (and at the end), so a fast loop
does not flood the Prefect API; a Prefect API that cannot be reached never fails the step.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)
ARTIFACT_EVERY_SECONDS = 2.0


class Progress:
    def __init__(self, description: str, total: int, unit: str = "it", enabled: bool = True):
        self.description, self.total, self.unit, self.done = description, max(int(total), 0), unit, 0
        self.enabled = enabled  # False: count, show nothing (a training rank other than 0)
        self._bar = self._artifact = None
        self._reported_at = 0.0

    def __enter__(self) -> Progress:
        from tqdm import tqdm

        if not self.enabled:
            return self

        self._bar = tqdm(
            total=self.total,
            desc=self.description,
            unit=self.unit,
            file=sys.stderr,
            disable=None,
            leave=False,
            dynamic_ncols=True,
        )
        self._artifact = _create_artifact(self.description)
        return self

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
        if self._artifact is not None and time.monotonic() - self._reported_at >= ARTIFACT_EVERY_SECONDS:
            self._report()

    @property
    def percent(self) -> float:
        return 100.0 * min(self.done, self.total) / self.total if self.total else 100.0

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._artifact is not None:
            self._report()

    def _report(self) -> None:
        self._reported_at = time.monotonic()
        try:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(
                self._artifact, self.percent, description=f"{self.description}: {self.done}/{self.total} {self.unit}"
            )
        except Exception as error:  # the UI's view of progress is never worth a failed step
            log.debug("progress artifact not updated: %s", error)


def _create_artifact(description: str):
    """A progress artifact at 0%, when this runs inside a Prefect flow or task run; else None."""
    if "prefect" not in sys.modules:
        return None
    try:
        from prefect.artifacts import create_progress_artifact
        from prefect.context import FlowRunContext, TaskRunContext

        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            return None
        return create_progress_artifact(0.0, description=description)
    except Exception as error:
        log.debug("no progress artifact: %s", error)
        return None
