"""Does the request say *not* to do what the call does?

"don't pick up the cup", "actually no don't go to the kitchen", "you don't need to water the plant
today", "不要把那个杯子拿起来", "别去厨房了", "不用拍照了", "那条消息别发了": the words that ask for the
function are there, and so is the negation in front of them. A model trained on requests alone reads
the function and the object and publishes the call; the runtime declines it
(:func:`negated_request`, runtime/outcomes.decision_outcome: NO_ACTION "the request says not to").

The rule is the registry's, not a list per function:

- **The words that ask for a function** (its triggers) are its asking words
  (functions/asking.py: the words and characters of its training phrasings and examples outside
  their ``{slots}``, and their English inflections, "picking", "watered", less the words that ask
  for nothing in particular: articles, pronouns, "please", 的, 了 …).
- **A negation asks for a function** when a phrasing of that function says it: stop's "don't
  move" and "别动" make "move" and 动 after a negation ask for stop, so "don't move" is a stop
  request, not a negated one.
- **The negation scopes the trigger** when the trigger is the first word after it that is not
  a word of ``_SKIP_*`` or ``_PASS_*`` (a word of ``_PASS_*`` that is a trigger of the call's
  function counts as one: 去 of "别去厨房") ("don't *bother* picking up", "I don't *want you to* go", "不用*再*拍了",
  "别*给我*拍"), at most five words on and within its clause (a pause mark ends it). "don't forget to
  feed the dog", "别忘了喂狗", "don't worry, just grab the cup" and "把杯子拿起来别摔了" therefore do
  not negate the call: "forget", 忘, "worry" and 摔 are no trigger of theirs.
- A trigger said again later without a negation asks for the function after all: "那个绿瓶子别放
  这儿，放到架子上去", "don't put it here, put it on the shelf".
- Text a call copies (a message body: "tell mom don't wait up") is the message's, not the
  request's, and is not read.

A last clause that only puts the request off or calls it off declines it too: "要是待会儿狗饿了你再喂它，
现在先不用", "take a photo, actually not now", "拍张照吧，算了", "go to the kitchen, never mind".

Not negations: "why don't you …" (a suggestion), "never mind" (it drops what came before), "you
never …" (a habit told), "stop" / "quit" before anything but a doing ("stop feeding the dog" is
one), 要不要 / 能不能 / 可不可以 (questions), and 别 inside a word (特别, 区别, 分别, 别的, 别人). A
clause of its own that asks for the function plainly keeps the call ("put the cup on the shelf,
don't drop it", "把杯子放桌上，别放地上"). Pure Python: no torch, no rclpy.
"""

from __future__ import annotations

import bisect
import re
from typing import Any

from .asking import asking_words
from .language import CLAUSE_END, CLAUSE_MARKS, UNITS, fold_input, word_forms
from .mentions import blank_copied
from .registry import per_spec_cache

# English negations that scope a request; "no" and "not" alone do not ("no, the blue one", "not
# the red cup, the blue one" correct an argument, they do not cancel the request).
REQUEST_NEGATIONS_EN = (
    "do not", "don't", "dont", "never", "needn't", "no need to", "let's not", "lets not", "not to",
    "shouldn't", "mustn't", "stop", "quit",
)  # fmt: skip
# "stop" and "quit" negate only a doing ("stop feeding the dog", "quit taking photos")
_ENDING_WORDS = ("stop", "quit")
REQUEST_NEGATIONS_ZH = (
    "千万别",
    "千万不要",
    "不应该",
    "不可以",
    "禁止",
    "停止",
    "不该",
    "不能",
    "不需要",
    "没必要",
    "用不着",
    "不要",
    "不用",
    "不必",
    "不许",
    "不准",
    "别",
    "甭",
)
# words between a negation and the trigger it scopes: never triggers themselves ("don't *want* it
# getting stepped on" scopes nothing) ...
_SKIP_EN = frozenset(
    {"you", "to", "need", "needs", "have", "has", "want", "wanna", "even", "ever", "really", "please",
     "bother", "bothering", "and", "just", "i", "me", "us", "be", "try", "trying", "dare"}
)  # fmt: skip
_SKIP_ZH = frozenset("再先还就要用帮我你们了都也")
# ... and words that are passed over unless they ask for the call's function ("don't *go* to the
# kitchen" negates navigate_to, "don't go pick up the cup" pick_up; 别*去*厨房, 别*给*我拍)
_PASS_EN = frozenset({"go", "going", "come"})
_PASS_ZH = frozenset("给去来把")
_WORD_BEFORE_NOT_NEGATION = ("why",)  # "why don't you take a photo" asks for one
_SUBJECTS_EN = ("i", "you", "we", "he", "she", "they", "it")
_ZH_NOT_NEGATION_BEFORE = "特区分告识级类性个差派辨鉴"  # 特别, 区别 …: 别 inside a word
_ZH_NOT_NEGATION_AFTER = "的人处墅致扭"  # 别的, 别人, 别处, 别墅, 别致, 别扭
_EN_NEGATION = re.compile(
    r"(?<![a-z'])(" + "|".join(re.escape(n) for n in REQUEST_NEGATIONS_EN) + r")(?![a-z'])"
)
_ZH_NEGATION = re.compile("|".join(re.escape(n) for n in REQUEST_NEGATIONS_ZH))
_WINDOW = 5


