"""Numbers a request says, in digits or words, English or Chinese (pure Python).

One reading for the two rooms that need it: the synthetic world writes speeds in these forms
(data/instructions.py ``speed_forms``: "35%", "thirty-five percent", "0.35", "百分之三十五",
"三成"), and a number argument declared ``narrow: true`` in the registry is offered only the
numbers the request says (functions/grammar.py): "bump your speed up to eighty percent" can no
longer come out as ``set_speed(0.5)``.

:func:`said_numbers` reads every quantity of a request as the number it means:

- a percentage as a fraction: "80%", "80 percent", "eighty percent", "百分之八十", "八成" -> 0.8;
- a decimal: "0.4", "零点四" -> 0.4;
- a fraction: "half", "a quarter", "three quarters", "a third", "two thirds", "一半", "半速",
  "四分之三" -> 0.5, 0.25, 0.75, 0.33…, 0.66…, 0.5, 0.5, 0.75;
- a whole number in digits that none of the above took: "3" -> 3.

Nothing else is returned: no infinity ("9" * 400 + "%"), no run of more than 15 digits.

Number words alone ("one", "三") are not read: "pick this one up" and "三楼" say no quantity an
argument should take. Words cover 0 to 100, as the templates do.
"""

from __future__ import annotations

import math
import re
from functools import cache

from .language import fold_input

_EN_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_EN_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ZH_DIGITS = "零一二三四五六七八九"
_MAX_DIGITS = 15  # a longer run of digits is no quantity a call takes (and int() refuses > 4300)


def en_number(n: int) -> str:
    """English words for 0..100 (``35 -> 'thirty-five'``)."""
    if not 0 <= n <= 100:
        raise ValueError(f"en_number supports 0..100, got {n}")
    if n == 100:
        return "one hundred"
    if n < 20:
        return _EN_ONES[n]
    tens, ones = divmod(n, 10)
    return _EN_TENS[tens] + ("" if ones == 0 else "-" + _EN_ONES[ones])


def zh_number(n: int) -> str:
    """Chinese numerals for 0..100 (``35 -> '三十五'``, ``10 -> '十'``)."""
    if not 0 <= n <= 100:
        raise ValueError(f"zh_number supports 0..100, got {n}")
    if n == 100:
        return "一百"
    if n < 10:
        return _ZH_DIGITS[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else _ZH_DIGITS[tens]) + "十" + ("" if ones == 0 else _ZH_DIGITS[ones])


@cache
def _words() -> tuple[dict[str, int], dict[str, int]]:
    """{English words: n} (hyphen or space between tens and ones, "a hundred" too) and {Chinese
    numerals: n} ("两" for 二 on its own, "一十" for 十), 0..100."""
    en, zh = {}, {}
    for n in range(101):
        word = en_number(n)
        en[word] = en[word.replace("-", " ")] = n
        zh[zh_number(n)] = n
    en["a hundred"] = 100
    zh["两"] = 2
    zh["一十"] = 10
    return en, zh


def _alternation(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


@cache
def _patterns() -> list[tuple[re.Pattern[str], str]]:
    en, zh = _words()
    en_w = rf"(?<![a-z])(?:{_alternation(en)})(?![a-z])"
    zh_w = rf"(?:{_alternation(zh)})"
    pct = r"(?:%|％|percent\b|per cent\b)"
    return [
        (re.compile(rf"(?<![\d.])(\d+(?:\.\d+)?)\s*{pct}"), "digits_percent"),
        (re.compile(rf"({en_w})(?:\s+|-){pct}"), "words_percent"),
        (re.compile(rf"百分之\s*({zh_w}|\d+(?:\.\d+)?)"), "zh_percent"),
        (re.compile(r"([一二两三四五六七八九])成"), "zh_tenths"),
        (re.compile(r"零点([零一二三四五六七八九]+)"), "zh_decimal"),
        (re.compile(rf"({zh_w})分之({zh_w})"), "zh_fraction"),
        (re.compile(r"(?<![a-z])(?:(three)[\s-]+quarters|(a|one)\s+quarter|quarter)(?![a-z])"), "quarter"),
        (re.compile(r"(?<![a-z])(?:(two)[\s-]+thirds|(a|one)[\s-]+third)(?![a-z])"), "third"),
        (re.compile(r"(?<![a-z])half(?![a-z])|一半|半速"), "half"),
        (re.compile(r"(?<![\d.])(\d+\.\d+)(?![\d.])"), "decimal"),
        (re.compile(r"(?<![\d.])(\d+)(?![\d.])"), "whole"),
    ]


def _value(kind: str, m: re.Match[str]) -> float | int | None:
    en, zh = _words()
    if kind == "digits_percent":
        return float(m.group(1)) / 100
    if kind == "words_percent":
        return en[" ".join(m.group(1).replace("-", " ").split())] / 100
    if kind == "zh_percent":
        g = m.group(1)
        return (zh[g] if g in zh else float(g)) / 100
    if kind == "zh_tenths":
        return zh[m.group(1)] / 10
    if kind == "zh_decimal":
        return float("0." + "".join(str(_ZH_DIGITS.index(c)) for c in m.group(1)))
    if kind == "zh_fraction":
        whole, part = zh[m.group(1)], zh[m.group(2)]
        return part / whole if whole else None
    if kind == "quarter":
        return 0.75 if m.group(1) else 0.25
    if kind == "third":
        return 2 / 3 if m.group(1) else 1 / 3
    if kind == "half":
        return 0.5
    if kind == "decimal":
        return float(m.group(1))
    digits = m.group(1)
    return int(digits) if len(digits) <= _MAX_DIGITS else None


def number_mentions(utterance: str) -> list[tuple[int, int, float | int]]:
    """``(start, end, quantity)`` of every quantity ``utterance`` says, in the order of the rules
    above (each piece of text is read once: "80%" is 0.8, not also 80); whole numbers in digits as
    ints. The ranges are the utterance's (folding keeps one character for one)."""
    text = fold_input(utterance).lower()
    out: list[tuple[int, int, float | int]] = []
    for pattern, kind in _patterns():
        for m in pattern.finditer(text):
            value = _value(kind, m)
            if value is not None and math.isfinite(value):
                out.append((m.start(), m.end(), value))
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return out


def number_words(utterance: str) -> list[tuple[int, int, int]]:
    """``(start, end, n)`` of every English number word from two to a hundred that
    :func:`number_mentions` does not read (no percent after it: "no, make it forty"): a
    quantity said, in no unit an argument could take."""
    text = fold_input(utterance).lower()
    for start, end, _ in number_mentions(utterance):
        text = text[:start] + " " * (end - start) + text[end:]
    en, _ = _words()
    words = {w: n for w, n in en.items() if n >= 2}
    pattern = re.compile(rf"(?<![a-z])(?:{_alternation(words)})(?![a-z])")
    return [(m.start(), m.end(), words[m.group()]) for m in pattern.finditer(text)]


def said_numbers(utterance: str) -> list[float | int]:
    """Every quantity ``utterance`` says (:func:`number_mentions`), in the order of the rules,
    without repeats."""
    out: list[float | int] = []
    for _, _, value in number_mentions(utterance):
        if value not in out:
            out.append(value)
    return out
