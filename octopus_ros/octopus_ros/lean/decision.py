"""A decision and how it is finished, torch-free: shared by the torch runtime
(``octopus_ros.model.runtime.Octopus``) and the onnxruntime one (:mod:`octopus_ros.lean.runtime`).

* :class:`Decision`: the model's answer to one instruction, as the node's engine reads it;
* :func:`parse_text`: model text -> (call, None) or (None, ParseError), never raising;
* :func:`finish_decision`: what follows the decode on both runtimes, the text novelty of the
  words to understand, the image novelty, whether the call's object is the one the request names
  (:func:`object_mismatch`), the grounding of a ``requires_view`` call's object and the
  colourless-reference rule (:func:`resolve_colourless`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

from octopus_ros.functions.language import has_cjk
from octopus_ros.functions.registry import copied_args, copied_values

from .prompt import as_written

log = logging.getLogger(__name__)


@dataclass
class Decision:
    """The model's answer to one instruction."""

    call: Any | None  # octopus_ros.functions.Call
    error: Any | None  # octopus_ros.functions.ParseError (has .kind and .message)
    confidence: float
    raw_text: str
    # seconds: preprocess, encode, image_prefill, prefill, decode, total; counts: tokens, forward_passes
    timings: dict[str, float] = field(default_factory=dict)
    mode: str = "constrained"
    # (logits (V,), chosen id) of each freely chosen token (decide(keep_logits=True) only)
    free_logits: list | None = None
    # (start, end, log probability) of each freely chosen token's text in raw_text (constrained)
    free_pieces: list = field(default_factory=list)
    # novelty of the request (model/novelty.py): NaN when the checkpoint has no such profile
    text_novelty: float = float("nan")
    image_novelty: float = float("nan")
    # request novelty of the call (lean/novelty.py RequestProfile): NaN without a call, a request
    # profile, or a hidden state (modes other than constrained)
    request_novelty: float = float("nan")
    # grounding (model/grounding.py) of the object a requires_view call names; None when the call
    # needs no view, or the model has no grounding head
    grounding: Any | None = None  # octopus_ros.lean.grounding.Grounding
    # the model's own phrase when a colourless reference was resolved to the colour in view
    colour_resolved_from: str | None = None
    # probability of the colour the model guessed for a colourless reference whose object is in
    # view, left out of ``confidence`` (discount_colour_guess); NaN: nothing left out
    colour_guess_prob: float = float("nan")
    # the model's own phrase when the colour it guessed for an object searched by its category
    # alone was dropped (drop_unsaid_colour: find_item('orange phone') -> find_item('phone'))
    colour_dropped_from: str | None = None
    # probability of the span the copier chose for a copied argument (lean/copier.py); NaN: none
    copy_prob: float = float("nan")
    # why the call's object is not the one the request names (object_mismatch); None: it is, or
    # the request names no object of the grounding vocabulary
    object_mismatch: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.call is not None


def _functions():
    """The function-registry room, imported lazily (it is optional for model training)."""
    from octopus_ros import functions

    return functions


def make_error(kind: str, message: str, text: str = ""):
    """A ``functions.ParseError`` of ``kind``."""
    return _functions().ParseError(kind=kind, message=message, text=text)


def parse_text(kind: str, text: str, registry, allowlist) -> tuple[Any | None, Any | None]:
    """Parse model text (``kind`` "call": functional tokens, else plain ``name(args)``) into
    (call, None) or (None, ParseError); never raises."""
    fn = _functions()
    parser = fn.parse_call if kind == "call" else fn.parse_plain
    try:
        result = parser(text, registry, allowlist=allowlist)
    except fn.ParseError as e:
        return None, e
    except Exception as e:  # a parser bug must not take the node down
        log.exception("parser failed on %r", text)
        return None, make_error("INTERNAL", f"parser failed: {e}", text)
    if isinstance(result, fn.ParseError):
        return None, result
    return result, None


def registry_characters(registry) -> str:
    """Every character in the registry's names, enum values and descriptions (probed when a
    byte-level token ends inside a multi-byte character)."""
    chars: set[str] = set()

    def walk(obj) -> None:
        if isinstance(obj, str):
            chars.update(obj)
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(k)
                walk(v)
        elif isinstance(obj, list | tuple):
            for v in obj:
                walk(v)

    data = registry.to_dict()
    for spec in data["functions"]:
        spec.pop("phrasings", None)  # the synthetic world's training phrasings: never decoded
    walk(data)
    return "".join(sorted(chars))


