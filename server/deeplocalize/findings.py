"""What a detector concludes, before and after it is anchored in the source.

Detectors say *what* must change (a `Target`: "the activation of layer 3",
"the learning rate of the optimizer") and *to what* (`FixSpec`); the locator
turns that into file ranges and text edits. Keeping the two apart lets detectors
run on synthetic traces and the locator run on source text alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, get_args

from .trace import CodeLocation, Frame, RateSchedule
from .vocab import ROOT_CAUSES, SEVERITIES, VERDICTS, Confirmation, Verdict  # noqa: F401 - ROOT_CAUSES, SEVERITIES, VERDICTS re-exported


# ------------------------------------------------------------------ targets
# What a finding says must change: one type per kind, each with the fields that kind needs and
# one anchoring strategy in the locator (anchors.py).


@dataclass(frozen=True)
class LayerArg:
    """An argument of the call that made a layer (`Dense(10, activation=...)`), followed back to
    where its value is defined; `position` when it may be passed positionally."""

    kind: ClassVar[str] = "layer_arg"
    layer: int
    arg: str
    position: int | None = None


@dataclass(frozen=True)
class Layer:
    """The whole call that made a layer (`layers.Softmax()` replaced by another layer)."""

    kind: ClassVar[str] = "layer"
    layer: int


@dataclass(frozen=True)
class OptimizerArg:
    """An argument of the optimizer (its call, or the compile call's `optimizer=` string);
    `arg=None` is the optimizer itself."""

    kind: ClassVar[str] = "optimizer_arg"
    arg: str | None
    position: int | None = None


@dataclass(frozen=True)
class CompileArg:
    kind: ClassVar[str] = "compile_arg"
    arg: str
    position: int | None = None


@dataclass(frozen=True)
class FitArg:
    kind: ClassVar[str] = "fit_arg"
    arg: str
    position: int | None = None


@dataclass(frozen=True)
class FitData:
    """The inputs (`x`) or targets (`y`) given to fit: anchored where their values were made."""

    kind: ClassVar[str] = "fit_data"
    arg: Literal["x", "y"]
    position: int


@dataclass(frozen=True)
class NonfiniteData:
    """The statement that made a fit argument's values NaN/Inf (a division by a zero spread, a
    log), found back from the argument; where it was last assigned when none is found."""

    kind: ClassVar[str] = "nonfinite_data"
    arg: Literal["x", "y"]
    position: int


@dataclass(frozen=True)
class FrameTarget:
    """A place the run itself reported (the frame of a crash); the fit call when there is none."""

    kind: ClassVar[str] = "frame"
    frame: Frame | None = None


CodePart = Literal["body", "hyperparameters", "params"]


@dataclass(frozen=True)
class CodeTarget:
    """User code the model runs (a custom loss, a layer's or the model's `call`): its risky
    operation (`body`), the numbers it computes with (`hyperparameters`: its factory's
    parameters), or its signature (`params`)."""

    kind: ClassVar[str] = "code"
    code: CodeLocation
    part: CodePart = "body"
    layer: int | None = None


@dataclass(frozen=True)
class ScheduleTarget:
    """What changed the learning rate during the fit (trace.RateSchedule): the statement of its
    function that sets the rate, or the argument of a schedule object (`arg`: its `decay_rate`)."""

    kind: ClassVar[str] = "schedule"
    schedule: RateSchedule
    arg: str | None = None
    position: int | None = None


Target = LayerArg | Layer | OptimizerArg | CompileArg | FitArg | FitData | NonfiniteData | FrameTarget | CodeTarget | ScheduleTarget
TargetKind = Literal["layer_arg", "layer", "optimizer_arg", "compile_arg", "fit_arg", "fit_data", "nonfinite_data", "frame", "code", "schedule"]
TARGET_KINDS: tuple[TargetKind, ...] = get_args(TargetKind)
assert TARGET_KINDS == tuple(t.kind for t in get_args(Target))


def target_layer(target: Target) -> int | None:
    """The layer a target belongs to, if any (a finding reports it with the layer's name)."""
    return target.layer if isinstance(target, (LayerArg, Layer, CodeTarget)) else None


def target_arg(target: Target) -> str | None:
    """The argument a target names, if any."""
    return target.arg if isinstance(target, (LayerArg, OptimizerArg, CompileArg, FitArg, FitData, NonfiniteData)) else None


def element(target: Target) -> tuple[str, int | None, str | None]:
    """The source element a target names (kind, layer, argument or part of the code), to tell
    findings about the same element apart; how it may be passed (`position`) is not part of it."""
    part = target.part if isinstance(target, CodeTarget) else target_arg(target)
    return (target.kind, target_layer(target), part)


# ---------------------------------------------------------------- fix kinds
# How a fix changes its target: one type per kind, each turned into text edits by the locator.

FeedChange = Literal["scale_inputs", "scale_targets", "one_hot", "labels_shift", "labels_unit", "nan_to_num"]


@dataclass(frozen=True)
class NewValue:
    """The text that replaces the target's value (or is inserted as `arg=`)."""

    text: str


@dataclass(frozen=True)
class SetKwarg:
    """A keyword set on the object that is the target's value (`from_logits=True` on a loss object)."""

    arg: str
    value: str


@dataclass(frozen=True)
class CallArgs:
    """The same callable called with these arguments (`l2(0.1)` -> `l2(1e-4)`)."""

    args: str


@dataclass(frozen=True)
class LayerCall:
    """Another layer of the module the target's layer comes from (`layers.Softmax()` ->
    `layers.Activation("sigmoid")`), written as that module is imported."""

    call: str


@dataclass(frozen=True)
class Guard:
    """The risky operation at the target rewritten with an epsilon guard, as Keras' losses do:
    `operand` (log/sqrt/division of a value) or `probability` (clipped into [eps, 1 - eps])."""

    kind: Literal["operand", "probability"]


@dataclass(frozen=True)
class Rename:
    """A keyword renamed (a Keras 2 keyword at the frame of a crash)."""

    old: str
    new: str


@dataclass(frozen=True)
class SwapParams:
    """The first two parameters of the target's function swapped in its signature."""


@dataclass(frozen=True)
class Feed:
    """The data changed at every call that feeds the model (feeds.py), not at one line."""

    change: FeedChange


Change = NewValue | SetKwarg | CallArgs | LayerCall | Guard | Rename | SwapParams | Feed


@dataclass
class FixSpec:
    """A change of the finding's target (or of its own `target`), with the edits applied
    together with it as a single fix in `also` (the same setting on several layers, an
    activation and the loss that goes with it)."""

    title: str
    change: Change
    target: Target | None = None
    also: list["FixSpec"] = field(default_factory=list)


@dataclass
class Failure:
    """A fit that plainly failed while no fix tried healed it (verify.keep_real_failures): the
    evidence that it failed, against guessing, and the fixes tried; the message says it at the edges."""

    loss: float
    tried: list[str]
    chance_ratio: float | None = None  # the loss over the loss of guessing the class prior
    accuracy: float | None = None
    chance_accuracy: float | None = None  # the most frequent class's share

    def sentence(self) -> str:
        loss = f"loss {self.loss:.4g}, {self.chance_ratio:.2f}x the loss of guessing" if self.chance_ratio is not None else f"loss {self.loss:.4g}"
        evidence = loss if self.accuracy is None or self.chance_accuracy is None else (
            f"accuracy {self.accuracy:.2f}, where always answering the most frequent class gets {self.chance_accuracy:.2f}; {loss}")
        return f"Training fails ({evidence}); the cause is not established; tried: {'; '.join(self.tried)}."


@dataclass
class Alternative:
    """Another cause that explains the same symptom, ranked after the finding's own:
    a counterfactual run that heals the symptom with its fix makes it the root cause."""

    root_cause: str
    target: Target
    fixes: list[FixSpec]
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class Finding:
    code: str
    severity: str
    symptom: str
    root_cause: str | None
    message: str
    target: Target
    layer: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    fixes: list[FixSpec] = field(default_factory=list)
    observed: dict[str, Any] | None = None
    # "weak" when the root cause is a fallback or the symptom is generic; a weak
    # finding yields to any strong one (it becomes information).
    confidence: str = "strong"
    alternatives: list[Alternative] = field(default_factory=list)
    # The message names the root cause (a cause inferred among candidates, which an experiment may
    # change): rendered after it as "likely cause: ...", or "cause: ..." once verified.
    names_cause: bool = False

    def __post_init__(self) -> None:
        assert self.severity in SEVERITIES, self.severity
        assert self.root_cause is None or self.root_cause in ROOT_CAUSES, self.root_cause


@dataclass
class Position:
    line: int
    column: int


@dataclass
class SourceRange:
    """1-based line and column, as linters print them; `end` is exclusive."""

    file: str
    start: Position
    end: Position
    cell: int | None = None  # in a notebook: the 1-based cell, and lines counted within it

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "start": vars(self.start), "end": vars(self.end)}
        if self.cell is not None:
            out["cell"] = self.cell
        return out


