"""The HTTP service: routes, limits, the API key, and running it under uvicorn.

Routes: POST /v1/entities, GET /health, /ready, /info, /metrics, the page (GET and POST /), and the
OpenAPI schema and docs FastAPI provides. Every answer that is not a success is JSON `{"error": "..."}`
with one readable line (the page shows it on the page): 401 without the key, 413 over the limits,
422 for a body that is not what the schema says, 503 with Retry-After when the queue is full, 500
"internal error" for a fault of ours (its traceback goes to the server's log, never to the client).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import os
import socket
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from bertner import __version__
from bertner.ensemble import load_predictor
from bertner.errors import BertnerError
from bertner.predict import Prediction, Predictor
from bertner.serve.batching import Batcher, NotServingError, QueueFullError
from bertner.serve.metrics import CONTENT_TYPE, Metrics
from bertner.serve.page import PAGE_POLICY, page
from bertner.serve.settings import SETTINGS_VARIABLE, ServeSettings
from bertner.spans import Document
from bertner.writers import entity_records

log = logging.getLogger(__name__)

OPEN_PATHS = ("/health",)  # the only route answered without the key: a liveness probe has none
BROWSER_PATHS = ("/", "/docs", "/redoc", "/openapi.json")  # their 401 asks the browser for the key (Basic auth)
WARM_UP_TEXT = "患者有2型糖尿病，口服二甲双胍 500 mg。HbA1c 7.5%。\n" * 8


# ----------------------------------------------------------------------------- request and answer bodies

class EntitiesRequest(BaseModel):
    """The body of POST /v1/entities: one text, or a list of texts (answered in order)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "examples": [{"text": "患者有2型糖尿病，口服二甲双胍。"}, {"texts": ["患者有2型糖尿病。", "口服二甲双胍。"]}]})
    text: str | None = Field(None, description="A text to tag; long texts are windowed as `bertner predict` does.")
    texts: list[str] | None = Field(None, description="Several texts: the answer has one result per text, in order.")

    @model_validator(mode="after")
    def one_of_text_or_texts(self) -> EntitiesRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError('send either "text" (a string) or "texts" (a list of strings)')
        return self


# The body is parsed by `parse_request` (JSON whatever the Content-Type); the docs still show its schema.
REQUEST_SCHEMA = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": EntitiesRequest.model_json_schema()}}}}


class Entity(BaseModel):
    """One entity, as `bertner predict --format jsonl` writes it; offsets count characters of the text."""

    start: int
    end: int
    label: str
    text: str
    score: float = Field(description="The mean over its tokens of the probability of the chosen tag.")


class Entities(BaseModel):
    """The answer for one text."""

    entities: list[Entity]


class Results(BaseModel):
    """The answer for `texts`: one result per text, in order."""

    results: list[Entities]


