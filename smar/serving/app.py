"""`smar serve`: the registry's champion over HTTP, and a search page.

    POST /search   {"query": "red striped mug", "k": 10} -> a search_id, items with id, title, score, image URL
    POST /events   {"search_id": ..., "item_id": ..., "event": "click"} (or a list): what the shopper did
    POST /compare  {"query": ..., "k": 10} -> the champion's and the challenger's results side by side
    GET  /healthz  the process is up          GET /readyz   a model is loaded (503 until then)
    GET  /version  model version, data hash, git commit
    GET  /metrics  Prometheus' text format: requests, latencies, batches, model, log (smar.serving.metrics)
    GET  /images/{item_id}  the item's thumbnail  GET /         the search page

The model answering is the one an `AliasFollower` (smar.serving.follower) keeps current on
the registry alias `serve.alias`; /readyz and /version report on it. Searches go through a
`Batcher` (smar.serving.batcher), which encodes concurrent requests' queries together.
Results link to the catalog's image URL, or to the thumbnail the registered version carries,
so the service needs the tracking server and nothing else: no dataset, no parameters file.

Every search and event goes into the search log (`serve.log_dir`, smar.traffic.log), unless
`serve.log` is off; a share of searches (`serve.explore_share`) shows k of the top 2k in random
order, the evidence `smar data from-logs` estimates position bias from (docs/traffic.md).
"""

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import uuid
from pathlib import Path
from typing import Literal

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, TypeAdapter, ValidationError, field_validator
from starlette.exceptions import HTTPException

from smar.core.config import ServeConfig
from smar.core.contract import EVENTS
from smar.serving.batcher import Batcher
from smar.serving.experiment import Experiment
from smar.serving.follower import AliasFollower, LoadedModel
from smar.serving.metrics import Instrumented, ServingMetrics
from smar.traffic.log import SearchLog, hash_user, now

log = logging.getLogger(__name__)
# MLflow's HTTP settings for the registry polls, unless set: a poll that fails is retried at the next poll anyway.
REGISTRY_REQUESTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
PAGE = Path(__file__).with_name("static") / "index.html"


def search_request_model(settings: ServeConfig) -> type[BaseModel]:
    """The body of POST /search, with the query length and k limits from the settings."""

    class SearchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        query: StrictStr = Field(min_length=1, max_length=settings.max_query_chars)
        k: StrictInt = Field(10, ge=1, le=settings.max_k)
        session_id: StrictStr | None = Field(None, max_length=128)
        user_id: StrictStr | None = Field(None, max_length=128, description="Logged hashed, never as sent.")

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

    return SearchRequest


class Event(BaseModel):
    """One thing a shopper did with a result of a search (POST /events)."""

    model_config = ConfigDict(extra="forbid")
    search_id: StrictStr = Field(min_length=1, max_length=64, description="As /search returned it.")
    item_id: StrictStr = Field(min_length=1, max_length=256)
    event: Literal[EVENTS]
    position: StrictInt | None = Field(None, ge=1, le=10_000, description="1-based, as shown.")
    session_id: StrictStr | None = Field(None, max_length=128)


EVENT_LIST = TypeAdapter(list[Event])
MAX_EVENTS = 1000  # events in one POST /events
EVENTS_HINT = f'send {{"search_id": "...", "item_id": "...", "event": "{" | ".join(EVENTS)}", "position": 1}} or a list'
HOST = socket.gethostname()


def create_app(
    follower: AliasFollower,
    settings: ServeConfig,
    search_log: SearchLog | None = None,
    challenger: AliasFollower | None = None,
) -> FastAPI:
    """The service; with a `search_log`, every search is logged and POST /events is open (the log is
    closed when the service shuts down); with a `challenger` and `settings.experiment_share`, that
    share of searches is interleaved (smar.serving.experiment)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if search_log is not None:
            search_log.close()  # the open segments closed into Parquet

    app = FastAPI(
        title="smar", summary="Multimodal product search", docs_url="/docs", redoc_url=None, lifespan=lifespan
    )
    metrics = ServingMetrics(follower, search_log)
    app.add_middleware(Instrumented, metrics=metrics)
    batcher = Batcher(follower, settings.max_batch, metrics)
    experiment = None
    if challenger is not None:
        experiment = Experiment(
            challenger, settings.experiment_share, settings.max_batch, metrics, settings.shadow_share, search_log
        )
    add_error_handlers(app, settings)
    add_status_routes(app, follower, search_log, metrics, experiment)
    add_search_route(app, follower, batcher, search_request_model(settings), settings, search_log, experiment)
    add_events_route(app, search_log, experiment)
    add_compare_route(app, batcher, search_request_model(settings), experiment)
    add_page_routes(app, follower)
    return app


def parse_body(body: bytes, parse):
    """The request's JSON through `parse` (a model's or adapter's validate_python); a 422 naming the field if not."""
    try:  # the body is JSON whatever the Content-Type says (curl -d sends a form type)
        return parse(json.loads(body))
    except (ValueError, UnicodeDecodeError) as problem:  # bad JSON, bad UTF-8, or a ValidationError
        raise RequestValidationError(
            problem.errors()
            if isinstance(problem, ValidationError)
            else [{"loc": ("body",), "msg": f"not JSON: {problem}"}]
        ) from None


