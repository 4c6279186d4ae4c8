"""Fitting a torch model: epochs, early stopping on validation UAR, checkpoints that resume.

:func:`fit_torch` trains one of ``ser.models``' networks on normalised rows (vectors) or
clips (sequences, in equal-length random crops), keeps the epoch with the best validation
UAR (accuracy for the seed network, as the seed did) and writes ``last.safetensors`` after
every epoch — one atomic file with the model, the optimiser and the state — so a run killed
at any moment resumes from its last finished epoch. Every random choice of an epoch derives
from ``(seed, epoch)``, so a resumed run ends with the same weights as one never interrupted.
``ser.training.run_split`` calls it; classical models are fitted in ``ser.models.classical``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ser.bundle import atomic_write

if TYPE_CHECKING:
    from ser.models import ModelSpec


def set_threads(jobs: int | None) -> None:
    """torch's threads: ``jobs``, or two at most."""
    import torch

    torch.set_num_threads(max(1, jobs or min(2, os.cpu_count() or 1)))


def save_checkpoint(ckdir: Path, model, optimizer, state: dict[str, Any]) -> None:
    """One file, ``last.safetensors``: model and optimizer tensors, with the rest of the
    state (epoch, history, optimizer settings) as JSON in its metadata — written atomically,
    so a kill at any moment leaves the previous checkpoint or this one, never a mix."""
    import torch
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().clone().contiguous()
               for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for pid, pstate in opt["state"].items():
        for key, value in pstate.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"opt.{pid}.{key}"] = t.detach().clone().contiguous()
    state = {**state, "param_groups": opt["param_groups"]}
    atomic_write(ckdir / "last.safetensors", save(tensors, metadata={"state": json.dumps(state)}))


def load_checkpoint(ckdir: Path, model, optimizer) -> dict[str, Any] | None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = ckdir / "last.safetensors"
    if not path.exists():
        return None
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if "state" not in meta:  # written by an older ser (state in last.json): start afresh
        return None
    state = json.loads(meta["state"])
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    return state


def _batches_vector(X, y, idx, batch_size):
    import torch

    for start in range(0, len(idx), batch_size):
        b = idx[start:start + batch_size]
        yield torch.from_numpy(X[b]), torch.from_numpy(y[b])


