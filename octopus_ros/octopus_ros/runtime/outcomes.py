"""Outcome codes and request/result records shared by the engine and the node."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from octopus_ros.functions.chores import other_chore
from octopus_ros.functions.mentions import (
    asked_elsewhere,
    blank_copied,
    claimed_elsewhere,
    claims_said,
    corrected_args,
    disposed_value,
    negated_values,
    origin_args,
    phone_call,
    possessor_only,
    recipient_as_destination,
    uncarried,
    unknown_verb,
    unnamed_args,
)
from octopus_ros.functions.negation import negated_request
from octopus_ros.functions.questions import asked_about, for_later
from octopus_ros.functions.registry import copied_args


class OutcomeCode(enum.IntEnum):
    """Mirror of the ``octopus_msgs/Outcome`` constants (a test keeps them equal)."""

    OK = 0
    REJECTED_LOW_CONFIDENCE = 1
    NO_FRESH_IMAGE = 2
    INVALID_INPUT = 3
    NOT_ALLOWED = 4
    BUSY = 5
    TIMEOUT = 6
    MODEL_ERROR = 7
    NO_ACTION = 8
    ESTOP = 9
    NOT_ACTIVE = 10
    NOT_IN_VIEW = 11


class Source(enum.IntEnum):
    """Mirror of the ``octopus_msgs/FunctionCall`` SOURCE_* constants."""

    UTTERANCE = 0
    STANDING_INSTRUCTION = 1
    SERVICE = 2


@dataclass(frozen=True)
class Frame:
    """A camera frame as the engine sees it: metadata now, pixels only on demand.

    ``decode`` converts the original message lazily (only the frame that is used is
    converted) and raises ``ValueError`` (e.g. ImageConversionError) for a malformed image.
    ``shrink``, where the source can do it, converts it at a model's input scale instead:
    ``shrink(side)`` is the RGB image with its shorter side reduced to ``side`` (aspect kept,
    images no larger left as they are), shrunk before its channels are converted
    (``images.decode.RawImage.rgb``); the same errors as ``decode``.
    """

    seq: int  # increasing per received frame
    stamp: float  # header stamp in seconds (0.0 when the publisher left it unset)
    received: float  # receipt time in seconds, on the same clock as ``stamp``
    frame_id: str
    decode: Callable[[], np.ndarray]  # -> (H, W, 3) uint8 RGB
    problem: str = ""  # set when a cheap check at arrival already found the image malformed
    shrink: Callable[[int], np.ndarray] | None = None  # side -> RGB at that scale; None: decode only

    @property
    def time(self) -> float:
        """The frame's capture time: its stamp, or its receipt time when unstamped."""
        return self.stamp if self.stamp > 0.0 else self.received


@dataclass
class Request:
    """One thing to decide: an utterance, a standing-instruction tick or a service call."""

    id: str
    text: str
    source: Source
    arrived: float  # seconds, same clock as Frame.time
    image: Frame | None = None  # an explicit image (service); None = the freshest camera frame
    publish: bool = True  # publish the call and route it (service callers may only ask)
    done: Callable[[Result], None] | None = None  # called once with the result
    # Set by Engine.abandon: the caller stopped waiting (an ~/ask answered TIMEOUT); the outcome is
    # then TIMEOUT whatever the model decides, and no call of it is published.
    abandoned: str = ""
    finished: bool = False  # the engine has given this request its outcome


@dataclass
class Result:
    """The single outcome of a request, with everything the node publishes."""

    request: Request
    code: OutcomeCode
    reason: str
    language: str = ""
    call: Any = None  # octopus_ros.functions Call when the model produced one
    confidence: float = 0.0
    raw_text: str = ""
    frame: Frame | None = None
    image_age: float = 0.0  # request arrival - frame time (s)
    inference_s: float = 0.0  # model time spent on this request (s)
    timings: dict[str, float] = field(default_factory=dict)
    finished: float = 0.0  # when the outcome was decided (s, same clock)
    # novelty of the request (octopus_ros.model.novelty): NaN when the model has no profile
    text_novelty: float = float("nan")
    image_novelty: float = float("nan")
    request_novelty: float = float("nan")
    # the grounding head's score for the object a requires_view call names (NaN: not checked), and
    # the span copier's probability for a copied argument (NaN: nothing copied)
    grounding_score: float = float("nan")
    copy_probability: float = float("nan")

    @property
    def latency(self) -> float:
        return max(0.0, self.finished - self.request.arrived)


