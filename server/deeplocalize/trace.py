"""The trace: everything the probe observed, as typed values the detectors read.

Detectors depend only on this module, so they can be tested on synthetic traces
built in Python without TensorFlow.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .vocab import EVENT_KINDS, STAT_FIELDS, EventKind

FIELDS = STAT_FIELDS  # field names of each statistics vector (vocab.py)


@dataclass(frozen=True)
class Frame:
    """A source position in user code (1-based line, 0-based column)."""

    file: str
    line: int
    end_line: int | None = None
    col: int | None = None
    end_col: int | None = None
    function: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Frame":
        return cls(d["file"], int(d["line"]), d.get("end_line"), d.get("col"), d.get("end_col"), d.get("function", ""))


@dataclass(frozen=True)
class CodeLocation:
    """A function of the user's that the model runs (a custom loss, a layer's or the model's
    `call`, a custom layer's `__init__`/`build`): where it is defined, the risky operations its
    bytecode holds, its parameters, the numbers its closure captured (a loss factory's `alpha`),
    and the operations a finding is about (`ops`: the activation a `call()` applies)."""

    file: str
    line: int
    function: str = ""
    risky: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    free: dict[str, float] = field(default_factory=dict, hash=False)
    ops: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "CodeLocation | None":
        if not d or not d.get("file"):
            return None
        return cls(d["file"], int(d.get("line") or 0), d.get("function", ""), tuple(d.get("risky") or ()), tuple(d.get("params") or ()),
                   {str(k): float(v) for k, v in (d.get("free") or {}).items()})


@dataclass(frozen=True)
class CustomInit:
    """Where a custom layer sets its defaults (`__init__`) and creates its weights (`build`)."""

    init: CodeLocation | None
    build: CodeLocation | None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "CustomInit | None":
        if not d:
            return None
        found = cls(CodeLocation.from_dict(d.get("init")), CodeLocation.from_dict(d.get("build")))
        return found if found.init or found.build else None


@dataclass
class LayerInfo:
    index: int
    name: str
    cls: str
    activation: str | None = None
    units: int | None = None
    rate: float | None = None
    output_shape: list | None = None
    n_params: int = 0
    kernel_initializer: dict | None = None
    bias_initializer: dict | None = None
    kernel_regularizer: dict | None = None
    activity_regularizer: dict | None = None
    is_output: bool = False
    custom: bool = False
    call_code: CodeLocation | None = None
    init_code: CustomInit | None = None
    inputs: list[int] = field(default_factory=list)
    inner: int | None = None  # the layer a TimeDistributed wrapper applies
    site: list[Frame] = field(default_factory=list)

    @property
    def trainable(self) -> bool:
        return self.n_params > 0


@dataclass
class OptimizerInfo:
    cls: str
    learning_rate: float | None
    config: dict[str, Any] = field(default_factory=dict)
    site: list[Frame] = field(default_factory=list)


@dataclass
class CompileInfo:
    site: list[Frame]
    loss: dict[str, Any]  # kind (string, object, function, ...), name, config
    optimizer: OptimizerInfo | None
    loss_code: CodeLocation | None = None  # a custom loss: the function that computes it
    optimizer_given_as: str = ""
    metrics: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RateSchedule:
    """What may change the learning rate during a fit: a LearningRateScheduler's function
    (`callback`), a callback class of the user's (`callback_class`: `code` is its first hook),
    or a schedule object given as the optimizer's rate (`schedule`: `code` for a user's class)."""

    kind: str
    name: str
    code: CodeLocation | None = None
    config: dict[str, float] = field(default_factory=dict, hash=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RateSchedule":
        config = {str(k): float(v) for k, v in (d.get("config") or {}).items() if isinstance(v, (int, float))}
        return cls(str(d.get("kind", "")), str(d.get("name", "")), CodeLocation.from_dict(d.get("code")), config)


@dataclass
class FitInfo:
    site: list[Frame]
    x: dict[str, Any] | None
    y: dict[str, Any] | None
    batch_size: int | None
    batch_size_given: bool
    epochs_requested: int
    epochs: int
    steps_per_epoch: int | None
    validation: bool
    schedules: list[RateSchedule] = field(default_factory=list)


@dataclass
class CrashInfo:
    exc_type: str
    message: str
    frames: list[Frame]
    traceback: str = ""
    exc_module: str = ""


@dataclass
class StepRecord:
    """Statistics of one training step: key ('L3.out', 'loss', ...) -> named values."""

    epoch: int
    step: int
    g: int
    values: dict[str, dict[str, float]]

    def get(self, key: str, name: str) -> float | None:
        part = self.values.get(key)
        return None if part is None else part.get(name)


@dataclass
class EpochRecord:
    epoch: int
    logs: dict[str, float]
    seconds: float = 0.0
    lr: float | None = None  # the learning rate at the epoch's end


@dataclass
class Trace:
    script: str
    layers: list[LayerInfo] = field(default_factory=list)
    compile: CompileInfo | None = None
    fit: FitInfo | None = None
    optimizer: OptimizerInfo | None = None
    steps: list[StepRecord] = field(default_factory=list)
    epochs: list[EpochRecord] = field(default_factory=list)
    crash: CrashInfo | None = None
    fit_end: dict[str, Any] | None = None
    end_reason: str | None = None
    leftover: list[dict[str, Any]] = field(default_factory=list)  # processes the script left running, stopped at its end
    probe_errors: list[str] = field(default_factory=list)
    initial_kernels: dict[int, tuple[float, ...]] = field(default_factory=dict)  # std, fan_in[, mean]
    unsupported: str | None = None
    model_class: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    model_call_code: CodeLocation | None = None
    # Several fits in one script: which model this fit trains, whether it was
    # trained by an earlier fit (so its "initial" weights are trained ones), and
    # whether a later fit goes on training it (so this fit's length is not final).
    model_id: int | None = None
    continues: bool = False
    continued_later: bool = False
    fit_index: int = 0
    weight_ids: set[int] = field(default_factory=set)
    epoch_start_lr: dict[int, float] = field(default_factory=dict)  # epoch -> the learning rate it started with
    # Keras bugs the training process had to fix to train at all (probe/keras_compat.py):
    # the script as the user runs it still hits them.
    keras_workarounds: list[dict[str, str]] = field(default_factory=list)

    # ------------------------------------------------------------- queries
    def series(self, key: str, name: str) -> np.ndarray:
        """One statistic over steps (NaN where a step lacks it)."""
        return np.array([s.get(key, name) if s.get(key, name) is not None else np.nan for s in self.steps], dtype=float)

    def epoch_series(self, name: str) -> np.ndarray:
        return np.array([e.logs.get(name, np.nan) for e in self.epochs], dtype=float)

    @property
    def output_layer(self) -> LayerInfo | None:
        outs = [l for l in self.layers if l.is_output]
        return outs[-1] if outs else (self.layers[-1] if self.layers else None)

    @property
    def trainable_layers(self) -> list[LayerInfo]:
        """Layers that own weights the optimizer updated (a wrapper such as
        Bidirectional has parameters, but its inner layers own them)."""
        keys: set[str] = set()
        for step in self.steps[:25]:
            keys.update(step.values)
        if not keys:
            return [l for l in self.layers if l.trainable]
        return [l for l in self.layers if f"L{l.index}.w" in keys]

    def layer(self, index: int) -> LayerInfo | None:
        return self.layers[index] if 0 <= index < len(self.layers) else None


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def decode_event(v: Any) -> Any:
    """The values the probe channel encoded as strings (NaN, Inf) back as floats."""
    if isinstance(v, str) and v in ("nan", "inf", "-inf"):
        return float(v)
    if isinstance(v, list):
        return [decode_event(x) for x in v]
    if isinstance(v, dict):
        return {k: decode_event(x) for k, x in v.items()}
    return v


@dataclass(frozen=True)
class ScriptResult:
    """What the script itself reported on a recorded run: one fit's last-epoch logs or one of its
    own `evaluate` calls' results, with what makes two runs' numbers comparable (wholescript.py):
    the loss function's name, the targets' spread and how many samples an accuracy counts."""

    values: dict[str, float | None]
    loss: str = ""
    target_scale: float | None = None
    samples: int | None = None

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> "ScriptResult":
        values = event.get("logs") if event.get("type") == "script_fit" else event.get("results")
        return cls(dict(values or {}), event.get("loss") or "", event.get("target_scale"), _int(event.get("samples")))

    def to_json(self) -> dict[str, Any]:
        return {"values": self.values, "loss": self.loss, "target_scale": self.target_scale, "samples": self.samples}


def parse_ready(line: bytes) -> dict[str, Any] | None:
    """A training process' first line if it is its `ready` event (kept to be folded into the
    job's trace), else None: the process died or is not ours."""
    try:
        event = json.loads(line) if line else None
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and event.get("type") == "ready" else None


