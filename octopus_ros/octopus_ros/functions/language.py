"""Which language a text is written in, and what counts as a Chinese character (pure Python).

One definition for every room: the node's guards and engine, the safety rules, the novelty
scores, the copier, the grounding head's phrases, the prompt and the corpora built at setup.

A CJK ideograph is a code point of the CJK Unified Ideographs block, its Extension A, or the CJK
Compatibility Ideographs block (NFC maps most of the last to unified ones; the twelve that stay
are ideographs too). Extensions B and beyond (outside the Basic Multilingual Plane) are not
counted: no Chinese text the robot hears uses them, and neither the templates nor the corpora do.
"""

from __future__ import annotations

import re

# a regex character-class body, for building patterns: f"[{CJK_IDEOGRAPHS}]"
CJK_IDEOGRAPHS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_IDEOGRAPH = re.compile(f"[{CJK_IDEOGRAPHS}]")


# full-width Latin letters and digits (Ａ-Ｚ, ａ-ｚ, ０-９) -> their ASCII letters (a Chinese input
# method's letters say what ASCII letters say); full-width punctuation ("，", "？") is not mapped
_FULL_WIDTH_LATIN = {
    c: c - 0xFEE0
    for lo, hi in ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A))
    for c in range(lo, hi + 1)
}


def fold_full_width(text: str) -> str:
    """``text`` with full-width Latin letters and digits as ASCII ("ＰＩＣＫ ３" -> "PICK 3")."""
    return text.translate(_FULL_WIDTH_LATIN)


def is_cjk(char: str) -> bool:
    """Whether ``char`` is one CJK ideograph."""
    return len(char) == 1 and _IDEOGRAPH.match(char) is not None


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds at least one CJK ideograph."""
    return _IDEOGRAPH.search(text) is not None


def count_cjk(text: str) -> int:
    """How many CJK ideographs ``text`` holds."""
    return len(_IDEOGRAPH.findall(text))


def detect_language(text: str) -> str:
    """'zh' when the text holds a CJK ideograph, else 'en' (the two languages the model speaks)."""
    return "zh" if has_cjk(text) else "en"