# ParseError kinds (octopus_ros.functions) that mean "the model asked for something it may not do".
NOT_ALLOWED_KINDS = frozenset({"NOT_ALLOWED", "DISABLED"})


def echo_text(text: str, limit: int) -> str:
    """``text`` as a log line or an answer repeats it: whole up to ``limit`` characters, else its
    first ``limit`` and how long it was (a 10 MB utterance is refused, not echoed back in full)."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text)} characters]"


def echo_matches(echoed: str, text: str) -> bool:
    """Whether an outcome's ``utterance`` field is the node's echo of ``text``: the text itself,
    its normalised form (a valid utterance is answered as :func:`~octopus_ros.runtime.guards.
    clean_utterance` gave it to the model), or, for an utterance longer than the node accepts,
    :func:`echo_text`'s first characters and length."""
    from octopus_ros.runtime.guards import InvalidUtteranceError, clean_utterance

    if echoed == text:
        return True
    try:
        if echoed == clean_utterance(text, max_length=len(text)):
            return True
    except InvalidUtteranceError:
        pass  # an invalid utterance is echoed as it came
    head, sep, tail = echoed.rpartition("… [")
    return bool(sep) and tail == f"{len(text)} characters]" and text.startswith(head)


def grounding_threshold_for(setting: float, model: Any) -> float | None:
    """The NOT_IN_VIEW threshold a ``grounding_threshold`` setting means for ``model``: negative =
    the threshold the model's grounding head was validated at (its grounding.json; None when the
    model has no head), 0 = off (None), positive = that value."""
    if setting < 0:
        head = getattr(model, "grounding", None)
        return float(head.threshold) if head is not None else None
    return setting if setting > 0 else None


def invented_args(spec: Any, call: Any, utterance: str) -> list[tuple[str, str]]:
    """(argument, value) of each ``source: utterance`` argument of ``call`` whose value is not a
    word-aligned span of ``utterance`` as the model reads it (lean/prompt.model_utterance): what the
    call grammar guarantees in constrained decoding, checked again before publishing so that the
    other decode modes, or a grammar bug, cannot publish an invented message. The value is read
    the same way (the runtimes give it back in the user's own characters, Traditional Chinese
    for one: lean/decision.copied_as_written)."""
    copied = {a.name for a in copied_args(spec)}
    if not copied:
        return []
    from octopus_ros.functions.grammar import WordSpans
    from octopus_ros.lean.prompt import model_utterance

    spans = WordSpans(model_utterance(utterance))
    invented = []
    for got in call.args:
        value = str(got.value)
        if got.name in copied and not (spans.contains(value) or spans.contains(model_utterance(value))):
            invented.append((got.name, str(got.value)))
    return invented


def grounding_score(decision: Any) -> float:
    """The grounding head's score for ``decision``'s object: NaN when the call was not grounded
    (no view needed, no head, or an object word the head does not know)."""
    grounding = getattr(decision, "grounding", None)
    if grounding is None or not grounding.grounded:
        return math.nan
    return float(grounding.score)


def request_limit(setting: float | None) -> float | None:
    """The request-novelty limit a ``max_request_novelty`` setting means: None (no check) for
    None, 0 or less, or 1 or more (no score exceeds 1)."""
    return setting if setting is not None and 0 < setting < 1 else None


def _values(spec: Any, arg: str) -> tuple:
    return next((a.values for a in spec.args if a.name == arg), ())


# the start of the reason of a call declined by a novelty limit of the request (text or request novelty)
NOT_UNDERSTOOD = "not understood"


def _halts(decision: Any, registry: Any) -> bool:
    """Whether ``decision`` is a valid call of a ``halts: true`` function (functions.yaml: stop)."""
    if decision.error is not None or decision.call is None:
        return False
    spec = registry.by_name(decision.call.function)
    return bool(getattr(spec, "halts", False))