def without_copied(registry, instruction: str, call) -> str:
    """``instruction`` without the spans ``call`` copies into ``source: utterance`` arguments (a
    message body is meant to be new text). One rule for the text novelty score and for the
    vocabulary it is scored against (training/novelty_profile.py ``action_texts``)."""
    for value in copied_values(registry.by_name(call.function), call):
        instruction = instruction.replace(value, " ", 1)
    return instruction


def words_to_understand(registry, instruction: str, decision: Decision) -> str:
    """The utterance without the spans the call copies into ``source: utterance`` arguments (a
    message body is meant to be new text: its words say nothing about whether the request was
    understood), for the text novelty score."""
    return without_copied(registry, instruction, decision.call) if decision.ok else instruction


def texts_to_understand(registry, instruction: str, decision: Decision) -> tuple[str, ...]:
    """What the text novelty is the least of: :func:`words_to_understand`, and of it the clauses
    that carry the call when others do not (functions/asking.carrying_clauses: a reason or an aside
    said beside the request, "water the plant please, we forgot all weekend with the guests here",
    says nothing about whether the request was understood). The least, so that leaving a known
    word of an aside out ("哎，…") never makes a request less understood than it was whole. Not for
    a call that copies a message: where its clauses end is where the message ends, and an aside
    taken into the copy ("text Bob we're out of milk, yeah I told him") would be sent."""
    words = words_to_understand(registry, instruction, decision)
    spec = registry.by_name(decision.call.function) if decision.ok else None
    if spec is None or spec.decline or copied_args(spec):
        return (words,)
    from octopus_ros.functions.asking import carrying_clauses

    carried = carrying_clauses(spec, decision.call, words)
    return (words,) if carried is None else (words, carried)


def named_objects(model, utterance: str) -> tuple[str, ...] | None:
    """The object phrases ``utterance`` names, which a ``names_object`` argument is narrowed to
    (functions/grammar.py ``CallGrammar.bind``): by ``model.grounding``'s vocabulary
    (``GroundingRules.named_phrases``); None when the model has no grounding head or its
    ``narrow_objects`` is off. Both runtimes, constrained decoding."""
    rules = getattr(model, "grounding", None)
    if rules is None or not getattr(model, "narrow_objects", False):
        return None
    return rules.named_phrases(utterance)


def resolve_colourless(decision: Decision, rules, maps, utterance: str, spec, min_score: float) -> None:
    """A colourless reference ("grab the cup", "把杯子拿起来") names the colour that is in view.

    When the utterance names the call's object category and no colour, the model's colour is a
    guess (the words do not give it); the grounding head's most probable colour of that
    category at its place in the frame (``rules``: the head's GroundingRules, ``maps``: its
    GroundingMaps of the frame) replaces it in the call's ``view_arg`` when the head gives that
    colour a probability of at least ``min_score``; only a string argument is rewritten (an enum
    value such as feed_pet's 'cat' takes no colour). The model's phrase is kept in
    ``decision.colour_resolved_from``; the grounding is that of the new phrase. An utterance that
    names a colour, or another object, is never rewritten."""
    g = decision.grounding
    if g is None or not g.grounded or g.category is None or spec.view_arg is None:
        return
    arg = next((a for a in spec.args if a.name == spec.view_arg), None)
    if arg is None or arg.type != "string":
        return  # an enum such as feed_pet's pet ('dog' | 'cat') has no colour to write
    category = rules.colourless(utterance)
    if category is None or category != g.category:
        return
    word = rules.category_word(category)
    seen = rules.ground(maps, word)
    if not seen.resolved or seen.resolved == g.phrase or not seen.colour_score >= min_score:
        return  # the head is not sure of the colour either: the model's stands
    args = tuple(
        dataclasses.replace(a, value=seen.resolved) if a.name == spec.view_arg else a
        for a in decision.call.args
    )
    decision.colour_resolved_from = g.phrase
    decision.call = dataclasses.replace(decision.call, args=args)
    decision.grounding = rules.ground(maps, seen.resolved)


