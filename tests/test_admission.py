from dataclasses import dataclass

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
