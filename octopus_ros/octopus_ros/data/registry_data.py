"""Instruction data generated from the function registry alone (``octopus_finetune --data registry``).

For every enabled function with ``examples`` (see :mod:`octopus_ros.functions.examples`), an
instruction is one of its phrasings in one language with every ``{slot}`` filled by a value
of the argument (its ``examples``, its enum values, or its number range) said one of the ways
the registry gives; the answer is the canonical call with those values. Nothing here is
specific to the 13 bundled functions.

:func:`split_phrasings` holds some phrasings out (they never appear in training), so a
fine-tune can measure unseen phrasings of the user's functions. :func:`doc_lines` are the
registry's descriptions as text, the way Octopus v2 teaches a functional token what its
function does. :func:`counterfactual` turns a phrasing that fixes an argument and says it in
one of the registry's spoken forms into a phrasing for every value of it. No torch, no rclpy.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from octopus_ros.functions import FunctionRegistry, FunctionSpec, make_call
from octopus_ros.functions.examples import Phrasing, slot_values
from octopus_ros.functions.mentions import mention_spans
from octopus_ros.functions.registry import copied_args


@dataclass(frozen=True)
class PhrasingRef:
    """Phrasing ``index`` of ``function`` in ``language`` (id ``open_door.en.3``)."""

    function: str
    language: str
    index: int
    phrasing: Phrasing
    variant: str = ""  # "~on" for the counterfactual of the phrasing that says argument `on`

    @property
    def id(self) -> str:
        return f"{self.function}.{self.language}.{self.index}{self.variant}"


@dataclass(frozen=True)
class RegistryExample:
    instruction: str
    answer: str  # canonical <nexa_i>(...)<nexa_end>
    language: str
    function: str
    phrasing: str  # PhrasingRef.id
    twins: tuple[tuple[str, str], ...] = ()  # (instruction, answer) of the same request, other values
    alone: str = ""  # the instruction without the remark said beside it (generate's asides; "": none)


def phrasings(registry: FunctionRegistry) -> list[PhrasingRef]:
    """Every example phrasing of every enabled function, in registry order."""
    out = []
    for spec in registry.enabled():
        for lang, items in spec.examples.items():
            out += [PhrasingRef(spec.name, lang, k, p) for k, p in enumerate(items)]
    return out


def split_phrasings(
    refs: Sequence[PhrasingRef], fraction: float, seed: int = 0, *, min_left: int = 3
) -> tuple[list[PhrasingRef], list[PhrasingRef]]:
    """(train, held out): ``fraction`` of each function's phrasings per language held out, as
    long as at least ``min_left`` stay for training (functions with few phrasings keep them all)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    groups: dict[tuple[str, str], list[PhrasingRef]] = {}
    for r in refs:
        groups.setdefault((r.function, r.language), []).append(r)
    train, held = [], []
    for (fn, lang), group in groups.items():
        rng = np.random.default_rng([seed, sum(map(ord, f"{fn}.{lang}"))])
        n_out = min(int(round(fraction * len(group))), max(0, len(group) - min_left))
        order = rng.permutation(len(group))
        out = {int(i) for i in order[:n_out]}
        for k, r in enumerate(group):
            (held if k in out else train).append(r)
    return train, held


