"""``extract()``: features for many files, in parallel, cached, resumable.

The calling process hashes each file and looks it up in the cache; only misses go to the
workers (local processes, or a Dask cluster with ``scheduler=``), which decode, augment and
compute, and send back one small array. The caller writes each result to the cache as it
arrives, so a killed run loses at most the files in flight. Files that fail are reported in
``FeatureTable.failed`` and skipped.

>>> table = extract(["a.wav", "b.flac"], "seed178", n_jobs=2)   # doctest: +SKIP
>>> table.X.shape, table.failed                                  # doctest: +SKIP
((2, 178), [])
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import time
import zipfile
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ser.augment import Augmentation, get_augmentation
from ser.errors import SerError
from ser.features.base import FeatureSet, feature_set_from_json, get_feature_set
from ser.features.cache import FeatureCache, content_hash, default_cache_dir

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
_limited = False


#: Seconds to wait for a Dask scheduler named by address before giving up.
SCHEDULER_TIMEOUT = 10.0


def _watch_parent(parent: int) -> None:
    """In a worker: exit when the process that started it is gone (killed with SIGKILL, it
    cannot shut its pool down), instead of living on as an orphan."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="ser-watch-parent").start()


def _worker_init(parent: int) -> None:
    _watch_parent(parent)
    _one_thread()


def _one_thread() -> None:
    """Each worker uses one core: N workers on N cores must not each start N BLAS threads."""
    global _limited
    if _limited:
        return
    for var in _THREAD_VARS:
        os.environ[var] = "1"  # for anything initialised later (numba's pool, subprocesses)
    from threadpoolctl import threadpool_limits  # a base dependency

    threadpool_limits(1)  # BLAS/OpenMP pools already loaded with numpy
    _limited = True


@functools.lru_cache(maxsize=8)
def _feature_set(key: str) -> FeatureSet:
    return feature_set_from_json(key)


def _compute(path: str, fs_key: str, aug: Augmentation | None, audio_hash: str
             ) -> tuple[np.ndarray | None, str | None]:
    """Worker task: (features, None) or (None, reason). Never raises for bad audio."""
    try:
        fs = _feature_set(fs_key)
        y = fs.load(path)
        if aug is not None:
            y = aug.apply(y, fs.sample_rate, aug.rng_for(audio_hash))
        return fs.features(y), None
    except SerError as exc:
        return None, getattr(exc, "reason", None) or str(exc)
    except Exception as exc:  # a decoder or librosa failing on odd input: skip the file
        return None, f"{type(exc).__name__}: {exc}"


def _compute_on_worker(*args) -> tuple[np.ndarray | None, str | None]:
    # Dask workers are long-lived processes we did not start: limit their threads on first use.
    _one_thread()
    return _compute(*args)


# ---------------------------------------------------------------------------------------


