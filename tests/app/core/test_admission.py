"""Admission by expected wait: the pace learned from busy time and answers (a fake clock), the
predicted wait, the ceiling, and Retry-After from the predicted drain time."""

from __future__ import annotations

import pytest

from app.core.admission import Admission, AdmissionLimits, ItemPace
from app.core.lifecycle import Lifecycle
from app.errors import Overloaded, ShuttingDown

LIMITS = AdmissionLimits(
    max_in_flight=100, max_queue_wait_s=0.5, request_timeout_s=10.0, retry_after_s=1
)


def measured(item_s: float | None) -> ItemPace:
    """A pace answers have measured (one sample of ``item_s``), or none."""
    pace = ItemPace()
    if item_s is not None:
        pace.observe(1, item_s)
    return pace


def admission(item_s: float | None, limits: AdmissionLimits = LIMITS) -> Admission:
    return Admission(limits, measured(item_s), Lifecycle())


def fill(gate: Admission, items: int) -> None:
    for _ in range(items):
        assert gate.refusal() is None
        gate.admit(1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pace_starts_at_the_first_sample_then_follows_a_weighted_mean() -> None:
    pace = ItemPace(seed_item_s=0.5)  # the warm-up's pessimistic seed
    assert (pace.item_s, pace.confirmed) == (0.5, False)
    pace.observe(4, 0.08)  # the first sample replaces the seed
    assert pace.item_s == pytest.approx(0.02)
    assert pace.confirmed
    pace.observe(2, 0.08)
    assert pace.item_s == pytest.approx(0.02 + ItemPace.WEIGHT * (0.04 - 0.02))
    pace.observe(0, 1.0)  # nothing ran: ignored
    assert pace.samples == 2


def test_the_pace_is_busy_time_over_answers_idle_time_left_out() -> None:
    clock = FakeClock()
    gate = Admission(LIMITS, measured(1.0), Lifecycle(), clock=clock)
    n = Admission.SAMPLE_ITEMS
    # A first busy period: its first answer after 0.5 s opens the window, then half the
    # sample's answers over 0.2 s, then idle for 10 s.
    gate.admit(n // 2 + 1)
    clock.now += 0.5
    gate.release(1)
    for _ in range(n // 2):
        clock.now += 0.2 / (n // 2)
        gate.release(1)
    assert gate.pace.item_s == 1.0  # too few answers for a sample: still the first one
    clock.now += 10.0
    # A second busy period: its first answer opens the window, the other half 0.1 s later.
    gate.admit(n // 2 + 1)
    clock.now += 0.3
    gate.release(1)
    clock.now += 0.1
    gate.release(n // 2)
    # 0.3 s busy for n answers, blended into the first sample's 1.0.
    assert gate.pace.item_s == pytest.approx(1.0 + ItemPace.WEIGHT * (0.3 / n - 1.0))


def test_a_burst_admitted_at_once_does_not_look_slow() -> None:
    # 64 requests arrive together; the first answers come once the first batch has run
    # (80 ms: the whole burst decoded meanwhile), then one every 2 ms.
    clock = FakeClock()
    gate = Admission(LIMITS, ItemPace(), Lifecycle(), clock=clock)
    gate.admit(64)
    clock.now += 0.08
    gate.release(8)  # the first batch: opens the window
    for _ in range(Admission.FIRST_SAMPLE_ITEMS):
        clock.now += 0.002
        gate.release(1)
    assert gate.pace.item_s == pytest.approx(0.002)  # not (0.08 + 0.016) / 16


def test_with_items_always_in_flight_the_pace_is_the_drain_rate() -> None:
    clock = FakeClock()
    gate = Admission(LIMITS, ItemPace(), Lifecycle(), clock=clock)
    gate.admit(64)
    for _ in range(Admission.FIRST_SAMPLE_ITEMS + 1):  # one answer every 2 ms, 64 in flight
        clock.now += 0.002
        gate.release(1)
        gate.admit(1)
    assert gate.pace.item_s == pytest.approx(0.002)
    assert gate.predicted_wait_s() == pytest.approx(64 * 0.002)


def test_a_fast_model_admits_up_to_the_ceiling() -> None:
    gate = admission(item_s=0.0005)  # 2,000 items/s: 100 items are 50 ms of work
    fill(gate, 100)
    refusal = gate.refusal()
    assert isinstance(refusal, Overloaded)
    assert "the limit is 100" in refusal.message


def test_a_slow_model_admits_what_drains_within_the_target() -> None:
    gate = admission(item_s=0.03)  # 0.5 s of work is 16 items ahead, the 17th admitted
    fill(gate, 17)
    assert gate.predicted_wait_s() == pytest.approx(17 * 0.03)
    refusal = gate.refusal()
    assert isinstance(refusal, Overloaded)
    assert "about 0.51 s" in refusal.message
    assert gate.rejected == 1
    gate.release(1)
    assert gate.refusal() is None


def test_a_request_of_several_items_counts_its_own_items_ahead_of_its_last() -> None:
    gate = admission(item_s=0.1)
    assert gate.refusal(6) is None  # its last item waits for 5: 0.5 s
    assert isinstance(gate.refusal(7), Overloaded)
    assert gate.rejected == 7


def test_the_request_deadline_bounds_the_wait_when_it_is_shorter() -> None:
    short = AdmissionLimits(
        max_in_flight=100, max_queue_wait_s=5.0, request_timeout_s=0.2, retry_after_s=1
    )
    gate = admission(item_s=0.1, limits=short)
    fill(gate, 3)  # 0.2 s ahead of the third
    assert isinstance(gate.refusal(), Overloaded)


def test_retry_after_is_the_predicted_drain_time_at_least_the_setting() -> None:
    gate = admission(item_s=0.3)
    fill(gate, 2)
    gate.admit(8)  # 10 items in flight: 3 s to drain
    refusal = gate.refusal()
    assert isinstance(refusal, Overloaded)
    assert refusal.headers == {"Retry-After": "3"}
    gate.release(9)  # 1 item: 0.3 s, below the configured least
    assert gate.retry_after_s() == 1


def test_before_any_pace_only_the_ceiling_applies() -> None:
    gate = admission(item_s=None)
    fill(gate, 100)
    assert gate.predicted_wait_s() == 0.0
    assert isinstance(gate.refusal(), Overloaded)


def test_stopping_refuses_everything() -> None:
    gate = admission(item_s=0.001)
    gate.lifecycle.stop_accepting()
    assert isinstance(gate.refusal(), ShuttingDown)
    assert gate.rejected == 0  # a shutdown refusal is not overload


def test_a_seed_refuses_nothing_below_the_ceiling_until_answers_confirm_a_pace() -> None:
    # A runner that starts under traffic: its warm-up, on busy cores, says 50 ms an item;
    # under batching an item really costs 5 ms.
    clock = FakeClock()
    gate = Admission(LIMITS, ItemPace(seed_item_s=0.05), Lifecycle(), clock=clock)
    fill(gate, 40)  # 2 s of work at the seed's pace: a measured pace would refuse at 11
    assert gate.predicted_wait_s() == pytest.approx(40 * 0.05)
    assert gate.retry_after_s() == 2  # the seed still sizes Retry-After
    for _ in range(Admission.FIRST_SAMPLE_ITEMS):  # the first answer and 7 more
        clock.now += 0.005
        gate.release(1)
        gate.admit(1)
    assert not gate.pace.confirmed
    assert gate.refusal() is None
    clock.now += 0.005
    gate.release(1)  # the first sample: 40 ms over the 8 answers after the first
    assert gate.pace.confirmed
    assert gate.pace.item_s == pytest.approx(0.005)
    assert gate.predicted_wait_s() == pytest.approx(39 * 0.005)  # 39 in flight ahead
    fill(gate, 61)  # 100 in flight: 0.5 s at 5 ms, the ceiling reached first
    refusal = gate.refusal()
    assert isinstance(refusal, Overloaded)
    assert "the limit is 100" in refusal.message


def test_a_slow_model_is_refused_once_its_first_sample_confirms_the_seed() -> None:
    clock = FakeClock()
    gate = Admission(LIMITS, ItemPace(seed_item_s=0.03), Lifecycle(), clock=clock)
    fill(gate, 30)
    for _ in range(Admission.FIRST_SAMPLE_ITEMS + 1):  # 30 ms an item, as the seed said
        clock.now += 0.03
        gate.release(1)
    assert gate.pace.item_s == pytest.approx(0.03)
    assert gate.in_flight == 21  # 0.63 s of work ahead: over the 0.5 s target
    assert isinstance(gate.refusal(), Overloaded)
    gate.release(5)
    assert gate.refusal() is None  # 16 ahead: 0.48 s


def test_a_replacing_runner_inherits_the_measured_pace_scaled() -> None:
    old = measured(0.004)
    new = ItemPace.inherited(old, scale=2.0)  # a batch costs the new version twice as much
    assert new.item_s == pytest.approx(0.008)
    assert new.confirmed  # it refuses on it from its first request
    gate = Admission(LIMITS, new, Lifecycle())
    fill(gate, 63)  # the 63rd waits for 62 items: 0.496 s
    assert isinstance(gate.refusal(), Overloaded)  # the 64th would wait 0.504 s
    new.observe(1, 0.002)  # its own samples blend in rather than replace
    assert new.item_s == pytest.approx(0.008 + ItemPace.WEIGHT * (0.002 - 0.008))
    assert old.item_s == pytest.approx(0.004)  # the old runner's pace is its own


def test_a_runner_replacing_one_with_only_a_seed_has_only_a_seed() -> None:
    new = ItemPace.inherited(ItemPace(seed_item_s=0.02), scale=2.0)
    assert (new.item_s, new.confirmed) == (pytest.approx(0.04), False)
    assert ItemPace.inherited(ItemPace(), scale=2.0).item_s is None