@dataclass
class TextEdit:
    range: SourceRange
    new_text: str


@dataclass
class Verification:
    """What re-training with a fix applied changed: the symptom's measures before and after."""

    verdict: Verdict
    before: dict[str, Any]
    after: dict[str, Any]
    steps: int
    epochs: int
    seconds: float
    reason: str = ""
    # Codes the fixed run still showed (None: not diagnosed, e.g. it crashed): another
    # finding of the same fit that is absent there was healed by this fix too.
    remaining: list[str] | None = None
    measure: str | None = None  # the measure the verdict rests on (a key of before/after, "crash", "finite", "weight_growth")

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "before": self.before, "after": self.after, "steps": self.steps,
                "epochs": self.epochs, "seconds": round(self.seconds, 2), "reason": self.reason}

    def summary(self) -> str:
        """One line for the message: 'accuracy 0.10 -> 0.91 in 2 epochs'."""
        b, a = self.before, self.after
        span = f"in {self.epochs} epoch{'s' if self.epochs != 1 else ''}"
        if b.get("crashed") and not a.get("crashed"):
            return f"the crash is gone ({self.epochs} epoch{'s' if self.epochs != 1 else ''} trained)"
        if not b.get("finite", True) and a.get("finite", True) and not a.get("crashed"):
            tail = f", loss {a['loss']}" if "loss" in a else ""
            return f"values stay finite {span}{tail}"
        if self.measure == "weight_growth":
            return f"{self.reason.removeprefix('the ')} {span}"
        keys = ("val_accuracy", "hit_rate", "accuracy", "loss_vs_chance", "loss_drop", "loss")
        for key in ([self.measure] if self.measure in keys else []) + list(keys):
            if key in b and key in a:
                return f"{key.replace('_', ' ')} {_num(b[key])} -> {_num(a[key])} {span}"
        return self.reason


