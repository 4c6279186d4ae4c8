import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
from fixtures import tone, write_clip

from ser.audio import AudioError, check_signal, load_audio

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def _peak_hz(y: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spectrum) * sr / len(y))


@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg", ".mp3"])
def test_libsndfile_formats(tmp_path, ext):
    path = write_clip(tmp_path / f"a{ext}", seconds=1.0, sr=44100, freq=440)
    y = load_audio(path, sr=16000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 16000) <= 200  # mp3 decoders pad a little
    assert abs(_peak_hz(y, 16000) - 440) < 5
    assert 0.25 < np.max(np.abs(y)) < 0.35


@needs_ffmpeg
@pytest.mark.parametrize("ext", [".webm", ".m4a"])
def test_ffmpeg_formats(tmp_path, ext):
    path = write_clip(tmp_path / f"a{ext}", seconds=1.0, sr=48000, freq=440)
    y = load_audio(path, sr=16000)
    assert y.dtype == np.float32 and abs(len(y) - 16000) < 800
    assert abs(_peak_hz(y, 16000) - 440) < 5
    window = load_audio(path, sr=16000, offset=0.25, duration=0.5)
    assert abs(len(window) - 8000) < 400


def test_stereo_is_mixed_to_mono_and_resampled(tmp_path):
    path = write_clip(tmp_path / "st.wav", seconds=0.5, sr=22050, channels=2)
    y = load_audio(path, sr=8000)
    assert y.shape == (4000,)


def test_offset_and_duration(tmp_path):
    sr = 16000
    ramp = np.linspace(-0.5, 0.5, sr, dtype=np.float32)  # 1 s; value encodes time
    sf.write(tmp_path / "ramp.wav", ramp, sr, subtype="FLOAT")
    y = load_audio(tmp_path / "ramp.wav", sr=sr, offset=0.25, duration=0.5)
    assert len(y) == 8000
    np.testing.assert_allclose(y[[0, -1]], ramp[[4000, 11999]], atol=1e-6)
    assert len(load_audio(tmp_path / "ramp.wav", sr=sr, offset=0.75)) == 4000


def _bad(path, match, **kw):
    with pytest.raises(AudioError, match=match) as err:
        load_audio(path, **kw)
    assert err.value.path == str(path) and str(path) in str(err.value)


def test_missing_empty_and_corrupt(tmp_path):
    _bad(tmp_path / "nope.wav", "no such file")
    _bad(tmp_path, "is a directory")
    (tmp_path / "empty.wav").write_bytes(b"")
    _bad(tmp_path / "empty.wav", r"empty file \(0 bytes\)")
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    _bad(tmp_path / "noise.wav", "unreadable audio")
    (tmp_path / "text.mp3").write_text("this is not an mp3\n" * 50)
    _bad(tmp_path / "text.mp3", "unreadable|damaged")


@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg", ".mp3", ".webm"])
def test_truncated(tmp_path, ext):
    full = write_clip(tmp_path / f"full{ext}", seconds=1.0, sr=16000)
    data = full.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) // 2])
    _bad(cut, "truncated|unreadable|damaged")


