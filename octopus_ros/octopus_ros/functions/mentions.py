"""Is an argument's value said in the request? The ``named: true`` rule of the registry.

A ``named`` enum argument (send_message's contact) takes a value only when the utterance names it:
one of the value's spoken forms (:meth:`ArgSpec.spoken_forms`) occurs in the utterance. A call
that fills it with a value the user never said ("text Carol that dinner is at seven" decided as
``send_message('bob', …)``) is a guess about who should receive it, and the runtime declines it
(runtime/outcomes.py). Matching ignores case; a form that starts or ends with a latin letter or a
digit must not continue a latin word there ("bob" is not in "bobsleigh", but is in "跟Bob说").
Pure Python: no torch, no rclpy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from .language import (
    CLAUSE_END,
    EN_WORD,
    RECIPIENT_PREPOSITIONS_ZH,
    fold_input,
    is_cjk,
    negated,
    text_units,
    word_forms,
)
from .registry import copied_args, copied_values, per_spec_cache


@lru_cache(maxsize=512)
def _pattern(form: str) -> re.Pattern[str]:
    body = r"\s+".join(re.escape(word) for word in form.split())
    head = r"(?<![A-Za-z0-9])" if form[:1].isascii() and form[:1].isalnum() else ""
    tail = r"(?![A-Za-z0-9])" if form[-1:].isascii() and form[-1:].isalnum() else ""
    return re.compile(head + body + tail, re.IGNORECASE)


# how things are, not what is asked for: "the lights are still on", "it has been on all day",
# "is the hallway light still on?", "someone left the bathroom light on", "灯一直开着" (:func:`says`
# ``stated``)
_STATE_EN = frozenset({"is", "are", "was", "were", "been", "be", "left"})
# words that begin what is asked for: a state word before them is not the mention's ("the hall is
# dark, so turn the light on")
_STATE_STOP_EN = frozenset({"and", "so", "then", "but", "to", "please", "can", "could", "would", "will"})
_STATE_WORDS_BACK = 5


def _stated(text: str, start: int, end: int) -> bool:
    """Whether the mention at ``start``..``end`` tells how things are: in the same clause, at most
    five words after a form of "be" or "left" (no "and", "so", "please", "can" … between) or, in
    Chinese, before the durative 着."""
    if text[end : end + 1] == "着":
        return True
    before = text[:start].lower().replace("\u2019", "'")
    clause = CLAUSE_END.split(before)[-1]
    for word in reversed(EN_WORD.findall(clause)[-_STATE_WORDS_BACK:]):
        if word in _STATE_EN or word.endswith(("'s", "'re")):
            return True
        if word in _STATE_STOP_EN:
            return False
    return False


def says(utterance: str, forms: tuple[str, ...], *, plainly: bool = False, stated: bool = True) -> bool:
    """Whether ``utterance`` contains one of ``forms`` (see the module doc for the rule).

    ``plainly``: an occurrence right after a negation (functions/language.negated: "别开着",
    "don't ... on") does not count, as the value is said as the one not wanted. ``stated=False``:
    neither does one that tells how things are ("the lights are still on", "灯一直开着")."""
    text = fold_input(utterance)  # full-width letters, Traditional characters: as the model reads them
    for form in forms:
        if form.strip():
            for found in _pattern(form.strip()).finditer(text):
                if plainly and negated(text, found.start()):
                    continue
                if not stated and _stated(text, found.start(), found.end()):
                    continue
                return True
    return False


def mention_spans(utterance: str, forms: tuple[str, ...]) -> list[tuple[int, int]]:
    """Character ranges of every occurrence of one of ``forms`` in ``utterance``, by the same rule
    as :func:`says` (the span copier keeps clear of them: lean/copier.py)."""
    text = fold_input(utterance)  # one character for one: the ranges are the utterance's
    return [m.span() for form in forms if form.strip() for m in _pattern(form.strip()).finditer(text)]


def blank_copied(spec: Any, call: Any, text: str) -> str:
    """``text`` (the request, or a folded or lower-cased copy of it) with each value ``call`` copies
    from it (a message body: registry.copied_values) blanked out, one space for each character, so
    that the rules reading the request's own words read none of the message's ("tell mom don't
    wait up", "tell mom no I can't come") and positions stay the request's."""
    for value in copied_values(spec, call):
        for a, b in mention_spans(text, (fold_input(value).strip(),)):
            text = text[:a] + " " * (b - a) + text[b:]
    return text


def unnamed_args(spec: Any, call: Any, utterance: str) -> list[tuple[str, Any]]:
    """``(argument, value)`` of each ``named`` argument of ``call`` whose value ``utterance``
    does not say; empty when every one is said (or the function has none)."""
    by_name = {a.name: a for a in getattr(spec, "args", ())}
    out = []
    for arg in call.args:
        declared = by_name.get(arg.name)
        if declared is not None and declared.named and not says(utterance, declared.spoken_forms(arg.value)):
            out.append((arg.name, arg.value))
    return out


# words that ask for nothing: articles and possessives around a named value ("the office", "my
# dad's", "我爸的"), where the speaker is ("I'm in the office", "我在办公室呢") and sentence particles:
# a request that says only where someone is names a place, not a message to send there
_ASK_NOTHING_EN = frozenset({"the", "a", "an", "my", "our", "your", "s", "i", "i'm", "im", "am", "in", "at"})
_ASK_NOTHING_ZH = frozenset("的我在呢啊呀嘛哈")


def _outside(utterance: str, spans: Iterable[tuple[int, int]]) -> str:
    """``utterance`` (folded, one character for one: the ranges are the utterance's) with the
    character ranges ``spans`` blanked out."""
    text = fold_input(utterance)
    covered = [False] * len(text)
    for start, end in spans:
        covered[start:end] = [True] * max(0, end - start)
    return "".join(" " if hidden else ch for ch, hidden in zip(text, covered, strict=True))


def asks_nothing(utterance: str, spans: Iterable[tuple[int, int]]) -> bool:
    """Whether ``utterance`` says nothing outside the character ranges ``spans`` but articles,
    possessives, where the speaker is ("the", "my", "I'm in", 的, 我, 在), sentence particles (呢, 啊)
    and punctuation: no word there asks for anything."""
    rest = _outside(utterance, spans).lower()
    words = [w for w in EN_WORD.findall(rest) if w not in _ASK_NOTHING_EN]
    return not words and not [ch for ch in rest if is_cjk(ch) and ch not in _ASK_NOTHING_ZH]


def uncarried(spec: Any, call: Any, utterance: str) -> str | None:
    """The copied value of ``call`` when ``utterance`` says nothing besides it and the values of
    the call's ``named`` arguments (:func:`asks_nothing`): no word asks for the function.
    "我爸坐下的时候把椅子抽走" decided as ``send_message('dad', '坐下的时候把椅子抽走')``, or "the
    office light should be on" as ``send_message('office', 'light should be on')``, name a contact
    and copy the rest, but nothing in them says "tell", "text" or "发消息". Every training phrasing
    of a copying function has such carrier words ("tell {contact} that {msg}", "{msg}，把这句发给
    {contact}"). None when the request has them, when ``call`` copies nothing, or when a copied
    value is not in ``utterance`` (that is runtime/outcomes.invented_args' case)."""
    names = {a.name for a in copied_args(spec)}
    copied = [str(a.value) for a in call.args if a.name in names]
    if not copied:
        return None
    spans = _copy_and_names(spec, call, utterance)
    if spans is None:
        return None
    return copied[0] if asks_nothing(utterance, spans) else None


def _named_spans(spec: Any, call: Any, utterance: str) -> list[tuple[int, int]]:
    """The character ranges of ``utterance`` that say the values of ``call``'s ``named`` arguments."""
    by_name = {a.name: a for a in getattr(spec, "args", ())}
    spans: list[tuple[int, int]] = []
    for got in call.args:
        declared = by_name.get(got.name)
        if declared is not None and declared.named:
            spans += mention_spans(utterance, declared.spoken_forms(got.value))
    return spans


def _copy_and_names(spec: Any, call: Any, utterance: str) -> list[tuple[int, int]] | None:
    """The character ranges of ``utterance`` that ``call`` copies and the values of its ``named``
    arguments it says; None when a copied value is not in ``utterance``."""
    names = {a.name for a in copied_args(spec)}
    spans: list[tuple[int, int]] = []
    for got in call.args:
        if got.name in names:
            value = fold_input(str(got.value)).strip()
            if value:
                found = mention_spans(utterance, (value,))
                if not found:
                    return None
                spans += found
    return spans + _named_spans(spec, call, utterance)


def asked_elsewhere(registry: Any, spec: Any, call: Any, utterance: str) -> tuple[str, str, str] | None:
    """``(copied value, word, other function)`` when ``call`` copies part of ``utterance`` but no
    word outside the copy and the values it names asks for the call's function, and a word there
    asks for another function specifically (functions/asking.py): "take a picture of mum blowing
    out her birthday candles" decided as ``send_message('mom', 'blowing out her birthday
    candles')``, "can you roll over to the office, I need to know if the printer is done" as a
    message to the office. The Chinese prepositions that introduce a recipient (给, 跟 …) ask for
    nothing by themselves. None otherwise, and for a call that copies nothing."""
    from .asking import asking_words, asks_for, specific_asking_words

    if not copied_args(spec) or not hasattr(registry, "functions") or not hasattr(spec, "training_literals"):
        return None
    spans = _copy_and_names(spec, call, utterance)
    if spans is None:
        return None
    units = [u for u in text_units(_outside(utterance, spans)) if u not in RECIPIENT_PREPOSITIONS_ZH]
    if asks_for(asking_words(spec), units):
        return None
    for other, words in specific_asking_words(registry).items():
        if other != spec.name:
            found = asks_for(words, units)
            if found:
                return copied_values(spec, call)[0], found[0], other
    return None


def claimed_elsewhere(registry: Any, spec: Any, call: Any, utterance: str) -> tuple[str, Any, str] | None:
    """``(words, value, other function)`` when ``utterance`` says, not right after a negation, a
    word another function ``claims`` (functions/registry.py: take_photo's "photo", stop's "freeze";
    ``value`` None) or a value of an argument another function ``claims`` (recycle's bins), and
    ``call`` is not of that function: "Grab a quick pic of the living room, the landlord asked for
    one" decided as ``navigate_to('living_room')``, "the purple can goes in the recycling, could you
    take care of it" as ``pick_up('purple can')``, "这根香蕉坏了，拿去堆肥吧" as ``pick_up('banana')``.
    The words the call copies (a message: "tell mom the compost bin is full") are not read, nor a
    claimed word that asks for ``call``'s function too (functions/asking.asking_words: "what is in
    the picture" asks describe_scene). None otherwise."""
    if spec is None or not hasattr(registry, "functions"):
        return None
    text = blank_copied(spec, call, fold_input(utterance))
    for other in registry.functions:
        if other.name == spec.name or other.decline or not other.enabled:
            continue
        for word, start, end in claims_said(other, text):
            if not _asks_too(spec, word):
                return text[start:end], None, other.name
        for arg in other.args:
            if not getattr(arg, "claims", False):
                continue
            for value in arg.values:
                plain = [
                    (b, e) for b, e in mention_spans(text, arg.spoken_forms(value)) if not negated(text, b)
                ]
                if plain:
                    start, end = min(plain)
                    return text[start:end], value, other.name
    return None


def claims_said(spec: Any, utterance: str) -> list[tuple[str, int, int]]:
    """``(word, start, end)`` for each word ``spec`` ``claims`` (functions/registry.py) that
    ``utterance`` says not right after a negation, at its first such place; [] when none is."""
    text = fold_input(utterance)  # one character for one: the places are the utterance's
    out = []
    for words in getattr(spec, "claims", {}).values():
        for word in words:
            found = next((m for m in _pattern(word).finditer(text) if not negated(text, m.start())), None)
            if found is not None:
                out.append((word, found.start(), found.end()))
    return out


def _asks_too(spec: Any, word: str) -> bool:
    """Whether every unit of ``word`` is one of ``spec``'s asking words (functions/asking.py)."""
    from .asking import asking_words
    from .language import text_units, word_forms

    if not hasattr(spec, "training_literals"):
        return False
    units = text_units(word)
    own = asking_words(spec)
    return bool(units) and all(word_forms(u) & own for u in units)


# asking for a phone call, which no function makes: "call my mom and put her on speaker", "给我妈打个
# 电话，开免提" (:func:`phone_call`). Lower case; English ones whole words.
PHONE_CALLS_EN = ("video call", "call", "phone", "ring", "facetime", "dial")
PHONE_CALLS_ZH = (
    "打个电话",
    "打一个电话",
    "打电话",
    "打个视频",
    "打视频",
    "视频通话",
    "回个电话",
    "回电话",
    "通个电话",
)


def phone_call(spec: Any, call: Any, utterance: str) -> str | None:
    """The words that ask for a phone call when ``call`` copies a message but the request, outside
    the copy, asks to phone its recipient and says no word of the function's own besides ("call my
    mom and put her on speaker" decided as ``send_message('mom', 'put her on speaker')``); None
    otherwise ("text mom to call me": the call is the message's; "call mom and tell her dinner is
    ready": tell asks for the message)."""
    from .asking import asking_words, asks_for

    if not copied_args(spec) or not hasattr(spec, "training_literals"):
        return None
    spans = _copy_and_names(spec, call, utterance)
    if spans is None:
        return None
    text = fold_input(utterance).lower()
    copies = [(a, b) for a, b in spans if (a, b) not in _named_spans(spec, call, utterance)]
    patterns = [re.escape(w) for w in PHONE_CALLS_ZH] + [rf"(?<![a-z']){w}(?![a-z'])" for w in PHONE_CALLS_EN]
    found = [
        m
        for p in patterns
        for m in re.finditer(p, text)
        if not any(a <= m.start() and m.end() <= b for a, b in copies)  # "text mom to call me": the message's
    ]
    if not found:
        return None
    rest = _outside(utterance, [*spans, *(m.span() for m in found)]).lower()
    units = [u for u in text_units(rest) if u not in RECIPIENT_PREPOSITIONS_ZH]
    return None if asks_for(asking_words(spec), units) else found[0].group()


# negation words that do not reject the value after them: "no wait, the shelf" takes a value back
# for this one, "stop in the kitchen" says where to stop
_NOT_REJECTING = frozenset({"no", "stop"})


def negated_values(spec: Any, call: Any, utterance: str) -> list[tuple[str, Any]]:
    """``(argument, value)`` of each enum argument of ``call`` whose value the request says only
    right after a negation (functions/language.negated, within its clause; not "no", which corrects,
    "no wait, the shelf", nor "stop", "stop in the kitchen"): "香蕉放桌子上，别放地上"
    decided as ``place('banana', 'floor')``, "put it on the table, not on the floor". The text a
    call copies is not read. Empty otherwise."""
    by_name = {a.name: a for a in getattr(spec, "args", ())}
    text = blank_copied(spec, call, fold_input(utterance))
    out = []
    for got in call.args:
        declared = by_name.get(got.name)
        if declared is None or declared.type != "enum":
            continue
        found = mention_spans(text, declared.spoken_forms(got.value))
        if found and all(negated(text, a, but=_NOT_REJECTING) for a, _ in found):
            out.append((got.name, got.value))
    return out


_DESTINATION_SKIP = frozenset({"to", "the", "my", "our", "your", "into", "over", "back", "到", "了"})


def recipient_as_destination(
    registry: Any, spec: Any, call: Any, utterance: str
) -> tuple[str, Any, str] | None:
    """``(argument, value, word)`` when the request says a message's recipient only as where to
    go: right after a word that asks for another function and not for this one (articles and "to"
    between): "go to the office, I'll meet you there in a minute" decided as ``send_message('office',
    "I'll meet you there in a minute")``, "去办公室，我一会儿过去". None otherwise ("send it to the
    office", "给办公室发消息", "write to the office": those words ask for a message or for nothing)."""
    from .asking import asking_words

    if not hasattr(registry, "functions") or not hasattr(spec, "training_literals"):
        return None
    own = asking_words(spec)
    others = frozenset(
        w
        for other in registry.functions
        if other.name != spec.name and not other.decline
        for w in asking_words(other)
    )
    text = fold_input(utterance).lower().replace("\u2019", "'")
    for got, spans in _recipient_mentions(spec, call, text):
        words = []
        for a, _ in spans:
            before = [u for u in text_units(text[:a]) if u not in _DESTINATION_SKIP]
            word = before[-1] if before else ""
            if not (word and word_forms(word) & others and not word_forms(word) & own):
                break
            words.append(word)
        else:
            if words:
                return got.name, got.value, words[0]
    return None


def possessor_only(spec: Any, call: Any, utterance: str) -> tuple[str, Any, str] | None:
    """``(argument, value, as said)`` when the request says a message's recipient (a ``named``
    argument of a copying function) only as whose something is: every mention is followed by 的
    or "'s" ("把我妈的降压药扔垃圾桶里" is no message to mom, "describe the room for me, mum's
    eyesight isn't great" none either). None otherwise."""
    text = fold_input(utterance)
    for got, spans in _recipient_mentions(spec, call, text):
        owned = [text[b : b + 2].replace("\u2019", "'") for _, b in spans]
        if spans and all(o.startswith("的") or (o == "'s") for o in owned):
            a, b = spans[0]
            return got.name, got.value, text[a:b] + ("的" if owned[0].startswith("的") else "'s")
    return None


def _recipient_mentions(spec: Any, call: Any, text: str) -> list[tuple[Any, list[tuple[int, int]]]]:
    """``(argument given, where text says its value)`` for each argument of ``call`` that names
    a message's recipient (:func:`_recipient`)."""
    by_name = {a.name: a for a in getattr(spec, "args", ())}
    return [
        (got, mention_spans(text, by_name[got.name].spoken_forms(got.value)))
        for got in call.args
        if got.name in by_name and _recipient(spec, by_name[got.name])
    ]


def _recipient(spec: Any, arg: Any) -> bool:
    """Whether ``arg`` names who receives what ``spec`` copies from the request: a ``named``
    argument of a function with a ``source: utterance`` argument (send_message's contact). A person
    is asked many ways ("nudge Bob to …", "find out from my mom, …") that say nothing of a place."""
    return bool(arg.named) and any(
        getattr(a, "source", None) == "utterance" for a in getattr(spec, "args", ())
    )


# Words that say where something comes from or where it is, not where it goes: "lift the orange can
# off the table" is no place('orange can', 'table'), "come back from the kitchen" no
# navigate_to('kitchen'), "把手机从地上捡起来" no place(…, 'floor'), "take the banana for me, it is on
# the table" no place('banana', 'table') (:func:`origin_args`). Lower case, longest first. Not
# Chinese 在: "放在桌上" says where to put it.
ORIGIN_WORDS_EN = (
    "they're sitting on", "it's sitting on", "is sitting on", "are sitting on", "it's lying on",
    "is lying on", "are lying on", "they're on", "they're in", "it's on", "it's in", "away from",
    "off of", "out of", "is on", "is in", "are on", "are in", "from", "off",
    # where it is now: "the green book that fell on the floor", "the keys I left on the counter"
    "fell on", "fell onto", "fell off", "fell in", "fell into", "fell behind", "dropped on", "dropped in",
    "landed on", "lying on", "lying in", "sitting on", "sitting in", "left on", "left in",
)  # fmt: skip
ORIGIN_WORDS_ZH = ("从",)
_ORIGIN_SKIP_EN = frozenset({"the", "a", "an", "my", "our", "your", "this", "that", "his", "her", "their"})
# where under or beside the thing, between an origin word and it: "from under the table", "out from
# behind the couch" (the thing is still where it comes from)
_ORIGIN_PLACES_EN = (
    "under", "underneath", "beneath", "behind", "beside", "next to", "inside", "on top of", "in front of",
    "near", "between",
)  # fmt: skip
_ORIGIN_SKIP_ZH = ("那个", "这个", "我的", "你的")


def _said_from(text: str, start: int) -> str | None:
    """The origin word right before ``start`` (articles, possessives and a place word such as "under"
    between), or None."""
    before = text[:start].rstrip()
    while True:
        words = before.split()
        if words and words[-1] in _ORIGIN_SKIP_EN:
            before = before[: len(before) - len(words[-1])].rstrip()
            continue
        place = next(
            (p for p in _ORIGIN_PLACES_EN if before.endswith(p) and not before[: -len(p)][-1:].isalpha()),
            None,
        )
        if place is not None:
            before = before[: -len(place)].rstrip()
            continue
        skip = next((w for w in _ORIGIN_SKIP_ZH if before.endswith(w)), None)
        if skip is None:
            break
        before = before[: -len(skip)].rstrip()
    for word in ORIGIN_WORDS_EN:
        if before.endswith(word) and not before[: -len(word)][-1:].isalpha():
            return word
    return next((word for word in ORIGIN_WORDS_ZH if before.endswith(word)), None)


def _slots_said_after(spec: Any, after: Callable[[str], bool]) -> frozenset[str]:
    """The arguments of ``spec`` that a training phrasing says right where ``after`` holds of the
    phrasing's (lower-cased) text before the slot."""
    import string

    targets: dict[str, str | None] = {a.name: a.name for a in getattr(spec, "args", ())}
    if spec.phrasings is not None:
        targets.update(dict(spec.phrasings.slots))
    out: set[str] = set()
    for says in spec.training_says().values():
        for say in says:
            text = ""
            for literal, field, *_ in string.Formatter().parse(say):
                text += literal.lower()
                if field and targets.get(field) and after(text):
                    out.add(targets[field])
                text += "x" if field else ""
    return frozenset(out)


@per_spec_cache(maxsize=256)
def _origin_slots(spec: Any) -> frozenset[str]:
    """The arguments of ``spec`` that a training phrasing says right after an origin word."""
    return _slots_said_after(spec, lambda text: _said_from(text, len(text)) is not None)


def origin_args(spec: Any, call: Any, utterance: str) -> list[tuple[str, Any, str]]:
    """``(argument, value, origin word)`` of each enum argument of ``call`` that ``utterance``
    says only as where something comes from: every mention of the value follows an origin word
    (ORIGIN_WORDS_EN / _ZH, articles between: "off the table", "from the kitchen", "从地上"), and
    no training phrasing of the function says that argument so. Empty otherwise, for a value the
    utterance does not say, and for a ``named`` argument (a contact is a person: "find out from my
    mom, …" asks mom), which :func:`_recipient` tells; navigate_to's named place is read."""
    if spec is None:
        return []
    by_name = {a.name: a for a in getattr(spec, "args", ())}
    if not any(a.type == "enum" and not _recipient(spec, a) for a in by_name.values()):
        return []
    exempt = _origin_slots(spec) if hasattr(spec, "training_says") else frozenset()
    text = fold_input(utterance).lower().replace("\u2019", "'")
    out = []
    for got in call.args:
        declared = by_name.get(got.name)
        if declared is None or declared.type != "enum" or _recipient(spec, declared) or got.name in exempt:
            continue
        spans = mention_spans(text, declared.spoken_forms(got.value))
        origins = [_said_from(text, start) for start, _ in spans]
        if spans and all(origins):
            out.append((got.name, got.value, origins[0]))
    return out


# Words with which a speaker takes a value back and says another after them: "put the yellow can on
# the counter no wait the shelf", "把黄色易拉罐放台面上，不对，放架子上" (:func:`corrected_args`). Not
# "not" (it rejects the value after it: "on the table, not the shelf") nor "instead" / "rather"
# ("on the shelf instead of the table"). Lower case.
CORRECTIONS_EN = ("no wait", "wait", "no", "nope", "i mean", "sorry", "actually", "scratch that", "make it")
CORRECTIONS_ZH = ("不对", "不是", "哦不", "还是", "改成", "换成", "我是说", "应该是")
_CORRECTION_EN = re.compile(
    r"(?<![a-z'])(?:" + "|".join(re.escape(c) for c in CORRECTIONS_EN) + r")(?![a-z'])"
)


def _value_mentions(arg: Any, text: str) -> list[tuple[int, int, Any]]:
    """``(start, end, value)`` of each value of ``arg`` that ``text`` says: an enum's spoken forms,
    any quantity for an int or float (functions/numbers.py; in range or not: "seventy percent, no,
    make it forty" takes 0.7 back for a forty it does not say in the argument's units)."""
    if arg.type == "enum":
        return [
            (a, b, value) for value in arg.values for a, b in mention_spans(text, arg.spoken_forms(value))
        ]
    if arg.type in ("int", "float"):
        from .numbers import number_mentions, number_words

        return number_mentions(text) + number_words(text)
    return []


def after_correction(utterance: str) -> str | None:
    """What ``utterance`` says after its last correction word (CORRECTIONS_EN / _ZH: "no wait",
    "哦不对", "I mean"), as the model reads it; None when it has none. What a speaker says after
    taking something back is what they meant ("你拿那个白色的杯子……哦不对，拿橙色的碗":
    lean/decision.object_mismatch reads the orange bowl)."""
    text = fold_input(utterance)
    ends = [found.end() for found in _CORRECTION_EN.finditer(text.lower().replace("\u2019", "'"))]
    ends += [at + len(word) for word in CORRECTIONS_ZH if (at := text.rfind(word)) >= 0]
    return text[max(ends) :] if ends else None


def corrected_value(arg: Any, utterance: str) -> Any | None:
    """The value of enum, int or float ``arg`` that ``utterance`` says last, when it says another
    value of it before and a correction (CORRECTIONS_EN / _ZH) between the two: that value replaces
    the earlier one. None when the request says fewer than two of its values or corrects none."""
    text = fold_input(utterance).lower().replace("\u2019", "'")
    found = _value_mentions(arg, text)
    found.sort(key=lambda f: (f[0], -f[1]))
    kept: list[tuple[int, int, Any]] = []
    for a, b, value in found:  # the longest mention where two overlap ("厨余垃圾桶" over "垃圾桶")
        if not kept or a >= kept[-1][1]:
            kept.append((a, b, value))
    if len({value for *_, value in kept}) < 2:
        return None
    last = kept[-1]
    earlier = [m for m in kept if m[2] != last[2]][-1]
    between = text[earlier[1] : last[0]]
    if re.search(r"(?<![a-z'])not(?:\s+(?:the|my|on|in|into|to|at))*\s*$|(?:不是|别|不要)\S{0,3}$", between):
        return None  # "on the shelf, no, not the table": the last value is the one rejected
    # the correction stands right before the new value: "no wait the shelf", "不对，放架子上"; not "there's
    # no room on the shelf" nor "wait there, then the office"
    for found in _CORRECTION_EN.finditer(between):
        if len(EN_WORD.findall(between[found.end() :])) <= 2:
            return last[2]
    for word in CORRECTIONS_ZH:
        at = between.rfind(word)
        if at >= 0 and len(re.sub(r"[\s,，:：、;；]", "", between[at + len(word) :])) <= 2:
            return last[2]
    return None


def corrected_args(spec: Any, call: Any, utterance: str) -> list[tuple[str, Any, Any]]:
    """``(argument, value, corrected value)`` of each enum or number argument of ``call`` whose
    value the request took back for another (:func:`corrected_value`); empty otherwise. Text the call copies
    (a message body: "tell mom no I can't come") is not read."""
    by_name = {a.name: a for a in getattr(spec, "args", ())}
    text = blank_copied(spec, call, fold_input(utterance))
    out = []
    for got in call.args:
        declared = by_name.get(got.name)
        if declared is None or declared.type not in ("enum", "int", "float"):
            continue
        corrected = corrected_value(declared, text)
        if corrected is not None and corrected != got.value:
            out.append((got.name, got.value, corrected))
    return out


# what may stand between 把 and the thing it marks: "把整个客厅拖一遍", "把我们家客厅收拾一下"
_DISPOSAL_SKIP_ZH = ("这个", "那个", "整个", "我们家的", "我们家", "我们的", "家里的", "你的", "我的")


@per_spec_cache(maxsize=256)
def _disposal_slots(spec: Any) -> frozenset[str]:
    """The arguments of ``spec`` that a training phrasing says right after 把."""
    return _slots_said_after(spec, lambda text: text.rstrip().endswith("把"))


def disposed_value(spec: Any, call: Any, utterance: str) -> tuple[str, Any] | None:
    """``(argument, value)`` of an enum argument of ``call`` that ``utterance`` says only as what
    把 marks, the thing a verb after it acts on ("把客厅拖一下地", "你能不能把客厅拖一下" decided as
    ``navigate_to('living_room')``: the living room is to be mopped, not gone to), when no training
    phrasing of the function says that argument right after 把. None otherwise, and for a message's
    recipient ("把这句话发给妈妈" says mom after 给)."""
    if spec is None or not hasattr(spec, "training_says"):
        return None
    by_name = {a.name: a for a in getattr(spec, "args", ())}
    exempt = _disposal_slots(spec)
    text = fold_input(utterance)
    for got in call.args:
        declared = by_name.get(got.name)
        if declared is None or declared.type != "enum" or got.name in exempt or _recipient(spec, declared):
            continue
        spans = mention_spans(text, declared.spoken_forms(got.value))
        if spans and all(_after_disposal(text, start) for start, _ in spans):
            return got.name, got.value
    return None


def _after_disposal(text: str, start: int) -> bool:
    before = text[:start].rstrip()
    skip = next((w for w in _DISPOSAL_SKIP_ZH if before.endswith(w)), None)
    if skip is not None:
        before = before[: -len(skip)].rstrip()
    return before.endswith("把")


# Words a request may open with before its verb ("can you please …", "hey robot, go …")
_LEAD_EN = frozenset(
    {"can", "could", "would", "will", "you", "please", "pls", "hey", "robot", "buddy", "kindly", "just",
     "go", "and", "um", "uh", "ok", "okay", "so", "now", "to", "yo", "then"}
)  # fmt: skip
_DETERMINERS_EN = frozenset({"the", "a", "an", "my", "our", "your", "this", "that", "his", "her", "their"})


@per_spec_cache(maxsize=32)
def registry_words(registry: Any) -> frozenset[str]:
    """Every English word form of every function's training phrasings and examples, slots aside."""
    words: set[str] = set()
    for spec in registry.functions:
        for literal in spec.training_literals().get("en", ()):
            for word in EN_WORD.findall(literal.lower()):
                words |= word_forms(word)
    return frozenset(words)


def unknown_verb(registry: Any, spec: Any, call: Any, utterance: str) -> tuple[str, Any] | None:
    """``(verb, value)`` when an English request opens with a verb no phrasing of any function
    has, acting on an enum value of the call ("open the front door", "lock the front door", "can
    you vacuum the living room" decided as ``navigate_to(…)``): the request asks the robot to do
    something to the place, not to go there, and nothing the robot does is asked for with that
    word. Only the request's verb is read (after "can you", "please", "go" …), only when a
    determiner at most stands between it and the value's words, and only in the first clause;
    None otherwise, for a function without enum arguments but a message's recipient (a contact is a
    person: "nudge Bob to …", "fill Bob in" are ways to message him), and for a ``requires_view``
    function (an object in view is acted on by many verbs: "bring the dog some food")."""
    if getattr(spec, "requires_view", False) or not hasattr(registry, "functions"):
        return None  # an object in view is acted on by many verbs ("bring the dog some food")
    by_name = {a.name: a for a in getattr(spec, "args", ())}
    values = [
        (by_name[a.name], a.value)
        for a in call.args
        if getattr(by_name.get(a.name), "type", None) == "enum" and not _recipient(spec, by_name[a.name])
    ]
    if not values:
        return None
    text = fold_input(utterance).lower().replace("\u2019", "'")
    clause = CLAUSE_END.split(text, maxsplit=1)[0]
    words = list(EN_WORD.finditer(clause))
    k = 0
    while k < len(words) and words[k].group() in _LEAD_EN:
        k += 1
    known = registry_words(registry)
    if k >= len(words) or word_forms(words[k].group()) & known:
        return None
    verb = words[k]
    j = k + 1
    while j < len(words) and words[j].group() in _DETERMINERS_EN:
        j += 1
    if j >= len(words):
        return None
    for arg, value in values:
        if any(start == words[j].start() for start, _ in mention_spans(clause, arg.spoken_forms(value))):
            return verb.group(), value
    return None