class ApiError(Exception):
    """An answer that is not a success: its status, one readable line, and headers (Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def readable(errors: list[dict[str, Any]]) -> str:
    """A validation failure as one line: where in the body, and what is wrong."""
    first = errors[0]
    kind = first.get("type", "")
    where = ""
    for part in first.get("loc", ()):
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    if kind == "json_invalid":
        problem = str(first.get("msg", "")).removeprefix("Invalid JSON: ") or "it cannot be parsed"
        return f'the body is not valid JSON ({problem}); send an object such as {{"text": "..."}}'
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return 'the body must be a JSON object such as {"text": "..."}'
    if kind == "extra_forbidden":
        message = f'unknown field {where!r}: send "text" or "texts"'
    else:
        message = str(first.get("msg", "invalid")).replace("Value error, ", "")
        message = f"{where}: {message}" if where else message
    return message + (f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else "")


def parse_request(raw: bytes) -> EntitiesRequest:
    """The body as JSON whatever its Content-Type says (curl -d sends a form's), or a 422 in one line."""
    if not raw.strip():
        raise ApiError(422, 'no body: send a JSON object such as {"text": "..."}')
    try:
        return EntitiesRequest.model_validate_json(raw)
    except ValidationError as e:
        raise ApiError(422, readable(e.errors())) from None


# ----------------------------------------------------------------------------- the service of one process

class Service:
    """One process's service: the settings, the predictor (given, or loaded by the model thread), the batcher, the metrics."""

    def __init__(self, settings: ServeSettings, predictor: Predictor | None = None):
        self.settings = settings
        self.predictor = predictor
        self.metrics = Metrics()
        self.batcher = Batcher(self.tag, settings.max_batch_tokens, settings.max_wait_ms / 1000, settings.max_queue,
                               on_batch=self.metrics.batch, on_queue=self.metrics.queued)

    def prepare(self) -> None:
        """In the model thread: load the run unless it was given, and run it once (the first call is the slowest)."""
        torch.set_num_threads(self.settings.torch_threads())
        if self.predictor is None:
            self.predictor = load_predictor(self.settings.run, self.settings.ensemble, device=self.settings.device,
                                            batch_size=self.settings.batch_size)
        self.tag([WARM_UP_TEXT, WARM_UP_TEXT[:40]])

    def tag(self, texts: list[str]) -> list[Prediction]:
        return self.predictor.predict(Document(str(i), text) for i, text in enumerate(texts))

    async def predictions(self, texts: list[str]) -> list[Prediction]:
        """The texts' predictions through the queue, or an ApiError (413 over the limits, 503 full or not serving)."""
        characters = sum(len(t) for t in texts)
        limit = self.settings.max_chars
        if characters > limit:
            raise ApiError(413, f"{characters:,} characters of text; this server takes at most {limit:,} per request")
        if len(texts) > self.settings.max_queue:
            raise ApiError(413, f"{len(texts):,} texts; this server takes at most {self.settings.max_queue:,} per request")
        try:
            return await self.batcher.submit(texts)
        except QueueFullError as e:
            raise ApiError(503, f"{e}: too many texts are waiting", {"Retry-After": str(e.retry_after)}) from None
        except NotServingError as e:
            raise ApiError(503, str(e), {"Retry-After": "5"}) from None

    def info(self) -> dict[str, Any]:
        run = self.predictor.run
        summary = run.summary
        return {
            "run": Path(self.settings.run).name, "ensemble": [Path(r).name for r in self.settings.ensemble],
            "variant": summary.variant, "encoder": summary.encoder,
            "crf": run.config.crf, "gru": run.config.gru, "labels": run.labels, "best_dev_f1": summary.best_f1,
            "bertner": __version__, "device": str(self.predictor.device), "max_chars": self.settings.max_chars,
            "max_batch_tokens": self.settings.max_batch_tokens, "max_wait_ms": self.settings.max_wait_ms,
            "max_queue": self.settings.max_queue, "workers": self.settings.workers,
        }

    def page(self, text: str = "", prediction: Prediction | None = None, message: str | None = None) -> str:
        run = self.predictor.run
        return page(self.settings.run_name(), run.summary.variant or "", run.labels, self.settings.max_chars,
                    text, prediction, message)

    def require_ready(self) -> None:
        if self.batcher.failure is not None:
            raise ApiError(503, self.batcher.failure, {"Retry-After": "5"})
        if not self.batcher.ready.is_set():
            raise ApiError(503, "the model is still loading", {"Retry-After": "1"})

    @asynccontextmanager
    async def lifespan(self, app: FastAPI):
        self.batcher.start(self.prepare)
        yield
        # uvicorn stops taking requests and waits for those in flight before this point; what is still
        # queued is tagged before the thread stops.
        await asyncio.to_thread(self.batcher.close)


# ----------------------------------------------------------------------------- middleware (plain ASGI)

class MeasureRequests:
    """Counts every answer by route and status and times it (the outermost layer: 401s and 413s count too)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.request(scope["path"], status, time.perf_counter() - start)


class RequireKey:
    """Every route but /health needs `Authorization: Bearer KEY` (or HTTP Basic with the key as password, for browsers)."""

    def __init__(self, app, key: str):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self.authorised(scope):
            return await self.app(scope, receive, send)
        challenge = 'Basic realm="bertner"' if scope["path"] in BROWSER_PATHS else 'Bearer realm="bertner"'
        response = error_response(401, "this server needs its API key: send the header Authorization: Bearer KEY",
                                  {"WWW-Authenticate": challenge})
        await response(scope, receive, send)

    def authorised(self, scope) -> bool:
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, value = header.partition(b" ")
        given = value.strip()
        if scheme.lower() == b"basic":
            try:
                given = base64.b64decode(given, validate=True).partition(b":")[2]
            except (binascii.Error, ValueError):
                return False
        elif scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(given, self.key)


class LimitBody:
    """A body over `limit` bytes is 413 before it is parsed; the characters are counted after (`Service.predictions`)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            return await self.refuse(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await self.refuse(scope, receive, send)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def refuse(self, scope, receive, send):
        message = f"the body is over {self.limit:,} bytes; this server takes at most that much per request"
        await error_response(413, message, {"Connection": "close"})(scope, receive, send)


# ----------------------------------------------------------------------------- the application

def create_app(settings: ServeSettings, predictor: Predictor | None = None) -> FastAPI:
    """The ASGI application of one process; `predictor` None: the model thread loads the run."""
    service = Service(settings, predictor)
    # JSON escapes take up to 12 bytes per character (a \\u pair); the exact count is of characters, after parsing.
    body_limit = 12 * settings.max_chars + 4 * settings.max_queue + 65_536
    middleware = [Middleware(MeasureRequests, metrics=service.metrics)]
    if settings.cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                                     allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"]))
    if settings.api_key:
        middleware.append(Middleware(RequireKey, key=settings.api_key))
    middleware.append(Middleware(LimitBody, limit=body_limit))
    app = FastAPI(title="bertner", version=__version__, lifespan=service.lifespan, middleware=middleware,
                  description="Named entities in text, from a run trained by `bertner train`.")
    app.state.service = service

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal error (the server's log has the details)")

    @app.post("/v1/entities", response_model=Entities | Results, tags=["entities"], openapi_extra=REQUEST_SCHEMA,
              responses={413: {"description": "Over --max-chars"}, 422: {"description": "Not the schema"},
                         503: {"description": "The queue is full (Retry-After says when to try again)"}})
    async def entities(request: Request) -> JSONResponse:
        """The entities of `text`, or of each of `texts`: start, end, label, text and score, as `bertner predict` finds them."""
        body = parse_request(await request.body())
        texts = [body.text] if body.text is not None else body.texts
        predictions = await service.predictions(texts)
        if body.text is not None:
            return JSONResponse({"entities": entity_records(predictions[0])})
        return JSONResponse({"results": [{"entities": entity_records(p)} for p in predictions]})

    @app.get("/health", tags=["service"])
    async def health() -> dict[str, str]:
        """The process answers (no key needed)."""
        return {"status": "ok"}

    @app.get("/ready", tags=["service"])
    async def ready() -> JSONResponse:
        """200 once the model is loaded and warmed up; 503 before (or if it could not be loaded)."""
        if service.batcher.failure is not None:
            return JSONResponse({"status": "failed", "error": service.batcher.failure}, status_code=503)
        if not service.batcher.ready.is_set():
            return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"status": "ready"})

    @app.get("/info", tags=["service"])
    async def info() -> dict[str, Any]:
        """The run (name, variant, labels, dev F1), the bertner version and the service's limits."""
        service.require_ready()
        return service.info()

    @app.get("/metrics", tags=["service"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus text format: requests by status, latency, batch sizes, queue depth, characters/s."""
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def show_page() -> HTMLResponse:
        try:
            service.require_ready()
        except ApiError as e:
            return error_response(e.status, e.message, e.headers)
        return HTMLResponse(service.page(), headers={"Content-Security-Policy": PAGE_POLICY})

    @app.post("/", response_class=HTMLResponse, include_in_schema=False)
    async def tag_page(request: Request) -> HTMLResponse:
        service.require_ready()
        form = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        # Browsers send a textarea's line breaks as CRLF; give the text back as it was typed.
        text = (form.get("text") or [""])[0].replace("\r\n", "\n")
        status, prediction, message = 200, None, None
        try:
            prediction = replace((await service.predictions([text]))[0], doc="Entities")
        except ApiError as e:
            status, message = e.status, e.message
        html = service.page(text, prediction, message)
        return HTMLResponse(html, status_code=status, headers={"Content-Security-Policy": PAGE_POLICY})

    return app


def app_from_environment() -> FastAPI:
    """uvicorn's factory in each worker process (--workers N): the settings come from the parent."""
    return create_app(ServeSettings.from_json(os.environ[SETTINGS_VARIABLE]))


# ----------------------------------------------------------------------------- running it

def check_address(host: str, port: int) -> None:
    """Fail early, in one line, when the address cannot be listened on (in use, not ours, unknown host)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise BertnerError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as e:
            raise BertnerError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def run_server(settings: ServeSettings, predictor: Predictor | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C, which stop new connections and let the requests in flight finish."""
    common = dict(host=settings.host, port=settings.port, log_level="info", access_log=settings.access_log,
                  server_header=False, timeout_graceful_shutdown=None)
    if settings.workers == 1:
        uvicorn.Server(uvicorn.Config(create_app(settings, predictor), **common)).run()
        return
    # Each worker loads the run itself; their metrics meet in files that /metrics adds up.
    with tempfile.TemporaryDirectory(prefix="bertner-metrics-") as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        os.environ[SETTINGS_VARIABLE] = settings.to_json()
        uvicorn.run("bertner.serve.app:app_from_environment", factory=True, workers=settings.workers, **common)
