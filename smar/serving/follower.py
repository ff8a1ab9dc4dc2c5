"""Following an alias of a registered model, so the service always has one whole model to answer with.

The service follows an alias of the registered model (`serve.alias`, default `champion`).
A background thread asks the registry every `serve.poll_seconds` where the alias points;
a new version is loaded beside the serving one, warmed up, and swapped in by replacing one
reference, so every request is answered by one whole model. If the registry cannot be
reached or a version's artifacts are broken, the last good model keeps serving, and
/readyz and the log say why.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # MLflow and the retriever's libraries are imported when a version loads
    from mlflow import MlflowClient

    from smar.retrieval.retriever import Retriever

log = logging.getLogger(__name__)
_libraries_frozen = False  # gc.freeze() once per process, after the first model is in


@dataclass(frozen=True)
class LoadedModel:
    version: str
    retriever: Retriever
    info: dict  # model name, version, run id, data hash, git commit, loaded_at


def load_version(model_name: str, version: str, client=None) -> LoadedModel:
    """Load one registered version through its pyfunc model and warm it up (`client`: the
    registry's MlflowClient; None: a new one on MLflow's configured store)."""
    import mlflow
    from mlflow import MlflowClient

    started = time.perf_counter()
    retriever = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}").unwrap_python_model().retriever
    retriever.search(["warm up"], 1)  # a broken model fails here, not on a user's request
    client = client or MlflowClient()
    run_id = client.get_model_version(model_name, version).run_id
    tags = client.get_run(run_id).data.tags if run_id else {}
    info = {
        "model_name": model_name,
        "model_version": version,
        "run_id": run_id,
        "data_hash": tags.get("data.dvc_md5"),
        "git_commit": tags.get("git.commit"),
        "loaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    log.info("loaded %s version %s in %.1f s", model_name, version, time.perf_counter() - started)
    return LoadedModel(version, retriever, info)


@dataclass
class AliasFollower:
    """Keeps `current` on the version the alias points at; never drops a good model for a bad one."""

    model_name: str
    alias: str
    poll_seconds: float
    tracking_uri: str | None = None  # None: MLflow's configured store
    current: LoadedModel | None = None
    problems: dict[str, str] = field(default_factory=dict)  # "registry" / "load" -> what went wrong
    poll_failures: int = 0  # registry polls that failed (smar_registry_poll_failures_total)
    load_failures: int = 0  # versions that failed to load (smar_model_load_failures_total)
    _failed_version: str | None = None
    _client: MlflowClient | None = None
    _client_uri: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def check_once(self) -> None:
        from mlflow import MlflowClient

        if (
            self._client is None or self._client_uri != self.tracking_uri
        ):  # one client: a new one re-checks the store's schema
            self._client, self._client_uri = MlflowClient(self.tracking_uri), self.tracking_uri
        try:
            version = str(self._client.get_model_version_by_alias(self.model_name, self.alias).version)
        except Exception as error:  # unreachable store, no such alias: keep what we have
            self.poll_failures += 1
            self._problem("registry", f"cannot resolve {self.model_name}@{self.alias}: {_short(error)}")
            return
        self.problems.pop("registry", None)
        if self.current and version == self.current.version:  # also after the alias came back from a broken version
            self._failed_version = None
            self.problems.pop("load", None)
            return
        if version == self._failed_version:
            return
        try:
            loaded = load_version(self.model_name, version, self._client)
        except Exception as error:
            self.load_failures += 1
            self._failed_version = version
            keeping = f"; still serving version {self.current.version}" if self.current else ""
            self._problem("load", f"version {version} failed to load: {_short(error)}{keeping}")
            return
        previous, self.current = self.current, loaded  # the swap: one reference
        was = previous.version if previous else "none"
        del previous, loaded  # requests still answering with the old model hold their own reference
        settle_memory()
        self._failed_version = None
        self.problems.pop("load", None)
        log.info("now serving %s@%s = version %s (was %s)", self.model_name, self.alias, version, was)

    def run(self) -> None:
        self.check_once()
        while not self._stop.wait(self.poll_seconds):
            self.check_once()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="alias-follower", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def _problem(self, kind: str, message: str) -> None:
        if self.problems.get(kind) != message:
            log.warning(message)
        self.problems[kind] = message


def settle_memory() -> None:
    """After a swap: collect the load's cyclic garbage and the swapped-out model's; after the first
    load, freeze what is left, once.

    The libraries the first load imports are hundreds of thousands of long-lived objects that
    full collections would otherwise rescan every few seconds (a stall of every request). A
    model is a few thousand objects: later ones stay collectable, since a frozen object in a
    reference cycle is never freed, and freezing on every swap would keep each load's garbage
    and each swapped-out model's cycles for good.
    """
    global _libraries_frozen
    gc.collect()
    if not _libraries_frozen:
        gc.freeze()
        _libraries_frozen = True


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]
