"""``egemaps``: openSMILE's eGeMAPSv02 functionals (88 values per clip).

Needs the optional ``opensmile`` package (``pip install 'ser[egemaps]'``). openSMILE is
licensed for research and personal use only (audEERING's licence; commercial use needs a
separate licence), so features and models built on this set inherit that restriction.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ser.features.base import FeatureSet, FeatureSetError, register

_SMILE = None  # one openSMILE instance per process: building it parses its config files


def _smile():
    global _SMILE
    if _SMILE is None:
        try:
            import opensmile
        except ImportError:
            raise FeatureSetError(
                "feature set 'egemaps' needs openSMILE: pip install 'ser[egemaps]' "
                "(note: openSMILE is free for research use only)"
            ) from None
        _SMILE = opensmile.Smile(
            feature_set=opensmile.FeatureSet.eGeMAPSv02,
            feature_level=opensmile.FeatureLevel.Functionals,
        )
    return _SMILE


@register
class EGeMAPS(FeatureSet):
    """The 88 eGeMAPSv02 functionals of the whole clip (or its first ``max_seconds``)."""

    name: ClassVar[str] = "egemaps"
    extra: ClassVar[str | None] = "egemaps"
    version: ClassVar[int] = 1
    kind: ClassVar[str] = "vector"
    defaults: ClassVar[dict[str, Any]] = {"sample_rate": 16000, "max_seconds": None}
    min_seconds: ClassVar[float] = 0.1

    @property
    def columns(self) -> list[str]:
        return list(_smile().feature_names)

    def compute(self, y: np.ndarray) -> np.ndarray:
        y = self._check_length(np.asarray(y, dtype=np.float32), None)
        out = _smile().process_signal(y, self.sample_rate)
        return out.to_numpy(dtype=np.float32).reshape(-1)
