"""extract(): order, failures, cache reuse, kill-and-resume, processes, Dask, CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from ser.corpora.base import Utterance
from ser.features import extract, get_feature_set, read_feature_table
from ser.features.cache import FeatureCache, content_hash, default_cache_dir


def voice(seconds: float, sr: int, f0: float) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.04 * np.sin(2 * np.pi * 4 * t))) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 8)) * (1 + np.sin(2 * np.pi * t)) / 2
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


def make_clips(folder: Path, n: int, seconds: float = 1.2) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"clip{i:02d}.wav"
        sf.write(path, voice(seconds, 16000, 110 + 13 * i), 16000)
        paths.append(path)
    return paths


def test_order_failures_and_utterance_columns(tmp_path):
    paths = make_clips(tmp_path / "a", 4)
    broken = tmp_path / "a" / "broken.wav"
    broken.write_bytes(b"RIFF not really audio")
    utts = [Utterance(p, "toy", f"s{i % 2}", "angry", "ANG") for i, p in enumerate(paths)]
    items = [utts[0], broken, utts[1], tmp_path / "missing.wav", utts[2], utts[3]]
    table = extract(items, "logmel", cache_dir=False, n_jobs=1, progress=False)
    assert list(table.manifest["path"]) == [str(p) for p in paths]
    assert table.manifest["speaker_id"].tolist() == ["toy:s0", "toy:s1", "toy:s0", "toy:s1"]
    assert [p for p, _ in table.failed] == [str(broken), str(tmp_path / "missing.wav")]
    assert "unreadable" in table.failed[0][1]
    fs = get_feature_set("logmel")
    for path, x in zip(paths, table.X, strict=True):
        np.testing.assert_array_equal(x, fs.features(fs.load(path)))
    assert table.stats == {"total": 6, "cached": 0, "computed": 4, "failed": 2}


def test_cache_reuse_and_keys(tmp_path):
    paths = make_clips(tmp_path / "a", 3)
    first = extract(paths, "seed178", cache_dir=tmp_path / "c", n_jobs=1, progress=False)
    assert first.stats["computed"] == 3
    again = extract(paths, "seed178", cache_dir=tmp_path / "c", n_jobs=1, progress=False)
    assert again.stats == {"total": 3, "cached": 3, "computed": 0, "failed": 0}
    np.testing.assert_array_equal(first.X, again.X)
    # A renamed copy hits the cache (content hash); augmentation or config changes miss it.
    moved = tmp_path / "b" / "renamed.wav"
    moved.parent.mkdir()
    moved.write_bytes(paths[0].read_bytes())
    assert extract([moved], "seed178", cache_dir=tmp_path / "c", n_jobs=1,
                   progress=False).stats["cached"] == 1
    aug = extract(paths, "seed178", augment="noise", cache_dir=tmp_path / "c", n_jobs=1,
                  progress=False)
    assert aug.stats["computed"] == 3 and not np.allclose(aug.X, first.X)
    other = get_feature_set("seed178", duration=1.0)
    assert extract(paths, other, cache_dir=tmp_path / "c", n_jobs=1,
                   progress=False).stats["computed"] == 3
    # One .npy per entry, nothing left half-written.
    entries = list((tmp_path / "c" / "seed178").rglob("*.npy"))
    assert len(entries) == 9 and not list((tmp_path / "c").rglob(".tmp-*"))


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("SER_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "ser" / "features"
    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine" / "features"


def test_damaged_cache_entry_is_recomputed(tmp_path):
    paths = make_clips(tmp_path / "a", 1)
    first = extract(paths, "logmel", cache_dir=tmp_path / "c", n_jobs=1, progress=False)
    (entry,) = (tmp_path / "c").rglob("*.npy")
    entry.write_bytes(b"\x93NUMPY garbage")
    again = extract(paths, "logmel", cache_dir=tmp_path / "c", n_jobs=1, progress=False)
    assert again.stats["computed"] == 1
    np.testing.assert_array_equal(again.X[0], first.X[0])


_KILL_SCRIPT = textwrap.dedent("""
    import sys
    import time
    from ser.features import extract, extraction
    # Pace the work so the parent reliably kills it mid-way, however busy the machine is.
    compute = extraction._compute
    def paced(*args):
        time.sleep(0.15)
        return compute(*args)
    extraction._compute = paced
    paths = sys.argv[2:]
    extract(paths, "seed178", augment="stretch_pitch", cache_dir=sys.argv[1], n_jobs=1,
            progress=False)