@dataclass
class FeatureTable:
    """Features of the files that worked, with their manifest rows (same order)."""

    manifest: pd.DataFrame
    X: np.ndarray | list[np.ndarray]
    feature_set: FeatureSet
    augment: str | None = None
    failed: list[tuple[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def columns(self) -> list[str] | None:
        return self.feature_set.columns

    def __len__(self) -> int:
        return len(self.manifest)

    def to_frame(self) -> pd.DataFrame:
        """Manifest columns + one column per feature (vector sets)."""
        if self.feature_set.kind != "vector":
            raise SerError(f"{self.feature_set.name} is a sequence set; use .X, or save as .npz")
        feats = pd.DataFrame(np.asarray(self.X), columns=self.columns, index=self.manifest.index)
        return pd.concat([self.manifest, feats], axis=1)

    def save(self, path: str | Path) -> Path:
        """Parquet or CSV (vector sets) or ``.npz`` (any set), written atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        meta = {"feature_set": self.feature_set.to_json(), "augment": self.augment}
        suffix = path.suffix.lower()
        if suffix == ".npz":
            _write_npz(tmp, self.manifest, self.X, meta)
        elif suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(self.to_frame(), preserve_index=False)
            extra = {b"ser": json.dumps(meta).encode()}
            pq.write_table(table.replace_schema_metadata({**table.schema.metadata, **extra}),
                           tmp)
        elif suffix == ".csv":
            self.to_frame().to_csv(tmp, index=False)
        else:
            raise SerError(f"{path}: output must end in .parquet, .csv or .npz")
        os.replace(tmp, path)
        return path


def _write_npz(path: Path, manifest: pd.DataFrame, X, meta: dict) -> None:
    # Arrays go in one at a time (np.savez would build them all first); no pickle anywhere.
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        def put(name: str, arr: np.ndarray) -> None:
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(arr), allow_pickle=False)

        put("meta", np.array(json.dumps(meta)))
        put("manifest", np.array(manifest.to_json(orient="records")))
        if isinstance(X, np.ndarray):
            put("X", X)
        else:
            for i, x in enumerate(X):
                put(f"x_{i:07d}", x)


def read_feature_table(path: str | Path) -> FeatureTable:
    """Load what :meth:`FeatureTable.save` wrote (parquet or npz)."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            manifest = pd.DataFrame(json.loads(str(z["manifest"])))
            fs = feature_set_from_json(meta["feature_set"])
            if "X" in z.files:
                X: Any = z["X"]
            else:
                X = [z[f"x_{i:07d}"] for i in range(len(manifest))]
        return FeatureTable(manifest, X, fs, meta.get("augment"))
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[b"ser"])
        fs = feature_set_from_json(meta["feature_set"])
        df = table.to_pandas()
        cols = fs.columns or []
        return FeatureTable(df.drop(columns=cols).reset_index(drop=True),
                            df[cols].to_numpy(dtype=np.float32), fs, meta.get("augment"))
    raise SerError(f"{path}: can read .parquet or .npz feature tables")


# ---------------------------------------------------------------------------------------


def _rows(utterances: Iterable[Any] | pd.DataFrame) -> list[dict]:
    if isinstance(utterances, pd.DataFrame):
        if "path" not in utterances.columns:
            raise SerError("the manifest has no 'path' column")
        return utterances.to_dict("records")
    rows = []
    for u in utterances:
        if hasattr(u, "to_row"):
            rows.append(u.to_row())
        elif isinstance(u, (str, os.PathLike)):
            rows.append({"path": str(u)})
        else:
            raise SerError(f"extract() takes Utterance records or paths, got {type(u).__name__}")
    return rows


def _progress(enabled: bool, total: int):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled,
        transient=False,
    )


def _run_local(tasks: list[tuple], n_jobs: int) -> Iterator[tuple[int, tuple]]:
    if n_jobs == 1:  # in this process: leave its thread settings alone
        for index, args in tasks:
            yield index, _compute(*args)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads (rich)
    with ProcessPoolExecutor(n_jobs, mp_context=ctx, initializer=_worker_init,
                             initargs=(os.getpid(),)) as pool:
        yield from _bounded(tasks, lambda args: pool.submit(_compute, *args), 4 * n_jobs,
                            lambda fs: wait(fs, return_when=FIRST_COMPLETED)[0],
                            lambda f: f.result())


def _run_dask(tasks: list[tuple], scheduler: Any) -> Iterator[tuple[int, tuple]]:
    try:
        from distributed import Client
        from distributed import wait as dwait
    except ImportError:
        raise SerError("--scheduler needs dask.distributed: pip install 'ser[train]'") from None
    own = isinstance(scheduler, str)
    if own:
        try:
            client = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            raise SerError(
                f"no Dask scheduler answers at {scheduler} within {SCHEDULER_TIMEOUT:g} s "
                f"({type(exc).__name__}); start one (`dask scheduler`, then `dask worker "
                "ADDRESS`) or leave out --scheduler to use local processes") from None
    else:
        client = scheduler
    try:
        n_workers = max(1, sum(client.nthreads().values()))
        yield from _bounded(
            tasks, lambda args: client.submit(_compute_on_worker, *args, pure=False), 4 * n_workers,
            lambda fs: dwait(list(fs), return_when="FIRST_COMPLETED").done,
            lambda f: f.result())
    finally:
        if own:
            client.close()


