"""The bounded queue of messages waiting for one client (one per connection).

A client that reads slowly, or not at all, must not grow server memory without bound,
and must not lose a ``final`` (PROTOCOL.md: exactly one per utterance). So:

- a newer ``partial`` of an utterance replaces its queued older one in place (later
  partials replace earlier ones anyway), and a ``final`` cancels its utterance's queued
  partial;
- over ``capacity`` unsent messages, every queued partial is dropped;
- if that is not enough, the client is hopeless: ``push`` returns False and the
  adapter closes the connection (1008) instead of queueing more.
"""

from __future__ import annotations

from collections import deque
from typing import Any

Message = dict[str, Any]


class _Slot:
    __slots__ = ("message",)

    def __init__(self, message: Message) -> None:
        self.message: Message | None = message


class OutboundBuffer:
    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._slots: deque[_Slot] = deque()
        self._partials: dict[Any, _Slot] = {}
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def push(self, message: Message) -> bool:
        """Queue ``message``; False when the client is hopelessly behind."""
        kind, utterance = message.get("type"), message.get("utterance")
        if kind == "partial":
            queued = self._partials.get(utterance)
            if queued is not None:
                queued.message = message
                return True
        elif kind == "final":
            self._cancel(self._partials.pop(utterance, None))
        slot = _Slot(message)
        self._slots.append(slot)
        self._live += 1
        if kind == "partial":
            self._partials[utterance] = slot
        if self._live > self.capacity:
            for queued in self._partials.values():
                self._cancel(queued)
            self._partials.clear()
        return self._live <= self.capacity

    def pop(self) -> Message | None:
        """The next message to send, or None when nothing is waiting."""
        while self._slots:
            slot = self._slots.popleft()
            message = slot.message
            if message is None:
                continue
            self._live -= 1
            if message.get("type") == "partial":
                self._partials.pop(message.get("utterance"), None)
            return message
        return None

    def _cancel(self, slot: _Slot | None) -> None:
        if slot is not None and slot.message is not None:
            slot.message = None
            self._live -= 1