def error_response(status: int, message: str, **details) -> JSONResponse:
    return JSONResponse({"error": message, **details}, status_code=status)


def add_error_handlers(app: FastAPI, settings: ServeConfig) -> None:
    """Every error is {"error": "..."}; a bad search body also gets a hint of what to send."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()]
        problems = [problem.replace("Value error, ", "") for problem in problems]
        search_hint = f'send {{"query": "<1-{settings.max_query_chars} characters>", "k": <1-{settings.max_k}>}}'
        return error_response(
            422, "; ".join(problems), hint=EVENTS_HINT if request.url.path == "/events" else search_hint
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error_response(exc.status_code, str(exc.detail))


def ready_model(follower: AliasFollower) -> LoadedModel:
    """The model serving now, or a 503 saying why there is none yet."""
    model = follower.current
    if model is None:
        raise HTTPException(
            503, f"no model loaded yet for {follower.model_name}@{follower.alias}: {follower.problems or 'loading'}"
        )
    return model


def add_status_routes(
    app: FastAPI,
    follower: AliasFollower,
    search_log: SearchLog | None,
    metrics: ServingMetrics,
    experiment: Experiment | None,
) -> None:
    """GET /healthz, /readyz (ready while a model answers, whatever else is wrong), /version and
    /metrics (Prometheus' text format, smar.serving.metrics)."""

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        model = follower.current
        problems = dict(follower.problems)
        if search_log is not None and search_log.problem:
            problems["search_log"] = search_log.problem
        if experiment is not None and experiment.challenger.problems:  # the champion keeps answering alone
            problems["experiment"] = "; ".join(experiment.challenger.problems.values())
        body = {"ready": model is not None, "model_version": model.version if model else None, "problems": problems}
        return JSONResponse(body, status_code=200 if model else 503)

    @app.get("/version")
    def version():
        return ready_model(follower).info | {"alias": follower.alias}

    @app.get("/metrics")
    def prometheus_metrics():
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)


def add_search_route(
    app: FastAPI,
    follower: AliasFollower,
    batcher: Batcher,
    request_model: type[BaseModel],
    settings: ServeConfig,
    search_log: SearchLog | None,
    experiment: Experiment | None,
) -> None:
    """POST /search, answered through the batcher (or interleaved with the challenger's answer),
    logged with its search_id."""
    explore = random.Random()

    @app.post(
        "/search",
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": request_model.model_json_schema()}}}},
    )
    async def search(http: Request):
        request = parse_body(await http.body(), request_model.model_validate)
        champion = ready_model(follower)
        search_id, sides, challenger_version = uuid.uuid4().hex, None, None
        interleaved = experiment is not None and experiment.wants(champion.version)
        explored = not interleaved and search_log is not None and explore.random() < settings.explore_share
        depth = 2 * request.k if explored else request.k
        answer = batcher.submit(request.query, depth)
        if interleaved:
            model, view, challenger_version, item_ids, scores, sides = await experiment.interleave(
                answer, request.query, request.k
            )
            experiment.remember(search_id, sides)
        else:
            model, item_ids, scores, view = await asyncio.wrap_future(answer)
        if explored:  # k of the top 2k, in random order: what is shown no longer depends on the ranking's order
            shown = explore.sample(range(len(item_ids)), min(request.k, len(item_ids)))
            item_ids, scores = [item_ids[i] for i in shown], [scores[i] for i in shown]
        elif not interleaved and experiment is not None and experiment.shadows(model.version):
            shadowed = {"time": now(), "model_name": follower.model_name, "host": HOST}
            experiment.shadow(search_id, request.query, list(item_ids), model.version, shadowed)
        if search_log is not None:
            search_log.search(
                {
                    "time": now(),
                    "search_id": search_id,
                    "session_id": request.session_id,
                    "user_hash": hash_user(request.user_id, settings.user_salt),
                    "query": request.query,
                    "k": request.k,
                    "model_name": follower.model_name,
                    "model_version": model.version,
                    "index": view,
                    "explored": explored,
                    "item_ids": list(item_ids),
                    "scores": [float(score) for score in scores],
                    "sides": sides,
                    "challenger_version": challenger_version,
                    "host": HOST,
                }
            )
        results = shown_results(model, item_ids, scores)
        body = {
            "search_id": search_id,
            "query": request.query,
            "k": request.k,
            "model_version": model.version,
            "index": view,
            "results": results,
        }
        return Response(
            orjson.dumps(body), media_type="application/json"
        )  # a Response skips FastAPI's generic (slow) encoder


