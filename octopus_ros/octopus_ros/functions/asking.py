"""Which words of a request ask for which function: the registry's own phrasings say it.

The words that ask for a function (its *asking words*) are the words (English) and characters
(Chinese) of its training phrasings and examples outside their ``{slots}``
(:meth:`FunctionSpec.training_literals`), with the English inflections they may come from
(functions/language.word_forms: "picking" asks as "pick" does), less the words that ask for no
function in particular (``NOT_ASKING``: articles, pronouns, "please", 的, 了 …). The request rules
read them: a negation that scopes one declines the call (functions/negation.py), and a copying call
whose request has none of its function's asking words but another function's
(functions/mentions.uncarried) is not what was asked for.

A word many functions ask with ("take", "go", 把, 去) says little about which one is meant; the
words of at most two functions are each function's *specific* ones (:func:`specific_asking_words`).
Pure Python.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .language import UNITS, word_forms
from .registry import per_spec_cache

# words of a phrasing that ask for no function in particular
NOT_ASKING = frozenset(
    {"the", "a", "an", "to", "my", "me", "it", "you", "your", "please", "and", "of", "on", "in", "at", "for",
     "i", "can", "could", "would", "will", "some", "this", "that", "there", "here", "with", "from", "is",
     "are", "be", "s", "hey", "robot", "now", "just", "up", "out", "over", "down", "off", "by", "one", "them",
     "的", "了", "一", "个", "吧", "请", "你", "我", "下", "帮", "呢", "啊", "吗", "这", "那", "是", "在", "有",
     "点", "儿", "们", "麻", "烦", "么", "好"}
)  # fmt: skip
SPECIFIC_FUNCTIONS = 2  # a word at most this many functions ask with is specific to each of them


@per_spec_cache(maxsize=256)
def asking_words(spec: Any) -> frozenset[str]:
    """The units (and their word forms) that ask for ``spec`` (see the module doc)."""
    units: set[str] = set()
    for literals in spec.training_literals().values():
        for literal in literals:
            units.update(UNITS.findall(literal.lower().replace("\u2019", "'")))
    return frozenset(f for u in units if u not in NOT_ASKING for f in word_forms(u)) - NOT_ASKING


@per_spec_cache(maxsize=32)
def specific_asking_words(registry: Any) -> dict[str, frozenset[str]]:
    """Function name -> its asking words that at most ``SPECIFIC_FUNCTIONS`` of the registry's
    functions ask with (the decline function's phrasings aside: they ask for nothing)."""
    words = {
        spec.name: asking_words(spec)
        for spec in registry.functions
        if not spec.decline and hasattr(spec, "training_literals")
    }
    used = Counter(w for ws in words.values() for w in ws)
    return {name: frozenset(w for w in ws if used[w] <= SPECIFIC_FUNCTIONS) for name, ws in words.items()}


def asks_for(words: frozenset[str], units: list[str]) -> list[str]:
    """The ``units`` (of a request) that are one of ``words`` in some form, in order."""
    return [u for u in units if word_forms(u) & words]


def carrying_clauses(spec: Any, call: Any, text: str) -> str | None:
    """The clauses of ``text`` that carry ``call`` (joined by ", "), when some do and others do
    not: a clause carries it when one of its words asks for ``spec`` (:func:`asking_words`) or it
    says a value of one of the call's arguments (an enum's spoken forms, a number for a number, the
    words of a string value). The clauses that do not are what the request says beside it: a
    reason or an aside ("water the plant please, we forgot all weekend with the guests here",
    "喂一下狗，早饭以后就没人喂过它"), whose new words say nothing about whether the request was
    understood (lean/decision.texts_to_understand: the text novelty is also scored on the rest). None when
    every clause carries the call, or none does (the whole ``text`` is scored then)."""
    from .language import CLAUSE_END, text_units
    from .mentions import _value_mentions, mention_spans

    by_name = {a.name: a for a in getattr(spec, "args", ())}
    words = asking_words(spec)

    def carries(clause: str) -> bool:
        if asks_for(words, text_units(clause)):
            return True
        for got in call.args:
            arg = by_name.get(got.name)
            if arg is None:
                continue
            if arg.type == "string":
                value = str(got.value).lower()
                forms = (value, *(w for w in value.split() if len(w) > 2))
                if mention_spans(clause.lower(), forms):
                    return True
            elif arg.type == "bool":
                if mention_spans(clause, arg.spoken_forms(got.value)):
                    return True
            elif _value_mentions(arg, clause):
                return True
        return False

    clauses = [c.strip() for c in CLAUSE_END.split(text) if c.strip()]
    carrying = [c for c in clauses if carries(c)]
    if not carrying or len(carrying) == len(clauses):
        return None
    return ", ".join(carrying)
