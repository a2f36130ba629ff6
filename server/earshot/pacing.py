"""Input pacing: a stream may not push audio much faster than real time.

Every second of audio becomes VAD work and, when it is speech, engine work that other
sessions wait behind; admission control budgets sessions by what they really cost. So a
stream's frames go into the session through a token bucket: a burst of ``max_lead_s / 2``
seconds of audio at once (a client catching up after a network hiccup, a short clip sent
fast), then at most ``speed`` × real time.

Theory of operation
-------------------
State (one ``InputPacer`` per connection): the token bucket (created at the first audio,
so a stream's clock starts when its audio does; it refills at ``speed`` seconds of audio
per second up to ``max_held_s``), the queue of client messages waiting their turn with
the seconds of audio in each (0 for control messages), and ``held_s``, the audio in that
queue.

Transitions: ``arrive`` appends a message and adds its audio to ``held_s``; once
``held_s`` passes ``max_held_s``, or more than ``max_held_messages`` wait, the client is
flooding and ``InputTooFast`` is raised (close 1008). Every message, audio or control,
also takes a token from a second bucket (``max_messages_per_s``, bursts of twice that):
an empty one raises ``TooManyMessages`` (close 1008). Each message costs the server
the same work whatever it holds, so a stream of 2-byte frames would otherwise buy
thousands of session calls a second with hardly any audio to count against it.
``release`` pops messages from the front, in arrival order, while the
bucket can pay for their audio (control messages pass free, but never overtake audio
queued before them); ``wait`` says how long until the front message can go, so the
receive loop sleeps exactly that long while still reading the socket. ``max_lead_s`` 0
turns the pacer off: everything passes at once.

Why a queue instead of refusing early frames: a real client that sends a little fast
(network jitter, a clip sent at 2×) just gets throttled, in order, while pings keep
being answered and memory per stream stays bounded by ``max_held_s`` of audio in at
most ``max_held_messages`` messages. Clocks are passed
in: this module reads none, so it is tested with plain numbers.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

from earshot.limits import TokenBucket

Item = TypeVar("Item")


MAX_MESSAGES_PER_S = 400.0
"""Client messages a stream may send per second, bursts of twice that. Real time in
10 ms frames is 100 a second, and a client catching up at 3x is 300."""
MAX_HELD_MESSAGES = 512
"""Messages a stream may have waiting for their turn: 51 s of 100 ms frames, far past
``max_held_s``, so only tiny frames or piled-up control messages reach it."""


class InputTooFast(Exception):
    """More audio, or more messages, waiting than the stream may hold (close 1008)."""


class TooManyMessages(InputTooFast):
    """Messages arrive faster than ``max_messages_per_s`` (close 1008)."""


class InputPacer(Generic[Item]):
    def __init__(
        self,
        max_lead_s: float,
        *,
        speed: float = 3.0,
        max_messages_per_s: float = MAX_MESSAGES_PER_S,
        max_held_messages: int = MAX_HELD_MESSAGES,
    ) -> None:
        self.enabled = max_lead_s > 0
        self.max_held_s = max(max_lead_s / 2, 1.0)
        self.speed = speed
        self.max_messages_per_s = max_messages_per_s
        self.max_held_messages = max_held_messages
        self._messages: TokenBucket | None = None
        self._bucket: TokenBucket | None = None
        self._waiting: deque[tuple[Item, float]] = deque()
        self.held_s = 0.0
        """Seconds of audio that arrived but wait for their turn."""

    def arrive(self, item: Item, seconds: float, now: float) -> None:
        """A client message (``seconds`` of audio in it, 0 for control messages)."""
        if self._messages is None:
            rate = self.max_messages_per_s
            self._messages = TokenBucket(2 * rate, rate, now)
        if self._messages.try_take(1, now) > 0:
            raise TooManyMessages(
                f"more than {self.max_messages_per_s:g} messages a second; send audio in"
                " frames of 10 ms or more"
            )
        if self._bucket is None and seconds > 0:
            self._bucket = TokenBucket(self.max_held_s, self.speed, now)
        self._waiting.append((item, seconds))
        self.held_s += seconds
        if self.enabled and self.held_s > self.max_held_s:
            raise InputTooFast(
                f"audio arrives faster than {self.speed:g}x real time; {self.held_s:.0f} s"
                " waiting (stream in real time, or send files to the jobs API)"
            )
        if self.enabled and len(self._waiting) > self.max_held_messages:
            raise InputTooFast(
                f"more than {self.max_held_messages} messages waiting behind held audio"
            )

    def release(self, now: float) -> list[Item]:
        """The waiting messages whose turn has come, in arrival order."""
        released = []
        while self._waiting:
            item, seconds = self._waiting[0]
            bucket = self._bucket
            if self.enabled and seconds and bucket and bucket.try_take(seconds, now) > 0:
                break
            self._waiting.popleft()
            self.held_s -= seconds
            released.append(item)
        return released

    def wait(self, now: float) -> float | None:
        """Seconds until the next waiting message may go; None when nothing waits."""
        if not self._waiting:
            return None
        seconds = self._waiting[0][1]
        if not self.enabled or not seconds or self._bucket is None:
            return 0.0
        return self._bucket.available_in(seconds, now)
