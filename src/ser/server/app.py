"""The FastAPI app behind ``ser serve``: REST, a WebSocket stream, and the web page.

Endpoints (all errors are JSON ``{"error": "..."}``):

- ``POST /v1/predict`` — multipart upload (field ``file``) of any audio ser reads, including
  a browser's webm/opus → label, confidence, probabilities, timings, and ``segments`` for
  long audio (over ``ser.inference.LONG_AUDIO`` seconds, split with VAD). 413: upload or
  duration too large; 422: not usable audio (the reason says why); 503: all slots busy.
- ``WebSocket /v1/stream`` — send ``{"sample_rate": 48000}`` as JSON, then binary frames of
  mono **float32 little-endian** PCM; receive ``update`` messages (4 a second while there is
  speech) and an ``utterance`` message when each stretch of speech ends. Send
  ``{"type": "end"}`` to flush the last utterance.
- ``GET /v1/model`` — labels and the bundle's metadata (metrics, licence, training data).
- ``GET /v1/health`` — liveness and load.
- ``GET /`` — the web page; ``/docs`` — the OpenAPI UI.

The model is loaded once, in :func:`create_app`, and shared; CPU work runs in the threadpool
so the event loop keeps answering (health checks stay fast while predictions run).

>>> app = create_app(model="runs/svm/bundle")   # doctest: +SKIP
>>> uvicorn.run(app, port=8000)                  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ser.audio import AudioError, AudioTooLongError, load_audio
from ser.errors import SerError
from ser.inference import NoSpeechError, Recognizer
from ser.live import EmotionStream, LiveError, default_gate

log = logging.getLogger("ser.server")
STATIC = Path(str(resources.files("ser") / "server" / "static"))
#: Largest binary frame accepted on the stream (float32: 1 MiB ≈ 5.5 s at 48 kHz).
MAX_FRAME_BYTES = 1 << 20


@dataclass(frozen=True)
class Settings:
    """Limits of one server; the CLI options of ``ser serve`` map onto these."""

    max_upload_mb: float = 25.0
    max_seconds: float = 600.0
    concurrency: int = 2  # predictions running at once (each uses a CPU core)
    queue_timeout: float = 5.0  # seconds a request waits for a free slot before 503
    max_streams: int = 8


class ApiError(HTTPException):
    """An error the client caused or must wait out; rendered as ``{"error": detail}``."""


# --------------------------------------------------------------------------- response models


class SegmentOut(BaseModel):
    start: float
    end: float
    label: str
    confidence: float
    probabilities: dict[str, float]


class PredictOut(BaseModel):
    label: str
    confidence: float
    probabilities: dict[str, float]
    duration: float
    segments: list[SegmentOut] | None = None
    timings: dict[str, float]


class ModelOut(BaseModel):
    name: str | None
    labels: list[str]
    sample_rate: int
    architecture: str | None
    feature_set: dict[str, Any]
    metrics: dict[str, Any]
    protocol: dict[str, Any]
    training_data: dict[str, Any]
    licence: str | None
    created: str | None


class HealthOut(BaseModel):
    status: str
    model: str | None
    busy: int
    capacity: int
    streams: int


class ErrorOut(BaseModel):
    error: str


ERRORS = {
    413: {"model": ErrorOut, "description": "Upload or audio duration over the limit"},
    422: {"model": ErrorOut, "description": "Not usable audio (the message says why)"},
    503: {"model": ErrorOut, "description": "Every prediction slot is busy; retry shortly"},
}


# --------------------------------------------------------------------------- limits


class Slots:
    """At most ``n`` predictions at once; a request waits ``timeout`` s for a slot, then 503."""

    def __init__(self, n: int, timeout: float):
        self.n, self.timeout = n, timeout
        self.busy = 0
        self._sem: asyncio.Semaphore | None = None

    @asynccontextmanager
    async def __call__(self, wait: bool = False):
        if self._sem is None:  # created lazily, inside the server's event loop
            self._sem = asyncio.Semaphore(self.n)
        if wait or not self._sem.locked():  # free now: acquire() returns at once
            await self._sem.acquire()
        elif self.timeout <= 0:
            raise ApiError(503, self._busy_message())
        else:
            try:
                await asyncio.wait_for(self._sem.acquire(), self.timeout)
            except TimeoutError:
                raise ApiError(503, self._busy_message()) from None
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1
            self._sem.release()

    def _busy_message(self) -> str:
        return f"server busy: {self.n} predictions already running; retry shortly"


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413, before or while
    they arrive (a declared Content-Length is checked first; chunked bodies are counted)."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"upload too large: the limit is {self.limit / 2**20:g} MB (--max-upload-mb)"
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse({"error": message}, status_code=413)
            return await response(scope, receive, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise ApiError(413, message)
            return msg

        await self.app(scope, limited, send)


# --------------------------------------------------------------------------- the app


def model_info(recognizer: Any) -> dict[str, Any]:
    """The public description of the loaded bundle (what ``GET /v1/model`` returns)."""
    meta = recognizer.bundle.meta
    return {
        "name": meta.get("name"),
        "labels": list(meta["labels"]),
        "sample_rate": int(meta["sample_rate"]),
        "architecture": meta["model"].get("architecture"),
        # An ensemble has one feature set per member (listed in its model.json's members).
        "feature_set": meta.get("feature_set") or {"name": " + ".join(recognizer.feature_sets)},
        "metrics": meta.get("metrics") or {},
        "protocol": meta.get("protocol") or {},
        "training_data": meta.get("training_data") or {},
        "licence": meta.get("licence"),
        "created": meta.get("created"),
    }


def create_app(
    recognizer: Any = None, *, model: str | Path | None = None, settings: Settings = Settings()
) -> FastAPI:
    """Build the app around a loaded Recognizer (or load ``model``, None = the bundled one)."""
    if recognizer is None:
        recognizer = Recognizer.load(model)
    info = model_info(recognizer)
    sample_rate = info["sample_rate"]
    slots = Slots(settings.concurrency, settings.queue_timeout)
    gate = default_gate()  # stateless per call, so one gate serves every stream
    streams = {"open": 0}

    app = FastAPI(
        title="ser — speech emotion recognition",
        version=_version(),
        description=(
            "Recognise emotion in speech. Upload audio to `/v1/predict`, or stream PCM over "
            "the `/v1/stream` WebSocket. Every error is JSON `{\"error\": \"...\"}`."
        ),
    )
    app.state.recognizer = recognizer
    app.state.settings = settings
    app.add_middleware(BodyLimit, limit=int(settings.max_upload_mb * 2**20))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return JSONResponse({"error": f"bad request: {problems}"}, status_code=422)

    def predict_file(path: Path) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            y = load_audio(path, sr=sample_rate, max_duration=settings.max_seconds)
            decoded = time.perf_counter()
            try:  # long audio: per-segment results too (the Recognizer decides what is long)
                pred = recognizer.predict(y, sr=sample_rate, segments=None)
            except NoSpeechError:  # VAD heard no speech: still give the whole-clip opinion
                pred = recognizer.predict(y, sr=sample_rate)
        except SerError as exc:  # the upload's fault: say what is wrong, never where
            status = 413 if isinstance(exc, AudioTooLongError) else 422
            reason = exc.reason if isinstance(exc, AudioError) else str(exc)
            raise ApiError(status, reason.replace(str(path.parent), "")) from None
        except Exception:  # a bug of ours: logged with its traceback, answered as JSON
            log.exception("prediction failed")
            raise ApiError(500, "internal error while predicting; please report it") from None
        out: dict[str, Any] = {"segments": None, **pred.to_dict(),
                               "duration": round(y.size / sample_rate, 3)}
        timings = {k: round(float(v), 4) for k, v in (pred.timings or {}).items()}
        timings["decode"] = round(decoded - t0, 4)
        timings["total"] = round(time.perf_counter() - t0, 4)
        out["timings"] = timings
        return out

    @app.post("/v1/predict", response_model=PredictOut, responses=ERRORS, tags=["predict"])
    async def predict(
        file: Annotated[
            UploadFile, File(description="Audio: wav, flac, ogg, mp3, webm/opus, m4a…")
        ],
    ) -> dict[str, Any]:
        """Recognise the emotion in one uploaded recording."""
        t0 = time.perf_counter()
        suffix = Path(file.filename or "upload").suffix[:12]
        with tempfile.TemporaryDirectory(prefix="ser-upload-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            size = 0
            with path.open("wb") as out:
                while chunk := await file.read(1 << 20):
                    size += len(chunk)
                    out.write(chunk)
            if size == 0:
                raise ApiError(422, "empty upload (0 bytes)")
            async with slots():
                queued = time.perf_counter() - t0
                result = await run_in_threadpool(predict_file, path)
        result["timings"]["queue"] = round(queued, 4)
        return result

    @app.get("/v1/model", response_model=ModelOut, tags=["model"])
    async def get_model() -> dict[str, Any]:
        """Labels (in output order) and the loaded bundle's metadata."""
        return info

    @app.get("/v1/health", response_model=HealthOut, tags=["model"])
    async def health() -> dict[str, Any]:
        """Liveness, and how many predictions and streams are running."""
        return {"status": "ok", "model": info["name"], "busy": slots.busy,
                "capacity": slots.n, "streams": streams["open"]}

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        """Live emotion over a WebSocket; see the module docstring for the protocol."""
        await ws.accept()
        if streams["open"] >= settings.max_streams:
            await _ws_fail(ws, f"too many streams open ({settings.max_streams}); retry later",
                           code=1013)
            return
        streams["open"] += 1
        try:
            await _serve_stream(ws)
        except WebSocketDisconnect:
            pass
        finally:
            streams["open"] -= 1

    async def _serve_stream(ws: WebSocket) -> None:
        try:
            hello = json.loads(await asyncio.wait_for(ws.receive_text(), 10.0))
            sr = int(hello["sample_rate"])
            es = EmotionStream(recognizer, sr, gate=gate)
        except (TimeoutError, ValueError, KeyError, TypeError, LiveError) as exc:
            detail = str(exc) if isinstance(exc, LiveError) else type(exc).__name__
            await _ws_fail(ws, "the first message must be JSON {\"sample_rate\": <Hz>} "
                           f"({detail})")
            return
        await ws.send_json({"type": "ready", "labels": info["labels"], "sample_rate": sr,
                            "format": "float32le", "hop": es.hop / sr})
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            data = msg.get("bytes")
            if data is None:
                text = msg.get("text") or ""
                if '"end"' in text:  # {"type": "end"}: flush the open utterance, then close
                    async with slots(wait=True):
                        events = await run_in_threadpool(es.close)
                    for event in events:
                        await ws.send_json(event.to_dict())
                    await ws.close()
                    return
                continue
            if len(data) % 4 or len(data) > MAX_FRAME_BYTES:
                await _ws_fail(ws, "binary frames must be float32 little-endian PCM, "
                               f"a multiple of 4 bytes and at most {MAX_FRAME_BYTES} bytes")
                return
            chunk = np.frombuffer(data, dtype="<f4")
            async with slots(wait=True):  # streams share the CPU slots, waiting their turn
                events = await run_in_threadpool(es.feed, chunk)
            for event in events:
                await ws.send_json(event.to_dict())

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _ws_fail(ws: WebSocket, message: str, code: int = 1003) -> None:
    await ws.send_json({"type": "error", "error": message})
    await ws.close(code=code)


def _version() -> str:
    from ser import __version__

    return __version__

