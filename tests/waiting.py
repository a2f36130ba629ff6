"""Wait for a condition, not for a guessed time: poll a predicate until it holds.

``poll_until`` (threads, blocking) and ``async_poll_until`` (event loop) call
``predicate`` until it returns something truthy and return that value, so a test can
wait and read in one step (``status = await async_poll_until(get_status)``). Past the
deadline they fail the test with what was awaited. The predicate runs once more after
the deadline passes, so a slow last poll still counts.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    *,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """Call ``predicate`` every ``interval`` s until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        last = time.monotonic() >= deadline
        value = predicate()
        if value:
            return value
        if last:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {value!r}")
        time.sleep(interval)


async def async_poll_until(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    *,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """``poll_until`` for the event loop; ``predicate`` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        last = time.monotonic() >= deadline
        result = predicate()
        value: T = await result if inspect.isawaitable(result) else result  # type: ignore[assignment]
        if value:
            return value
        if last:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {value!r}")
        await asyncio.sleep(interval)
