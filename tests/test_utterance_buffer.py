"""UtteranceBuffer against a plain list of samples, and its cost per tiny frame."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earshot.utterance_buffer import UtteranceBuffer

# An operation: ("append", n) appends n fresh samples; ("trim", k) forgets up to k of the
# oldest; ("span", a, b) reads a sub-span of what is held (as fractions of it).
operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 5000)),
        st.tuples(st.just("trim"), st.integers(0, 6000)),
        st.tuples(st.just("span"), st.floats(0, 1), st.floats(0, 1)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations, st.integers(1, 4096))
def test_the_buffer_holds_exactly_what_a_plain_list_would(ops: list, capacity: int) -> None:
    buffer = UtteranceBuffer(capacity)
    reference: list[float] = []
    start = 0
    clock = 0
    for op in ops:
        if op[0] == "append":
            samples = np.arange(clock, clock + op[1], dtype=np.float32)
            clock += op[1]
            buffer.append(samples)
            reference.extend(samples.tolist())
        elif op[0] == "trim":
            drop = min(op[1], len(reference))
            buffer.trim(start + op[1])
            del reference[:drop]
            start += drop
        else:
            lo, hi = sorted(start + round(f * len(reference)) for f in op[1:])
            assert buffer.span(lo, hi).tolist() == reference[lo - start : hi - start]
        assert (buffer.start, buffer.end, len(buffer)) == (start, clock, len(reference))


def test_a_span_outside_what_is_held_is_an_error() -> None:
    buffer = UtteranceBuffer(16)
    buffer.append(np.ones(10, np.float32))
    buffer.trim(4)
    with pytest.raises(ValueError, match="not inside"):
        buffer.span(2, 8)
    with pytest.raises(ValueError, match="not inside"):
        buffer.span(5, 11)


def test_tiny_frames_copy_each_sample_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One sample per frame for 60 s of audio while a 10 s utterance-and-look-back is
    kept: the buffer's moves copy O(1) samples per sample appended (concatenating, as
    the session did, copied the whole utterance on every frame: ~10^10 samples here)."""
    buffer = UtteranceBuffer(16000)
    copied = 0
    make_room = UtteranceBuffer._make_room

    def counting(self: UtteranceBuffer, n: int) -> None:
        nonlocal copied
        copied += len(self)
        make_room(self, n)

    monkeypatch.setattr(UtteranceBuffer, "_make_room", counting)
    sample = np.zeros(1, np.float32)
    total = 60 * 16000
    for i in range(total):
        buffer.append(sample)
        buffer.trim(i - 10 * 16000)
    assert len(buffer) == 10 * 16000 + 1
    assert copied <= 2 * total
    assert buffer.capacity <= 4 * len(buffer)
