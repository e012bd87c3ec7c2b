"""Which steps get per-layer statistics.

An analysis samples the first `first` optimizer steps, then every `every`-th (every second step
when an epoch is short: the per-layer statistics after the first steps cost 14% of the healthy
real programs' analyses, and half the steps of a short epoch still give each epoch several
samples). A live run (`deeplocalize run`, the user's real training) must stay within its
overhead target whatever the model: it measures, from the run itself, what a sampled step costs
beyond a plain one, and spaces the samples so that their cost is about OVERHEAD of the training
time, as soon as it has measured both kinds of step (a deep model's sampled step can cost twice a
plain one: waiting for the first epoch's end would spend its whole first epoch at that price),
again every RETUNE_CALLS calls and at each epoch's end; after an epoch whose loss is not finite or
jumped (a symptom suspected), it samples densely for the next epoch. The interval lives in a TensorFlow variable
that the traced step reads, so changing it never retraces the step.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import tensorflow as tf

OVERHEAD = 0.03  # the share of the training time the sampled statistics may take in a live run
MIN_EVERY, MAX_EVERY = 2, 1000
DENSE_EVERY = 2  # after a suspicious epoch
SKIP_CALLS = 3  # the first calls of a fit include tracing: not timed
WINDOW = 64
MIN_TIMED = 3  # timings of each kind (sampled, plain) before they space the samples
RETUNE_CALLS = 32


class Sampling:
    def __init__(self, live: bool) -> None:
        self.live = live
        # The first steps are all sampled (how training starts); a live run samples fewer of them, since
        # what it measures next spaces its samples, and each costs the user's training time.
        self.first = 4 if live else 20
        self.every = 4
        self._var: Any = None
        self._times: dict[bool, list[float]] = {True: [], False: []}
        self._calls = 0
        self._best_loss = math.inf
        self._base = 4  # the interval the cost allows, before any densening
        self._dense = False  # densened after a suspicious epoch, until the next epoch's end
        self._tuned = False  # the interval was set from this fit's own timings

    def begin_fit(self, steps_per_epoch: int | None) -> None:
        """A fit starts: short epochs are sampled at every second step (a live run must also see
        plain steps to know what sampling costs)."""
        self._calls = 0
        self._times = {True: [], False: []}
        self._tuned = False
        short = (steps_per_epoch or 0) < 32
        self._base = 2 if short else 4
        self._set(self._base)
        self.interval()  # its variable made now, not while the step is traced (a variable made there costs a second trace)

    def interval(self) -> Any:
        """What the traced step reads: a number, or in a live run the variable that holds it."""
        if not self.live:
            return self.every
        if self._var is None:
            with tf.init_scope():
                self._var = tf.Variable(self.every, dtype=tf.int64, trainable=False, name="deeplocalize_sample_every")
        return self._var

    def note(self, sampled: bool, seconds: float) -> None:
        """One call of the train function, timed (live runs); the samples are spaced as soon as
        both kinds of step were timed, then every RETUNE_CALLS calls."""
        self._calls += 1
        if not self.live or self._calls <= SKIP_CALLS:
            return
        times = self._times[sampled]
        times.append(seconds)
        del times[:-WINDOW]
        if (not self._tuned or self._calls % RETUNE_CALLS == 0) and self._tune():
            self._tuned = True
            self._apply()

    def epoch_end(self, loss: float | None) -> None:
        """Space the samples by their measured cost; densely after a suspicious epoch (live runs)."""
        if not self.live:
            return
        self._tune()
        self._dense = loss is not None and (not math.isfinite(loss) or (math.isfinite(self._best_loss) and loss > 1.5 * self._best_loss))
        if loss is not None and math.isfinite(loss):
            self._best_loss = min(self._best_loss, loss)
        self._apply()

    def _tune(self) -> bool:
        """The interval at which sampled steps cost about OVERHEAD of the training time, from
        the timings so far; False (nothing changed) until there are enough of them."""
        sampled, plain = self._times[True], self._times[False]
        if len(sampled) < MIN_TIMED or len(plain) < MIN_TIMED:
            return False
        extra = statistics.median(sampled) - statistics.median(plain)
        base = statistics.median(plain)
        want = math.ceil(extra / (OVERHEAD * base)) if extra > 0 and base > 0 else MIN_EVERY
        self._base = min(MAX_EVERY, max(MIN_EVERY, want))
        return True

    def _apply(self) -> None:
        self._set(min(DENSE_EVERY, self._base) if self._dense else self._base)

    def _set(self, every: int) -> None:
        if every == self.every:
            return
        self.every = every
        if self._var is not None:
            self._var.assign(every)
