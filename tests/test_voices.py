"""Teaching the server a voice (POST /v1/voices): the same personal model as `ser.adapt`,
kept in memory under an unguessable id, used by /v1/predict?voice= and the stream, and every
bad request a clear 4xx. Each test runs with the shipped model (whichever classifier it has)
and with a tiny RBF SVM bundle (a graph that is not linear)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("onnx")
httpx = pytest.importorskip("httpx")
from _faces import SR, model_path, speech, ws_stream  # noqa: E402
from test_server import Running, free_port  # noqa: E402, F401
from websockets.sync.client import connect  # noqa: E402

from ser.adapt import adapt_bundle  # noqa: E402
from ser.inference import Recognizer  # noqa: E402
from ser.live import EmotionStream, default_gate  # noqa: E402
from ser.server.app import Settings, create_app  # noqa: E402
from ser.server.voices import Voices  # noqa: E402

SENTENCES = ["Kids are talking by the door.", "Dogs are sitting by the door."]


def svm_path():
    from _tiny_bundle import tiny_svm_bundle

    return tiny_svm_bundle()


@pytest.fixture(scope="module", params=[model_path, svm_path], ids=["shipped", "svm"])
def base_path(request):
    """The bundle the server serves: the shipped one, and an SVM whatever that is."""
    return request.param()


@pytest.fixture(scope="module")
def recognizer(base_path) -> Recognizer:
    return Recognizer.load(base_path)


@pytest.fixture(scope="module")
def clips(recognizer, tmp_path_factory):
    """Two clips of each emotion, (path, label), and a clip to predict."""
    d = tmp_path_factory.mktemp("voice")
    out = [(speech(f"{text} I feel {label}.", d / f"{label}-{k}.wav"), label)
           for label in recognizer.labels for k, text in enumerate(SENTENCES)]
    return out, speech("I told you never to call me here again!", d / "test.wav")


def form(clips):
    """Multipart files: each clip in a field named by its emotion."""
    return [(label, (path.name, path.read_bytes(), "audio/wav")) for path, label in clips]


def wav(y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(recognizer):
    settings = Settings(voices=2, voice_max_seconds=6.0, concurrency=2, queue_timeout=60.0)
    with Running(create_app(recognizer, settings=settings)) as running:
        yield running


@pytest.fixture(scope="module")
def taught(server, clips):
    r = httpx.post(f"{server.url}/v1/voices", files=form(clips[0]), timeout=120)
    assert r.status_code == 201, r.text
    return r.json()


def test_the_server_answers_as_ser_adapt_does(server, clips, taught, recognizer, base_path,
                                              tmp_path):
    assert taught["clips"] == dict.fromkeys(recognizer.labels, 2)
    assert httpx.get(f"{server.url}/v1/model").json()["voices"]["available"]
    schema = httpx.get(f"{server.url}/openapi.json").json()["paths"]["/v1/voices"]["post"]
    form_schema = schema["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert list(form_schema["properties"]) == recognizer.labels  # /docs shows a field each
    assert len(taught["voice"]) >= 22  # 128 random bits
    personal = Recognizer.load(adapt_bundle(base_path, clips[0], tmp_path / "me",
                                            min_per_label=2).path)
    direct = personal.predict(clips[1])
    r = httpx.post(f"{server.url}/v1/predict", params={"voice": taught["voice"]},
                   files={"file": ("t.wav", clips[1].read_bytes())}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["voice"] == taught["voice"] and body["label"] == direct.label
    for label, p in direct.probabilities.items():
        assert body["probabilities"][label] == pytest.approx(p, abs=1e-3)
    base = recognizer.predict(clips[1]).probabilities
    assert max(abs(base[k] - p) for k, p in direct.probabilities.items()) > 1e-3  # it changed

    # The stream with the voice: the utterances of an EmotionStream over the API's model.
    y, _ = sf.read(str(clips[1]), dtype="float32")
    y = np.concatenate([np.zeros(SR // 2, np.float32), y, np.zeros(SR, np.float32)])
    local = EmotionStream(personal, SR, gate=default_gate())
    expected = [e.to_dict() for e in [*local.feed(y), *local.close()]
                if e.to_dict()["type"] == "utterance"]
    ready, *got = ws_stream(server.url, {"sample_rate": SR, "format": "f32le",
                                         "voice": taught["voice"]}, y.astype("<f4"), SR // 10)
    assert ready["type"] == "ready"
    utterances = [m for m in got if m["type"] == "utterance"]
    assert expected and [u.get("label") for u in utterances] == [e.get("label") for e in expected]
    for u, e in zip(utterances, expected, strict=True):
        for label, p in e.get("probabilities", {}).items():
            assert u["probabilities"][label] == pytest.approx(p, abs=1e-3)


def test_forget_and_unknown_voices(server, clips):
    r = httpx.post(f"{server.url}/v1/voices", files=form(clips[0]), timeout=120)
    vid = r.json()["voice"]
    assert httpx.delete(f"{server.url}/v1/voices/{vid}").status_code == 204
    for attempt in (lambda: httpx.delete(f"{server.url}/v1/voices/{vid}"),
                    lambda: httpx.post(f"{server.url}/v1/predict", params={"voice": vid},
                                       files={"file": ("t.wav", clips[1].read_bytes())})):
        gone = attempt()
        assert gone.status_code == 404 and "unknown voice" in gone.json()["error"], gone.text
    with connect(server.url.replace("http", "ws") + "/v1/stream") as ws:
        ws.send(json.dumps({"sample_rate": SR, "format": "f32le", "voice": "guess"}))
        msg = json.loads(ws.recv(timeout=10))
        assert msg["type"] == "error" and "unknown voice" in msg["error"]
    too_long = httpx.post(f"{server.url}/v1/predict", params={"voice": "x" * 65},
                          files={"file": ("t.wav", clips[1].read_bytes())})
    assert too_long.status_code == 422


def test_the_least_recently_used_voice_makes_room(server, clips, taught):
    """Capacity 2: teaching two more forgets the oldest unused one."""
    first = httpx.post(f"{server.url}/v1/voices", files=form(clips[0]), timeout=120).json()
    # Using the module's voice keeps it; `first` is now the least recently used.
    httpx.post(f"{server.url}/v1/predict", params={"voice": taught["voice"]},
               files={"file": ("t.wav", clips[1].read_bytes())}, timeout=60)
    third = httpx.post(f"{server.url}/v1/voices", files=form(clips[0]), timeout=120).json()

    def known(vid):
        return httpx.post(f"{server.url}/v1/predict", params={"voice": vid}, timeout=60,
                          files={"file": ("t.wav", clips[1].read_bytes())}).status_code

    assert [known(v["voice"]) for v in (first, taught, third)] == [404, 200, 200]
    assert httpx.get(f"{server.url}/v1/health").json()["voices"] == 2


def test_voices_expire_and_are_bounded():
    now = [0.0]
    store = Voices(capacity=3, ttl=10.0, clock=lambda: now[0])
    a, b = store.add("a"), store.add("b")
    assert a != b and len(a) >= 22
    now[0] = 8.0
    assert store.get(a) == "a"  # used at 8: kept until 18
    now[0] = 12.0
    assert store.get(b) is None and store.get(a) == "a" and len(store) == 1
    ids = [store.add(x) for x in "cde"]  # capacity 3: "a" (least recently used) goes
    assert store.get(a) is None and [store.get(i) for i in ids] == ["c", "d", "e"]
    assert store.forget(ids[0]) and not store.forget(ids[0])


def bad_requests(clips):
    """(name, multipart files, status, words in the error) of requests a voice must refuse."""
    good = form(clips)
    noise = 0.1 * np.random.default_rng(1).standard_normal(3 * SR)
    return [
        ("one sad clip", [f for f in good if f[0] != "sad"]
         + [f for f in good if f[0] == "sad"][:1], 422, ["at least 2", "sad (1 of 2)"]),
        ("no clips", [], 422, ["at least 2", "angry (0 of 2)"]),
        ("not an emotion", good + [("calm", ("c.wav", good[0][1][1]))], 422,
         ["'calm' is not an emotion"]),
        ("text, not a file", good + [("angry", (None, b"hello"))], 422, ["must be an audio file"]),
        ("too many", good + [("angry", good[0][1])] * 7, 422, ["at most 8", "angry (9)"]),
        ("noise", [("angry", ("noise.wav", wav(noise)))] + good, 422,
         ["clip 1 of 13 (angry, 'noise.wav')", "no speech found"]),
        ("too long", good + [("fear", ("long.wav", wav(np.tile(noise, 3))))], 413,
         ["'long.wav'", "too long"]),
        ("not audio", [("happy", ("notes.wav", b"not audio at all\n" * 40))] + good, 422,
         ["clip 1 of 13 (happy, 'notes.wav')", "unreadable"]),
        ("empty clip", good + [("sad", ("e.wav", b""))], 422, ["empty upload"]),
    ]


def test_bad_requests_get_a_clear_4xx(server, clips):
    for name, files, status, words in bad_requests(clips[0]):
        r = httpx.post(f"{server.url}/v1/voices", files=files or None,
                       data=None if files else {}, timeout=120)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert all(w in r.json()["error"] for w in words), (name, r.json())
        assert "ser-voice" not in r.json()["error"]  # no server paths
    r = httpx.post(f"{server.url}/v1/voices", json={"angry": "a.wav"})
    assert r.status_code == 422 and "at least 2" in r.json()["error"]
    r = httpx.post(f"{server.url}/v1/voices", files=form(clips[0]) * 5)  # over 48 files
    assert r.status_code == 400 and "Too many files" in r.json()["error"]


def test_a_model_that_cannot_adapt_says_so(recognizer, tmp_path, clips):
    from _tiny_bundle import tiny_bundle

    from ser.bundle import save_ensemble

    ensemble = save_ensemble(tmp_path / "ens", {"name": "ens"},
                             [(tiny_bundle(), 1.0), (tiny_bundle(), 1.0)])
    for rec, settings, words in [
            (Recognizer(ensemble), Settings(), "ensemble"),
            (recognizer, Settings(voices=0), "turned off")]:
        with Running(create_app(rec, settings=settings)) as running:
            info = httpx.get(f"{running.url}/v1/model").json()["voices"]
            assert not info["available"] and words in info["reason"], info
            r = httpx.post(f"{running.url}/v1/voices", files=form(clips[0][:1]))
            assert r.status_code == 501 and words in r.json()["error"], r.text