""")


def test_sigkill_midway_then_resume(tmp_path):
    paths = make_clips(tmp_path / "a", 20, seconds=3.5)
    cache = tmp_path / "c"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(cache), *map(str, paths)],
        start_new_session=True,  # its own process group, so the kill takes everything
    )
    deadline = time.monotonic() + 120
    def entries() -> set[str]:
        # A write cut by the kill leaves a ".tmp-*.npy" file: never a cache entry.
        return {p.name for p in cache.rglob("*.npy") if not p.name.startswith(".tmp-")}

    while time.monotonic() < deadline and proc.poll() is None:
        if len(entries()) >= 4:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "extraction finished before it could be killed"
    survived = entries()
    assert 4 <= len(survived) < 20

    resumed = extract(paths, "seed178", augment="stretch_pitch", cache_dir=cache, n_jobs=1,
                      progress=False)
    assert resumed.stats == {"total": 20, "cached": len(survived), "computed": 20 - len(survived),
                             "failed": 0}
    fresh = extract(paths, "seed178", augment="stretch_pitch", cache_dir=False, n_jobs=1,
                    progress=False)
    # Equal up to float summation order: the killed child and this process may run BLAS
    # with different thread counts.
    np.testing.assert_allclose(resumed.X, fresh.X, rtol=1e-5, atol=1e-6)
    fs = get_feature_set("seed178")
    c = FeatureCache(cache, "seed178", fs.key() + '|{"augment": "stretch_pitch", "seed": 0}')
    assert all(c.path(c.key(content_hash(p))).name in entries() for p in paths)


def test_processes_and_dask_give_identical_features(tmp_path):
    distributed = pytest.importorskip("distributed")
    paths = make_clips(tmp_path / "a", 4)
    serial = extract(paths, "seed178", augment="noise", cache_dir=False, n_jobs=1,
                     progress=False)
    pooled = extract(paths, "seed178", augment="noise", cache_dir=False, n_jobs=2,
                     progress=False)
    # Equal up to float summation order (BLAS threads differ: the caller is not limited).
    np.testing.assert_allclose(serial.X, pooled.X, rtol=1e-5, atol=1e-7)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        on_dask = extract(paths, "seed178", augment="noise", cache_dir=False,
                          scheduler=cluster.scheduler_address, progress=False)
    np.testing.assert_array_equal(pooled.X, on_dask.X)
    assert list(on_dask.manifest["path"]) == list(serial.manifest["path"])


def test_cli_extract_writes_parquet(tmp_path):
    from ser.cli import app

    actor = tmp_path / "ravdess" / "Actor_01"
    actor.mkdir(parents=True)
    for i, emotion in enumerate(["05", "04", "01"]):  # angry, sad, neutral
        sf.write(actor / f"03-01-{emotion}-01-01-01-01.wav", voice(3.5, 16000, 120 + 10 * i),
                 16000)
    (actor / "03-01-03-01-01-02-01.wav").write_bytes(b"RIFF broken")  # happy, corrupt
    out = tmp_path / "feats.parquet"
    result = CliRunner().invoke(app, [
        "features", "extract", str(tmp_path / "ravdess"), "--out", str(out), "--jobs", "1",
        "--cache", str(tmp_path / "c"),
    ])
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(out)
    assert len(df) == 3 and {"path", "label", "speaker_id", "zcr", "tonnetz_6"} <= set(df.columns)
    assert sorted(df["label"]) == ["angry", "neutral", "sad"]
    table = read_feature_table(out)
    assert table.X.shape == (3, 178) and table.feature_set == get_feature_set("seed178")
    assert "1 files skipped" in result.output or "failed 1" in result.output


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sigkill_of_the_parent_leaves_no_worker_behind(tmp_path):
    for label in ("angry", "sad"):  # a corpus of one folder per label
        make_clips(tmp_path / "data" / label, 20, seconds=3.5)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ser", "features", "extract", str(tmp_path / "data"), "--set",
         "seed178", "--augment", "stretch_pitch", "--jobs", "2", "--no-cache", "--out",
         str(tmp_path / "f.parquet")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        workers = [c for c in _children(proc.pid)
                   if b"multiprocessing" in Path(f"/proc/{c}/cmdline").read_bytes()]
        if len(workers) >= 2:
            break
        time.sleep(0.05)
    assert len(workers) >= 2, "no workers seen before extraction ended"
    time.sleep(1.0)  # let them start computing
    proc.send_signal(signal.SIGKILL)  # no chance to shut its pool down
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(map(_alive, workers)):
        time.sleep(0.1)
    left = [w for w in workers if _alive(w)]
    for w in left:  # do not leak them from the test either
        os.kill(w, signal.SIGKILL)
    assert not left, f"workers outlived their parent: {left}"


def test_an_unreachable_scheduler_is_a_quick_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    import ser.features.extraction as extraction
    from ser.errors import SerError

    monkeypatch.setattr(extraction, "SCHEDULER_TIMEOUT", 1.0)
    paths = make_clips(tmp_path / "a", 2)
    with pytest.raises(SerError, match="no Dask scheduler answers at tcp://127.0.0.1:9"):
        extract(paths, "seed178", cache_dir=False, scheduler="tcp://127.0.0.1:9",
                progress=False)
