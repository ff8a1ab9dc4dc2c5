"""The training state, saved every `train.checkpoint_every_steps` so a killed or failed training resumes.

The whole state (weights, optimiser, schedule, random state, position in the epoch, the
tracking run id) goes to `outputs/checkpoint` in one file, replaced atomically. It is
resumed only when the model and training settings and the data are the same, and removed
once the model is saved.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from smar.core.config import SmarConfig

log = logging.getLogger(__name__)


def fingerprint(config: SmarConfig, data_md5: str) -> str:
    """What a checkpoint must match to be resumed: the model and training settings, and the data."""
    settings = config.model_dump(mode="json", by_alias=True, include={"model", "train"})
    settings["train"] = {
        k: v for k, v in settings["train"].items() if k not in ("checkpoint_every_steps", "retries", "device")
    }
    return hashlib.sha256(json.dumps([settings, data_md5], sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """The training state in one file, replaced atomically (a kill leaves the old one or the new one)."""

    directory: Path
    fingerprint: str

    @property
    def file(self) -> Path:
        return self.directory / "training_state.pt"

    def save(self, state: dict) -> None:
        import torch

        self.directory.mkdir(parents=True, exist_ok=True)
        scratch = self.file.with_suffix(".tmp")
        torch.save(state | {"fingerprint": self.fingerprint}, scratch)
        os.replace(scratch, self.file)

    def load(self) -> dict | None:
        """The saved state, or None when there is none or it belongs to other settings or data."""
        import torch

        if not self.file.is_file():
            return None
        try:
            state = torch.load(self.file, weights_only=False)
        except Exception as error:  # a file cut short by a full disk, say: start afresh
            log.warning("%s: unreadable (%s); training starts from scratch", self.file, error)
            return None
        if state.get("fingerprint") != self.fingerprint:
            log.info("%s: written for other settings or data; training starts from scratch", self.file)
            return None
        return state

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
