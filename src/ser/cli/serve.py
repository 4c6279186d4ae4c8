"""`ser serve` (REST + WebSocket + web page) and `ser live` (microphone or a file as a stream)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ser.cli import ModelOpt, UncertainOpt, app, console, err_console
from ser.errors import SerError

#: Bar colours, shared with `ser predict --plot` and the web page.
COLOURS = {"angry": "red", "disgust": "green4", "fear": "medium_purple", "happy": "orange1",
           "neutral": "grey62", "sad": "dodger_blue2"}



@app.command(
    epilog=(
        "Examples:\n\n"
        "  ser serve                          # http://127.0.0.1:8000 (page), /docs (API)\n\n"
        "  ser serve --host 0.0.0.0 --port 9000 --model runs/cnn/bundle\n\n"
        "  curl -F file=@clip.wav http://127.0.0.1:8000/v1/predict"
    ),
)
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0: all).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model: ModelOpt = None,
    uncertain_below: UncertainOpt = None,
    max_upload_mb: Annotated[
        float, typer.Option(help="Largest upload accepted, in MB (413 above).")
    ] = 25.0,
    max_seconds: Annotated[
        float, typer.Option(help="Longest audio accepted, in seconds (413 above).")
    ] = 600.0,
    workers_concurrency: Annotated[
        int, typer.Option(help="Predictions run at once; more wait, then get 503.")
    ] = 2,
    queue_timeout: Annotated[
        float, typer.Option(help="Seconds a request waits for a free slot before 503.")
    ] = 5.0,
    allow_origin: Annotated[list[str] | None, typer.Option(
        help="A web origin (https://app.example) whose pages may call this server from a "
        "browser; repeat for more, '*' for any. Other sites' pages get 403.")] = None,
    voices: Annotated[int, typer.Option(
        help="Personal voices (POST /v1/voices, the page's 'Teach it my voice') kept in "
        "memory at once; the least recently used is forgotten first. 0 turns teaching off.",
        min=0)] = 16,
) -> None:
    """Serve the web page, the REST API and the live WebSocket stream.

    The model loads once at start-up. Endpoints: POST /v1/predict (upload), WebSocket
    /v1/stream (live PCM), POST /v1/voices (teach a personal voice, kept in memory
    only), GET /v1/model, GET /v1/health; OpenAPI docs at /docs.
    """
    from ser.extras import require

    require("serve", purpose="ser serve")
    import uvicorn

    from ser.server.app import Settings, create_app
    if workers_concurrency < 1 or max_upload_mb <= 0 or max_seconds <= 0:
        raise SerError("--workers-concurrency, --max-upload-mb and --max-seconds must be > 0")
    t0 = time.perf_counter()
    settings = Settings(max_upload_mb=max_upload_mb, max_seconds=max_seconds,
                        concurrency=workers_concurrency, queue_timeout=queue_timeout,
                        bind=host, allow_origins=tuple(allow_origin or ()), voices=voices)
    from ser.inference import Recognizer

    web = create_app(Recognizer.load(model, uncertain_below=uncertain_below), settings=settings)
    info = web.state.recognizer
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    console.print(
        f"[bold]ser[/] serving model [cyan]{info.name}[/] ({', '.join(info.labels)}) "
        f"— loaded in {time.perf_counter() - t0:.2f} s\n"
        f"  page  http://{shown}:{port}/\n  API   http://{shown}:{port}/docs\n"
        "  Ctrl-C to stop"
    )
    _log_requests()
    try:
        uvicorn.run(web, host=host, port=port, log_level="warning", access_log=False)
    except OSError as exc:  # e.g. the port is taken
        raise SerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def _log_requests() -> None:
    """Print the server's request log (method, path, status, duration) to stderr."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    access = logging.getLogger("ser.server.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False


def _bars(probabilities: dict[str, float], width: int = 30) -> Any:
    from rich.table import Table

    table = Table.grid(padding=(0, 1))
    best = max(probabilities, key=probabilities.__getitem__) if probabilities else None
    for label, p in probabilities.items():
        n = int(round(p * width))
        style = COLOURS.get(label, "white")
        name = f"[bold]{label:>8}[/]" if label == best else f"{label:>8}"
        table.add_row(name, f"[{style}]{'█' * n}[/][grey23]{'·' * (width - n)}[/]", f"{p:5.0%}")
    return table