def _halt_asked(decision: Any, registry: Any, utterance: str | None) -> bool:
    """Whether ``decision`` is a call of a ``halts: true`` function on an ``utterance`` that says,
    not right after a negation, one of the words that function ``claims`` ("whoa whoa stop stop",
    "立刻停住，阿姨刚拖完地"): the request and the model agree on stopping, so the novelty limits do
    not hold the stop back (a robot told to stop that goes on because the rest of the sentence was
    new to it is the worse error; stopping harms no one)."""
    if utterance is None or not _halts(decision, registry):
        return False
    return bool(claims_said(registry.by_name(decision.call.function), utterance))


# The request's own rules (functions/mentions.py, questions.py, negation.py): each reads the
# ``utterance`` beside a call that passed validation and gives the outcome it earns, or None.
# :func:`decision_outcome` asks them in this order (REQUEST_RULES) and the first verdict stands.
Verdict = tuple[OutcomeCode, str]


def _invented(registry: Any, spec: Any, call: Any, utterance: str) -> Verdict | None:
    """A ``source: utterance`` argument that is not words of the request (:func:`invented_args`)."""
    invented = invented_args(spec, call, utterance) if spec is not None else []
    if not invented:
        return None
    arg, value = invented[0]
    return (
        OutcomeCode.MODEL_ERROR,
        f"the {arg} {value!r} is not words of the request: a `source: utterance` argument is copied,"
        f" never invented ({call.function} not published)",
    )


def _unnamed(registry: Any, spec: Any, call: Any, utterance: str) -> Verdict | None:
    """A ``named`` argument filled with a value the request does not say (mentions.unnamed_args)."""
    unnamed = unnamed_args(spec, call, utterance) if spec is not None else []
    if not unnamed:
        return None
    arg, value = unnamed[0]
    return (
        OutcomeCode.NO_ACTION,
        f"the request does not name the {arg}: {value!r} is not said, and a {arg} is never guessed"
        f" ({call.function} not published; known: {', '.join(map(str, _values(spec, arg)))})",
    )


def _uncarried(registry: Any, spec: Any, call: Any, utterance: str) -> Verdict | None:
    """Nothing besides the copied value and the named values (mentions.uncarried: "我爸坐下的时候
    把椅子抽走" as a message to dad)."""
    lone = uncarried(spec, call, utterance) if spec is not None else None
    if lone is None:
        return None
    return (
        OutcomeCode.NO_ACTION,
        f"no word of the request outside the copied {lone!r} and the values it names asks for"
        f" {call.function} ({call.function} not published)",
    )


def _asked_elsewhere(registry: Any, spec: Any, call: Any, utterance: str) -> Verdict | None:
    """A copying call whose request asks for another function (mentions.asked_elsewhere)."""
    elsewhere = asked_elsewhere(registry, spec, call, utterance)
    if elsewhere is None:
        return None
    copied, word, other = elsewhere
    return (
        OutcomeCode.NO_ACTION,
        f"no word of the request outside the copied {copied!r} and the values it names asks for"
        f" {call.function}, and {word!r} asks for {other} ({call.function} not published)",
    )


def _claimed(registry: Any, spec: Any, call: Any, utterance: str) -> Verdict | None:
    """A word or value another function ``claims`` said in the request (mentions.claimed_elsewhere:
    "grab a quick pic of the living room" decided as ``navigate_to``, "拿去堆肥" as ``pick_up``)."""
    claimed = claimed_elsewhere(registry, spec, call, utterance)
    if claimed is None:
        return None
    words, value, other = claimed
    whose = f" ({other}'s {value!r})" if value is not None else ""
    return (
        OutcomeCode.NO_ACTION,
        f"the request says {words!r}{whose}, which asks for {other}, not {call.function}"
        f" ({call.function} not published)",
    )


def _phone_call(registry: Any, spec: Any, call: Any, utterance: str) -> Verdict | None:
    """A phone call asked for, which no function makes (mentions.phone_call)."""
    phoned = phone_call(spec, call, utterance)
    if phoned is None:
        return None
    return (
        OutcomeCode.NO_ACTION,
        f"{NOT_UNDERSTOOD}: the request asks for a phone call ({phoned!r}), which no function makes"
        f" ({call.function} not published)",
    )