def _bounded(tasks, submit, limit, wait_some, result) -> Iterator[tuple[int, tuple]]:
    # Keep at most `limit` tasks in flight so memory stays flat however long the list is.
    todo = iter(tasks)
    running: dict[Any, int] = {}
    for index, args in todo:
        running[submit(args)] = index
        if len(running) >= limit:
            break
    while running:
        for fut in wait_some(set(running)):
            index = running.pop(fut)
            yield index, result(fut)
            nxt = next(todo, None)
            if nxt is not None:
                running[submit(nxt[1])] = nxt[0]


def extract(
    utterances: Iterable[Any] | pd.DataFrame,
    feature_set: str | FeatureSet,
    *,
    augment: str | Augmentation | None = None,
    cache_dir: str | Path | None | Literal[False] = None,
    n_jobs: int | None = None,
    scheduler: Any = None,
    progress: bool = True,
) -> FeatureTable:
    """Compute ``feature_set`` for every utterance (or path); see the module docstring.

    ``cache_dir=None`` uses :func:`default_cache_dir`; ``False`` disables the cache.
    ``n_jobs=None`` uses every local core; ``scheduler`` (``"tcp://host:8786"`` or a
    ``distributed.Client``) runs the work on a Dask cluster instead (the files must be
    readable at the same paths on the workers).
    """
    fs = get_feature_set(feature_set)
    aug = None if augment is None else get_augmentation(augment)
    rows = _rows(utterances)
    cache = None
    if cache_dir is not False:
        root = default_cache_dir() if cache_dir is None else Path(cache_dir)
        aug_key = json.dumps(aug.to_json() if aug else None, sort_keys=True)
        cache = FeatureCache(root, fs.name, fs.key() + "|" + aug_key)
    n_jobs = n_jobs or os.cpu_count() or 1
    timings: dict[str, float] = {}
    results: dict[int, np.ndarray] = {}
    failed: dict[int, str] = {}

    # 1. Hash every file and take what the cache has (cheap, in this process).
    t0 = time.perf_counter()
    tasks: list[tuple[int, tuple]] = []
    keys: dict[int, str] = {}
    for i, row in enumerate(rows):
        path = str(row["path"])
        try:
            digest = content_hash(path)
        except OSError as exc:
            failed[i] = exc.strerror or str(exc)
            continue
        if cache is not None:
            keys[i] = cache.key(digest)
            hit = cache.get(keys[i])
            if hit is not None:
                results[i] = hit
                continue
        tasks.append((i, (path, fs.key(), aug, digest)))
    n_cached = len(results)
    timings["cache lookup"] = time.perf_counter() - t0

    # 2. Compute the misses, saving each as it arrives.
    t0 = time.perf_counter()
    if tasks:
        runner = _run_dask(tasks, scheduler) if scheduler is not None else \
            _run_local(tasks, min(n_jobs, len(tasks)))
        where = "dask" if scheduler is not None else f"{min(n_jobs, len(tasks))} proc"
        with _progress(progress, len(tasks)) as bar:
            task = bar.add_task(f"{fs.name} ({where})", total=len(tasks), rate="")
            done = 0
            for index, (x, reason) in runner:
                if x is None:
                    failed[index] = reason or "unknown error"
                else:
                    x = np.asarray(x, dtype=np.float32)
                    results[index] = x
                    if cache is not None:
                        cache.put(keys[index], x)
                done += 1
                rate = done / max(time.perf_counter() - t0, 1e-9)
                bar.update(task, advance=1, rate=f"{rate:.1f} files/s")
    timings["extract"] = time.perf_counter() - t0

    ok = sorted(results)
    manifest = pd.DataFrame([rows[i] for i in ok])
    if not ok:
        manifest = pd.DataFrame(columns=list(rows[0]) if rows else ["path"])
    if fs.kind == "vector":
        width = len(fs.columns) if not ok else results[ok[0]].shape[0]
        X: Any = np.stack([results[i] for i in ok]) if ok else np.zeros((0, width), np.float32)
    else:
        X = [results[i] for i in ok]
    return FeatureTable(
        manifest=manifest.reset_index(drop=True),
        X=X,
        feature_set=fs,
        augment=aug.name if aug else None,
        failed=[(str(rows[i]["path"]), failed[i]) for i in sorted(failed)],
        timings=timings,
        stats={"total": len(rows), "cached": n_cached, "computed": len(results) - n_cached,
               "failed": len(failed)},
    )
