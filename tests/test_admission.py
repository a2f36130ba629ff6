from dataclasses import dataclass

import pytest

from earshot.admission import AdmissionController
from earshot.config import AdmissionConfig


@dataclass
class Load:
    wait: float = 0.0
    busy: float = 0.0
    busy_all: float = 0.0

    def oldest_final_wait(self) -> float:
        return self.wait

    def busy_ratio(self, window_s: float = 10.0, *, finals_only: bool = False) -> float:
        return self.busy if finals_only else self.busy_all


def test_accepts_while_there_is_room() -> None:
    assert AdmissionController(AdmissionConfig(max_sessions=2), Load(), active=1).refusal() is None


def test_session_cap() -> None:
    refusal = AdmissionController(AdmissionConfig(max_sessions=2), Load(), active=2).refusal()
    assert refusal and "limit of 2" in refusal


def test_queued_finals_mean_overload() -> None:
    refusal = AdmissionController(AdmissionConfig(), Load(wait=1.5), active=3).refusal()
    assert refusal and "overloaded" in refusal


def test_partials_filling_idle_time_do_not_count_as_load() -> None:
    controller = AdmissionController(AdmissionConfig(), Load(busy=0.3, busy_all=1.0), active=3)
    assert controller.refusal() is None


def test_finals_using_most_of_the_engine_mean_overload() -> None:
    controller = AdmissionController(AdmissionConfig(), Load(busy=0.8, busy_all=1.0), active=3)
    assert controller.refusal() is not None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_cost_of_a_session_is_learned_only_from_a_steady_window() -> None:
    load, clock = Load(busy=0.2), Clock()
    controller = AdmissionController(AdmissionConfig(), load, clock=clock)
    for _ in range(4):
        controller.opened()
    clock.now += 5  # sessions came 5 s ago: the window still holds the time before
    assert controller.refusal() is None and controller.per_session is None
    clock.now += 6
    assert controller.refusal() is None
    assert controller.per_session == pytest.approx(0.05)
    controller.closed()  # a burst ends: the busy window still shows it, nothing is learned
    load.busy = 0.6
    clock.now += 1
    assert controller.refusal() is None and controller.per_session == pytest.approx(0.05)


def test_a_burst_of_new_sessions_is_refused_by_what_each_one_costs() -> None:
    load, clock = Load(busy=0.25), Clock()
    controller = AdmissionController(AdmissionConfig(max_busy_ratio=0.75), load, clock=clock)
    for _ in range(5):
        controller.opened()
    clock.now += 11
    for _ in range(5):
        controller.closed()  # learned 0.05 per session; then everyone left
    load.busy = 0.0
    admitted = 0
    while controller.refusal() is None:  # a crowd connecting at once, before any speech
        controller.opened()
        admitted += 1
    assert admitted == 15  # 15 x 0.05 fills the 0.75 limit; a 16th would pass it
    refusal = controller.refusal()
    assert refusal and "overloaded" in refusal
