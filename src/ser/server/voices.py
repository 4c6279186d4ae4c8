"""The personal voices a server has been taught (``POST /v1/voices``), in memory only.

Each voice is a :class:`ser.inference.Recognizer` made by :func:`ser.adapt.adapt` from the
served model and a few labelled clips of one person, kept under a random id that cannot be
guessed (``secrets.token_urlsafe``: 128 bits). Nothing is written to disk: a voice is
forgotten when it has not been used for ``ttl`` seconds, when ``capacity`` newer voices push
it out (the least recently used goes first), when its owner deletes it, or when the server
stops. Each voice costs its statistics and a small linear graph (a linear model) or an output
map (any other model, whose graph and onnxruntime session the voice shares with the server's
model): ~0.1 MB, the encoder and the VAD being shared too, so memory is bounded by
``capacity``.

>>> store = Voices(capacity=2, ttl=3600)
>>> vid = store.add("a recognizer")
>>> store.get(vid)
'a recognizer'
>>> store.forget(vid), store.get(vid)
(True, None)
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class Voices:
    """At most ``capacity`` voices, each kept while used at least every ``ttl`` seconds."""

    def __init__(self, capacity: int, ttl: float, clock: Callable[[], float] = time.monotonic):
        self.capacity, self.ttl, self._clock = capacity, ttl, clock
        self._voices: OrderedDict[str, tuple[Any, float]] = OrderedDict()  # id -> (voice, last use)
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._voices:
            vid, (_, used) = next(iter(self._voices.items()))  # least recently used first
            if now - used < self.ttl:
                break
            del self._voices[vid]

    def add(self, voice: Any) -> str:
        """Keep ``voice``; its new id. The least recently used voice makes room when full."""
        vid = secrets.token_urlsafe(16)
        with self._lock:
            now = self._clock()
            self._expire(now)
            while len(self._voices) >= self.capacity:
                self._voices.popitem(last=False)
            self._voices[vid] = (voice, now)
        return vid

    def get(self, vid: str) -> Any | None:
        """The voice under ``vid`` (now its last use), or None: unknown, expired or forgotten."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            found = self._voices.pop(vid, None)
            if found is None:
                return None
            self._voices[vid] = (found[0], now)
            return found[0]

    def forget(self, vid: str) -> bool:
        """Drop the voice under ``vid``; False when there was none."""
        with self._lock:
            return self._voices.pop(vid, None) is not None

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._voices)