def discount_colour_guess(decision: Decision, rules, utterance: str, spec) -> None:
    """A colourless reference ("pick the book up", "端起碗") whose object is in view: the colour
    the model wrote is a guess the words cannot settle, and the node takes the colour from the
    view (:func:`resolve_colourless`), so the guess's probability is left out of the confidence.

    Applies when the utterance names the call's object category and no colour, the model's
    phrase for it has a colour ("green book"), and the grounding of the call's object (after
    resolution) finds it in the frame. The confidence is then that of everything else the model
    chose (function, object, other arguments); the colour tokens' probability goes to
    ``decision.colour_guess_prob``. Nothing changes otherwise, and never when the request says a
    colour: then a wrong colour is the model's error and must count.

    Measured on the bundled model (natural set, threshold 0.5): 9 right calls held back before
    are published, none wrong; held-out template splits: no change; the safety probe's safe
    requests: 3 more published (2 right, 1 with the wrong place)."""
    g = decision.grounding
    if not decision.ok or g is None or not g.grounded or spec.view_arg is None or not decision.free_pieces:
        return
    category = rules.colourless(utterance)
    if category is None:
        return
    value = decision.colour_resolved_from or next(
        (a.value for a in decision.call.args if a.name == spec.view_arg), None
    )
    if not isinstance(value, str) or rules.parse(value)[0] != category:
        return
    word = value.split(" ", 1)[0]
    if word == value or rules.parse(word)[1] is None:
        return  # the phrase does not start with a colour word
    _leave_out_colour(decision, value, word)


def _leave_out_colour(decision: Decision, value: str, word: str) -> None:
    """The probability of the colour ``word`` that opens the call's ``value`` goes to
    ``decision.colour_guess_prob`` and out of ``decision.confidence`` (the product of the other free
    tokens' probabilities); nothing changes when the value is not in the raw text or the grammar
    forced the colour (no free token there: nothing guessed)."""
    at = decision.raw_text.find(f"'{value}'")
    if at < 0:
        return
    start, end = at + 1, at + 1 + len(word)
    guess = [lp for a, b, lp in decision.free_pieces if start <= a < b <= end]
    if not guess:
        return
    rest = [lp for a, b, lp in decision.free_pieces if not start <= a < b <= end]
    decision.colour_guess_prob = math.exp(sum(guess))
    decision.confidence = math.exp(sum(rest))


# words that point at an object in view ("find one like this", "这种的帮我找一个")
_POINTING = re.compile(
    r"(?<![a-z])(?:this|these|that one|those|like that|like this)(?![a-z])|这个|这种|这样的|同样的", re.I
)


def drop_unsaid_colour(decision: Decision, rules, utterance: str, spec) -> None:
    """An object named by its category alone for a function that needs no view ("can you look for
    my phone", "帮我找一下钥匙" decided as ``find_item('orange phone')``): the colour the model wrote
    is a guess, and no frame can give it (the item is looked for because it is not in view, which is
    what :func:`resolve_colourless` would read), so the call names the category the user said
    (``find_item('phone')``) and the guess's probability is left out of the confidence, as
    :func:`discount_colour_guess` does. The model's phrase is kept in
    ``decision.colour_dropped_from``. Only a ``names_object`` string argument is rewritten, only
    when the request names that category and no colour (in English with a determiner, "my phone":
    "I lost one of these, can you find it?" names no can), never when it points at an object ("find
    me one like that", 这种), and never for a ``requires_view`` function."""
    if not decision.ok or spec.requires_view or _POINTING.search(utterance):
        return  # "find me one like that": the object pointed at gives its colour
    category = rules.colourless(utterance)
    if category is None:
        return
    if not has_cjk(utterance) and category not in rules.determined(utterance):
        return  # an English category word without a determiner may be another word: "can you find it"
    for arg in spec.args:
        if arg.type != "string" or not getattr(arg, "names_object", False) or arg.source is not None:
            continue
        value = next((a.value for a in decision.call.args if a.name == arg.name), None)
        if (
            not isinstance(value, str)
            or rules.parse(value) == (category, None)
            or rules.parse(value)[0] != category
        ):
            continue
        word = value.split(" ", 1)[0]
        if word == value or rules.parse(word)[1] is None:
            continue  # the phrase does not start with a colour word
        _leave_out_colour(decision, value, word)
        bare = rules.category_word(category)
        decision.colour_dropped_from = value
        decision.call = dataclasses.replace(
            decision.call,
            args=tuple(
                dataclasses.replace(a, value=bare) if a.name == arg.name else a for a in decision.call.args
            ),
        )
        return


