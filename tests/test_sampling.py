"""How often a live run samples per-layer statistics (probe/sampling.py): as often as the cost it
measures on the run itself allows, densely after a suspicious epoch; an analysis keeps its fixed
rule. Pure Python timings, no training."""

from __future__ import annotations

import math

from deeplocalize.probe.sampling import DENSE_EVERY, MAX_EVERY, MIN_EVERY, OVERHEAD, SKIP_CALLS, Sampling


def _timed(s: Sampling, plain: float, sampled: float, calls: int = 40) -> None:
    for i in range(SKIP_CALLS + calls):
        s.note(i % 2 == 0, sampled if i % 2 == 0 else plain)


def test_an_analysis_samples_every_fourth_step_or_every_second_step_of_short_epochs():
    s = Sampling(live=False)
    s.begin_fit(steps_per_epoch=100)
    assert (s.first, s.every, s.interval()) == (20, 4, 4)
    _timed(s, plain=0.01, sampled=1.0)
    s.epoch_end(loss=1.0)
    assert s.every == 4  # never retuned
    s.begin_fit(steps_per_epoch=10)
    assert s.every == 2


def test_a_live_run_spaces_its_samples_by_what_they_cost():
    s = Sampling(live=True)
    s.begin_fit(steps_per_epoch=100)
    _timed(s, plain=0.010, sampled=0.016)  # a sample costs 0.6 of a step
    s.epoch_end(loss=1.0)
    assert s.every == math.ceil(0.006 / (OVERHEAD * 0.010))  # 20: 0.6/20 = 3% of the time
    cheap = Sampling(live=True)
    cheap.begin_fit(steps_per_epoch=100)
    _timed(cheap, plain=0.010, sampled=0.0101)
    cheap.epoch_end(loss=1.0)
    assert cheap.every == MIN_EVERY
    costly = Sampling(live=True)
    costly.begin_fit(steps_per_epoch=100)
    _timed(costly, plain=0.001, sampled=5.0)
    costly.epoch_end(loss=1.0)
    assert costly.every == MAX_EVERY


def test_a_live_run_samples_densely_after_an_epoch_whose_loss_jumped_or_is_not_finite():
    s = Sampling(live=True)
    s.begin_fit(steps_per_epoch=100)
    _timed(s, plain=0.010, sampled=0.016)
    s.epoch_end(loss=1.0)
    spaced = s.every
    s.epoch_end(loss=0.8)
    assert s.every == spaced
    s.epoch_end(loss=5.0)  # jumped above 1.5x the best
    assert s.every == DENSE_EVERY
    s.epoch_end(loss=0.7)
    assert s.every == spaced
    s.epoch_end(loss=float("nan"))
    assert s.every == DENSE_EVERY


def test_a_live_run_with_short_epochs_still_sees_plain_steps_to_time():
    s = Sampling(live=True)
    s.begin_fit(steps_per_epoch=10)
    assert s.every == 2


def test_a_live_run_spaces_its_samples_within_its_first_epoch():
    """A deep model's sampled step may cost twice a plain one: the interval follows the cost as
    soon as both kinds of step were timed, not at the first epoch's end (which may be the run's last)."""
    s = Sampling(live=True)
    s.begin_fit(steps_per_epoch=8)
    assert s.every == 2
    _timed(s, plain=0.3, sampled=0.7, calls=6)  # three of each
    assert s.every == math.ceil(0.4 / (OVERHEAD * 0.3))
    s.epoch_end(loss=1.0)
    assert s.every == math.ceil(0.4 / (OVERHEAD * 0.3))