def test_silent_short_long(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    _bad(tmp_path / "silent.wav", "silent")
    assert load_audio(tmp_path / "silent.wav", allow_silent=True).shape == (16000,)
    short = write_clip(tmp_path / "short.wav", seconds=0.1)
    _bad(short, "too short: 0.10 s", min_duration=0.5)
    long = write_clip(tmp_path / "long.flac", seconds=3.0)
    _bad(long, "too long", max_duration=2.0)
    assert len(load_audio(long, max_duration=2.0, duration=1.0)) == 16000


@needs_ffmpeg
def test_too_long_through_ffmpeg_stops_early(tmp_path):
    long = write_clip(tmp_path / "long.webm", seconds=4.0)
    _bad(long, "too long", max_duration=1.0)


def test_check_signal():
    y = tone(0.5)
    assert check_signal(y, 16000) is y
    with pytest.raises(AudioError, match="NaN"):
        check_signal(np.array([0.1, np.nan], np.float32), 16000)
    with pytest.raises(AudioError, match="empty audio"):
        check_signal(np.zeros(0, np.float32), 16000)


def test_check_signal_scales_integers_and_mixes_either_layout():
    y = tone(0.5)
    pcm = np.round(y * 32767).astype(np.int16)
    np.testing.assert_allclose(check_signal(pcm, 16000), y, atol=1e-4)
    np.testing.assert_allclose(check_signal(pcm.astype(np.int32) << 16, 16000), y, atol=1e-4)
    u8 = (np.round(y * 127) + 128).astype(np.uint8)
    np.testing.assert_allclose(check_signal(u8, 16000), y, atol=1e-2)
    both = np.stack([y, 0.5 * y])  # (channels, n)
    np.testing.assert_allclose(check_signal(both, 16000), 0.75 * y, atol=1e-6)
    np.testing.assert_allclose(check_signal(both.T, 16000), 0.75 * y, atol=1e-6)
    out = check_signal(y.astype(np.float64), 16000)
    assert out.dtype == np.float32 and out.ndim == 1
    with pytest.raises(AudioError, match="shape"):
        check_signal(np.ones((2, 3, 4000), np.float32), 16000)
    with pytest.raises(AudioError, match="channels"):
        check_signal(np.ones((100, 200), np.float32), 16000)
    with pytest.raises(AudioError, match="dtype"):
        check_signal(np.ones(4000, bool), 16000)


def test_cli_prints_one_line_not_a_traceback(tmp_path):
    bad = tmp_path / "bad [take 1].wav"
    bad.write_bytes(np.random.default_rng(1).bytes(3000))
    # The real entry point (ser.cli.main) with a command that loads audio.
    code = textwrap.dedent(f"""
        import sys
        from ser.cli import app, main
        from ser.audio import load_audio

        @app.command("load-test")
        def load_test(path: str) -> None:
            load_audio(path)

        sys.argv = ["ser", "load-test", {str(bad)!r}]
        main()
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2
    # Random bytes can look like MPEG to libsndfile, whose mpg123 may print its own warning
    # line from C; ser's part is exactly one error line and no traceback.
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, res.stderr
    assert "bad [take 1].wav" in errors[0] and "unreadable audio" in errors[0]
    assert "Traceback" not in res.stderr


def test_resample_length_matches_librosa():
    import librosa

    from ser.audio import resample

    rng = np.random.default_rng(0)
    for n in (16000, 47377, 49999):
        y = rng.standard_normal(n).astype(np.float32) * 0.1
        ours = resample(y, 16000, 22050)
        theirs = librosa.resample(y, orig_sr=16000, target_sr=22050, res_type="soxr_hq")
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


def _playlists(target) -> dict[str, str]:
    """Text files that make a content-sniffing decoder open another file: HLS, ffconcat,
    a bare file: URL list and an SDP description."""
    return {
        "hls": f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile://{target}\n"
               "#EXT-X-ENDLIST\n",
        "concat": f"ffconcat version 1.0\nfile '{target}'\n",
        "m3u": f"{target}\n",
        "sdp": "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\n"
               "m=audio 5004 RTP/AVP 0\n",
    }


@needs_ffmpeg
@pytest.mark.parametrize("kind", ["hls", "concat", "m3u", "sdp"])
def test_a_playlist_never_makes_the_decoder_read_another_file(tmp_path, kind):
    secret = tmp_path / "private" / "secret.mp3"
    secret.parent.mkdir()
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i",
                    str(write_clip(tmp_path / "s.wav", seconds=2.0)), str(secret)], check=True)
    upload = tmp_path / "clip.webm"  # the name lies; the content is a playlist
    upload.write_text(_playlists(secret)[kind])
    with pytest.raises(AudioError) as err:
        load_audio(upload)
    assert "not a recognised audio format" in err.value.reason
    assert "private" not in err.value.reason and "secret" not in err.value.reason


@needs_ffmpeg
def test_ffmpeg_messages_carry_no_paths(tmp_path):
    full = write_clip(tmp_path / "full.webm", seconds=1.0)
    cut = tmp_path / "deep" / "cut.webm"
    cut.parent.mkdir()
    cut.write_bytes(full.read_bytes()[:200])
    with pytest.raises(AudioError) as err:
        load_audio(cut)
    assert "/" not in err.value.reason, err.value.reason


def test_without_ffmpeg_text_is_not_audio_and_webm_names_ffmpeg(tmp_path, monkeypatch):
    import ser.audio

    monkeypatch.setattr(ser.audio.shutil, "which", lambda name: None)  # a machine without it
    (tmp_path / "notes.wav").write_text("this is a text file, renamed\n" * 20)
    with pytest.raises(AudioError, match="not a recognised audio format") as err:
        load_audio(tmp_path / "notes.wav")
    assert "ffmpeg" not in err.value.reason
    header = b"\x1a\x45\xdf\xa3" + bytes(200)  # the start of a WebM (EBML) file
    (tmp_path / "talk.webm").write_bytes(header)
    with pytest.raises(AudioError, match=r"\(matroska\) needs ffmpeg"):
        load_audio(tmp_path / "talk.webm")
    # Bytes that look like MPEG frames: libsndfile reads mp3 itself, so not ffmpeg's fault.
    (tmp_path / "noise.wav").write_bytes(b"\xff\xfb\x90\x00" + bytes(range(256)) * 8)
    with pytest.raises(AudioError, match="unreadable audio") as err:
        load_audio(tmp_path / "noise.wav")
    assert "ffmpeg" not in err.value.reason


def test_frame_powers_are_the_mean_power_of_every_hop_th_25_ms_frame():
    from ser.audio import _frame_powers

    rng = np.random.default_rng(0)
    for n in (400, 401, 559, 560, 561, 16000, 65_537):
        y = rng.standard_normal(n).astype(np.float32) * rng.uniform(0.001, 1.0)
        y64 = y.astype(np.float64)
        expected = [np.mean(y64[s:s + 400] ** 2) for s in range(0, n - 400 + 1, 160)]
        np.testing.assert_allclose(_frame_powers(y, 16000), expected, rtol=1e-9, atol=1e-15)


def test_a_level_meter_with_a_span_follows_the_recent_audio():
    from ser.audio import LevelMeter, speech_level

    sr = 16000
    rng = np.random.default_rng(0)
    loud, quiet = 0.3 * rng.standard_normal(sr), 0.003 * rng.standard_normal(2 * sr)
    running, whole = LevelMeter(sr, span=1.0), LevelMeter(sr)
    for block in np.split(np.concatenate([loud, quiet]).astype(np.float32), 12):  # 0.25 s
        running.feed(block)
        whole.feed(block)
    assert running.level() == pytest.approx(speech_level(quiet, sr), rel=0.05)
    assert whole.level() == pytest.approx(speech_level(np.concatenate([loud, quiet]), sr),
                                          rel=0.05)
