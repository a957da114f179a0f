"""Instruction templates (English and Chinese) of the synthetic world, slot vocabularies,
fillers, and the canonical call text.

The phrasings themselves live in the function registry: the ``phrasings:`` key of each function
in ``config/functions.yaml`` (:mod:`octopus_ros.functions.phrasings`; the registry validates them
and names the file and line of a bad one). This module turns them into :class:`Template` objects
and owns what fills their slots, the synthetic world's vocabularies (:data:`WORLD_SLOTS`):

- ``{obj}`` an object name (``red cup`` / ``红色杯子``), ``{pet}`` a pet word (``doggy`` / ``猫咪``);
- ``{loc}`` a place() location phrase, ``{place}`` a navigate_to() place, ``{bin}`` a waste bin;
- ``{contact}`` and ``{msg}`` for send_message(), ``{speed}`` for set_speed(), ``{gib}`` gibberish.

A template's ``mode`` says where the object argument comes from: ``named`` (the text names it),
``deictic`` (the text says "that"/"这个": the argument is the most salient object in the image),
or ``text`` (the call does not depend on the image at all); ``heldout`` marks the phrasings of
the ``unseen_phrasing`` split (never trained on).

Object arguments are always the English canonical name (``'red cup'``), whatever the language of
the instruction, so the robot's downstream code sees one vocabulary; enum arguments are English by
definition; the send_message ``text`` argument is copied verbatim from the instruction (Chinese
text stays Chinese).

Template ids (``pick_up.en.03``) are positions in the registry's lists, which are append-only, so
no id moves when a phrasing is added (append new ones at the end of a list).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from octopus_ros.functions import FunctionRegistry, load_default_registry
from octopus_ros.functions.numbers import en_number, zh_number

LANGUAGES: tuple[str, ...] = ("en", "zh")
MODES: tuple[str, ...] = ("named", "deictic", "text")
NEXA_END = "<nexa_end>"

# Slots the synthetic world can fill (see _slot_patterns and tasks._instruction for the words).
WORLD_SLOTS: dict[str, str] = {
    "obj": "an object's name as rendered (red cup, 红色杯子)",
    "loc": "a place() location phrase (on the shelf, 架子上)",
    "place": "a navigate_to() place (kitchen, 厨房)",
    "bin": "a waste bin (recycling bin, 回收桶)",
    "pet": "a pet word (doggy, 猫咪)",
    "contact": "a send_message() contact (mom, 妈妈)",
    "msg": "a message text, copied into the call",
    "speed": "a spoken speed (35 percent, 百分之三十五)",
    "gib": "gibberish (no argument)",
}


def world_functions(registry: FunctionRegistry) -> dict[str, tuple[int, tuple[str, ...]]]:
    """name -> (token index, argument names) of the registry's functions with world phrasings,
    in token order."""
    return {
        s.name: (s.token, tuple(a.name for a in s.args))
        for s in registry.functions
        if s.phrasings is not None
    }


# The bundled registry (config/functions.yaml): its functions with phrasings are the world's.
REGISTRY: FunctionRegistry = load_default_registry()
FUNCTIONS: dict[str, tuple[int, tuple[str, ...]]] = world_functions(REGISTRY)


# ----------------------------------------------------------------------------- call text
def _format_arg(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot format non-finite float {value!r}")
        text = repr(value)  # shortest round-trip form
        if "e" in text or "E" in text:
            text = f"{value:.6f}".rstrip("0")
        return text + "0" if text.endswith(".") else text if "." in text else text + ".0"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise ValueError(f"unsupported argument type {type(value).__name__} ({value!r})")


def format_call(token: int, args: tuple | list = ()) -> str:
    """Canonical answer text: ``<nexa_1>('blue book', 'shelf')<nexa_end>``, ``<nexa_3>()<nexa_end>``.

    Strings are single-quoted with ``\\\\`` and ``\\'`` escapes, args are joined by ``", "``,
    floats use their shortest form with at least one decimal (``0.5``, ``1.0``, ``0.25``),
    bools are ``True``/``False``. (A private copy for data generation; the function registry
    has the authoritative formatter, and the tests check that both agree.)
    """
    if isinstance(token, bool) or not isinstance(token, int) or token < 0:
        raise ValueError(f"token must be a non-negative int, got {token!r}")
    return f"<nexa_{token}>(" + ", ".join(_format_arg(a) for a in args) + ")" + NEXA_END


def call_text(function: str, args: tuple | list = ()) -> str:
    """:func:`format_call` by function name; checks the argument count."""
    try:
        token, names = FUNCTIONS[function]
    except KeyError:
        raise ValueError(f"unknown function {function!r}; known: {sorted(FUNCTIONS)}") from None
    if len(args) != len(names):
        raise ValueError(f"{function} takes {len(names)} args {names}, got {len(args)}: {args!r}")
    return format_call(token, args)


# ----------------------------------------------------------------------------- templates
@dataclass(frozen=True)
class Template:
    """One phrasing of one function in one language (from the registry's ``phrasings:``)."""

    id: str  # '<function>.<lang>.<index>', stable
    function: str
    language: str
    text: str  # format string with slots
    mode: str  # 'named' | 'deictic' | 'text'
    fixed: tuple[tuple[str, Any], ...] = ()  # arguments the phrasing itself fixes ("full speed")
    heldout: bool = False  # in the unseen_phrasing split, never trained on

    @property
    def slots(self) -> frozenset[str]:
        """Slot names used by the text."""
        return frozenset(f for _, f, _, _ in string.Formatter().parse(self.text) if f)


# Functions whose scene must contain a specific kind of target.
OBJECT_FUNCTIONS: tuple[str, ...] = ("pick_up", "place", "recycle", "find_item")  # arg from an item


def load_templates(registry: FunctionRegistry) -> tuple[Template, ...]:
    """Every world phrasing of ``registry`` as a :class:`Template`, in registry order (function by
    token, then language code, then position in the YAML list). ValueError, naming the registry file and
    the line of the function's phrasing ``slots:``, when its phrasings need a slot or a language
    the synthetic world cannot fill."""
    out = []
    for spec in registry.functions:
        phrasings = spec.phrasings
        if phrasings is None:
            continue
        line = phrasings.slots_line or phrasings.line
        at = f"{registry.source}:{line}" if line is not None else registry.source
        unknown = [slot for slot, _ in phrasings.slots if slot not in WORLD_SLOTS]
        if unknown:
            raise ValueError(
                f"{at}: {spec.name} phrasings: the synthetic world has no words for slot "
                f"{{{unknown[0]}}} (it fills {', '.join(WORLD_SLOTS)})"
            )
        for lang, items in phrasings.languages:
            if lang not in LANGUAGES:
                raise ValueError(
                    f"{at}: {spec.name} phrasings: the synthetic world speaks {LANGUAGES}, not {lang!r}"
                )
            out += [
                Template(f"{spec.name}.{lang}.{i:02d}", spec.name, lang, p.say, p.mode, p.fixed, p.heldout)
                for i, p in enumerate(items)
            ]
    return tuple(out)


TEMPLATES: tuple[Template, ...] = load_templates(REGISTRY)
TEMPLATES_BY_ID: dict[str, Template] = {t.id: t for t in TEMPLATES}


def templates_for(function: str, language: str) -> list[Template]:
    """All templates of one function and language, in id order."""
    if function not in FUNCTIONS:
        raise ValueError(f"unknown function {function!r}; known: {sorted(FUNCTIONS)}")
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; expected one of {LANGUAGES}")
    return [t for t in TEMPLATES if t.function == function and t.language == language]


# ----------------------------------------------------------------------------- slot vocabularies
# enum value -> {lang: surface forms}; the first form is the canonical one
LOCATIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "table": {"en": ("on the table", "on the dining table"), "zh": ("桌子上", "餐桌上")},
    "shelf": {"en": ("on the shelf", "up on the shelf"), "zh": ("架子上", "书架上")},
    "counter": {"en": ("on the counter", "on the kitchen counter"), "zh": ("台面上", "厨房台面上")},
    "floor": {"en": ("on the floor", "on the ground"), "zh": ("地上", "地板上")},
    "box": {"en": ("in the box", "into the box"), "zh": ("箱子里", "盒子里")},
}
PLACES: dict[str, dict[str, tuple[str, ...]]] = {
    "kitchen": {"en": ("kitchen",), "zh": ("厨房",)},
    "living_room": {"en": ("living room", "lounge"), "zh": ("客厅",)},
    "bedroom": {"en": ("bedroom",), "zh": ("卧室", "睡房")},
    "bathroom": {"en": ("bathroom", "restroom"), "zh": ("卫生间", "浴室", "洗手间")},
    "office": {"en": ("office", "study"), "zh": ("办公室", "书房")},
    "charging_dock": {"en": ("charging dock", "charger", "charging station"), "zh": ("充电桩", "充电座")},
    "front_door": {"en": ("front door", "entrance"), "zh": ("前门", "大门", "门口")},
}