def _other_chore(registry: Any, spec: Any, call: Any, utterance: str) -> Verdict | None:
    """A chore asked for besides the call that no function does (functions/chores.other_chore)."""
    chore = other_chore(registry, spec, blank_copied(spec, call, utterance))
    if chore is None:
        return None
    return (
        OutcomeCode.NO_ACTION,
        f"{NOT_UNDERSTOOD}: the request asks to {chore!r}, which no function does"
        f" ({call.function} not published: it is not all that was asked)",
    )


def _destination(registry: Any, spec: Any, call: Any, utterance: str) -> Verdict | None:
    """A recipient said only as where to go (mentions.recipient_as_destination)."""
    destination = recipient_as_destination(registry, spec, call, utterance)
    if destination is None:
        return None
    arg, value, word = destination
    return (
        OutcomeCode.NO_ACTION,
        f"the request says the {arg} {value!r} only as where to go ({word!r}), not as who receives"
        f" the message ({call.function} not published)",
    )


def _negated_value(registry: Any, spec: Any, call: Any, utterance: str) -> Verdict | None:
    """A value said only as the one not wanted (mentions.negated_values: "别放地上")."""
    negated = negated_values(spec, call, utterance)
    if not negated:
        return None
    arg, value = negated[0]
    return (
        OutcomeCode.NO_ACTION,
        f"the request says the {arg} {value!r} only as the one not wanted ({call.function} not published)",
    )


def _possessor(registry: Any, spec: Any, call: Any, utterance: str) -> Verdict | None:
    """A recipient named only as an owner (mentions.possessor_only: "我妈的降压药")."""
    owner = possessor_only(spec, call, utterance)
    if owner is None:
        return None
    arg, value, said = owner
    return (
        OutcomeCode.NO_ACTION,
        f"the request names the {arg} {value!r} only as whose something is ({said!r}), not as who"
        f" receives it ({call.function} not published)",
    )


def _origin(registry: Any, spec: Any, call: Any, utterance: str) -> Verdict | None:
    """An enum value said only after a word of origin (mentions.origin_args: "lift the can off the
    table" decided as ``place(…, 'table')``)."""
    origin = origin_args(spec, call, utterance)
    if not origin:
        return None
    arg, value, word = origin[0]
    return (
        OutcomeCode.NO_ACTION,
        f"the request says {value!r} only as where something is or comes from ({word!r}), not as the {arg}"
        f" ({call.function} not published)",
    )


def _unknown_verb(registry: Any, spec: Any, call: Any, utterance: str) -> Verdict | None:
    """An English request that opens with a verb no phrasing has, on an enum value of the call
    (mentions.unknown_verb: "open the front door" decided as ``navigate_to('front_door')``)."""
    unknown = unknown_verb(registry, spec, call, utterance) if spec is not None else None
    if unknown is None:
        return None
    verb, value = unknown
    return (
        OutcomeCode.NO_ACTION,
        f"{NOT_UNDERSTOOD}: the request asks to {verb!r} the {str(value).replace('_', ' ')}, and no function"
        f" is asked for with {verb!r} ({call.function} not published)",
    )


def _disposed(registry: Any, spec: Any, call: Any, utterance: str) -> Verdict | None:
    """A value said only as what 把 marks, the thing acted on (mentions.disposed_value: "把客厅拖一下地"
    decided as ``navigate_to('living_room')``)."""
    disposed = disposed_value(spec, call, utterance)
    if disposed is None:
        return None
    arg, value = disposed
    return (
        OutcomeCode.NO_ACTION,
        f"{NOT_UNDERSTOOD}: the request says the {arg} {value!r} only as what 把 acts on (something is to"
        f" be done to it), which no phrasing of {call.function} says ({call.function} not published)",
    )


def _corrected(registry: Any, spec: Any, call: Any, utterance: str) -> Verdict | None:
    """A value the request took back for another (mentions.corrected_args: "on the counter no wait
    the shelf" decided as the counter)."""
    corrected = corrected_args(spec, call, utterance)
    if not corrected:
        return None
    arg, value, meant = corrected[0]
    return (
        OutcomeCode.NO_ACTION,
        f"the request took the {arg} {value!r} back for {meant!r} ({call.function} not published)",
    )