def object_mismatch(rules, spec, call, utterance: str) -> str | None:
    """Whether ``call`` acts on another object than the one ``utterance`` names with its colour,
    by the grounding vocabulary (``rules``: GroundingRules, :meth:`~GroundingRules.mentions`).

    The request names objects with their colours ("the green can", "黑钥匙", "橙色的球"); a string
    or enum argument of the call whose value names an object category is another object when
    its category is not one of those ("throw the green can into recycling" decided as
    ``recycle('green bottle', …)``), or when its colour is not one said for that category ("the
    orange ball" decided as 'blue ball'). Returns the reason, or None. Colour-qualified mentions
    count, and English category words right after a determiner ("put the apple in the box"
    decided as ``place('banana', 'box')``; :meth:`GroundingRules.determined`), which name the
    category in any colour; other bare category words do not, as they may be part of another noun
    ("trash can", 书架 "bookshelf") or another word ("can you"). A request that names no object
    this way ("pick that up", "把杯子拿起来") constrains nothing here: the grounding check and the
    colourless-reference rule decide those. Copied arguments (``source: utterance``) are the
    user's own words and are not checked.

    An enum whose values are object categories (feed_pet's pet: dog, cat) is also checked against
    bare mentions: its values carry no colour, so the bare word is how a request names one ("feed
    the cat"). When the request names some of the enum's values and the call's value is not one
    of them ("feed the cat" decided as ``feed_pet('dog')``, with a dog in view), it is another
    object. A request that names none ("feed it") constrains nothing.

    A request that takes an object back names the one after its last correction word
    (functions/mentions.after_correction: "你拿那个白色的杯子……哦不对，拿橙色的碗" names the orange
    bowl, so ``pick_up('white cup')`` is another object), when an object is named there with its
    colour or a determiner ("grab the red cup, no wait, the blue one" names no object after "wait":
    read whole)."""
    from octopus_ros.functions.mentions import after_correction

    meant = after_correction(utterance)
    if meant is not None and (any(rules.mentions(meant).values()) or rules.determined(meant)):
        utterance = meant
    mentioned = rules.mentions(utterance)
    swapped = enum_mismatch(rules, spec, call, mentioned)
    if swapped is not None:
        return swapped
    said = {category: colours for category, colours in mentioned.items() if colours}
    for category in rules.determined(utterance):
        said.setdefault(category, set())  # "the apple": that category, any colour
    if not said:
        return None
    kinds = {a.name: a for a in getattr(spec, "args", ())}
    for arg in call.args:
        declared = kinds.get(arg.name)
        if declared is None or declared.source == "utterance" or declared.type not in ("string", "enum"):
            continue
        category, colour = rules.parse(str(arg.value))
        if category is None:
            continue
        if category not in said:
            # a category named with a determiner has no colour: "the apple", not "the  apple"
            named = ", ".join(f"{' or '.join(sorted(k))} {c}".lstrip() for c, k in sorted(said.items()))
            return f"the request names the {named}; the call's {arg.name} {arg.value!r} is another object"
        if colour is not None and said[category] and colour not in said[category]:
            colours = " or ".join(sorted(said[category]))
            return f"the request names the {colours} {category}; the call's {arg.name} is {arg.value!r}"
    return None


def enum_mismatch(rules, spec, call, mentioned: dict[str, set[str]]) -> str | None:
    """The part of :func:`object_mismatch` for enums whose values are object categories: the
    reason when the request names some of the enum's values (``mentioned``:
    ``rules.mentions(utterance)``, bare mentions count) and the call's value is not one of them;
    None otherwise."""
    for arg in call.args:
        declared = next((a for a in getattr(spec, "args", ()) if a.name == arg.name), None)
        if declared is None or declared.type != "enum":
            continue
        named = [v for v in declared.values if rules.parse(str(v))[0] in mentioned]
        if named and arg.value not in named and rules.parse(str(arg.value))[0] is not None:
            return (
                f"the request names the {' or '.join(named)}; the call's {arg.name} {arg.value!r} "
                "is another object"
            )
    return None


def decoded_decision(res, registry, allowlist, timings: dict[str, float]) -> Decision:
    """The Decision of a constrained decode ``res`` (lean.decoding.DecodeResult), for both
    runtimes: a decode error as the decision's error; otherwise the call parsed against
    ``registry`` and ``allowlist``, with the decoder's confidence (0 when the text does not
    parse), its free tokens, and the decode's token counts added to ``timings``."""
    timings.update(
        tokens=float(len(res.token_ids)),
        forward_passes=float(res.forward_passes),
        forced_tokens=float(res.forced_tokens),
    )
    if res.error is not None:
        return Decision(None, make_error(res.error[0], res.error[1], res.text), 0.0, res.text, timings)
    call, error = parse_text("call", res.text, registry, allowlist)
    return Decision(
        call,
        error,
        res.confidence if error is None else 0.0,
        res.text,
        timings,
        free_logits=res.free_logits,
        free_pieces=res.free_pieces,
    )