def counterfactual(registry: FunctionRegistry, ref: PhrasingRef) -> list[PhrasingRef]:
    """Phrasings derived from ``ref`` that make a fixed argument a slot.

    A phrasing ``{say: "turn on the {room} light", args: {on: true}}`` says its fixed value in one
    of the spoken forms the registry gives for it ("on"); with that form made a slot
    (``turn {on} the {room} light``) the same words say every value ("turn off the kitchen
    light" -> ``on=False``). Only where the literal text holds exactly one spoken form of any
    value of the argument, and it is a form of the fixed value: "{room}不用开灯了" (off, said with
    the form 开 of on) or "kill the lights" (no form) give nothing. Each value then comes with
    words that differ from the others' only in its form, which is what a model has to read to
    tell them apart. Enum and bool arguments with spoken forms in the phrasing's language.
    """
    spec = registry.by_name(ref.function)
    by_name = {a.name: a for a in spec.args}
    out = []
    for name, value in ref.phrasing.fixed:
        arg = by_name.get(name)
        if arg is None or arg.type not in ("enum", "bool") or name in ref.phrasing.slots:
            continue
        choices = slot_values(arg, ref.language)
        if len(choices) < 2 or value not in choices:
            continue
        hits = []  # (segment, start, end, value) in the literal text between slots
        segments = list(string.Formatter().parse(ref.phrasing.say))
        for k, (literal, *_rest) in enumerate(segments):
            found = [
                (s, e, v)
                for v, forms in choices.items()
                for f in forms
                for s, e in mention_spans(literal, (f,))
            ]
            # longest first, no overlaps: 打开 wins over the 开 inside it
            found.sort(key=lambda h: (h[0] - h[1], h[0]))
            taken: list[tuple[int, int, object]] = []
            for s, e, v in found:
                if all(e <= s2 or s >= e2 for s2, e2, _ in taken):
                    taken.append((s, e, v))
            hits += [(k, s, e, v) for s, e, v in taken]
        if len(hits) != 1 or hits[0][3] != value:
            continue
        k, s, e, _ = hits[0]

        def esc(text: str) -> str:
            return text.replace("{", "{{").replace("}", "}}")

        pieces = []
        for j, (literal, field, spec_, conv) in enumerate(segments):
            pieces.append(esc(literal[:s]) + "{" + name + "}" + esc(literal[e:]) if j == k else esc(literal))
            if field is not None:
                pieces.append(
                    "{" + field + (f"!{conv}" if conv else "") + (f":{spec_}" if spec_ else "") + "}"
                )
        fixed = tuple((n, v) for n, v in ref.phrasing.fixed if n != name)
        out.append(replace(ref, phrasing=Phrasing("".join(pieces), fixed), variant=f"~{name}"))
    return out


def value_forms(spec: FunctionSpec, language: str) -> set[str]:
    """Every spoken form of every value of ``spec``'s enum arguments in ``language`` (set_light:
    "kitchen", "lounge", 厨房...): the names its requests share with other functions' ("go to the
    kitchen"). Bool forms ("on", 开) are the function's own decision words, not names of things."""
    forms: set[str] = set()
    for arg in spec.args:
        if arg.type == "enum":
            for said in slot_values(arg, language).values():
                forms.update(said)
    return forms


def with_counterfactuals(registry: FunctionRegistry, refs: Sequence[PhrasingRef]) -> list[PhrasingRef]:
    """``refs`` followed by the :func:`counterfactual` phrasings of each, every phrasing once
    ("turn on ..." and "turn off ..." give the same one)."""
    seen = {(r.function, r.language, r.phrasing) for r in refs}
    out = list(refs)
    for r in refs:
        for c in counterfactual(registry, r):
            if (c.function, c.language, c.phrasing) not in seen:
                seen.add((c.function, c.language, c.phrasing))
                out.append(c)
    return out


def realise(
    registry: FunctionRegistry, ref: PhrasingRef, rng: np.random.Generator, *, twins: bool = False
) -> RegistryExample:
    """One instruction from a phrasing: random values for its slots, said one of the given ways.

    ``twins``: for a :func:`counterfactual` phrasing, the example also carries the same request
    with each other value of the argument it made a slot (same words elsewhere, same other
    values): a minimal pair whose only difference is the value's word and the answer's value."""
    spec: FunctionSpec = registry.by_name(ref.function)
    by_name = {a.name: a for a in spec.args}
    values, spoken = dict(ref.phrasing.fixed), {}
    for slot in ref.phrasing.slots:
        choices = slot_values(by_name[slot], ref.language)
        keys = list(choices)
        value = keys[int(rng.integers(len(keys)))]
        forms = choices[value]
        values[slot], spoken[slot] = value, forms[int(rng.integers(len(forms)))]
    call = make_call(registry, spec.name, **values)
    pairs: list[tuple[str, str]] = []
    if twins and ref.variant:
        name = ref.variant.removeprefix("~")
        for value, forms in slot_values(by_name[name], ref.language).items():
            if value != values[name]:
                twin = make_call(registry, spec.name, **{**values, name: value}).to_text()
                said = {**spoken, name: forms[int(rng.integers(len(forms)))]}
                pairs.append((ref.phrasing.fill(said), twin))
    return RegistryExample(
        instruction=ref.phrasing.fill(spoken),
        answer=call.to_text(),
        language=ref.language,
        function=spec.name,
        phrasing=ref.id,
        twins=tuple(pairs),
    )


