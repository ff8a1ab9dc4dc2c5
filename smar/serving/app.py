"""`smar serve`: the registry's champion over HTTP, and a search page.

    POST /search   {"query": "red striped mug", "k": 10} -> items with id, title, score, image URL
    GET  /healthz  the process is up          GET /readyz   a model is loaded (503 until then)
    GET  /version  model version, data hash, git commit
    GET  /images/{item_id}                    GET /         the search page

The service follows an alias of the registered model (`serve.alias`, default `champion`).
A background thread asks the registry every `serve.poll_seconds` where the alias points;
a new version is loaded beside the serving one, warmed up, and swapped in by replacing one
reference, so every request is answered by one whole model. If the registry cannot be
reached or a version's artifacts are broken, the last good model keeps serving, and
/readyz and the log say why.

Queries from concurrent requests are encoded together: one worker thread takes whatever
is waiting (up to `serve.max_batch`) and searches it as one batch. The model is only ever
used from that thread.
"""

import asyncio
import gc
import json
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from smar.config import ServeConfig

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("static") / "index.html"


@dataclass(frozen=True)
class LoadedModel:
    version: str
    retriever: object  # smar.retriever.Retriever
    info: dict  # model name, version, run id, data hash, git commit, loaded_at


def load_version(model_name: str, version: str) -> LoadedModel:
    """Load one registered version through its pyfunc model and warm it up."""
    import mlflow
    from mlflow import MlflowClient

    started = time.perf_counter()
    retriever = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}").unwrap_python_model().retriever
    retriever.search(["warm up"], 1)  # a broken model fails here, not on a user's request
    client = MlflowClient()
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
    _failed_version: str | None = None
    _client: object = None
    _client_uri: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def check_once(self) -> None:
        from mlflow import MlflowClient

        if self._client is None or self._client_uri != self.tracking_uri:  # one client: a new one re-checks the store's schema
            self._client, self._client_uri = MlflowClient(self.tracking_uri), self.tracking_uri
        try:
            version = str(self._client.get_model_version_by_alias(self.model_name, self.alias).version)
        except Exception as error:  # unreachable store, no such alias: keep what we have
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
            loaded = load_version(self.model_name, version)
        except Exception as error:
            self._failed_version = version
            keeping = f"; still serving version {self.current.version}" if self.current else ""
            self._problem("load", f"version {version} failed to load: {_short(error)}{keeping}")
            return
        previous, self.current = self.current, loaded  # the swap: one reference
        gc.freeze()  # the loaded libraries and model are millions of long-lived objects: keep full collections from rescanning them
        self._failed_version = None
        self.problems.pop("load", None)
        log.info("now serving %s@%s = version %s (was %s)", self.model_name, self.alias, version, previous.version if previous else "none")

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


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


class Batcher:
    """One worker thread answers queued searches in batches, with the model current at batch start."""

    def __init__(self, follower: AliasFollower, max_batch: int):
        self.follower, self.max_batch = follower, max_batch
        self.requests: queue.Queue = queue.Queue()
        threading.Thread(target=self._work, name="search-batcher", daemon=True).start()

    def submit(self, query: str, k: int) -> Future:
        future: Future = Future()
        self.requests.put((query, k, future))
        return future

    def _work(self) -> None:
        while True:
            batch = [self.requests.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.requests.get_nowait())
                except queue.Empty:
                    break
            model = self.follower.current
            try:
                hits = model.retriever.search([query for query, _, _ in batch], max(k for _, k, _ in batch))
            except Exception as error:  # reported to each waiting request; the worker lives on
                for _, _, future in batch:
                    future.set_exception(error)
                continue
            for row, (_, k, future) in enumerate(batch):
                future.set_result((model, hits.item_ids[row][:k], hits.scores[row][:k], hits.views[row]))


def create_app(follower: AliasFollower, settings: ServeConfig, data_dir: Path):
    import orjson
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator
    from starlette.exceptions import HTTPException

    class SearchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        query: StrictStr = Field(min_length=1, max_length=settings.max_query_chars)
        k: StrictInt = Field(10, ge=1, le=settings.max_k)

        @field_validator("query")
        @classmethod
        def readable(cls, query: str) -> str:
            if not query.strip():
                raise ValueError("is blank")
            try:
                query.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("is not valid Unicode (lone surrogate)") from None
            return query

    app = FastAPI(title="smar", summary="Multimodal product search", docs_url="/docs", redoc_url=None)
    batcher = Batcher(follower, settings.max_batch)
    data_dir = Path(data_dir).resolve()

    def error(status: int, message: str, **details) -> JSONResponse:
        return JSONResponse({"error": message, **details}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()]
        problems = [problem.replace("Value error, ", "") for problem in problems]
        return error(422, "; ".join(problems), hint=f'send {{"query": "<1-{settings.max_query_chars} characters>", "k": <1-{settings.max_k}>}}')

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    def ready_model():
        model = follower.current
        if model is None:
            raise HTTPException(503, f"no model loaded yet for {follower.model_name}@{follower.alias}: {follower.problems or 'loading'}")
        return model

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        model = follower.current
        body = {"ready": model is not None, "model_version": model.version if model else None, "problems": follower.problems}
        return JSONResponse(body, status_code=200 if model else 503)

    @app.get("/version")
    def version():
        return ready_model().info | {"alias": follower.alias}

    @app.post("/search", openapi_extra={"requestBody": {"content": {"application/json": {"schema": SearchRequest.model_json_schema()}}}})
    async def search(http: Request):
        try:  # the body is JSON whatever the Content-Type says (curl -d sends a form type)
            request = SearchRequest.model_validate(json.loads(await http.body()))
        except (ValueError, UnicodeDecodeError) as problem:  # bad JSON, bad UTF-8, or a ValidationError
            raise RequestValidationError(problem.errors() if isinstance(problem, ValidationError) else [{"loc": ("body",), "msg": f"not JSON: {problem}"}]) from None
        ready_model()
        model, item_ids, scores, view = await asyncio.wrap_future(batcher.submit(request.query, request.k))
        items = model.retriever.items
        results = []
        for item_id, score in zip(item_ids, scores):
            title, image = items.get(item_id, (None, None))
            results.append({"item_id": item_id, "title": title, "score": round(score, 6), "image_url": f"/images/{item_id}" if image else None})
        body = {"query": request.query, "k": request.k, "model_version": model.version, "index": view, "results": results}
        return Response(orjson.dumps(body), media_type="application/json")  # a Response skips FastAPI's generic (slow) encoder

    @app.get("/images/{item_id}")
    def image(item_id: str):
        _, path = ready_model().retriever.items.get(item_id, (None, None))
        file = (data_dir / path).resolve() if path else None
        if file is None or not file.is_relative_to(data_dir) or not file.is_file():
            raise HTTPException(404, f"no image for item {item_id!r} under {data_dir}")
        return FileResponse(file, headers={"Cache-Control": "public, max-age=3600"})

    @app.get("/", response_class=HTMLResponse)
    def page():
        return HTMLResponse(PAGE.read_text())

    return app


def serve(settings: ServeConfig, model_name: str, data_dir: Path) -> None:
    """Run the service until interrupted (uvicorn, one process)."""
    import uvicorn

    follower = AliasFollower(model_name, settings.alias, settings.poll_seconds)
    follower.start()
    log.info("serving %s@%s on http://%s:%d (search page at /)", model_name, settings.alias, settings.host, settings.port)
    uvicorn.run(create_app(follower, settings, data_dir), host=settings.host, port=settings.port, log_level="warning")
