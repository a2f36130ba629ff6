"""The recent audio of one stream, on its sample clock.

Theory of operation
-------------------
A session keeps the audio of its open utterance (plus a look-back for the next onset)
and cuts requests out of it. Appending by ``np.concatenate`` copies everything held on
every frame, so a client sending tiny frames made each one cost as much as the whole
utterance. ``UtteranceBuffer`` keeps the samples in one preallocated array instead:

- State: the array, the index of the first sample held (``_head``), how many are held,
  and ``start``, the stream-clock position of the first one; ``end`` follows.
- ``append`` writes behind the last sample. When the array's tail is full, the samples
  held move to its front (compaction), and the array doubles only if they fill more
  than half of it. Compaction happens at most once per half an array of appended
  audio, so each sample is copied O(1) times, whatever the frame size.
- ``trim(before)`` forgets samples before a stream-clock position (moves ``_head``);
  ``span(lo, hi)`` copies out ``[lo, hi)``, which must still be held.

Memory stays bounded by what the session holds (the longest utterance plus its
look-back), twice over at most. A plain ring would save the compaction copy but hand
out spans that wrap, and every consumer wants contiguous audio.
"""

from __future__ import annotations

import numpy as np

DEFAULT_CAPACITY = 16000 * 8
"""Eight seconds at 16 kHz: most utterances fit without ever growing the array."""


class UtteranceBuffer:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._data = np.zeros(max(1, capacity), np.float32)
        self._head = 0
        self._size = 0
        self.start = 0
        """Stream-clock sample number of the first sample held."""

    @property
    def end(self) -> int:
        """Stream-clock sample number just past the last sample held."""
        return self.start + self._size

    def __len__(self) -> int:
        return self._size

    @property
    def capacity(self) -> int:
        return len(self._data)

    def append(self, samples: np.ndarray) -> None:
        n = len(samples)
        if self._head + self._size + n > len(self._data):
            self._make_room(n)
        tail = self._head + self._size
        self._data[tail : tail + n] = samples
        self._size += n

    def span(self, lo: int, hi: int) -> np.ndarray:
        """A copy of stream-clock samples ``[lo, hi)``; they must still be held."""
        if not self.start <= lo <= hi <= self.end:
            raise ValueError(f"[{lo}, {hi}) is not inside the held [{self.start}, {self.end})")
        offset = self._head - self.start
        return self._data[lo + offset : hi + offset].copy()

    def trim(self, before: int) -> None:
        """Forget the samples before stream-clock position ``before``."""
        drop = min(max(0, before - self.start), self._size)
        self._head += drop
        self._size -= drop
        self.start += drop
        if self._size == 0:
            self._head = 0

    def _make_room(self, n: int) -> None:
        held = self._data[self._head : self._head + self._size]
        if self._size + n > len(self._data) // 2:
            grown = np.zeros(max(2 * len(self._data), 2 * (self._size + n)), np.float32)
            grown[: self._size] = held
            self._data = grown
        else:
            self._data[: self._size] = held.copy()  # the regions may overlap
        self._head = 0