def _arg_lexicon(function: str, arg: str) -> dict[str, dict[str, tuple[str, ...]]]:
    """value -> language -> spoken forms of an enum argument, as its ``examples`` in the function
    registry say them (the registry owns them; the world only reads them)."""
    spec = load_default_registry().by_name(function)
    declared = next(a for a in spec.args if a.name == arg)
    return {v: {lang: tuple(forms[v]) for lang, forms in declared.examples.items()} for v in declared.values}


# send_message's contacts: the registry's examples of its `contact` argument
CONTACTS: dict[str, dict[str, tuple[str, ...]]] = _arg_lexicon("send_message", "contact")
BIN_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "recycling": {"en": ("recycling bin", "recycling"), "zh": ("可回收垃圾桶", "回收桶")},
    "compost": {"en": ("compost bin", "compost"), "zh": ("厨余垃圾桶", "堆肥桶")},
    "trash": {"en": ("trash", "garbage bin", "trash can"), "zh": ("其他垃圾桶", "垃圾桶")},
}
PET_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "dog": {"en": ("dog", "doggy", "puppy", "pup"), "zh": ("狗", "小狗", "狗狗")},
    "cat": {"en": ("cat", "kitty", "kitten"), "zh": ("猫", "小猫", "猫咪")},
}
MESSAGES: dict[str, tuple[str, ...]] = {
    "en": (
        "I'll be home late tonight",
        "dinner is ready",
        "can you pick up some milk?",
        "I'm on my way",
        "running ten minutes late",
        "happy birthday",
        "call me when you can",
        "the package arrived",
        "don't forget the keys",
        "see you at six",
        "I love you",
        "the meeting moved to 3pm",
        "we're out of coffee",
        "good night",
        "the dog has been fed",
        "please bring an umbrella",
        "I'm at the front door",
        "thanks for everything",
        "lunch at noon?",
        "the robot says hi",
        "I think I left the oven on",
        "let's watch a movie tonight",
        "don't wait up for me",
        "the back door is unlocked",
    ),
    "zh": (
        "我今晚会晚点回家",
        "晚饭做好了",
        "记得买牛奶",
        "我在路上了",
        "我要迟到十分钟",
        "生日快乐",
        "有空给我回电话",
        "快递到了",
        "别忘了带钥匙",
        "六点见",
        "我爱你",
        "会议改到下午三点",
        "家里没咖啡了",
        "晚安",
        "狗已经喂过了",
        "出门记得带伞",
        "我到门口了",
        "谢谢你",
        "中午一起吃饭吗",
        "机器人向你问好",
        "烤箱好像没关",
        "今晚一起看电影吧",
        "不用等我了",
        "后门没锁",
    ),
}
SPEEDS: tuple[float, ...] = tuple(k / 20 for k in range(2, 21))  # 0.1, 0.15, ..., 1.0