def request_novelty(profile: Any, decision: Decision, hidden: Any) -> float:
    """The request novelty of ``decision``'s call from the LM's ``hidden`` state where it picked
    the function (``profile``: the checkpoint's lean/novelty.py RequestProfile); NaN without a
    call, a profile or a hidden state."""
    if not decision.ok or profile is None or hidden is None:
        return math.nan
    return float(profile.score(hidden, decision.call.function))


def copied_as_written(decision: Decision, registry, written: str) -> None:
    """Each copied argument (``source: utterance``) of ``decision``'s call in the characters of
    ``written``, the utterance as the user gave it (lean/prompt.as_written: Traditional Chinese,
    full-width letters and capitals as written). The model copied it from the text it reads
    (lean/prompt.model_utterance); the receiver of a message gets the sender's words. A value
    that would be longer than its argument allows (more whitespace as written) stays as copied."""
    if not decision.ok:
        return
    spec = registry.by_name(decision.call.function)
    copied = {a.name: a for a in copied_args(spec)}
    args, changed = [], False
    for a in decision.call.args:
        declared = copied.get(a.name)
        if declared is not None and isinstance(a.value, str):
            value = as_written(a.value, written)
            if value != a.value and len(value) <= (declared.max_length or len(value)):
                a, changed = dataclasses.replace(a, value=value), True
        args.append(a)
    if changed:
        decision.call = dataclasses.replace(decision.call, args=tuple(args))


def finish_decision(
    model, decision: Decision, encoding, instruction: str, written: str | None = None
) -> Decision:
    """Novelty, grounding and colour resolution of a decoded ``decision`` (both runtimes), and
    its copied arguments in the user's own characters (:func:`copied_as_written`).

    ``model``: ``registry``, ``novelty`` (``text_score(text)``), ``grounding`` (GroundingRules or
    None), ``resolve_colour`` / ``resolve_colour_min``; ``encoding``: ``novelty`` and ``grounding``
    (the frame's GroundingMaps or None); ``instruction``: the utterance as the model read it;
    ``written``: as the user gave it (None: the same)."""
    decision = _finish(model, decision, encoding, instruction)
    if written is not None:
        copied_as_written(decision, model.registry, written)
    return decision


def _finish(model, decision: Decision, encoding, instruction: str) -> Decision:
    decision.text_novelty = min(
        model.novelty.text_score(text) for text in texts_to_understand(model.registry, instruction, decision)
    )
    decision.image_novelty = getattr(encoding, "novelty", math.nan)
    rules, maps = model.grounding, getattr(encoding, "grounding", None)
    spec = model.registry.by_name(decision.call.function) if decision.ok else None
    if spec is None or rules is None:
        return decision
    decision.object_mismatch = object_mismatch(rules, spec, decision.call, instruction)
    drop_unsaid_colour(decision, rules, instruction, spec)
    if maps is not None:
        phrase = spec.view_phrase(decision.call)
        if phrase is not None:
            decision.grounding = rules.ground(maps, phrase)
            if model.resolve_colour:
                resolve_colourless(decision, rules, maps, instruction, spec, model.resolve_colour_min)
                discount_colour_guess(decision, rules, instruction, spec)
    return decision


def canonical_context(registry, context) -> tuple:
    """``context`` (ContextExamples or (instruction, call text) pairs) with every answer checked
    against ``registry`` and written in the model's ``<nexa_i>(...)<nexa_end>`` form. The call may
    be given that way or by name (``pick_up('red cup')``). Raises ValueError naming the first bad
    example (its index, instruction and call)."""
    from .prompt import ContextExample, as_context

    examples = as_context(context)
    if not examples:
        return ()
    fn = _functions()
    out = []
    for i, c in enumerate(examples):
        call = fn.parse_plain(c.answer, registry)
        if isinstance(call, fn.ParseError):
            raise ValueError(
                f"in-context example {i} ({c.instruction!r} => {c.answer!r}): not a valid call of "
                f"{registry.source}: {call.message}"
            )
        out.append(ContextExample(c.instruction, call.to_text()))
    return tuple(out)