@dataclass(frozen=True)
class TraceEvent:
    """What one probe event was, for the callbacks of a run (progress, streaming, early stop):
    its kind, and where training stood (0-based epoch and step, the training process)."""

    kind: EventKind
    epoch: int | None = None
    step: int | None = None
    pid: int | None = None
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def training(self) -> bool:
        """An event at which the model's state moved on (what an early-stop rule looks at)."""
        return self.kind in ("step", "epoch", "model")


class TraceBuilder:
    """Folds probe events into Traces as they arrive (so detectors can run mid-training).

    Each `fit` gets its own Trace (`traces`); `trace` is the current one. A fit
    that follows another inherits the model description and, unless the script
    compiled again in between, the compile settings.
    """

    def __init__(self, script: str) -> None:
        self.trace = Trace(script=script)
        self.traces: list[Trace] = [self.trace]
        self._layouts: dict[int, list[tuple[str, int]]] = {}
        self._fields: dict[str, tuple[str, ...]] = dict(FIELDS)
        # A recorded run's own results, in order: `script_fit` (last epoch's logs), `script_evaluate`.
        self.script_fits: list[ScriptResult] = []
        self.script_evaluations: list[ScriptResult] = []

    def _next_segment(self, keep_compile: bool) -> Trace:
        prev = self.trace
        t = Trace(script=prev.script, layers=prev.layers, versions=prev.versions, model_class=prev.model_class,
                  model_call_code=prev.model_call_code, fit_index=prev.fit_index + 1, probe_errors=list(prev.probe_errors))
        if keep_compile:
            t.compile, t.optimizer = prev.compile, prev.optimizer
        self.trace = t
        self.traces.append(t)
        return t

    def feed_line(self, line: bytes) -> TraceEvent | None:
        """One line of the probe's channel folded in; None for a line that is no event of a known kind."""
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return None
        return self.feed(event) if isinstance(event, dict) else None

    def feed(self, event: dict[str, Any]) -> TraceEvent | None:
        """Fold one wire event in; None for an event of a kind this version does not know."""
        kind = event.get("type")
        if kind not in EVENT_KINDS:
            return None
        event = decode_event(event)
        if kind == "script_fit":
            self.script_fits.append(ScriptResult.from_event(event))
        elif kind == "script_evaluate":
            self.script_evaluations.append(ScriptResult.from_event(event))
        else:
            t = self.trace
            if kind in ("compile", "fit") and t.fit is not None:
                t = self._next_segment(keep_compile=kind == "fit")
            handler = getattr(self, f"_on_{kind}", None)
            if handler is not None:
                handler(t, event)
        return TraceEvent(kind, _int(event.get("epoch")), _int(event.get("step")), _int(event.get("pid")),
                          {k: str(event[k]) for k in ("keras", "tensorflow", "python") if k in event} if kind == "ready" else {})

    # One handler per event type of the probe (probe/hooks.py and child.py send them).
    def _on_ready(self, t: Trace, event: dict[str, Any]) -> None:
        t.versions = {k: str(event.get(k)) for k in ("keras", "tensorflow", "python")}

    def _on_compile(self, t: Trace, event: dict[str, Any]) -> None:
        opt = _optimizer(event.get("optimizer"))
        t.compile = CompileInfo(
            site=[Frame.from_dict(f) for f in event.get("site", [])],
            loss=event.get("loss") or {},
            loss_code=CodeLocation.from_dict((event.get("loss") or {}).get("code")),
            optimizer=opt,
            optimizer_given_as=event.get("optimizer_given_as", ""),
            metrics=event.get("metrics", []),
        )
        t.optimizer = t.optimizer or opt

    def _on_fit(self, t: Trace, event: dict[str, Any]) -> None:
        t.fit = FitInfo(
            site=[Frame.from_dict(f) for f in event.get("site", [])],
            x=event.get("x"),
            y=event.get("y"),
            batch_size=event.get("batch_size"),
            batch_size_given=bool(event.get("batch_size_given")),
            epochs_requested=int(event.get("epochs_requested") or 1),
            epochs=int(event.get("epochs") or 1),
            steps_per_epoch=event.get("steps_per_epoch"),
            validation=bool(event.get("validation")),
            schedules=[RateSchedule.from_dict(d) for d in event.get("schedules") or [] if isinstance(d, dict)],
        )
        t.model_id = event.get("model_id")
        t.continues = bool(event.get("continues"))
        t.weight_ids = set(event.get("weight_ids") or [])
        for earlier in self.traces[:-1]:
            if (t.model_id is not None and earlier.model_id == t.model_id) or (earlier.weight_ids & t.weight_ids):
                earlier.continued_later = True

    def _on_keras_workaround(self, t: Trace, event: dict[str, Any]) -> None:
        t.keras_workarounds.append({k: str(event.get(k, "")) for k in ("which", "error", "issue")})

    def _on_model(self, t: Trace, event: dict[str, Any]) -> None:
        t.model_class = event.get("model_class", "")
        t.model_call_code = CodeLocation.from_dict(event.get("model_call_code"))
        t.layers = [_layer(d) for d in event.get("layers", [])]
        self._layouts[int(event.get("layout_id", 0))] = [(k, int(n)) for k, n in event.get("layout", [])]
        for k, names in (event.get("fields") or {}).items():
            self._fields[k] = tuple(names)
        opt = _optimizer(event.get("optimizer"))
        if opt is not None:
            if opt.learning_rate is None and t.optimizer is not None:
                opt.learning_rate = t.optimizer.learning_rate
            t.optimizer = opt

    def _on_model_preview(self, t: Trace, event: dict[str, Any]) -> None:
        if not t.layers or t.fit_index > 0:
            t.layers = [_layer(d) for d in event.get("layers", [])]

    def _on_layout(self, t: Trace, event: dict[str, Any]) -> None:
        self._layouts[int(event["id"])] = [(k, int(n)) for k, n in event.get("layout", [])]

    def _on_step(self, t: Trace, event: dict[str, Any]) -> None:
        t.steps.append(StepRecord(int(event["epoch"]), int(event["step"]), int(event["g"]), self._unpack(event["v"])))

    def _on_epoch(self, t: Trace, event: dict[str, Any]) -> None:
        t.epochs.append(EpochRecord(int(event["epoch"]), event.get("logs", {}), float(event.get("seconds", 0.0)), _float(event.get("lr"))))

    def _on_epoch_begin(self, t: Trace, event: dict[str, Any]) -> None:
        lr = _float(event.get("lr"))
        if lr is not None:
            t.epoch_start_lr[int(event.get("epoch", 0))] = lr

    def _on_fit_end(self, t: Trace, event: dict[str, Any]) -> None:
        t.fit_end = event

    def _on_crash(self, t: Trace, event: dict[str, Any]) -> None:
        t.crash = CrashInfo(
            exc_type=event.get("exc_type", "Exception"),
            message=event.get("message", ""),
            frames=[Frame.from_dict(f) for f in event.get("frames", [])],
            traceback=event.get("traceback", ""),
            exc_module=event.get("exc_module", ""),
        )

    def _on_unsupported(self, t: Trace, event: dict[str, Any]) -> None:
        t.unsupported = str(event.get("message", "unsupported Keras"))

    def _on_initial_weights(self, t: Trace, event: dict[str, Any]) -> None:
        t.initial_kernels = {int(k): tuple(float(x) for x in v) for k, v in (event.get("kernels") or {}).items()}

    def _on_probe_error(self, t: Trace, event: dict[str, Any]) -> None:
        t.probe_errors.append(f"{event.get('where')}: {event.get('message')}")

    def _on_end(self, t: Trace, event: dict[str, Any]) -> None:
        t.end_reason = event.get("reason")

    def _on_leftover(self, t: Trace, event: dict[str, Any]) -> None:
        t.leftover = [p for p in event.get("processes", []) if isinstance(p, dict)]

    def _unpack(self, flat: list[float]) -> dict[str, dict[str, float]]:
        values: dict[str, dict[str, float]] = {}
        if not flat:
            return values
        layout = self._layouts.get(int(flat[0]), [])
        sampled = len(flat) > 1 and flat[1] > 0.5
        pos = 2
        for key, n in layout:
            if key == "#sampled":
                if not sampled:
                    break
                continue
            kind = key.split(".")[-1]
            names = self._fields.get(kind, tuple(str(i) for i in range(n)))
            chunk = flat[pos : pos + n]
            values[key] = {name: float(v) for name, v in zip(names, chunk)}
            pos += n
        return values


def _optimizer(d: dict[str, Any] | None) -> OptimizerInfo | None:
    if not d:
        return None
    return OptimizerInfo(d.get("class", ""), d.get("learning_rate"), d.get("config") or {}, [Frame.from_dict(f) for f in d.get("site", [])])


def _layer(d: dict[str, Any]) -> LayerInfo:
    return LayerInfo(
        index=int(d["index"]),
        name=d.get("name", ""),
        cls=d.get("class", ""),
        activation=d.get("activation"),
        units=d.get("units"),
        rate=d.get("rate"),
        output_shape=d.get("output_shape"),
        n_params=int(d.get("n_params") or 0),
        kernel_initializer=d.get("kernel_initializer"),
        bias_initializer=d.get("bias_initializer"),
        kernel_regularizer=d.get("kernel_regularizer"),
        activity_regularizer=d.get("activity_regularizer"),
        is_output=bool(d.get("is_output")),
        custom=bool(d.get("custom")),
        call_code=CodeLocation.from_dict(d.get("call_code")),
        init_code=CustomInit.from_dict(d.get("init_code")),
        inputs=[int(i) for i in d.get("inputs") or []],
        inner=d.get("inner"),
        site=[Frame.from_dict(f) for f in d.get("site", [])],
    )
