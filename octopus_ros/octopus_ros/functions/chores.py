"""Chores a request asks for that no function of the registry does.

"pick up the red cup and wash it", "把红杯子拿起来洗一洗", "go to the kitchen and cook dinner": the
model hears the half it knows and calls it (``pick_up('red cup')``), and a robot that picks the cup
up and stops there did not do what was asked. :func:`other_chore` finds the other half: a household
chore said as a request (an English verb at the head of a clause or after "and" / "then"; a
Chinese chore compound anywhere), not negated, not inside the text a call copies (a message: "tell
mom to wash the dishes"), and not a word of any function's own phrasings, so that a registry
that adds a function for it (a ``wash_dishes`` with "wash" in its examples) takes it back. The
runtime declines such a call (runtime/outcomes.py).

Pure Python, no rclpy, no torch.
"""

from __future__ import annotations

import re
from typing import Any

from .language import CLAUSE_END, fold_input, negated, word_forms
from .mentions import registry_words
from .registry import per_spec_cache

# English verbs of household chores no bundled function does (base forms; "washed" is not a request)
CHORES_EN = frozenset(
    {"wash", "rinse", "scrub", "wipe", "clean", "dust", "sweep", "mop", "vacuum", "hoover", "cook",
     "boil", "fry", "bake", "roast", "reheat", "microwave", "toast", "chop", "slice", "peel", "stir",
     "open", "close", "shut", "lock", "unlock", "fold", "iron", "fix", "repair", "refill",
     "plug", "unplug", "hang", "sew", "paint", "brew", "eat", "drink", "dry", "wake"}
)  # fmt: skip
# what may follow the verb of a chore asked for: its object, a particle, or the end of the clause
_CHORE_OBJECT_EN = re.compile(
    r"\s*(?:$|(?:it|them|this|that|these|those|the|a|an|my|your|his|her|our|their|up|out|off|down|"
    r"everything|all|some|dinner|lunch|breakfast|dishes|floor|laundry|clothes)\b)"
)
# where a chore is asked for in English: the head of a clause (after "please", "can you" …) or
# right after "and" / "then"
_CHORE_HEAD_EN = re.compile(
    r"(?:^|[,.;:!?]\s*|\b(?:and|then)\s+)(?:(?:please|then|also|just|go|and|can you|could you|would you)\s+)*"
    r"([a-z]+)"
)
# Chinese chore compounds (a single character would read 切 in 一切, 修 in 装修, 烤 in 烤箱)
CHORES_ZH = (
    "洗一洗", "洗洗", "洗一下", "洗干净", "拿去洗", "刷一刷", "刷一下", "刷干净", "擦一擦", "擦擦",
    "擦一下", "擦干净", "擦干", "晾一下", "晾起来", "叠一下", "叠好", "叠起来", "熨一下", "熨好",
    "修一下", "修好", "煮一下", "煮饭", "煮面", "炒菜", "炒一下", "烤一下", "热一下", "热热",
    "切一下", "切开", "切好", "削皮", "拖地", "扫地", "吸尘", "打扫", "开门", "开一下", "关门", "关上", "关一下",
    "锁上", "锁门", "叫醒",
)  # fmt: skip
# before a Chinese chore: it is done or being done, not asked for ("我刚洗干净的杯子"); after it:
# done ("阿姨打扫完了"), going on ("妈妈煮饭呢") or what is done to a thing ("洗干净的碗")
_DONE_ZH = ("刚刚", "刚", "已经", "才", "正在", "在")
_DONE_AFTER_ZH = ("的", "完", "过", "呢")
# a character before a chore compound that makes it another word: 离开一下 (leave), 让开一下 (make way)
_OTHER_WORD_BEFORE_ZH = {"开一下": "离让躲避", "开门": "离"}
# 我 after one of these is whom the chore is for or whose thing ("帮我洗一下", "把我儿子叫醒"), not
# who does it ("我洗洗吃")
_FOR_ME_ZH = "帮给替跟和陪让叫把"


@per_spec_cache(maxsize=32)
def _chinese_literals(registry: Any) -> str:
    """The Chinese text of every function's training phrasings and examples (a chore they say is a
    function's); the English words are mentions.registry_words."""
    return "\n".join(
        literal
        for spec in registry.functions
        if hasattr(spec, "training_literals")
        for literal in spec.training_literals().get("zh", ())
    )


def other_chore(registry: Any, spec: Any, text: str) -> str | None:
    """The words of a chore no function does that ``text`` asks for besides ``spec``'s call
    (``text``: the request with the call's copied text blanked, mentions.blank_copied); None when
    it asks for none. A halting function (stop) is never held back by it."""
    if spec is None or getattr(spec, "halts", False) or not hasattr(registry, "functions"):
        return None
    own_en, own_zh = registry_words(registry), _chinese_literals(registry)
    folded = fold_input(text)
    lower = folded.lower().replace("\u2019", "'")
    for m in _CHORE_HEAD_EN.finditer(lower):
        verb = m.group(1)
        if verb not in CHORES_EN or word_forms(verb) & own_en or negated(lower, m.start(1)):
            continue
        if _CHORE_OBJECT_EN.match(CLAUSE_END.split(lower[m.end(1) :], maxsplit=1)[0]):
            return verb
    for chore in CHORES_ZH:
        if chore in own_zh:
            continue
        for m in re.finditer(re.escape(chore), folded):
            before = folded[: m.start()].rstrip()
            if negated(folded, m.start()) or before.endswith(_DONE_ZH):
                continue
            if before[-1:] and before[-1] in _OTHER_WORD_BEFORE_ZH.get(chore, ""):
                continue
            if folded[m.end() : m.end() + 1] in _DONE_AFTER_ZH or _speaker_does_it(before):
                continue
            return chore
    return None


def _speaker_does_it(before: str) -> bool:
    """Whether the clause before a Chinese chore has the speaker as who does it ("我要开始炒菜了",
    "我洗洗吃"): a 我 that is not whom it is for ("帮我", "给我")."""
    clause = CLAUSE_END.split(before)[-1]
    return any(ch == "我" and (i == 0 or clause[i - 1] not in _FOR_ME_ZH) for i, ch in enumerate(clause))
