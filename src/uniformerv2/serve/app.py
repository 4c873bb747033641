"""The HTTP service: a FastAPI app over a ``VideoClassifier`` and the cross-request ``Scheduler``.

    app = create_app("model_dir", max_batch=8, workers=2)     # or create_app(VideoClassifier(...))
    uvicorn.run(app, host="127.0.0.1", port=8000)              # what `uniformerv2 serve` does

Endpoints: ``POST /v1/predict`` (the fields of ``uniformerv2 predict --json`` for one video), ``POST
/v1/features``, ``POST /v1/explain``, ``GET /v1/model``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``
(Prometheus text), ``GET /openapi.json``, and the page at ``/`` (its assets in ``serve/static``). Every error is
``{"error": "<one line>"}`` with its status. The worker processes start, and the model is warmed up, when the app
starts (its lifespan): an app mounted inside another one needs that app to run this one's lifespan.
"""
from __future__ import annotations

import asyncio
import hmac
import math
import os
import shutil
import tempfile
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..errors import UserError
from ..typed import TypedConfig
from .batching import Scheduler
from .metrics import Metrics
from .uploads import HTTPProblem, Upload, receive_video

STATIC = Path(__file__).resolve().parent / "static"
API_KEY_ENV = "UNIFORMERV2_API_KEY"
OPTIONS = ("top_k", "views", "window", "stride")


@dataclass
class ServeConfig(TypedConfig):
    """How the service runs. ``max_batch``: views per forward pass (None: the engine's ``views_per_pass`` of the
    model's test views, what ``predict`` uses); ``max_wait_ms``: how long a partial pass waits for more views;
    ``queue``: requests admitted at once (uploading, waiting or running; beyond: 503); ``timeout``: seconds per
    request (504); ``allow_paths``: a folder whose files a JSON request may name; ``api_key``: the bearer
    token every ``/v1`` request needs (None: read ``UNIFORMERV2_API_KEY``; empty: none)."""
    WHAT = "serve option"
    workers: int = 1
    max_batch: int | None = None
    max_wait_ms: float = 50.0
    queue: int = 64
    max_upload_mb: float = 100.0
    timeout: float = 60.0
    allow_paths: str | None = None
    api_key: str | None = None
    name: str | None = None

    def __post_init__(self):
        if int(self.workers) < 1:
            raise UserError(f"workers must be >= 1 (decoding runs in worker processes), got {self.workers}")
        if self.max_batch is not None and int(self.max_batch) < 1:
            raise UserError(f"max_batch must be >= 1 view, got {self.max_batch}")
        if float(self.max_wait_ms) < 0:
            raise UserError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if int(self.queue) < 1:
            raise UserError(f"queue must be >= 1, got {self.queue}")
        if not float(self.max_upload_mb) > 0 or not float(self.timeout) > 0:
            raise UserError("max_upload_mb and timeout must be positive")
        if self.allow_paths is not None and not Path(self.allow_paths).is_dir():
            raise UserError(f"--allow-paths {self.allow_paths} is not a folder")