def _crop(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``length``-frame window; a shorter clip is repeated (wrapped) to fill it —
    zero padding would bias the time pooling, and cutting every clip in the batch down to
    the shortest one would throw most of the long clips away."""
    frames = x.shape[1]
    if frames < length:
        x = np.tile(x, (1, -(-length // frames)))
        frames = x.shape[1]
    off = int(rng.integers(0, frames - length + 1))
    return x[:, off:off + length]


def _batches_sequence(X, y, idx, batch_size, crop, rng):
    """Batches of equal-length random crops."""
    import torch

    for start in range(0, len(idx), batch_size):
        b = idx[start:start + batch_size]
        xs = np.stack([_crop(X[i], crop, rng) for i in b])
        yield torch.from_numpy(xs), torch.from_numpy(y[b])


def _spec_augment(x, rng, n_masks=2, max_f=8, max_t=20):
    # x: (B, M, T), normalised; zero = the training mean, a neutral fill.
    x = x.clone()
    bsz, n_mels, frames = x.shape
    for i in range(bsz):
        for _ in range(n_masks):
            w = int(rng.integers(0, max_f + 1))
            f0 = int(rng.integers(0, max(1, n_mels - w)))
            x[i, f0:f0 + w, :] = 0
            w = int(rng.integers(0, min(max_t, frames // 4) + 1))
            t0 = int(rng.integers(0, max(1, frames - w)))
            x[i, :, t0:t0 + w] = 0
    return x


def predict_torch(model, X, batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities for normalised rows (vectors) or clips (sequences)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        if isinstance(X, list):
            for x in X:
                out.append(torch.softmax(model(torch.from_numpy(x[None])), -1).numpy())
        else:
            for start in range(0, len(X), batch_size):
                xb = torch.from_numpy(X[start:start + batch_size])
                out.append(torch.softmax(model(xb), -1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _uar(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    present = np.unique(y_true)
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in present]))


@dataclass
class FitResult:
    model: Any
    history: list[dict[str, float]]
    best_epoch: int
    resumed_from: int = 0


def fit_torch(spec: ModelSpec, hyper: dict[str, Any], Xtr, ytr: np.ndarray, Xva, yva: np.ndarray,
              n_classes: int, ckdir: Path, *, seed: int, epochs: int | None = None,
              progress: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
    """Train a torch model with checkpoints in ``ckdir``; resumes from ``last.*`` if present.

    Selection: the epoch with the best validation UAR (accuracy for the seed network, as
    the seed did) is kept; training stops after ``patience`` epochs without improvement.
    Without validation rows it trains exactly ``epochs`` epochs and keeps the last.
    """
    import torch
    from safetensors.torch import load_file, save

    ckdir.mkdir(parents=True, exist_ok=True)
    sequence = isinstance(Xtr, list)
    shape = tuple(Xtr[0].shape[:1]) if sequence else tuple(Xtr.shape[1:])
    torch.manual_seed(seed)
    model = _build(spec, hyper, n_classes, shape)
    epochs = int(epochs or hyper["epochs"])
    base_lr = float(hyper["lr"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=base_lr,
                                  weight_decay=float(hyper.get("weight_decay", 0.0))) \
        if hyper.get("weight_decay") else torch.optim.Adam(model.parameters(), lr=base_lr)
    select = "val_accuracy" if spec.name == "seed-resnet1d" else "val_uar"
    counts = np.bincount(ytr, minlength=n_classes).astype(np.float64)
    weight = None
    if hyper.get("class_weight", spec.name != "seed-resnet1d"):
        w = counts.sum() / np.maximum(counts, 1) / n_classes
        weight = torch.tensor(w, dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)

    state = load_checkpoint(ckdir, model, optimizer) or {
        "epoch": 0, "history": [], "best": -1.0, "best_epoch": 0, "bad_epochs": 0}
    resumed_from = state["epoch"]
    has_val = yva is not None and len(yva) > 0
    patience = int(hyper.get("patience", 10))
    while state["epoch"] < epochs and not (has_val and state["bad_epochs"] >= patience):
        epoch = state["epoch"] + 1
        t0 = time.perf_counter()
        # Everything random in this epoch derives from (seed, epoch): resumable exactly.
        torch.manual_seed(seed * 100_003 + epoch)
        rng = np.random.default_rng([seed, epoch])
        if spec.name == "cnn":  # cosine decay of the learning rate over the epoch budget
            for g in optimizer.param_groups:
                g["lr"] = base_lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))
        model.train()
        order = rng.permutation(len(ytr))
        if sequence:
            batches = _batches_sequence(Xtr, ytr, order, int(hyper["batch_size"]),
                                        int(hyper.get("crop_frames", 256)), rng)
        else:
            batches = _batches_vector(Xtr, ytr, order, int(hyper["batch_size"]))
        total, n_seen = 0.0, 0
        for xb, yb in batches:
            if sequence and hyper.get("spec_augment"):
                xb = _spec_augment(xb, rng)
            alpha = float(hyper.get("mixup", 0.0))
            optimizer.zero_grad()
            if alpha > 0 and len(yb) > 1:
                lam = float(rng.beta(alpha, alpha))
                perm = torch.from_numpy(rng.permutation(len(yb)))
                logits = model(lam * xb + (1 - lam) * xb[perm])
                loss = lam * loss_fn(logits, yb) + (1 - lam) * loss_fn(logits, yb[perm])
            else:
                loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(yb)
            n_seen += len(yb)
        row = {"epoch": epoch, "train_loss": total / max(n_seen, 1),
               "seconds": time.perf_counter() - t0}
        if has_val:
            pred = predict_torch(model, Xva).argmax(1)
            row["val_accuracy"] = float((pred == yva).mean())
            row["val_uar"] = _uar(yva, pred)
        state["history"].append(row)
        score = row.get(select, epoch)  # no validation: the latest epoch is the best
        if score > state["best"]:
            state.update(best=score, best_epoch=epoch, bad_epochs=0)
            atomic_write(ckdir / "best.safetensors", save(
                {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}))
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        save_checkpoint(ckdir, model, optimizer, state)
        if progress:
            progress({**row, "epochs": epochs, "best_epoch": state["best_epoch"]})
    if (ckdir / "best.safetensors").exists():
        model.load_state_dict(load_file(str(ckdir / "best.safetensors")))
    model.eval()
    return FitResult(model, state["history"], state["best_epoch"], resumed_from)


def _build(spec: ModelSpec, hyper: dict[str, Any], n_classes: int, shape: tuple[int, ...]):
    from ser.models import build_torch

    return build_torch(spec.name, n_classes, shape, **hyper)