# A remark said beside a request ("turn the hall light on, I'm carrying the laundry down"): what
# :func:`aside_lines` keeps of a corpus of real sentences, and how one is joined to a request
ASIDE_WORDS_EN = (3, 12)  # an English remark's length in words, least and most
ASIDE_CHARS_ZH = (4, 16)  # a Chinese remark's length in characters
_ASIDE_QUESTION = ("?", "？", "吗", "呢", "吧")
# words that call off or ask for something: a remark with one could change what the request asks
_ASIDE_CANCEL = re.compile(
    r"(?i)(?<![a-z'])(?:don't|do not|never|stop|cancel|wait|forget|instead|please|let's|can you|could you)"
    r"(?![a-z'])|别|不要|算了|取消|等等|改成|还是|请|帮我|给我"
)
# a line that speaks to the listener ("you are dull", 你是个酒鬼) or of harm is talk with a chat bot,
# not a remark beside a request
_ASIDE_TALK = re.compile(
    r"(?i)(?<![a-z'])(?:you|your|you're|yours|u|die|dead|hate|stupid)(?![a-z'])|你|您|死|恨|蠢|笨"
)
_ASIDE_JOIN = {"en": ", ", "zh": "，"}
_ASIDE_END = ".!。！…"


def aside_lines(
    registry: FunctionRegistry, corpus: Mapping[str, Sequence[str]]
) -> dict[str, tuple[str, ...]]:
    """{language: sentences of ``corpus``} fit to stand beside a request as a remark: a statement
    (no question) of a few words (ASIDE_WORDS_EN / ASIDE_CHARS_ZH), without digits, without a word
    that calls a request off or asks for something (_ASIDE_CANCEL), not spoken to the listener or
    of harm (_ASIDE_TALK), and saying no value of any function of ``registry`` (no room, contact or
    bin name, no on/off word: functions/mentions.mention_spans), so that the request beside it asks for
    exactly what it asked for alone."""
    names = tuple(
        {
            form
            for spec in registry.functions
            for a in spec.args
            if a.type == "enum" or (a.type == "bool" and a.narrow)
            for v in (a.values if a.type == "enum" else (True, False))
            for form in a.spoken_forms(v)
        }
    )
    out: dict[str, tuple[str, ...]] = {}
    for lang, lines in corpus.items():
        if lang not in _ASIDE_JOIN:
            continue
        keep = []
        for line in dict.fromkeys(str(x).strip() for x in lines):
            size = len(line.split()) if lang == "en" else len(line)
            least, most = ASIDE_WORDS_EN if lang == "en" else ASIDE_CHARS_ZH
            if not least <= size <= most or any(c.isdigit() for c in line) or "\n" in line:
                continue
            if (
                line.rstrip(_ASIDE_END).endswith(_ASIDE_QUESTION)
                or _ASIDE_CANCEL.search(line)
                or _ASIDE_TALK.search(line)
            ):
                continue
            if mention_spans(line, names):
                continue
            keep.append(line)
        out[lang] = tuple(keep)
    return out


def with_aside(text: str, aside: str, language: str, before: bool) -> str:
    """``text`` with the remark ``aside`` said before or after it, as one utterance."""
    join = _ASIDE_JOIN[language]
    if before:
        return aside.rstrip(_ASIDE_END) + join + text
    return text.rstrip(_ASIDE_END) + join + aside


def says_fixed_values(registry: FunctionRegistry, ref: PhrasingRef) -> bool:
    """Whether every ``narrow`` enum / bool value that ``ref`` fixes is said by its own words (by
    the rule the grammar narrows with, functions/grammar.said_values): "turn on the {room} light"
    (on) does, "it is too dark in the {room}" (on) and "kill the lights in the {room}" (off) do
    not. A phrasing that does not is the only kind that teaches the value from the rest of the
    request: where a request says the value, the grammar offers only that one."""
    from octopus_ros.functions.grammar import said_values

    spec = registry.by_name(ref.function)
    by_name = {a.name: a for a in spec.args}
    words = "".join(literal for literal, *_ in string.Formatter().parse(ref.phrasing.say))
    for name, value in ref.phrasing.fixed:
        arg = by_name.get(name)
        if (
            arg is not None
            and arg.narrow
            and arg.type in ("enum", "bool")
            and value not in said_values(arg, words)
        ):
            return False
    return True