def _asked_about(registry: Any, spec: Any, call: Any, utterance: str) -> Verdict | None:
    """A request that asks about the act, not for it (questions.asked_about: "did you already water
    the plant?"); never for a ``halts`` function."""
    asked = None if getattr(spec, "halts", False) else asked_about(utterance, spec)
    if asked is None:
        return None
    return (
        OutcomeCode.NO_ACTION,
        f"the request asks about it ({asked!r}), not for it ({call.function} not published)",
    )


def _for_later(registry: Any, spec: Any, call: Any, utterance: str) -> Verdict | None:
    """A request for later (questions.for_later: "remind me … tomorrow"), the copied message aside;
    never for a ``halts`` function."""
    later = None if getattr(spec, "halts", False) else for_later(blank_copied(spec, call, utterance))
    if later is None:
        return None
    return (
        OutcomeCode.NO_ACTION,
        f"the request asks for it later ({later!r}), and the robot acts only now ({call.function} not published)",
    )


def _negated(registry: Any, spec: Any, call: Any, utterance: str) -> Verdict | None:
    """A negation that scopes the call's words (negation.negated_request: "don't pick up the cup",
    "别去厨房了")."""
    negation = negated_request(spec, call, utterance)
    if negation is None:
        return None
    return OutcomeCode.NO_ACTION, f"the request says not to: {negation!r} ({call.function} not published)"


REQUEST_RULES: tuple[Callable[[Any, Any, Any, str], Verdict | None], ...] = (
    _invented,
    _unnamed,
    _uncarried,
    _asked_elsewhere,
    _claimed,
    _phone_call,
    _destination,
    _negated_value,
    _possessor,
    _origin,
    _unknown_verb,
    _other_chore,
    _disposed,
    _corrected,
    _asked_about,
    _for_later,
    _negated,
)


