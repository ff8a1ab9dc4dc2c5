"""`smar serve`: the registry's champion over HTTP, and a search page.

    POST /search   {"query": "red striped mug", "k": 10} -> items with id, title, score, image URL
    GET  /healthz  the process is up          GET /readyz   a model is loaded (503 until then)
    GET  /version  model version, data hash, git commit
    GET  /images/{item_id}  the item's thumbnail  GET /         the search page

The model answering is the one an `AliasFollower` (smar.serving.follower) keeps current on
the registry alias `serve.alias`; /readyz and /version report on it. Searches go through a
`Batcher` (smar.serving.batcher), which encodes concurrent requests' queries together.
Results link to the catalog's image URL, or to the thumbnail the registered version carries,
so the service needs the tracking server and nothing else: no dataset, no parameters file.
"""

import asyncio
import json
import logging
import os
from pathlib import Path

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator
from starlette.exceptions import HTTPException

from smar.core.config import ServeConfig
from smar.serving.batcher import Batcher
from smar.serving.follower import AliasFollower, LoadedModel

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


def create_app(follower: AliasFollower, settings: ServeConfig) -> FastAPI:
    app = FastAPI(title="smar", summary="Multimodal product search", docs_url="/docs", redoc_url=None)
    batcher = Batcher(follower, settings.max_batch)
    add_error_handlers(app, settings)
    add_status_routes(app, follower)
    add_search_route(app, follower, batcher, search_request_model(settings))
    add_page_routes(app, follower)
    return app


def error_response(status: int, message: str, **details) -> JSONResponse:
    return JSONResponse({"error": message, **details}, status_code=status)


def add_error_handlers(app: FastAPI, settings: ServeConfig) -> None:
    """Every error is {"error": "..."}; a bad search body also gets a hint of what to send."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()]
        problems = [problem.replace("Value error, ", "") for problem in problems]
        return error_response(
            422,
            "; ".join(problems),
            hint=f'send {{"query": "<1-{settings.max_query_chars} characters>", "k": <1-{settings.max_k}>}}',
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


def add_status_routes(app: FastAPI, follower: AliasFollower) -> None:
    """GET /healthz, /readyz and /version."""

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        model = follower.current
        body = {
            "ready": model is not None,
            "model_version": model.version if model else None,
            "problems": follower.problems,
        }
        return JSONResponse(body, status_code=200 if model else 503)

    @app.get("/version")
    def version():
        return ready_model(follower).info | {"alias": follower.alias}


def add_search_route(app: FastAPI, follower: AliasFollower, batcher: Batcher, request_model: type[BaseModel]) -> None:
    """POST /search, answered through the batcher."""

    @app.post(
        "/search",
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": request_model.model_json_schema()}}}},
    )
    async def search(http: Request):
        try:  # the body is JSON whatever the Content-Type says (curl -d sends a form type)
            request = request_model.model_validate(json.loads(await http.body()))
        except (ValueError, UnicodeDecodeError) as problem:  # bad JSON, bad UTF-8, or a ValidationError
            raise RequestValidationError(
                problem.errors()
                if isinstance(problem, ValidationError)
                else [{"loc": ("body",), "msg": f"not JSON: {problem}"}]
            ) from None
        ready_model(follower)
        model, item_ids, scores, view = await asyncio.wrap_future(batcher.submit(request.query, request.k))
        retriever = model.retriever
        results = [
            {
                "item_id": item_id,
                "title": retriever.items.get(item_id, (None,))[0],
                "score": round(score, 6),
                "image_url": retriever.image_url(item_id),
            }
            for item_id, score in zip(item_ids, scores)
        ]
        body = {
            "query": request.query,
            "k": request.k,
            "model_version": model.version,
            "index": view,
            "results": results,
        }
        return Response(
            orjson.dumps(body), media_type="application/json"
        )  # a Response skips FastAPI's generic (slow) encoder


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
    log.info(
        "serving %s@%s on http://%s:%d (search page at /)", model_name, settings.alias, settings.host, settings.port
    )
    uvicorn.run(create_app(follower, settings), host=settings.host, port=settings.port, log_level="warning")