def generate(
    registry: FunctionRegistry,
    refs: Sequence[PhrasingRef],
    n: int,
    seed: int = 0,
    *,
    twins: bool = False,
    unsaid_weight: float = 1.0,
    asides: Mapping[str, Sequence[str]] | None = None,
    aside_share: float = 0.0,
) -> list[RegistryExample]:
    """``n`` examples, functions drawn uniformly, then a language and a phrasing of it
    (``twins``: see :func:`realise`). ``unsaid_weight``: how much more often a phrasing whose
    fixed value its words do not say (:func:`says_fixed_values`) is drawn than the others.
    ``aside_share`` of the examples of functions that copy nothing are said with a remark
    before or after them, one of ``asides`` ({language: sentences}, :func:`aside_lines`), the
    answer unchanged (its twins take the same remark): the registry's phrasings are bare
    requests, and people say theirs with a reason or an aside ("…, I'm carrying the laundry
    down"). 0 draws nothing more: the same examples for the same seed as without it."""
    if not 0.0 <= aside_share <= 1.0:
        raise ValueError(f"aside_share must be in [0, 1], got {aside_share}")
    if unsaid_weight <= 0:
        raise ValueError(f"unsaid_weight must be > 0, got {unsaid_weight}")
    if not refs:
        raise ValueError(f"{registry.source}: no function has example phrasings (add 'examples:')")
    by_fn: dict[str, list[PhrasingRef]] = {}
    for r in refs:
        by_fn.setdefault(r.function, []).append(r)
    names = sorted(by_fn)
    weight = {r: says_fixed_values(registry, r) for r in refs} if unsaid_weight != 1.0 else {}
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        group = by_fn[names[int(rng.integers(len(names)))]]
        langs = sorted({r.language for r in group})
        lang = langs[int(rng.integers(len(langs)))]
        pool = [r for r in group if r.language == lang]
        if unsaid_weight == 1.0:  # the draw as before the option: the same examples for the same seed
            ref = pool[int(rng.integers(len(pool)))]
        else:
            w = np.array([1.0 if weight[r] else unsaid_weight for r in pool])
            ref = pool[int(rng.choice(len(pool), p=w / w.sum()))]
        example = realise(registry, ref, rng, twins=twins)
        lines = (asides or {}).get(lang, ())
        if (
            aside_share > 0
            and lines
            and not copied_args(registry.by_name(ref.function))
            and rng.random() < aside_share
        ):
            aside = lines[int(rng.integers(len(lines)))]
            before = bool(rng.random() < 0.5)
            example = replace(
                example,
                instruction=with_aside(example.instruction, aside, lang, before),
                alone=example.instruction,
                twins=tuple((with_aside(t, aside, lang, before), a) for t, a in example.twins),
            )
        out.append(example)
    return out


def doc_lines(registry: FunctionRegistry, functions: Sequence[str] | None = None) -> list[str]:
    """Each enabled function's token, name and description (every language) as text lines:
    ``<nexa_13> open door: Open a door of the house.``"""
    lines = []
    for spec in registry.enabled():
        if functions is not None and spec.name not in functions:
            continue
        words = spec.name.replace("_", " ")
        for lang, text in spec.description.items():
            lines.append(f"{spec.token_text} {words}: {text}")
            for arg in spec.args:
                if arg.description:
                    arg_text = arg.description.get(lang) or arg.description.get("en", "")
                    lines.append(f"{spec.token_text} {words} {arg.name.replace('_', ' ')}: {arg_text}")
    return lines


def warm_start_text(spec: FunctionSpec) -> str:
    """The text a new functional token's embedding row is averaged from: name words + English description."""
    return f"{spec.name.replace('_', ' ')}: {spec.describe('en')}"
