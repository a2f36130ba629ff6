"""InputPacer on plain numbers: throttling, order, and every way a client floods it."""

from __future__ import annotations

import pytest

from earshot.pacing import InputPacer, InputTooFast, TooManyMessages


def test_a_burst_passes_then_audio_is_throttled_in_order() -> None:
    pacer: InputPacer[str] = InputPacer(4.0, speed=2.0)  # takes 2 s at once, then 2 s/s
    released = []
    for item, seconds in [("a0", 1.0), ("a1", 1.0), ("a2", 0.5), ("finalize", 0.0)]:
        pacer.arrive(item, seconds, now=0.0)
        released += pacer.release(0.0)
    assert released == ["a0", "a1"]  # the burst; a2 waits, and finalize behind it
    assert pacer.held_s == pytest.approx(0.5)
    assert pacer.wait(0.0) == pytest.approx(0.25)
    assert pacer.release(0.2) == []
    assert pacer.release(0.25) == ["a2", "finalize"]  # control never overtakes audio
    assert pacer.held_s == pytest.approx(0.0) and pacer.wait(0.25) is None


@pytest.mark.parametrize(
    ("case", "arrivals", "error", "match"),
    [
        # (seconds of audio, arrival time) per message
        ("too much audio held", [(0.5, 0.0)] * 9, InputTooFast, "faster than 3x real time"),
        ("2-byte frames", [(1 / 16000, i / 20000) for i in range(2000)], TooManyMessages, "400"),
        ("control pile", [(1.0, 0.0), (1.0, 0.0), (0.5, 0.0)] + [(0.0, 0.0)] * 600, InputTooFast,
         "512 messages waiting"),
    ],
)  # fmt: skip
def test_each_flood_is_refused(
    case: str, arrivals: list[tuple[float, float]], error: type[Exception], match: str
) -> None:
    pacer: InputPacer[int] = InputPacer(4.0)
    with pytest.raises(error, match=match):
        for i, (seconds, now) in enumerate(arrivals):
            pacer.arrive(i, seconds, now)
            pacer.release(now)


def test_a_real_time_stream_of_10_ms_frames_with_keepalives_is_never_refused() -> None:
    pacer: InputPacer[int] = InputPacer(4.0)
    now = 0.0
    for i in range(60 * 100):  # a minute of 10 ms frames, a keepalive after each
        now = i / 100
        pacer.arrive(i, 0.01, now)
        pacer.arrive(-1, 0.0, now)
        pacer.release(now)
    assert pacer.held_s < 0.1


def test_catching_up_at_3x_in_10_ms_frames_is_allowed() -> None:
    pacer: InputPacer[int] = InputPacer(4.0)
    for i in range(300 * 10):  # 10 s of sending 300 frames a second
        now = i / 300
        pacer.arrive(i, 0.01, now)
        pacer.release(now)


def test_a_disabled_pacer_lets_everything_through_but_still_counts_messages() -> None:
    pacer: InputPacer[int] = InputPacer(0.0)
    for i in range(800):
        pacer.arrive(i, 10.0, 0.0)
        assert pacer.release(0.0) == [i]
    with pytest.raises(TooManyMessages):
        pacer.arrive(800, 0.0, 0.0)