# a clause of its own, the request's last, that only puts it off or calls it off: "要是待会儿狗饿了你再喂
# 它，现在先不用", "feed the dog, actually not now", "拍张照吧，算了"
_DISMISSAL_EN = re.compile(
    r"(?:(?:but|and|actually|oh|um|uh|well|no)\s+)*(?:not\s+(?:right\s+)?now|not\s+yet|no\s+need|never\s*mind|"
    r"forget\s+it|maybe\s+later|later)(?:\s+(?:then|though|thanks|thank\s+you|please))*"
)
_DISMISSAL_ZH = re.compile(
    "(?:现在|暂时|先|还是|就|那)*(?:不用|不要|别|算了|不必|没必要)(?:了|啦|吧|啊|哈|谢谢)*"
)


def _dismissal(text: str) -> str | None:
    """The request's last clause when it only puts off or calls off what came before."""
    clauses = [c.strip() for c in CLAUSE_END.split(text) if c.strip()]
    if len(clauses) < 2:
        return None
    last = clauses[-1]
    if _DISMISSAL_EN.fullmatch(" ".join(last.split())) or _DISMISSAL_ZH.fullmatch(last.replace(" ", "")):
        return last
    return None


@per_spec_cache(maxsize=256)
def _triggers(spec: Any) -> tuple[frozenset[str], frozenset[str]]:
    """(the units that ask for ``spec``, the units that ask for it after a negation)."""
    negated_ok: set[str] = set()
    for literals in spec.training_literals().values():
        for literal in literals:
            literal = literal.lower().replace("\u2019", "'")
            for m in (*_EN_NEGATION.finditer(literal), *_ZH_NEGATION.finditer(literal)):
                after = UNITS.findall(literal[m.end() :])
                if after:
                    negated_ok.add(after[0])
    return asking_words(spec), frozenset(negated_ok)


def _is_negation(text: str, m: re.Match[str]) -> bool:
    word = m.group()
    if word.isascii():
        before = re.findall(r"[a-z']+", text[: m.start()])
        after = re.findall(r"[a-z']+", text[m.end() : m.end() + 12])
        if word == "never" and ((after and after[0] == "mind") or (before and before[-1] in _SUBJECTS_EN)):
            return False  # "never mind, …" drops what came before; "you never water it" tells a habit
        if word in _ENDING_WORDS and not (after and after[0].endswith("ing")):
            return False  # "stop at the kitchen" is no negation; "stop feeding the dog" is
        return not (before and before[-1] in _WORD_BEFORE_NOT_NEGATION)
    if word.startswith("不") and text[max(0, m.start() - 1) : m.start()] == word[1]:
        return False  # 要不要, 能不能, 可不可以: a question
    if word == "别":
        if m.start() > 0 and text[m.start() - 1] in _ZH_NOT_NEGATION_BEFORE:
            return False
        if text[m.end() : m.end() + 1] in tuple(_ZH_NOT_NEGATION_AFTER):
            return False
    return True


def _scoped(
    text: str, end: int, triggers: frozenset[str], negated_ok: frozenset[str]
) -> re.Match[str] | None:
    """The trigger a negation ending at ``end`` scopes (a match in ``text[end:]``), or None."""
    clause = CLAUSE_END.split(text[end:], maxsplit=1)[0]
    for k, m in enumerate(UNITS.finditer(clause)):
        unit = m.group()
        chinese = len(unit) == 1 and not unit.isascii()
        if k >= _WINDOW or unit in negated_ok:
            return None  # "don't move", "别再动了": how this function is asked for
        if unit in (_SKIP_ZH if chinese else _SKIP_EN):
            continue
        if word_forms(unit) & triggers:
            return m
        if unit not in (_PASS_ZH if chinese else _PASS_EN):
            return None
    return None