def _num(x: Any) -> str:
    return f"{x:.2f}" if isinstance(x, float) and abs(x) < 100 else str(x)


@dataclass
class Fix:
    """Text edits for one candidate cause. `root_cause`/`anchor` are set when the fix
    belongs to an alternative cause: if it is verified, the finding moves there."""

    title: str
    edits: list[TextEdit]
    root_cause: str | None = None
    anchor: "SourceRange | None" = None
    verification: Verification | None = None


@dataclass
class LocatedFinding:
    finding: Finding
    range: SourceRange
    fixes: list[Fix]
    layer: dict[str, Any] | None
    confirmation: Confirmation | None = None  # once the fixes were tried; None: not tried
    fit_index: int = 0  # which fit of the script showed it
    demoted: bool = False  # a warning that no fix healed, shown as information
    # The fit plainly failed and no fix tried healed it: why it is still a warning, and what was tried
    # (verify.keep_real_failures); the cause it names is then not established.
    failure: Failure | None = None

    @property
    def message(self) -> str:
        """The message every edge shows, rendered from the parts: the detector's words, the cause it
        names (likely until an experiment settles it), and what re-training showed."""
        f = self.finding
        text = f.message
        if self.failure:
            return f"{text} {self.failure.sentence()}"
        if f.names_cause and f.root_cause:
            settled = "cause" if self.confirmation == "verified" else "likely cause"
            text = f"{text.rstrip('.')}; {settled}: {f.root_cause.replace('_', ' ')}."
        if self.demoted:
            text = "Unconfirmed: " + text
        if self.confirmation == "verified" and self.preferred is not None and self.preferred.verification is not None:
            text += f" Verified by re-training with the fix: {self.preferred.verification.summary()}."
            others = [fix for fix in self.fixes if fix is not self.preferred and fix.verification is not None and fix.verification.verdict == "verified"]
            text += "".join(f" Also heals it, less: {fix.title} ({fix.verification.summary()})." for fix in others if fix.verification)
        elif self.confirmation == "unconfirmed":
            refuted = sum(1 for fix in self.fixes if fix.verification is not None and fix.verification.verdict == "refuted")
            text += (" Re-training with the fix did not heal it." if refuted <= 1
                     else f" Re-training with each of the {refuted} fixes did not heal it.")
        return text

    @property
    def cause_label(self) -> str | None:
        """The cause as a report's heading names it: the root cause, or, when no fix tried healed a
        real failure, that it is not established (the first suspect, for the record)."""
        cause = self.finding.root_cause.replace("_", " ") if self.finding.root_cause else None
        if self.failure:
            return f"cause not established; first suspect: {cause}" if cause else "cause not established"
        return f"root cause: {cause}" if cause else None

    @property
    def preferred(self) -> Fix | None:
        """The verified fix if one is, else the first (ranked) one not refuted by a re-run."""
        for fix in self.fixes:
            if fix.verification is not None and fix.verification.verdict == "verified":
                return fix
        return next((fix for fix in self.fixes if fix.verification is None or fix.verification.verdict != "refuted"), None)

    def to_json(self, place: Callable[[SourceRange], SourceRange] | None = None) -> dict[str, Any]:
        """`place` maps a range to where the user reads it (a notebook's cell and line)."""
        place = place or (lambda r: r)
        f = self.finding
        return {
            "severity": f.severity,
            "code": f.code,
            "symptom": f.symptom,
            "root_cause": f.root_cause,
            "message": self.message,
            "range": place(self.range).to_json(),
            "layer": self.layer,
            "evidence": f.evidence,
            "confirmation": self.confirmation,
            "fixes": [self._fix_json(x, place) for x in self.fixes],
        }

    def _fix_json(self, fix: Fix, place: Callable[[SourceRange], SourceRange]) -> dict[str, Any]:
        out: dict[str, Any] = {"title": fix.title, "preferred": fix is self.preferred,
                               "root_cause": fix.root_cause or self.finding.root_cause,
                               "edits": [{"range": place(e.range).to_json(), "new_text": e.new_text} for e in fix.edits]}
        out["verification"] = fix.verification.to_json() if fix.verification else None
        return out