def speed_forms(value: float, language: str) -> list[str]:
    """Every spoken form of a speed fraction: ``35%``, ``35 percent``, ``0.35``, ``百分之三十五``..."""
    pct = int(round(value * 100))
    decimal = _format_arg(float(value))
    if language == "en":
        return [f"{pct}%", f"{pct} percent", decimal, f"{en_number(pct)} percent"]
    forms = [f"百分之{zh_number(pct)}", f"{pct}%", decimal]
    if pct % 10 == 0 and pct < 100:
        forms.append(f"{zh_number(pct // 10)}成")
    return forms


def speed_phrase(value: float, language: str, rng: np.random.Generator) -> str:
    """A random spoken form of a speed fraction (one of :func:`speed_forms`)."""
    forms = speed_forms(value, language)
    return forms[int(rng.integers(0, len(forms)))]


_GIB_LETTERS = "bcdfghjklmnpqrstvwxz"
_GIB_VOWELS = "aeiouy"
_GIB_HANZI = "的一是在不了有和人这中大为上个国我以要他时来们生到作地于出就分对成会可主年同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如化高自二理起小现实加量都两体制机当使点从业本"


def gibberish(language: str, rng: np.random.Generator) -> str:
    """A meaningless utterance: pseudo-words or keyboard mash (en), random characters (zh)."""
    if language == "en":
        if rng.random() < 0.3:
            return "".join(rng.choice(list("asdfghjklqwertyuiopzxcvbnm"), size=int(rng.integers(4, 10))))
        words = []
        for _ in range(int(rng.integers(1, 4))):
            syl = int(rng.integers(1, 4))
            words.append(
                "".join(
                    str(rng.choice(list(_GIB_LETTERS))) + str(rng.choice(list(_GIB_VOWELS)))
                    for _ in range(syl)
                )
            )
        return " ".join(words)
    n = int(rng.integers(2, 7))
    return "".join(rng.choice(list(_GIB_HANZI), size=n))


# ----------------------------------------------------------------------------- fillers and styles
PREFIXES: dict[str, tuple[str, ...]] = {
    "en": ("hey robot, ", "robot, ", "okay, ", "um, ", "so, ", "hey, ", "excuse me, ", "buddy, "),
    "zh": ("机器人，", "嗯，", "那个，", "小机器人，", "哎，", "你好，"),
}
SUFFIXES: dict[str, tuple[str, ...]] = {
    "en": (" please", ", thanks", ", thank you", " right away", " when you get a chance"),
    "zh": ("，谢谢", "，谢谢你", "，麻烦了", "，快点"),
}
_TRAILING = ".!?。！？…"
_QUESTION_END = ("?", "？", "吗", "呢")


