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

A greeting clause ("hey,") is passed over. Pure Python.
"""

from __future__ import annotations

import re

from .language import CLAUSE_END, fold_input

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


def asked_about(utterance: str) -> str | None:
    """The words that ask about the act ("did you", "了吗", "if you had to") when ``utterance``
    asks whether it was done or what would happen if it were; None when it asks for it (see the
    module doc)."""
    text = fold_input(utterance).lower().replace("\u2019", "'")
    clauses = [
        c.strip()
        for c in CLAUSE_END.split(text)
        if re.search(r"\w", c) and not all(w.strip("'") in _LEAD_EN for w in c.split())
    ]
    if not clauses:
        return None
    supposed = _SUPPOSITIONS_EN.match(_lead_off(clauses[0]))
    if supposed is not None:
        return supposed.group()
    supposed_zh = next((w for w in _SUPPOSITIONS_ZH if clauses[0].replace(" ", "").startswith(w)), None)
    if supposed_zh is not None:
        return supposed_zh
    questions = [_past_question(c) for c in clauses]
    return questions[0] if all(questions) else None