def decision_outcome(
    decision: Any,
    registry: Any,
    validate: Callable[..., Any],
    *,
    allowlist: tuple[str, ...] | None,
    threshold: float,
    max_text_novelty: float | None = None,
    max_image_novelty: float | None = None,
    max_request_novelty: float | None = None,
    grounding_threshold: float | None = None,
    utterance: str | None = None,
    screen: Any = None,
) -> tuple[OutcomeCode, str]:
    """The outcome a model decision earns on its own merits, before publication.

    One rule for the node's engine and for the evaluation ("as the node would act"):
    an ``utterance`` that trips the safety ``screen`` (runtime/safety.py; None: no screen) is
    NO_ACTION "unsafe request (...)", whatever the model decided, unless it decided a call of a
    ``halts: true`` function (stop: "stop, you're about to drive into the wall"); a rejected model output is NOT_ALLOWED or MODEL_ERROR; the decline function is
    NO_ACTION; a call on an utterance (unless it is a halting call the utterance asks for in one of
    the words its function ``claims``: "whoa whoa stop stop") whose text novelty is above ``max_text_novelty`` ("not
    understood"), whose request novelty is above ``max_request_novelty`` (the LM's reading of
    the request is more like what it was taught to decline: "not understood") or on an image
    whose novelty is above ``max_image_novelty`` ("image unlike training") is NO_ACTION (None: no limit; a NaN score, a model without that profile, never
    exceeds one); a call that fails ``validate(call, allowlist=...)`` (the registry schema and
    the live allowlist: ``octopus_ros.functions.validate_call``) is NOT_ALLOWED or
    MODEL_ERROR; a call that one of the request's own rules (``REQUEST_RULES``, asked in order
    with the ``utterance``: an invented copy is MODEL_ERROR, the others NO_ACTION) gives a verdict
    earns the first such verdict;
    a call on another object than the one the request names (``decision.object_mismatch``,
    lean/decision.py: "throw the green can away" decided as the green bottle) is NO_ACTION;
    a call below ``threshold`` is REJECTED_LOW_CONFIDENCE; a call of a
    ``requires_view`` function whose object the model's grounding head scores below
    ``grounding_threshold``, or whose named colour the head finds in another colour at that
    object's place (``Grounding.other_colour``: "the green book is there, not the purple one"), is
    NOT_IN_VIEW (None: no check; ``decision.grounding`` None, a model
    without a head or a call needing no view, or a phrase the head cannot ground: not blocked);
    else OK.
    (The e-stop, the standing-instruction gate and the request's own checks are the
    engine's, around this.)
    """
    hit = screen.check(utterance) if screen is not None and utterance is not None else None
    if hit is not None and _halts(decision, registry):
        hit = None  # "stop, you're about to drive into the wall": stopping harms no one
    if hit is not None:
        return OutcomeCode.NO_ACTION, hit.describe()
    if decision.error is not None:
        code = (
            OutcomeCode.NOT_ALLOWED if decision.error.kind in NOT_ALLOWED_KINDS else OutcomeCode.MODEL_ERROR
        )
        return code, f"model output rejected ({decision.error.kind}): {decision.error.message}"
    call = decision.call
    spec = registry.by_name(call.function)
    if spec is not None and spec.decline:
        return OutcomeCode.NO_ACTION, "the model declined: no function fits the request"
    if _halt_asked(decision, registry, utterance):
        max_text_novelty = max_request_novelty = max_image_novelty = None  # a stop asked for in words
    text_novelty = float(getattr(decision, "text_novelty", math.nan))
    if max_text_novelty is not None and text_novelty > max_text_novelty:
        return (
            OutcomeCode.NO_ACTION,
            f"{NOT_UNDERSTOOD}: {text_novelty:.0%} of the utterance never seen in training"
            f" (text novelty {text_novelty:.3f} > max_text_novelty {max_text_novelty:.3f}); {call.function} not published",
        )
    request_novelty = float(getattr(decision, "request_novelty", math.nan))
    if max_request_novelty is not None and request_novelty > max_request_novelty:
        return (
            OutcomeCode.NO_ACTION,
            f"{NOT_UNDERSTOOD}: the model's reading of the request is nearer to what it was taught to decline"
            f" than for {100 * request_novelty:.2f} % of its training requests (request novelty"
            f" {request_novelty:.4f} > max_request_novelty {max_request_novelty:.4f}); {call.function} not published",
        )
    image_novelty = float(getattr(decision, "image_novelty", math.nan))
    if max_image_novelty is not None and image_novelty > max_image_novelty:
        return (
            OutcomeCode.NO_ACTION,
            f"image unlike training: image novelty {image_novelty:.2f} > max_image_novelty"
            f" {max_image_novelty:.2f} (1.0 = the training scenes' 99th percentile); {call.function} not published",
        )
    problem = validate(call, allowlist=allowlist)
    if problem is not None:
        code = OutcomeCode.NOT_ALLOWED if problem.kind in NOT_ALLOWED_KINDS else OutcomeCode.MODEL_ERROR
        return code, f"call failed validation ({problem.kind}): {problem.message}"
    if utterance is not None:
        for rule in REQUEST_RULES:
            verdict = rule(registry, spec, call, utterance)
            if verdict is not None:
                return verdict
    mismatch = getattr(decision, "object_mismatch", None)
    if mismatch:
        return (
            OutcomeCode.NO_ACTION,
            f"{mismatch}, and an object is never swapped ({call.function} not published)",
        )
    if decision.confidence < threshold:
        return (
            OutcomeCode.REJECTED_LOW_CONFIDENCE,
            f"confidence {decision.confidence:.3f} below threshold {threshold:.3f}",
        )
    grounding = getattr(decision, "grounding", None)
    checked = grounding_threshold is not None and grounding is not None and grounding.grounded
    if checked and grounding.score < grounding_threshold:
        return (
            OutcomeCode.NOT_IN_VIEW,
            f"{grounding.phrase!r} is not in view (score {grounding.score:.2f} < grounding_threshold"
            f" {grounding_threshold:.2f}); {call.function} not published",
        )
    if checked and getattr(grounding, "other_colour", None):
        return (
            OutcomeCode.NOT_IN_VIEW,
            f"{grounding.phrase!r} is not in view: the {grounding.other_colour} is (colour score"
            f" {grounding.colour_score:.2f} against {grounding.other_score:.2f}); {call.function} not published",
        )
    return OutcomeCode.OK, f"{call.function} decided"