def normalise(text: str) -> str:
    """Lower-case, punctuation- and space-free form, used to compare phrasings for leaks."""
    return re.sub(r"[\s.,!?;:'\"…，。！？、：；（）()]+", "", text.lower())


def decorate(template_text: str, language: str, rng: np.random.Generator) -> tuple[str, bool]:
    """Add a random prefix/suffix and casing style to a template's format string.

    Returns ``(format_string, lower)``: when ``lower`` is true the caller must lower-case the slot
    values too (an ASR-like all-lowercase, no final punctuation style), so that copied arguments
    such as a message stay substrings of the instruction.
    """
    text = template_text
    if rng.random() < 0.3:
        text = PREFIXES[language][int(rng.integers(0, len(PREFIXES[language])))] + text
    if (
        rng.random() < 0.25
        and not template_text.rstrip().endswith(_QUESTION_END)
        and "{msg}" not in template_text
    ):
        text = text.rstrip(_TRAILING) + SUFFIXES[language][int(rng.integers(0, len(SUFFIXES[language])))]
    lower = False
    r = rng.random()
    if language == "en":
        if r < 0.3:
            text = text[:1].upper() + text[1:]
        elif r < 0.5:
            lower = True
            text = text.lower()
            if not text.endswith("}"):
                text = text.rstrip(_TRAILING)
    elif r < 0.2 and not text.endswith("}"):
        text = text.rstrip(_TRAILING)
    return text, lower


# ----------------------------------------------------------------------------- what templates produce
def _alternation(values: Iterable[str]) -> str:
    forms = sorted({normalise(v) for v in values}, key=lambda v: (-len(v), v))
    return "(?:" + "|".join(re.escape(v) for v in forms) + ")"


def _slot_patterns(language: str) -> dict[str, str]:
    """Regex (over normalised text, see :func:`normalise`) of every value each slot can take in ``language``."""
    from .world import all_combos, object_name

    objects = {
        object_name(c, col, language, zh_style=s)
        for c, col in all_combos()
        for s in range(3 if language == "zh" else 1)
    }

    def forms(vocab: dict[str, dict[str, tuple[str, ...]]]) -> list[str]:
        return [f for by_lang in vocab.values() for f in by_lang[language]]

    if language == "en":
        # Pseudo-words only: keyboard mash (uniform random letters) spells any 4..9-letter word
        # with probability 26**-n, which says nothing about phrasings.
        gib = "(?:[" + _GIB_LETTERS + "][" + _GIB_VOWELS + "]){1,9}"
    else:
        gib = "[" + re.escape(_GIB_HANZI) + "]{2,6}"
    return {
        "obj": _alternation(objects),
        "loc": _alternation(forms(LOCATIONS)),
        "place": _alternation(forms(PLACES)),
        "contact": _alternation(forms(CONTACTS)),
        "bin": _alternation(forms(BIN_WORDS)),
        "pet": _alternation(forms(PET_WORDS)),
        "msg": _alternation(MESSAGES[language]),
        "speed": _alternation(f for v in SPEEDS for f in speed_forms(v, language)),
        "gib": gib,
    }


@cache
def template_regex(template_id: str) -> re.Pattern[str]:
    """A regex over normalised text (:func:`normalise`) that matches every instruction the template can
    produce: any slot value of the world's vocabularies, any :func:`decorate` prefix, suffix,
    casing and final punctuation (a superset of what the generator draws)."""
    t = TEMPLATES_BY_ID[template_id]
    slots = _slot_patterns(t.language)
    parts = []
    for literal, name, _, _ in string.Formatter().parse(t.text):
        parts.append(re.escape(normalise(literal)))
        if name:
            parts.append(slots[name])
    prefix = _alternation(PREFIXES[t.language])
    suffix = _alternation(SUFFIXES[t.language])
    return re.compile(f"{prefix}?{''.join(parts)}{suffix}?")


def templates_producing(text: str, language: str | None = None) -> list[str]:
    """Ids of the templates (training and held-out alike) that can produce ``text``, compared
    after :func:`normalise`; ``language`` limits the search to that language's templates.

    Gibberish slots match pseudo-words (English) and the Chinese noise characters, but not
    English keyboard mash, whose uniform random letters could spell any short word."""
    norm = normalise(text)
    return [
        t.id
        for t in TEMPLATES
        if (language is None or t.language == language) and template_regex(t.id).fullmatch(norm)
    ]
