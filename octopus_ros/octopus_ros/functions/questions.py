"""Does the request only ask *about* an act, not for it?

"Did you already water the plant this morning?", "have you fed the cat yet", "你浇过花了吗",
"狗喂了没有", "If you had to pick up the red cup, would you use both hands?", "假如让你去厨房，你会
怎么走": the words that ask for a function are there, but the speaker asks whether it was done, or
what would happen if it were. A model trained on requests reads the function and publishes it; the
runtime declines it (:func:`asked_about`, runtime/outcomes.decision_outcome: NO_ACTION).

- **Whether it was done**, only when every clause is such a question: "have you seen my red phone?
  look for it" asks for the search in its second clause and keeps its call. English: the clause
  opens (after a greeting or a hesitation) with an auxiliary of the past and a subject ("did you",
  "have you", "has anyone"). Chinese: the clause ends with a question of completion (了吗, 了没有,
  or 吗 / 没有 after the 过 of something done: "你浇过花吗", not the 过 of 过来), not a polite one
  (好吗, 行吗, 可以吗: "帮我拿一下杯子好吗" asks for it).
- **What would happen if**: the request opens with a supposition ("if you had to", "if you were
  to", "what if", "suppose", "imagine", 假如, 假设). Not "if you can", "if you don't mind", 如果你
  有空: a condition of a real request.

A greeting clause ("hey,") is passed over.

:func:`for_later` is the other way a request asks for no act now: it names a later time ("remind me
to water the plant tomorrow morning", "明天早上提醒我给花浇水", "二十分钟以后去厨房看看汤"), and the
robot acts only on what it is asked to do now. Pure Python.
"""

from __future__ import annotations

import re
from typing import Any

from .language import CLAUSE_END, fold_input
from .registry import per_spec_cache

_PAST_QUESTIONS_EN = re.compile(
    r"(did|have|has|had)\s+(you|anyone|anybody|somebody|someone|we|they|he|she)(?![a-z'])"
)
_SUPPOSITIONS_EN = re.compile(
    r"(if\s+you\s+(?:had|were|ever\s+had)\s+to|what\s+if|suppose|supposing|imagine|hypothetically)(?![a-z'])"
)
_LEAD_EN = frozenset(
    {"hey", "robot", "so", "um", "uh", "oh", "ok", "okay", "and", "well", "quick", "question", "just"}
)
_DONE_QUESTIONS_ZH = ("了吗", "了没有", "了没")  # "你浇花了吗", "狗喂了没有"
_QUESTION_ENDS_ZH = ("吗", "没有", "没")  # with 过 before them: "你浇过花吗", "发过消息没有"
_EXPERIENCED_ZH = re.compile("过(?![来去])")  # 过 of what was done, not of 过来 / 过去
_SUPPOSITIONS_ZH = ("假如", "假设", "假使", "设想")


def _lead_off(clause: str) -> str:
    words = clause.split()
    while words and words[0].strip("'") in _LEAD_EN:
        words = words[1:]
    return " ".join(words)


def _past_question(clause: str) -> str | None:
    m = _PAST_QUESTIONS_EN.match(_lead_off(clause))
    if m is not None:
        return m.group()
    clause = clause.replace(" ", "")
    done = next((q for q in _DONE_QUESTIONS_ZH if clause.endswith(q)), None)
    if done is not None:
        return done
    end = next((q for q in _QUESTION_ENDS_ZH if clause.endswith(q)), None)
    if end is not None and _EXPERIENCED_ZH.search(clause[: -len(end)]):
        return "过…" + end
    return None


@per_spec_cache(maxsize=256)
def _asked_by_question(spec: Any) -> bool:
    """Whether a training phrasing of ``spec`` is itself a question about the past ("你见过我的{item}
    吗", "have you seen my {item}?" ask for find_item): then such a question asks for it."""
    return any(
        _past_questions(_clauses(literal))
        for literals in spec.training_literals().values()
        for literal in literals
    )


def asked_about(utterance: str, spec: Any = None) -> str | None:
    """The words that ask about the act ("did you", "了吗", "if you had to") when ``utterance``
    asks whether it was done or what would happen if it were; None when it asks for it (see the
    module doc), and for a question about the past when a training phrasing of ``spec`` (the
    call's function) is one ("你见过我的黄球吗" asks for find_item)."""
    clauses = _clauses(utterance)
    if not clauses:
        return None
    supposed = _SUPPOSITIONS_EN.match(_lead_off(clauses[0]))
    if supposed is not None:
        return supposed.group()
    supposed_zh = next((w for w in _SUPPOSITIONS_ZH if clauses[0].replace(" ", "").startswith(w)), None)
    if supposed_zh is not None:
        return supposed_zh
    asked = _past_questions(clauses)
    if (
        asked is not None
        and spec is not None
        and hasattr(spec, "training_literals")
        and _asked_by_question(spec)
    ):
        return None
    return asked


def _clauses(text: str) -> list[str]:
    """The clauses of ``text`` (folded, lower case) that say anything but a greeting ("hey,")."""
    text = fold_input(text).lower().replace("\u2019", "'")
    return [
        c.strip()
        for c in CLAUSE_END.split(text)
        if re.search(r"\w", c) and not all(w.strip("'") in _LEAD_EN for w in c.split())
    ]


def _past_questions(clauses: list[str]) -> str | None:
    """The first clause's question words when every one of ``clauses`` asks whether something was
    done; None otherwise."""
    questions = [_past_question(c) for c in clauses]
    return questions[0] if questions and all(questions) else None


# a later time, or a reminder: the robot schedules nothing (:func:`for_later`)
_LATER_EN = re.compile(
    r"(?<![a-z'])(tomorrow|tonight|remind\s+me|next\s+(?:week|month|time)|later\s+(?:today|tonight|on)|"
    r"in\s+(?:two|three|four|five|ten|fifteen|twenty|thirty|forty|few|couple\s+of|\d+)\s+"
    r"(?:more\s+)?(?:minutes?|mins?|hours?|days?)|in\s+(?:an?|one)\s+(?:more\s+)?(?:hours?|days?))(?![a-z'])"
)
_LATER_ZH = re.compile(
    r"(明天|后天|明早|明晚|(?<!一)下(?:个)?(?:周|星期)(?![围边])|提醒我(?![妈爸哥姐弟妹们老家])|[\d一二两三四五六七八九十半几]+(?:个)?(?:分钟|小时|钟头|天)(?:以后|之后|后))"
)


def for_later(text: str) -> str | None:
    """The words that put the request at a later time ("tomorrow", "in twenty minutes", "remind
    me", 明天, 二十分钟以后, 提醒我) in ``text`` (the request without the text a call copies: "tell
    mom I'll be home tomorrow" is a message for now); None when it names none."""
    folded = fold_input(text).lower().replace("\u2019", "'")
    m = _LATER_EN.search(folded) or _LATER_ZH.search(folded)
    return m.group() if m else None
