"""A second model's opinion before a call is published (the node's ``second_opinion`` parameter).

Two models trained apart (another seed: other training draws, another data order) agree on what
they were both taught, and seldom make the same mistake on what neither was: a verb never seen, a
request that is not for a robot. Publishing a call only when both make it is the committee (or
deep-ensemble) test of "do I know this?", and it is independent of the confidence, which the
bundled model has high on things it does not understand. One rule, in one place, for the engine
and for the evaluation. No rclpy, no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from octopus_ros.runtime.outcomes import NOT_UNDERSTOOD, OutcomeCode

SECOND_OPINION_DIR = "second_opinion"  # a checkpoint's second model, in a folder of that name inside it


def second_opinion_dir(model_path: str | Path, setting: str = "auto") -> Path | None:
    """The second model a ``second_opinion`` setting means for the model at ``model_path``: "auto"
    = the checkpoint's own ``second_opinion/`` folder when it holds a model (config.json), else
    none; "", "none" or "off" = none (the node's parameter takes "" or "none": ``-p
    second_opinion:=off`` would reach it as YAML's false); anything else = that directory."""
    value = (setting or "").strip()
    if value.lower() in ("", "off", "none"):
        return None
    if value.lower() == "auto":
        folder = Path(model_path) / SECOND_OPINION_DIR
        return folder if (folder / "config.json").is_file() else None
    return Path(value)


def missing_folder(path: Path | None) -> str | None:
    """Why the folder a ``second_opinion`` setting names (:func:`second_opinion_dir`) cannot be a
    second model before anything is loaded: it is not a directory; None when it is, or the setting
    is off. The command-line tools' check (``octopus_evaluate``, ``octopus_replay --offline``)."""
    if path is not None and not Path(path).is_dir():
        return f"{path}: no such directory (a checkpoint directory, auto or off)"
    return None


class SecondOpinionError(ValueError):
    """A second model that cannot stand beside the first (it names the folder and the reason)."""


def same_functions(model_path: str | Path, second_path: str | Path) -> None:
    """Check that the second model was trained on the first's functions (its ``functions.yaml``
    equal to the first's); SecondOpinionError otherwise."""
    from octopus_ros.functions import FunctionRegistry, RegistryError

    files = [Path(model_path) / "functions.yaml", Path(second_path) / "functions.yaml"]
    try:
        first, second = (FunctionRegistry.from_yaml(f) for f in files)
    except (OSError, RegistryError) as e:
        raise SecondOpinionError(
            f"second_opinion {second_path}: cannot compare the two models' functions: {e}"
        ) from e
    if first != second:
        raise SecondOpinionError(
            f"second_opinion {second_path}: its functions.yaml is not {files[0]}'s (a second opinion must "
            "know the same functions, token for token)"
        )


SECOND_OPINION_REASON = "second opinion"  # the start of every reason this rule gives


def sees_the_same_unsaid_colour(
    registry: Any, rules: Any, utterance: str, call: Any, second_call: Any, second_grounding: Any
) -> bool:
    """Whether the second model's call is ``call`` but for the colour of its object, a colour the
    request does not say, and the second model's grounding head sees ``call``'s object there.

    "set the keys on the shelf" names the keys and no colour: the colour is the view's to give
    (the first model's call carries the one its head resolved, lean/decision.resolve_colourless),
    and a second model whose own head was not sure enough to resolve it keeps its guess ("orange
    keys") and is held back NOT_IN_VIEW with "the blue keys is" there (``Grounding.other_colour``).
    Both models then make the same call about what was asked, and both heads see the same object.
    ``rules``: a grounding head's vocabulary (``parse``: (category, colour) of a phrase); None, a
    function without a ``view_arg``, another function or any other argument different: False."""
    if rules is None or second_call is None or second_grounding is None or not isinstance(utterance, str):
        return False
    spec = registry.by_name(call.function)
    if spec is None or spec.view_arg is None or second_call.function != call.function:
        return False
    mine, theirs = dict(call.kwargs()), dict(second_call.kwargs())
    if mine.keys() != theirs.keys() or any(mine[k] != theirs[k] for k in mine if k != spec.view_arg):
        return False
    phrase, guess = mine.get(spec.view_arg), theirs.get(spec.view_arg)
    if not isinstance(phrase, str) or not isinstance(guess, str):
        return False
    category = rules.colourless(utterance)
    if category is None:
        return False  # the request says a colour (then it is the models' to get right) or no object
    if rules.parse(phrase)[0] != category or rules.parse(guess)[0] != category:
        return False
    return getattr(second_grounding, "other_colour", None) == phrase


def second_opinion_outcome(
    call: Any,
    second_code: OutcomeCode,
    second_reason: str,
    second_call: Any,
    *,
    same_unsaid_colour: bool = False,
) -> tuple[OutcomeCode, str]:
    """The outcome of a call that earned OK on its own merits, given a second model's opinion of the
    same request and frame (the node's ``second_opinion``: a model trained apart, whose mistakes on
    what neither was taught are seldom the same ones).

    One rule for the node's engine and for the evaluation: the call stays OK only when the second
    model makes the same call, function and every argument, and its decision earned OK too
    (``second_code``, by :func:`decision_outcome` with the same settings) or was declined only by
    a novelty limit of the request ("not understood": its text or request novelty). Whether the
    request is one the models were taught is the first model's test, which the call has passed;
    the second model's part is the call itself (stop 39: asking both models to find the request
    familiar declined 37 right calls of the four written sets for every 3 wrong ones it held back).
    ``same_unsaid_colour`` (:func:`sees_the_same_unsaid_colour`): the second call differs only in a
    colour the request does not say, and the second model's head sees the call's colour there; a
    second decision held back NOT_IN_VIEW for its own guess then counts as the same call (stop 40:
    2 right calls of the four written sets, none wrong).
    Otherwise it is NO_ACTION with the reason "second opinion: ..." (what the second model decided,
    or why it did not act), since a wrong action is worse than none."""
    if same_unsaid_colour and second_code == OutcomeCode.NOT_IN_VIEW:
        return (
            OutcomeCode.OK,
            f"{call.function} decided (the second model makes the same call; the colour the request"
            " does not say is the one both models' grounding heads see)",
        )
    same = second_call is not None and second_call.to_text() == call.to_text()
    if same and second_code == OutcomeCode.NO_ACTION and second_reason.startswith(NOT_UNDERSTOOD):
        return OutcomeCode.OK, f"{call.function} decided (the second model makes the same call)"
    if second_code != OutcomeCode.OK:
        return (
            OutcomeCode.NO_ACTION,
            f"{SECOND_OPINION_REASON}: the second model does not act ({second_code.name}: {second_reason});"
            f" {call.function} not published",
        )
    if second_call is None or second_call.to_text() != call.to_text():
        return (
            OutcomeCode.NO_ACTION,
            f"{SECOND_OPINION_REASON}: the second model decides {second_call} instead of {call};"
            f" {call.function} not published",
        )
    return OutcomeCode.OK, f"{call.function} decided (the second model agrees)"


def judge_second_decision(
    registry: Any,
    rules: Any,
    utterance: str,
    call: Any,
    second: Any,
    second_code: OutcomeCode,
    second_reason: str,
) -> tuple[OutcomeCode, str]:
    """:func:`second_opinion_outcome` of ``call`` given the second model's decision ``second`` (a
    Decision: ``call``, ``error``, ``grounding``) and the outcome it earned, with
    :func:`sees_the_same_unsaid_colour` by ``rules`` (the second model's grounding vocabulary, or
    None): the engine's and the evaluation's one way to ask."""
    second_call = second.call if second.error is None else None
    same_colour = sees_the_same_unsaid_colour(
        registry, rules, utterance, call, second_call, getattr(second, "grounding", None)
    )
    return second_opinion_outcome(
        call, second_code, second_reason, second_call, same_unsaid_colour=same_colour
    )
