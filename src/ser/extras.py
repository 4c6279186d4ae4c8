"""Optional dependencies: which ``pip install 'ser[EXTRA]'`` provides what, checked before work.

A plain ``pip install ser`` predicts, and nothing more. Training, the server, the microphone
and some feature sets need an extra; a command calls :func:`require` first, so a missing
package is one clear line naming the extra, before any file is scanned or decoded.

>>> require("train", "numpy", purpose="this")   # present: returns quietly
"""

from __future__ import annotations

import importlib.util

from ser.errors import SerError

#: The import names each extra of pyproject.toml provides (what `require` checks).
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("torch", "sklearn", "skl2onnx", "onnx", "safetensors", "dask", "distributed"),
    "serve": ("fastapi", "uvicorn", "multipart", "websockets", "onnx"),
    "live": ("sounddevice",),
    "egemaps": ("opensmile",),
}


class MissingExtraError(SerError):
    """A command needs packages of an optional extra that is not installed."""


def missing(modules: tuple[str, ...] | list[str]) -> list[str]:
    """The modules of ``modules`` that cannot be imported (found without importing them)."""
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken or blocked package counts as absent
            found = False
        if not found:
            out.append(name)
    return out


def extra_providing(module: str | None) -> str | None:
    """The extra whose packages include top-level ``module`` (``"torch.nn"`` -> ``"train"``)."""
    top = (module or "").split(".")[0]
    return next((extra for extra, names in EXTRAS.items() if top in names), None)


def require(extra: str, *modules: str, purpose: str) -> None:
    """Raise :class:`MissingExtraError` unless ``modules`` (default: all of ``extra``'s) are
    installed: ``"{purpose} needs torch: pip install 'ser[train]'"``."""
    absent = missing(modules or EXTRAS[extra])
    if absent:
        raise MissingExtraError(
            f"{purpose} needs {', '.join(absent)}, not installed: pip install 'ser[{extra}]'")