@app.command(
    epilog=(
        "Examples:\n\n"
        "  ser live                          # default microphone\n\n"
        "  ser live --list-devices\n\n"
        "  ser live --device 2 --save session/   # each utterance (wav) + predictions.jsonl\n\n"
        "  ser live --input talk.wav --save out/ # a file played as the input stream"
    ),
)
def live(
    device: Annotated[
        str | None, typer.Option(help="Input device index or name (see --list-devices).")
    ] = None,
    list_devices: Annotated[
        bool, typer.Option("--list-devices", help="List input devices and exit.")
    ] = False,
    save: Annotated[
        Path | None,
        typer.Option(help="Folder for each utterance (utt-0001.wav …) and predictions.jsonl."),
    ] = None,
    model: ModelOpt = None,
    uncertain_below: UncertainOpt = None,
    input: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="Read this audio file as the stream instead of a mic."),
    ] = None,
    realtime: Annotated[
        bool, typer.Option(help="With --input: play the file at real speed (else: at once).")
    ] = False,
    sample_rate: Annotated[int, typer.Option(help="Capture rate in Hz.")] = 16000,
) -> None:
    """Recognise emotion from the microphone as you speak.

    Speech is found with Silero VAD; while someone speaks the bars show the emotion of the
    last 2.5 s, four times a second, and each finished utterance is printed (and saved with
    --save). Ctrl-C stops cleanly, finishing the utterance in progress and the log.
    """
    from ser import live as core

    if list_devices:
        devices = core.list_devices()
        if not devices:
            raise SerError("no input devices found (is a microphone connected?)")
        for d in devices:
            mark = "*" if d["default"] else " "
            console.print(f"{mark} {d['index']:>3}  {d['name']}  "
                          f"({d['channels']} ch, {d['sample_rate']} Hz)")
        return

    from ser.extras import require
    from ser.inference import Recognizer

    if input is None:
        require("live", purpose="the microphone (ser live)")
    rec = Recognizer.load(model, uncertain_below=uncertain_below)
    if input is not None:
        source: Any = core.FileSource(input, sample_rate, realtime=realtime)
        where = f"file {input}"
    else:
        dev: int | str | None = int(device) if device and device.isdigit() else device
        source = core.MicrophoneSource(dev, sample_rate)
        where = f"microphone {device if device is not None else '(default)'}"
    stream = core.EmotionStream(rec, sample_rate)
    log = core.UtteranceLog(save) if save else None
    gate = type(stream.gate).__name__.replace("Gate", "").lower()
    console.print(f"[bold]ser live[/]: {where}, model [cyan]{rec.name}[/], speech gate {gate}"
                  + (f", saving to {save}/" if save else "") + " — Ctrl-C to stop")
    _run_live(core, source, stream, log, rec.labels)


def _run_live(core: Any, source: Any, stream: Any, log: Any, labels: list[str]) -> None:
    from rich.console import Group
    from rich.live import Live
    from rich.panel import Panel

    state: dict[str, Any] = {"probs": dict.fromkeys(labels, 0.0), "label": None, "speech": False,
                             "time": 0.0, "count": 0}

    def render() -> Panel:
        status = "[bold green]● speech[/]" if state["speech"] else "[grey50]○ listening…[/]"
        head = f"{status}   {state['time']:6.1f} s   utterances: {state['count']}"
        title = f"[bold]{state['label']}[/]" if state["label"] else "emotion"
        return Panel(Group(head, _bars(state["probs"])), title=title, width=64)

    t0 = time.perf_counter()
    with Live(render(), console=console, refresh_per_second=8, transient=False) as view:
        def on_event(event: Any) -> None:
            state["time"] = stream.time
            if isinstance(event, core.Update):
                state["speech"] = event.speech
                if event.prediction is not None:
                    state["probs"] = dict(event.prediction.probabilities)
                    state["label"] = event.prediction.label + (
                        " (unsure)" if event.prediction.uncertain else "")
            else:
                state["count"] += 1
                p = event.prediction
                what = (f"{p.label:>8} {p.confidence:4.0%}{' unsure' if p.uncertain else ''}"
                        if p is not None else "(no emotion: too little speech)")
                console.print(f"utterance {event.index:>3}  {event.start:7.2f}–{event.end:7.2f} s"
                              f"  {what}")
            view.update(render())

        interrupted = core.run(source, stream, on_event, log)
    elapsed = time.perf_counter() - t0
    summary = (f"{state['count']} utterance(s) in {stream.time:.1f} s of audio "
               f"({elapsed:.1f} s wall)")
    if log is not None:
        summary += f"; log: {log.path}"
    (err_console if interrupted else console).print(
        ("[yellow]stopped[/]: " if interrupted else "done: ") + summary
    )