def shown_results(model: LoadedModel, item_ids, scores) -> list[dict]:
    """A ranking as the page shows it: each item's id, title, score and image URL."""
    retriever = model.retriever
    return [
        {
            "item_id": item_id,
            "title": retriever.items.get(item_id, (None,))[0],
            "score": round(score, 6),
            "image_url": retriever.image_url(item_id),
        }
        for item_id, score in zip(item_ids, scores)
    ]


def add_compare_route(
    app: FastAPI, batcher: Batcher, request_model: type[BaseModel], experiment: Experiment | None
) -> None:
    """POST /compare: the champion's and the challenger's results for one query, side by side; each
    result says where the other side ranks it (`rank_there`, null: not in its top k). Not logged:
    it is for the team looking, not a shopper's search."""

    @app.post("/compare")
    async def compare(http: Request):
        request = parse_body(await http.body(), request_model.model_validate)
        if experiment is None or experiment.challenger.current is None:
            problem = (
                "no challenger loaded: set serve.side_by_side (or an experiment's share) and point the alias "
                "`challenger` at a version"
                if experiment is None
                else f"no version of alias {experiment.challenger.alias!r} loaded yet"
            )
            raise HTTPException(409, problem)
        ready_model(batcher.follower)
        answers = await experiment.side_by_side(batcher.submit(request.query, request.k), request.query, request.k)
        ranks = {side: {item: n for n, item in enumerate(answer[1], start=1)} for side, answer in answers.items()}
        body = {"query": request.query, "k": request.k}
        for side, (model, item_ids, scores, view) in answers.items():
            there = ranks[next(other for other in ranks if other != side)]
            results = [
                result | {"rank_there": there.get(result["item_id"])}
                for result in shown_results(model, item_ids, scores)
            ]
            body[side] = {"model_version": model.version, "index": view, "results": results}
        return Response(orjson.dumps(body), media_type="application/json")


def add_events_route(app: FastAPI, search_log: SearchLog | None, experiment: Experiment | None) -> None:
    """POST /events: one event or a list of them, validated whole, logged without waiting on the disk."""

    @app.post(
        "/events",
        status_code=202,
        openapi_extra={
            "requestBody": {"content": {"application/json": {"schema": TypeAdapter(Event | list[Event]).json_schema()}}}
        },
    )
    async def events(http: Request):
        if search_log is None:
            raise HTTPException(503, "the search log is off (serve.log: false): events are not kept")
        received = parse_body(
            await http.body(),
            lambda value: (
                EVENT_LIST.validate_python(value) if isinstance(value, list) else [Event.model_validate(value)]
            ),
        )
        if not 1 <= len(received) <= MAX_EVENTS:
            problem = f"send 1 to {MAX_EVENTS} events, not {len(received)}"
            raise RequestValidationError([{"loc": ("body",), "msg": problem}])
        time = now()
        for event in received:
            search_log.event({"time": time, **event.model_dump(), "host": HOST})
            if experiment is not None:
                experiment.credit(event.search_id, event.position)
        return {"accepted": len(received)}


def add_page_routes(app: FastAPI, follower: AliasFollower) -> None:
    """GET /images/{item_id} (the thumbnail inside the serving version) and the search page at /."""

    @app.get("/images/{item_id}")
    def image(item_id: str):
        model = ready_model(follower)
        jpeg = model.retriever.thumbnail(item_id)
        if jpeg is None:
            raise HTTPException(404, f"no thumbnail for item {item_id!r} in version {model.version}")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})

    @app.get("/", response_class=HTMLResponse)
    def page():
        return HTMLResponse(PAGE.read_text())


def serve(settings: ServeConfig, model_name: str) -> None:
    """Run the service until interrupted (uvicorn, one process)."""
    import uvicorn

    for name, value in REGISTRY_REQUESTS.items():  # a registry outage shows on /readyz in seconds, not minutes
        os.environ.setdefault(name, value)
    follower = AliasFollower(model_name, settings.alias, settings.poll_seconds)
    follower.start()
    challenger = None
    if settings.experiment_share > 0 or settings.shadow_share > 0 or settings.side_by_side:
        challenger = AliasFollower(model_name, settings.challenger_alias, settings.poll_seconds)
        challenger.start()
        log.info(
            "interleaving %.0f%% of searches with %s@%s, shadowing %.0f%%",
            100 * settings.experiment_share,
            model_name,
            challenger.alias,
            100 * settings.shadow_share,
        )
    search_log = None
    if settings.log:
        search_log = SearchLog(settings.log_dir, int(settings.log_rotate_mb * 2**20), settings.log_rotate_minutes * 60)
        search_log.start()
        log.info("logging searches and events into %s", settings.log_dir)
    log.info(
        "serving %s@%s on http://%s:%d (search page at /)", model_name, settings.alias, settings.host, settings.port
    )
    app = create_app(follower, settings, search_log, challenger)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
