"""Keras 3 bugs that stop `fit` under MultiWorkerMirroredStrategy with more than one
worker (keras-team/keras#20585, tensorflow/tensorflow#72388), fixed in the training
process only so that the analysis can see the training at all.

Both fixes change only what would otherwise raise, and each sends a `keras_workaround`
event when it was needed: the user's own run still hits the bug, and the report says so.
- `_maybe_symbolic_build` reduces the whole (x, y) batch structure in one
  `strategy.reduce`, which the collective strategy cannot do ("Attempt to convert a value
  (PerReplica...)"): the fix reduces each tensor on its own (the batch only gives shapes).
- `reduce_per_replica` reduces every log with `axis=0` under the collective strategy,
  invalid for scalars such as the loss ("Invalid reduction dimension 0 for input with 0
  dimensions"): the fix reduces scalars over replicas only.
"""

from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf
from keras.src import tree
from keras.src.backend.tensorflow import trainer as tf_trainer

ISSUE = "keras-team/keras#20585"


def install(send: Callable[..., None]) -> Callable[[], None]:
    """Patch both; returns the function that undoes it."""
    told: set[str] = set()

    def tell(which: str, error: str) -> None:
        if which not in told:
            told.add(which)
            send("keras_workaround", which=which, error=error, issue=ISSUE)

    original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    original_reduce = tf_trainer.reduce_per_replica

    def _maybe_symbolic_build(model: Any, iterator: Any = None, data_batch: Any = None) -> Any:
        try:
            return original_build(model, iterator=iterator, data_batch=data_batch)
        except ValueError as exc:
            strategy = model._distribute_strategy
            if iterator is None or strategy is None or not tf_trainer._collective_all_reduce_multi_worker(strategy) or "PerReplica" not in str(exc):
                raise
            tell("fit: building the model from a distributed batch",
                 "ValueError: Attempt to convert a value (PerReplica) with an unsupported type to a Tensor")
        for _, _, it in iterator:
            batch = next(it)
            if all(isinstance(x, tf.distribute.DistributedValues) for x in tree.flatten(batch)):
                batch = tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), batch)
            break
        else:
            batch = data_batch
        with strategy.scope():
            model._symbolic_build(data_batch=batch)

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction not in ("auto", "mean") or not tf_trainer._collective_all_reduce_multi_worker(strategy):
            return original_reduce(values, strategy, reduction)

        def one(v: Any) -> Any:
            local = v.values[0] if isinstance(v, tf.distribute.DistributedValues) else v
            if tf.is_tensor(local) and local.shape.rank == 0:
                tell("fit: averaging the logs over workers", "ValueError: Invalid reduction dimension 0 for input with 0 dimensions")
                return strategy.reduce("MEAN", v, axis=None)
            return original_reduce(v, strategy, reduction)

        return tree.map_structure(one, values)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica

    def uninstall() -> None:
        tf_trainer.TensorFlowTrainer._maybe_symbolic_build = original_build
        tf_trainer.reduce_per_replica = original_reduce

    return uninstall