_REPORTED_ZH = ("已经", "过了", "刚才", "刚刚")  # a clause that tells what was done


class _Clauses:
    """The clauses of a request (pause marks end one), read once: which clause each character is
    in, which clauses report what was done, and where the negations are."""

    def __init__(self, text: str) -> None:
        self.of: list[int] = []  # for each character, the index of its clause
        starts, k = [0], 0
        for i, ch in enumerate(text):
            self.of.append(k)
            if ch in CLAUSE_MARKS:
                k += 1
                starts.append(i + 1)
        clauses = [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
        self._reported = [any(w in c for w in _REPORTED_ZH) for c in clauses]
        self._first_negation_end: dict[int, int] = {}  # clause -> where its first negation ends
        for pattern in (_EN_NEGATION, _ZH_NEGATION):
            for m in pattern.finditer(text):
                k = self.of[m.start()]
                self._first_negation_end[k] = min(m.end(), self._first_negation_end.get(k, len(text) + 1))

    def reported(self, start: int) -> bool:
        """Whether the clause of the unit at ``start`` reports what was done ("狗我已经喂过了")."""
        return self._reported[self.of[start]]

    def after_negation(self, start: int) -> bool:
        """Whether the unit at ``start`` follows a negation in its clause ("don't *drop* it")."""
        return self._first_negation_end.get(self.of[start], len(self.of) + 1) <= start


def negated_request(spec: Any, call: Any, utterance: str) -> str | None:
    """The negation and the words it scopes ("don't pick", "别去") when ``utterance`` says not to
    do what ``call`` (a call of ``spec``) does; None otherwise (see the module doc). The text of a
    ``source: utterance`` argument is not read."""
    if spec is None or getattr(spec, "decline", False) or getattr(spec, "halts", False):
        return None  # a stop is never declined for a negation ("don't stop" stops: harmless)
    if not hasattr(spec, "training_literals"):
        return None  # a registry without phrasings has no words that ask for a function
    triggers, negated_ok = _triggers(spec)
    if not triggers:
        return None
    text = blank_copied(spec, call, fold_input(utterance)).lower().replace("\u2019", "'")
    dismissed = _dismissal(text)
    if dismissed is not None:
        return dismissed

    scoped: list[tuple[re.Match[str], int, str]] = []  # (negation, where its trigger is, the trigger)
    for pattern in (_EN_NEGATION, _ZH_NEGATION):
        for m in pattern.finditer(text):
            if _is_negation(text, m):
                hit = _scoped(text, m.end(), triggers, negated_ok)
                if hit is not None:
                    scoped.append((m, m.end() + hit.start(), hit.group()))
    negated_at = {at for _, at, _ in scoped}
    clauses = _Clauses(text)
    clause_of = clauses.of
    # the units said without a negation, read once (the rules below ask of each negation in turn)
    free = [(u.start(), word_forms(u.group())) for u in UNITS.finditer(text) if u.start() not in negated_at]
    asking = [at for at, forms in free if forms & triggers and not clauses.after_negation(at)]
    asking_clauses = {clause_of[at] for at in asking}
    said_again: dict[str, list[int]] = {}
    for m, at, unit in sorted(scoped, key=lambda s: s[0].start()):
        if unit not in said_again:
            forms = word_forms(unit)
            said_again[unit] = [start for start, other in free if other & forms]
        chinese = not m.group().isascii()
        # the same word said without the negation, after it or (Chinese) in another clause that is no
        # report of what was done: "别放这儿，放到架子上去", "把杯子放桌上，别放地上"; not
        # "狗我已经喂过了，你就别喂了"
        same = said_again[unit]
        later = same[bisect.bisect_right(same, at) :]
        again = any(not (chinese and clauses.reported(start)) for start in later) or (
            chinese
            and any(
                clause_of[start] != clause_of[at] and not clauses.reported(start)
                for start in same[: bisect.bisect_left(same, at)]
            )
        )
        # English: a clause of its own that asks for the function plainly ("put the cup on the shelf,
        # don't drop it", "don't get lost, head to the kitchen"), or the function asked for before the
        # negation in its clause ("feed the dog but don't give him too much"). Chinese clauses read
        # only the same word (above): a topic said first is no request ("那条消息别发了"), nor is
        # another clause's word ("红球不用捡了，就让它放那儿吧")
        elsewhere = (
            not chinese and bool(asking) and (asking[0] < m.start() or bool(asking_clauses - {clause_of[at]}))
        )
        if not again and not elsewhere:
            words = text[m.start() : at + len(unit)]
            return " ".join(words.split()) if m.group().isascii() else words.replace(" ", "")
    return None
