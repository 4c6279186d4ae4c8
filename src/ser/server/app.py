"""The FastAPI app behind ``ser serve``: REST, a WebSocket stream, and the web page.

Endpoints (all errors are JSON ``{"error": "..."}``):

- ``POST /v1/predict`` — multipart upload (field ``file``) of any audio ser reads, including
  a browser's webm/opus → label, calibrated confidence, ``uncertain``, probabilities,
  timings, and ``segments`` for long audio (over ``ser.inference.LONG_AUDIO`` seconds, split
  with VAD). 413: upload or duration too large; 422: not usable audio, or too little speech
  to give an emotion (the speech rule; the reason says so); 503: all slots busy.
  ``?voice=ID``: answered by a personal voice (404 when the id is unknown or expired).
- ``POST /v1/voices`` — teach one person's voice: multipart, one audio file per clip in a
  field named by its emotion (``angry=@a1.wav``), every emotion at least
  ``Settings.voice_min_clips`` times → ``{"voice": ID, ...}`` (201), a personal model fitted
  with ``ser.adapt`` and kept in memory only (``ser.server.voices``). ``DELETE
  /v1/voices/ID`` forgets it (204). 422 names the clip or emotion at fault; 413: a clip too
  long; 501: the served model cannot adapt (an ensemble; ``ser.adapt.check_adaptable``).
- ``WebSocket /v1/stream`` — send ``{"sample_rate": 48000, "format": "f32le"}`` as JSON
  (``format``: ``"f32le"`` float32 or ``"s16le"`` int16, little-endian, mono — stated, never
  guessed), then binary frames of that PCM (at most ``MAX_FRAME_SECONDS`` of audio each);
  receive ``update`` messages (4 a second while there is speech) and an ``utterance``
  message when each stretch of speech ends. Send ``{"type": "end"}`` to flush the last
  utterance. A stream silent for ``stream_idle_timeout`` seconds is closed; audio sent
  faster than ``stream_realtime`` × real time (after a burst) is read more slowly. The
  hello may name a personal voice: ``"voice": ID``.
- ``GET /v1/model`` — labels and the bundle's metadata (metrics, licence, training data).
- ``GET /v1/health`` — liveness and load.
- ``GET /`` — the web page; ``/docs`` — the OpenAPI UI.

Requests whose ``Host`` is not the address the server was bound to (DNS rebinding) get 400,
and requests or streams from a foreign ``Origin`` (another site in the user's browser) get
403 unless allowed (``ser serve --allow-origin``). Every response carries
``X-Content-Type-Options: nosniff`` and a Content-Security-Policy (the page: only its own
scripts, styles and connections; nothing may frame it).

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
from fastapi import (
    FastAPI,
    File,
    Query,
    Request,
    Response,
    UploadFile,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ser.adapt import AdaptError, adapt, check_adaptable, check_clips
from ser.audio import AudioError, AudioTooLongError, load_audio
from ser.errors import SerError
from ser.inference import Recognizer
from ser.live import EmotionStream, LiveError, default_gate
from ser.server.voices import Voices

log = logging.getLogger("ser.server")
#: One line per request (RequestLog); `ser serve` prints it to stderr.
access_log = logging.getLogger("ser.server.access")
STATIC = Path(str(resources.files("ser") / "server" / "static"))
#: Longest audio one binary stream frame may hold (seconds at the stated rate and format).
MAX_FRAME_SECONDS = 1.0
#: Bytes per sample of the stream's PCM formats.
PCM_FORMATS = {"f32le": ("<f4", 4), "s16le": ("<i2", 2)}
#: Host names a server bound to a loopback address answers to.
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
#: The page's Content-Security-Policy: its own scripts, styles, images and connections only.
#: (``blob:`` scripts: the page loads its AudioWorklet from a Blob it makes itself.)
PAGE_CSP = ("default-src 'self'; script-src 'self' blob:; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; media-src 'self' blob:; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")


@dataclass(frozen=True)
class Settings:
    """Limits of one server; the CLI options of ``ser serve`` map onto these."""

    max_upload_mb: float = 25.0
    max_seconds: float = 600.0
    concurrency: int = 2  # predictions running at once (each uses a CPU core)
    queue_timeout: float = 5.0  # seconds a request waits for a free slot before 503
    max_streams: int = 8
    stream_idle_timeout: float = 20.0  # seconds without a message before a stream is closed
    stream_realtime: float = 1.5  # audio seconds a stream may send per second (after a burst)
    stream_burst: float = 10.0  # seconds of audio a stream may send at once
    bind: str | None = None  # the address listened on: Host headers must name it (None: any)
    allow_origins: tuple[str, ...] = ()  # foreign Origins allowed ("*": any)
    voices: int = 16  # personal voices kept in memory (POST /v1/voices; 0: teaching is off)
    voice_ttl: float = 3600.0  # seconds a voice is kept after its last use
    voice_min_clips: int = 2  # clips per emotion a voice needs (docs/RESULTS.md: 2 is enough)
    voice_max_clips: int = 8  # clips per emotion a voice may send
    voice_max_seconds: float = 20.0  # longest clip (longer: 413)


class ApiError(HTTPException):
    """An error the client caused or must wait out; rendered as ``{"error": detail}``."""


# --------------------------------------------------------------------------- response models


class SegmentOut(BaseModel):
    start: float
    end: float
    label: str
    confidence: float
    uncertain: bool
    probabilities: dict[str, float]


class PredictOut(BaseModel):
    label: str
    confidence: float
    uncertain: bool
    probabilities: dict[str, float]
    duration: float
    segments: list[SegmentOut] | None = None
    timings: dict[str, float]
    voice: str | None = None


class VoicesInfo(BaseModel):
    available: bool
    reason: str | None
    min_clips: int
    max_clips: int
    max_seconds: float
    ttl_seconds: float


class VoiceOut(BaseModel):
    voice: str
    clips: dict[str, int]
    ttl_seconds: float
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
    calibration: dict[str, Any] | None
    uncertain_below: float
    voices: VoicesInfo


class HealthOut(BaseModel):
    status: str
    model: str | None
    busy: int
    capacity: int
    streams: int
    voices: int


class ErrorOut(BaseModel):
    error: str


ERRORS = {
    413: {"model": ErrorOut, "description": "Upload or audio duration over the limit"},
    422: {"model": ErrorOut, "description": "Not usable audio, or too little speech in it "
          "to give an emotion (the message says why: \"no speech found …\")"},
    503: {"model": ErrorOut, "description": "Every prediction slot is busy; retry shortly"},
}
PREDICT_ERRORS = {**ERRORS, 404: {"model": ErrorOut, "description": "No such voice (never "
                                  "taught, expired, forgotten, or the server restarted)"}}
VOICE_ERRORS = {
    **ERRORS,
    413: {"model": ErrorOut, "description": "Upload over the limit, or a clip too long"},
    422: {"model": ErrorOut, "description": "A field that is not an emotion of the model, too "
          "few or too many clips of an emotion, or a clip that is not usable audio or holds "
          "too little speech (the message names it)"},
    501: {"model": ErrorOut, "description": "The served model cannot be adapted (an ensemble, "
          "or teaching turned off: the message says which)"},
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
            # The body is left unread, so the connection cannot carry another request:
            # say so, or a client that reuses it waits for an answer that never comes.
            response = JSONResponse({"error": message}, status_code=413,
                                    headers={"Connection": "close"})
            return await response(scope, receive, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise ApiError(413, message, headers={"Connection": "close"})
            return msg

        await self.app(scope, limited, send)


def _hostname(host: str) -> str:
    """The name in a Host header, without the port: ``[::1]:8000`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware for HTTP and WebSocket: the Host must name the bound address (a DNS
    rebinding page cannot reach a loopback server), a foreign Origin is refused with 403
    unless allowed, and every HTTP response gets the security headers."""

    def __init__(self, app: Any, bind: str | None, allow_origins: tuple[str, ...]):
        self.app = app
        if bind is None or bind in ("", "0.0.0.0", "::"):
            self.hosts = None  # all interfaces: any name may reach it
        else:
            self.hosts = LOOPBACK if _hostname(bind) in LOOPBACK else frozenset({_hostname(bind)})
        self.origins = frozenset(o.rstrip("/").lower() for o in allow_origins)

    def _problem(self, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        host = headers.get(b"host", b"").decode("latin-1")
        if self.hosts is not None and _hostname(host) not in self.hosts:
            return 400, ("unexpected Host header: this server answers to "
                         f"{', '.join(sorted(self.hosts))}")
        origin = headers.get(b"origin")
        if origin is None:  # not a browser, or a same-origin GET
            return None
        origin_s = origin.decode("latin-1").rstrip("/").lower()
        same = origin_s.split("://", 1)[-1] == host.lower()
        if same or "*" in self.origins or origin_s in self.origins:
            return None
        return 403, (f"cross-origin request from {origin_s} refused; allow it with "
                     "ser serve --allow-origin ORIGIN")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        problem = self._problem(dict(scope.get("headers") or []))
        if problem is not None and scope["type"] == "websocket":
            await receive()  # websocket.connect; closing before accept answers HTTP 403
            return await send({"type": "websocket.close", "code": 1008,
                               "reason": problem[1][:120]})
        if problem is not None:
            response = JSONResponse({"error": problem[1]}, status_code=problem[0])
            return await self._with_headers(response, scope, receive, send)
        if scope["type"] == "http":
            return await self._with_headers(self.app, scope, receive, send)
        return await self.app(scope, receive, send)

    @staticmethod
    async def _with_headers(app: Any, scope: dict, receive: Any, send: Any) -> None:
        page = scope.get("path") in ("/", "/index.html") or scope.get("path", "").startswith(
            "/static/")

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"x-content-type-options", b"x-frame-options",
                                                b"content-security-policy",
                                                b"referrer-policy")]
                headers += [(b"x-content-type-options", b"nosniff"),
                            (b"x-frame-options", b"DENY"),
                            (b"referrer-policy", b"no-referrer"),
                            (b"content-security-policy",
                             (PAGE_CSP if page else "frame-ancestors 'none'").encode())]
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_headers)


class RequestLog:
    """ASGI middleware: one line per request on the ``ser.server.access`` logger —
    method, path, status and duration (``GET /v1/health 200 1.2 ms``); a WebSocket logs
    when it closes, with how long it was open."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status: list[int] = []

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "websocket.accept":
                status.append(101)
            elif message["type"] == "websocket.close" and not status:
                status.append(403)  # refused before the handshake completed
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            method = scope.get("method", "WS") if scope["type"] == "http" else "WS"
            ms = 1000 * (time.perf_counter() - t0)
            path = scope.get("path", "")
            if path.startswith("/v1/voices/"):  # a voice id is its key: not into logs
                path = "/v1/voices/{voice}"
            access_log.info("%s %s %d %.1f ms", method, path,
                            status[0] if status else 500, ms)


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
        "calibration": meta.get("calibration"),
        "uncertain_below": recognizer.uncertain_below,
    }


def create_app(
    recognizer: Any = None, *, model: str | Path | None = None, settings: Settings = Settings()
) -> FastAPI:
    """Build the app around a loaded Recognizer (or load ``model``, None = the bundled one)."""
    if recognizer is None:
        recognizer = Recognizer.load(model)
    voices = Voices(settings.voices, settings.voice_ttl)
    info = model_info(recognizer)
    info["voices"] = _voices_info(recognizer, settings)
    sample_rate = info["sample_rate"]
    slots = Slots(settings.concurrency, settings.queue_timeout)
    # Streams take turns on at most half the slots, so uploads always find CPU.
    stream_slots = Slots(max(1, settings.concurrency // 2), settings.queue_timeout)
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
    app.add_middleware(Guard, bind=settings.bind, allow_origins=settings.allow_origins)
    app.add_middleware(RequestLog)  # added last: outermost, so refusals are logged too

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

    def predict_file(path: Path, rec: Recognizer) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            y = load_audio(path, sr=sample_rate, max_duration=settings.max_seconds)
            decoded = time.perf_counter()
            # Long audio: per-segment results too (the Recognizer decides what is long). Too
            # little speech (the speech rule) is a NoSpeechError: a 422 like any unusable audio.
            pred = rec.predict(y, sr=sample_rate, segments=None)
        except SerError as exc:  # the upload's fault: say what is wrong, never where
            raise _upload_error(exc, path) from None
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

    def find_voice(voice: str) -> Recognizer:
        found = voices.get(voice)
        if found is None:
            raise ApiError(404, "unknown voice: never taught, forgotten, or unused for "
                           f"{settings.voice_ttl:g} s (or the server restarted); teach it "
                           "again with POST /v1/voices")
        return found

    @app.post("/v1/predict", response_model=PredictOut, responses=PREDICT_ERRORS,
              tags=["predict"])
    async def predict(
        file: Annotated[
            UploadFile, File(description="Audio: wav, flac, ogg, mp3, webm/opus, m4a…")
        ],
        voice: Annotated[str | None, Query(
            max_length=64, description="A personal voice (POST /v1/voices) to answer with")
        ] = None,
    ) -> dict[str, Any]:
        """Recognise the emotion in one uploaded recording."""
        rec = recognizer if voice is None else find_voice(voice)
        t0 = time.perf_counter()
        suffix = Path(file.filename or "upload").suffix[:12]
        with tempfile.TemporaryDirectory(prefix="ser-upload-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            if await _spool(file, path) == 0:
                raise ApiError(422, "empty upload (0 bytes)")
            async with slots():
                queued = time.perf_counter() - t0
                result = await run_in_threadpool(predict_file, path, rec)
        result["timings"]["queue"] = round(queued, 4)
        result["voice"] = voice
        return result

    def fit_voice(clips: list[tuple[Path, str, str]]) -> Recognizer:
        """Decode each clip as /v1/predict does and fit the personal model (ser.adapt)."""
        names = [f"clip {i} of {len(clips)} ({label}, {filename!r})"
                 for i, (_, label, filename) in enumerate(clips, 1)]
        decoded = []
        for (path, label, _), name in zip(clips, names, strict=True):
            try:
                y = load_audio(path, sr=sample_rate, max_duration=settings.voice_max_seconds)
            except SerError as exc:
                error = _upload_error(exc, path)
                raise ApiError(error.status_code, f"{name}: {error.detail}") from None
            decoded.append((y, label))
        try:
            return adapt(recognizer, decoded, min_per_label=settings.voice_min_clips,
                         clip_names=names)
        except AdaptError as exc:  # a clip without speech: the message names it
            raise ApiError(422, str(exc)) from None
        except Exception:  # a bug of ours
            log.exception("teaching a voice failed")
            raise ApiError(500, "internal error while learning the voice; please report "
                           "it") from None

    labels = info["labels"]
    clip_field = {"type": "array", "items": {"type": "string", "format": "binary"}}
    voice_form = {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "properties": dict.fromkeys(labels, clip_field)}}}}}

    @app.post("/v1/voices", status_code=201, response_model=VoiceOut, responses=VOICE_ERRORS,
              tags=["voices"], openapi_extra=voice_form)
    async def teach(request: Request) -> dict[str, Any]:
        """Teach the server one person's voice: a few clips of them acting each emotion.

        Multipart: one audio file per clip, in a field named by its emotion (``angry``,
        ``happy``, …; repeat the field for each clip). Every emotion of the model needs
        ``min_clips`` clips (``GET /v1/model`` → ``voices``). The answer's ``voice`` id
        makes ``/v1/predict?voice=ID`` and the stream (``"voice": ID`` in its hello) answer
        with the personal model. It is kept in memory only — forgotten after ``ttl_seconds``
        unused, on ``DELETE /v1/voices/ID``, or when the server stops.
        """
        if not info["voices"]["available"]:
            raise ApiError(501, info["voices"]["reason"])
        t0 = time.perf_counter()
        most = settings.voice_max_clips * len(labels)
        with tempfile.TemporaryDirectory(prefix="ser-voice-") as tmp:
            async with request.form(max_files=most, max_fields=most) as form:
                clips = []
                for i, (field, value) in enumerate(form.multi_items(), 1):
                    if field not in labels:
                        raise ApiError(422, f"field {field[:40]!r} is not an emotion of the "
                                       f"model ({', '.join(labels)})")
                    if isinstance(value, str):  # a text field, not a file
                        raise ApiError(422, f"field {field!r} must be an audio file, not text")
                    path = Path(tmp) / f"clip-{i}{Path(value.filename or '').suffix[:12]}"
                    name = (value.filename or "")[:60]
                    if await _spool(value, path) == 0:
                        raise ApiError(422, f"clip {i} ({field}, {name!r}): empty upload "
                                       "(0 bytes)")
                    clips.append((path, field, name))
            try:
                counts = check_clips(labels, [lab for _, lab, _ in clips],
                                     settings.voice_min_clips)
            except AdaptError as exc:
                raise ApiError(422, str(exc)) from None
            over = [f"{lab} ({n})" for lab, n in counts.items() if n > settings.voice_max_clips]
            if over:
                raise ApiError(422, f"at most {settings.voice_max_clips} clips per emotion; "
                               f"too many for: {', '.join(over)}")
            async with slots():
                personal = await run_in_threadpool(fit_voice, clips)
        return {"voice": voices.add(personal), "clips": counts,
                "ttl_seconds": settings.voice_ttl,
                "timings": {"total": round(time.perf_counter() - t0, 4)}}

    @app.delete("/v1/voices/{voice}", status_code=204, tags=["voices"],
                responses={404: PREDICT_ERRORS[404]})
    async def forget(voice: str) -> Response:
        """Forget a personal voice now (it is also forgotten when unused, or on restart)."""
        if not voices.forget(voice):
            find_voice(voice)  # says why: unknown
        return Response(status_code=204)

    @app.get("/v1/model", response_model=ModelOut, tags=["model"])
    async def get_model() -> dict[str, Any]:
        """Labels (in output order) and the loaded bundle's metadata."""
        return info

    @app.get("/v1/health", response_model=HealthOut, tags=["model"])
    async def health() -> dict[str, Any]:
        """Liveness, and how many predictions and streams are running."""
        return {"status": "ok", "model": info["name"], "busy": slots.busy,
                "capacity": slots.n, "streams": streams["open"], "voices": len(voices)}

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
        hello_help = ('the first message must be JSON {"sample_rate": <Hz>, "format": '
                      '"f32le" | "s16le"}')
        try:
            hello = json.loads(await asyncio.wait_for(ws.receive_text(),
                                                      settings.stream_idle_timeout))
            sr = int(hello["sample_rate"])
            dtype, width = PCM_FORMATS[hello["format"]]
            voice = hello.get("voice")
            rec = recognizer if voice is None else voices.get(str(voice))
            if rec is None:
                await _ws_fail(ws, "unknown voice: never taught, forgotten or expired; teach "
                               "it again with POST /v1/voices")
                return
            es = EmotionStream(rec, sr, gate=gate)
        except (TimeoutError, ValueError, KeyError, TypeError, AttributeError,
                LiveError) as exc:
            detail = str(exc) if isinstance(exc, LiveError) else type(exc).__name__
            await _ws_fail(ws, f"{hello_help} ({detail})")
            return
        max_frame = int(MAX_FRAME_SECONDS * sr) * width
        await ws.send_json({"type": "ready", "labels": info["labels"], "sample_rate": sr,
                            "format": hello["format"], "hop": es.hop / sr,
                            "max_frame_bytes": max_frame})
        started, audio_s = time.monotonic(), 0.0
        while True:
            try:
                msg = await asyncio.wait_for(ws.receive(), settings.stream_idle_timeout)
            except TimeoutError:
                await _ws_fail(ws, f"no message for {settings.stream_idle_timeout:g} s; "
                               "closing the stream", code=1001)
                return
            if msg["type"] == "websocket.disconnect":
                return
            data = msg.get("bytes")
            if data is None:
                text = msg.get("text") or ""
                if '"end"' in text:  # {"type": "end"}: flush the open utterance, then close
                    async with stream_slots(wait=True), slots(wait=True):
                        events = await run_in_threadpool(es.close)
                    for event in events:
                        await ws.send_json(event.to_dict())
                    await ws.close()
                    return
                continue
            if len(data) % width or len(data) > max_frame:
                await _ws_fail(ws, f"binary frames must be {hello['format']} PCM: a multiple "
                               f"of {width} bytes and at most {max_frame} bytes "
                               f"({MAX_FRAME_SECONDS:g} s)")
                return
            chunk = np.frombuffer(data, dtype=dtype)
            chunk = (chunk / 32768.0).astype(np.float32) if width == 2 else chunk
            if not np.all(np.isfinite(chunk)):
                await _ws_fail(ws, "audio frames must not contain NaN or infinite samples")
                return
            # Faster than stream_realtime x real time after the burst: read more slowly, so a
            # stream cannot flood the CPU (the client's sends wait on TCP back-pressure).
            audio_s += chunk.size / sr
            ahead = (audio_s - settings.stream_burst) / settings.stream_realtime - (
                time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
            async with stream_slots(wait=True), slots(wait=True):
                events = await run_in_threadpool(es.feed, chunk)
            for event in events:
                await ws.send_json(event.to_dict())

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _spool(upload: UploadFile, path: Path) -> int:
    """Write an uploaded file to ``path`` in 1 MiB pieces (the request size limit already
    bounds it); the number of bytes written."""
    size = 0
    with path.open("wb") as out:
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            out.write(chunk)
    return size


def _upload_error(exc: SerError, path: Path) -> ApiError:
    """The 4xx for an upload ser cannot use: 413 when too long, else 422 — the reason,
    without the server's paths."""
    status = 413 if isinstance(exc, AudioTooLongError) else 422
    reason = exc.reason if isinstance(exc, AudioError) else str(exc)
    return ApiError(status, reason.replace(str(path.parent), ""))


def _voices_info(recognizer: Recognizer, settings: Settings) -> dict[str, Any]:
    """Whether this server can learn voices (``voices`` of ``GET /v1/model``), and its limits."""
    reason = None
    if settings.voices <= 0:
        reason = "teaching a voice is turned off on this server (ser serve --voices 0)"
    else:
        try:
            check_adaptable(recognizer.bundle)  # cheap: the graph is not read
        except AdaptError as exc:
            reason = f"this server's model cannot learn a voice: {exc}"
    return {"available": reason is None, "reason": reason,
            "min_clips": settings.voice_min_clips, "max_clips": settings.voice_max_clips,
            "max_seconds": settings.voice_max_seconds, "ttl_seconds": settings.voice_ttl}


async def _ws_fail(ws: WebSocket, message: str, code: int = 1003) -> None:
    await ws.send_json({"type": "error", "error": message})
    await ws.close(code=code)


def _version() -> str:
    from ser import __version__

    return __version__