class Service:
    """The state behind the app: classifier, scheduler, metrics, the private upload folder."""

    def __init__(self, clf, config: ServeConfig):
        self.clf, self.config = clf, config
        self.max_batch = int(config.max_batch or clf.engine.views_per_pass(math.prod(clf.default_views)))
        self.metrics = Metrics(self.max_batch)
        self.scheduler = Scheduler(clf.engine, workers=config.workers, max_batch=self.max_batch,
                                   max_wait_ms=config.max_wait_ms, on_pass=self.metrics.forward_pass)
        key = config.api_key if config.api_key is not None else os.environ.get(API_KEY_ENV, "")
        self.api_key = key or None
        self.admitted = 0
        self.ready = False
        self.failed: str | None = None
        self.folder: str | None = None
        self.recent_s = 1.0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="uniformerv2-serve-")     # 0700: uploads are private

    def warm_up(self) -> None:
        """Start the decode workers and the model thread, run one forward pass; then ``ready``."""
        try:
            self.scheduler.start()
            self.scheduler.warm_up()
            self.ready = True
        except Exception as e:  # noqa: BLE001 - reported by /readyz
            self.failed = " ".join(f"{type(e).__name__}: {e}".split())

    def stop(self) -> None:
        self.ready = False
        self.scheduler.stop()
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    # ------------------------------------------------------------------ requests
    def check_key(self, request) -> None:
        if self.api_key is None:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise HTTPProblem(401, "this server needs an API key: send 'Authorization: Bearer <key>'",
                              {"WWW-Authenticate": "Bearer"})

    def admit(self) -> None:
        if not self.ready:
            raise HTTPProblem(503, self.failed or "the model is still loading", {"Retry-After": "1"})
        if self.admitted >= self.config.queue:
            wait = max(1, math.ceil(self.recent_s * self.admitted / max(1, self.config.queue)))
            raise HTTPProblem(503, f"the server is busy ({self.admitted} requests waiting, --queue "
                                   f"{self.config.queue}); try again later", {"Retry-After": str(wait)})
        self.admitted += 1

    def spec(self, options: dict):
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise HTTPProblem(422, f"unknown option(s): {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
        try:
            top_k = int(options.get("top_k") or 5)
            window = float(options["window"]) if options.get("window") not in (None, "") else None
            stride = float(options["stride"]) if options.get("stride") not in (None, "") else None
        except (TypeError, ValueError):
            raise HTTPProblem(422, "top_k must be a whole number and window / stride numbers of seconds") from None
        if top_k < 1:
            raise HTTPProblem(422, f"top_k must be >= 1, got {top_k}")
        views = options.get("views") or None
        try:
            spec = self.clf.engine.spec(views, window, stride, self.max_batch, timeout=self.config.timeout)
        except UserError as e:
            raise HTTPProblem(422, str(e)) from None
        return spec, top_k

    async def run_job(self, request, upload: Upload, spec, deadline: float):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def done(result):
            loop.call_soon_threadsafe(_resolve, fut, result)

        job = self.scheduler.submit(upload.path, spec, done)
        try:
            return await _wait(request, fut, deadline)
        finally:
            if not fut.done():
                self.scheduler.cancel(job)

    async def run_call(self, request, fn, deadline: float):
        """``fn()`` on the model thread (between forward passes)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.scheduler.call(fn, lambda result: loop.call_soon_threadsafe(_resolve, fut, result))
        return await _wait(request, fut, deadline)

    def model_info(self) -> dict:
        clf, data = self.clf, self.clf.data
        clips, crops = clf.default_views
        return {"name": self.config.name, "preset": getattr(clf.model, "preset", None),
                "classes": list(clf.labels), "num_classes": len(clf.labels),
                "frames": int(clf.model.num_frames), "input_size": int(data.crop_size),
                "views": f"{clips}x{crops}", "device": str(clf.device), "dtype": str(clf.dtype).replace("torch.", ""),
                "backend": clf.backend, "max_batch": self.max_batch, "max_upload_mb": self.config.max_upload_mb,
                "timeout_s": self.config.timeout, "explain": hasattr(clf, "explain")}

    def gauges(self) -> dict:
        pool = self.scheduler.pool
        return {"queue_depth": ("Requests admitted and not yet answered.", self.admitted),
                "queue_limit": ("The bound on admitted requests (--queue).", self.config.queue),
                "decoding": ("Videos being decoded.", pool.busy()),
                "decode_waiting": ("Videos waiting for a decode worker.", pool.waiting()),
                "decode_workers": ("Decode worker processes.", len(pool.workers)),
                "decode_workers_replaced_total": ("Decode workers that died and were replaced.", pool.replaced),
                "ready": ("1 when the model is loaded and warmed up.", int(self.ready))}


class _Disconnected(Exception):
    pass


def _resolve(fut, result) -> None:
    if not fut.done():
        fut.set_result(result)


async def _watch_disconnect(request) -> None:
    """Returns when the client goes away (the body has been read: the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
        await asyncio.sleep(0.05)      # a server that repeats empty body messages: no busy loop


async def _wait(request, fut, deadline: float):
    watcher = asyncio.ensure_future(_watch_disconnect(request))
    try:
        done, _ = await asyncio.wait({fut, watcher}, timeout=max(0.0, deadline - time.monotonic()),
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if fut in done:
        return fut.result()
    if watcher in done:
        raise _Disconnected()
    raise HTTPProblem(504, "the request took longer than the server's time limit (--timeout); its work was dropped")


def _reason(text: str, upload: Upload) -> str:
    """A failure's reason about the upload's file, with the server's temporary path replaced by its name."""
    name = upload.name or "the upload"
    return " ".join(text.replace(upload.path, name).split())


def _load(model, device, dtype, backend: str = "torch", quantize: str = "none"):
    from ..inference import VideoClassifier

    if isinstance(model, VideoClassifier):
        return model
    return VideoClassifier.from_pretrained(model, device=device, dtype=dtype, backend=backend, quantize=quantize)


def create_app(model, config: ServeConfig | None = None, *, device=None, dtype=None, backend: str = "torch",
               quantize: str = "none", **options):
    """The ASGI app serving ``model`` (a ``VideoClassifier``, or what ``VideoClassifier.from_pretrained`` takes:
    a model or run directory, a pretrained name) with ``config`` (or ``ServeConfig`` fields as keywords).
    ``app.state.service`` is the ``Service``."""
    from .. import __version__

    if config is None:
        config = ServeConfig.from_dict(options)
    elif options:
        config = config.replace(**options)
    clf = _load(model, device, dtype, backend, quantize)
    if config.name is None:
        config = config.replace(name=str(model) if isinstance(model, (str, os.PathLike)) else clf.model.preset)
    service = Service(clf, config)

    @asynccontextmanager
    async def lifespan(app):
        service.start()
        warm = threading.Thread(target=service.warm_up, name="uniformerv2-warm-up", daemon=True)
        warm.start()
        try:
            yield
        finally:
            await asyncio.to_thread(warm.join)
            await asyncio.to_thread(service.stop)

    app = FastAPI(title="uniformerv2", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Video action recognition with UniFormerV2: predictions, features and explanations "
                              "of uploaded videos. Errors: {\"error\": \"<one-line reason>\"}.")
    app.state.service = service

    @app.exception_handler(HTTPProblem)
    async def _problem(request, exc: HTTPProblem):
        return JSONResponse({"error": exc.reason}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):     # 404, 405 ...: the same {"error": ...} shape
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _bug(request, exc: Exception):      # still one line of JSON; the traceback goes to the server's log
        return JSONResponse({"error": " ".join(f"internal error: {type(exc).__name__}: {exc}".split())},
                            status_code=500)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)

    async def video_request(request: Request, endpoint: str, work):
        """The path every video endpoint takes: key, admission, upload, options, work, outcome and latency."""
        t0 = time.monotonic()
        outcome, upload = "error", None
        try:
            service.check_key(request)
            service.admit()
            try:
                try:
                    upload = await asyncio.wait_for(receive_video(
                        request, service.folder, int(config.max_upload_mb * 2**20), config.allow_paths),
                        timeout=config.timeout)
                except asyncio.TimeoutError:
                    raise HTTPProblem(504, "the upload took longer than the server's time limit (--timeout)") \
                        from None
                options = {k: v for k, v in request.query_params.items()}
                options.update(upload.options)
                answer = await work(request, upload, options, t0 + config.timeout)
            finally:
                service.admitted -= 1
            outcome = "ok"
            return answer
        except HTTPProblem as e:
            outcome = {401: "unauthorized", 403: "forbidden", 404: "not_found", 413: "too_large",
                       415: "unsupported_media", 422: "bad_input", 501: "not_implemented", 503: "overloaded",
                       504: "timeout"}.get(e.status, "error")
            raise
        except (_Disconnected, ClientDisconnect):
            outcome = "cancelled"
            return JSONResponse({"error": "the client went away"}, status_code=499)
        finally:
            if upload is not None:
                upload.close()
            seconds = time.monotonic() - t0
            service.metrics.request(endpoint, outcome, seconds if outcome not in ("unauthorized",) else None)
            if outcome == "ok":
                service.recent_s = 0.8 * service.recent_s + 0.2 * seconds

    async def run_video(request, upload, options, deadline):
        from ..inference.engine import Failure

        spec, top_k = service.spec(options)
        result = await service.run_job(request, upload, spec, deadline)
        if isinstance(result, Failure):
            raise HTTPProblem(422, _reason(result.error, upload))
        if isinstance(result, BaseException):
            raise HTTPProblem(500, _reason(f"{result}", upload))
        service.metrics.video_done()
        return result, spec, top_k

    body_doc = {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["video"], "properties": {
            "video": {"type": "string", "format": "binary", "description": "the video file"},
            **{k: {"type": "string"} for k in OPTIONS}}}},
        "video/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": {"type": "object", "required": ["path"], "properties": {
            "path": {"type": "string", "description": "a file under the --allow-paths folder"},
            **{k: {"type": "string"} for k in OPTIONS}}}}}},
        "parameters": [
            {"name": "top_k", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 5}},
            {"name": "views", "in": "query", "schema": {"type": "string"}, "description": "CLIPSxCROPS, e.g. 4x3"},
            {"name": "window", "in": "query", "schema": {"type": "number"},
             "description": "seconds per window: a per-window timeline"},
            {"name": "stride", "in": "query", "schema": {"type": "number"},
             "description": "seconds between window starts (default: window)"}]}
    errors_doc = {code: {"description": text, "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}}}}} for code, text in {
        401: "missing or wrong API key", 403: "a server-side path that is not allowed", 413: "upload too large",
        415: "unsupported media type", 422: "undecodable video or bad option", 503: "queue full (Retry-After)",
        504: "over the time limit"}.items()}

    @app.post("/v1/predict", openapi_extra=body_doc, responses=errors_doc,
              summary="Classify a video: the fields of `uniformerv2 predict --json` for it")
    async def predict(request: Request):
        async def work(request, upload, options, deadline):
            out, spec, top_k = await run_video(request, upload, options, deadline)
            answer = service.clf.prediction_of(out, spec, top_k).to_dict()
            answer["path"] = upload.name
            return answer
        return await video_request(request, "predict", work)

    @app.post("/v1/features", openapi_extra=body_doc, responses=errors_doc,
              summary="Pre-head features of a video (mean over its views; per window with window=)")
    async def features(request: Request):
        async def work(request, upload, options, deadline):
            options = {k: v for k, v in options.items() if k != "top_k"}
            out, spec, _ = await run_video(request, upload, options, deadline)
            f = service.clf.features_of(out, spec)
            answer = {"path": upload.name, "ok": True, "dim": int(f.features.shape[-1]),
                      "features": f.features.tolist()}
            if f.windows is not None:
                answer["windows"] = f.windows.tolist()
            return answer
        return await video_request(request, "features", work)

    @app.post("/v1/explain", openapi_extra={"requestBody": body_doc["requestBody"], "parameters": [
        {"name": "target", "in": "query", "schema": {"type": "integer"},
         "description": "class index to explain (default: the top-1 class)"}]}, responses=errors_doc,
        summary="What the model looked at: per-frame profile and an overlay image")
    async def explain(request: Request):
        service.check_key(request)
        if not hasattr(service.clf, "explain"):
            service.metrics.request("explain", "not_implemented", None)
            raise HTTPProblem(501, "explanations are not available in this version of uniformerv2")

        async def work(request, upload, options, deadline):
            import base64

            target = options.pop("target", None)
            try:
                target = int(target) if target not in (None, "") else None
            except ValueError:
                raise HTTPProblem(422, f"target must be a class index, got {target!r}") from None
            if options:
                raise HTTPProblem(422, f"unknown option(s): {', '.join(sorted(options))} (known: target)")
            result = await service.run_call(request, lambda: service.clf.explain(upload.path, target=target),
                                            deadline)
            if isinstance(result, BaseException):
                status = 422 if isinstance(result, (UserError, OSError)) else 500  # VideoError is a UserError
                raise HTTPProblem(status, _reason(str(result) or type(result).__name__, upload))
            summary = result.to_json()
            summary["path"] = upload.name or "the upload"  # never the server's temporary path
            return {"explanation": summary,
                    "overlay_png_base64": base64.b64encode(result.overlay_png()).decode("ascii")}
        return await video_request(request, "explain", work)

    @app.get("/v1/model", summary="The served model: name, preset, classes, frames, input size, views")
    async def model_info(request: Request):
        service.check_key(request)
        return service.model_info()

    @app.get("/healthz", summary="The process answers")
    async def healthz():
        return {"ok": True}

    @app.get("/readyz", summary="The model is loaded and warmed up and the decode workers run")
    async def readyz():
        body = {"ready": service.ready, "decode_workers": service.scheduler.pool.pids()}
        if service.failed:
            body["error"] = service.failed
        return JSONResponse(body, status_code=200 if service.ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus text format")
    async def metrics():
        return PlainTextResponse(service.metrics.text(service.gauges()),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    async def asset(name: str):
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise HTTPProblem(404, f"no asset {name!r}")
        return FileResponse(path)

    return app
