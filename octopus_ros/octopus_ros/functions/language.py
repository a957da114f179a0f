"""Which language a text is written in, what counts as a Chinese character, what a unit of text
is (an English word or one Chinese character) and where a clause ends (pure Python).

One definition for every room: the node's guards and engine, the safety rules, the novelty
scores, the copier, the grounding head's phrases, the prompt and the corpora built at setup.

A CJK ideograph is a code point of the CJK Unified Ideographs block, its Extension A, or the CJK
Compatibility Ideographs block (NFC maps most of the last to unified ones; the twelve that stay
are ideographs too). Extensions B and beyond (outside the Basic Multilingual Plane) are not
counted: no Chinese text the robot hears uses them, and neither the templates nor the corpora do.
"""

from __future__ import annotations

import functools
import logging
import re
from importlib import resources

log = logging.getLogger(__name__)

# a regex character-class body, for building patterns: f"[{CJK_IDEOGRAPHS}]"
CJK_IDEOGRAPHS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_IDEOGRAPH = re.compile(f"[{CJK_IDEOGRAPHS}]")


# Negation: a word that follows one of these closely (English: within NEGATION_REACH words;
# Chinese: within as many characters) in the same clause is said as what not to do ("don't let
# strangers in", "别撞到猫", "卫生间的灯别开着了"); a comma or a full stop ends a negation's reach
# ("no, turn it on" asks for on). The safety screen does not count a term said that way
# (runtime/safety.py), nor does the call grammar count a value said that way as chosen
# (functions/mentions.says, ``plainly``; a bool said only that way is the other value).
NEGATIONS_EN = frozenset({"don't", "dont", "won't", "wont", "never", "not", "avoid", "without", "stop", "no"})
NEGATIONS_ZH = ("千万别", "不要", "不用", "不必", "不能", "不许", "不准", "避免", "别")
NEGATION_REACH = 3
# an English word as the negation and safety rules read it (lower case, inner apostrophe kept)
EN_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# what ends a clause, and with it a negation's reach (the enumeration comma 、 does not: it joins
# the items of a list); CLAUSE_END matches one of them
CLAUSE_MARKS = ",.;:!?\uff0c\u3002\uff1b\uff1a\uff01\uff1f"
CLAUSE_END = re.compile(f"[{re.escape(CLAUSE_MARKS)}]")
# a unit of text: an English (or other spaced-script) word, letters and digits with inner
# apostrophes, or one CJK character. :func:`text_units` lower-cases first; match it on lower case.
UNITS = re.compile(rf"[{CJK_IDEOGRAPHS}]|[^\W_{CJK_IDEOGRAPHS}]+(?:'[^\W_{CJK_IDEOGRAPHS}]+)*")


def text_units(text: str) -> list[str]:
    """Words (lower-cased, letters/digits, inner apostrophes kept) and single CJK characters."""
    return UNITS.findall(text.lower())


def text_unit_spans(text: str) -> list[tuple[int, int, str]]:
    """The :func:`text_units` of ``text`` with where each is: ``(start, end, unit)``."""
    return [(m.start(), m.end(), m.group()) for m in UNITS.finditer(text.lower())]


_CLITICS = ("'s", "'ll", "'re", "'ve", "'d", "'m")
_NEGATED = {"ca": "can", "wo": "will", "sha": "shall"}  # can't, won't, shan't


@functools.lru_cache(maxsize=4096)
def word_forms(unit: str) -> frozenset[str]:
    """``unit`` and the forms an English inflection of it may come from: "days" -> day, "fixed"
    -> fix, "carries" -> carry, "stopped" -> stop, "dog's" -> dog, "i'll" -> i, "don't" -> do.

    A Chinese character is its own only form (Chinese does not inflect: a character is already
    the unit a learner meets again in other words), and so is any unit outside the Latin script.
    The endings are stripped by rule, not looked up, so a form may be a non-word ("fixe"): two
    units share a form only when one can be an inflection of the other, which is all the novelty
    score (lean/novelty.TextNovelty) and the request rules (functions/negation.py, mentions.py)
    ask."""
    if not unit.isascii() or not unit.replace("'", "").isalpha():
        return frozenset((unit,))
    forms = {unit}
    word = unit
    for clitic in _CLITICS:
        if word.endswith(clitic) and len(word) > len(clitic):
            word = word[: -len(clitic)]
            forms.add(word)
            break
    if word.endswith("n't") and len(word) > 3:
        forms.add(_NEGATED.get(word[:-3], word[:-3]))
        return frozenset(forms)
    if len(word) > 4 and word.endswith("ies"):
        forms.add(word[:-3] + "y")
    if len(word) > 3 and word.endswith("es"):
        forms.add(word[:-2])
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        forms.add(word[:-1])
    for ending in ("ed", "ing"):
        if len(word) > len(ending) + 2 and word.endswith(ending):
            stem = word[: -len(ending)]
            forms.update((stem, stem + "e"))  # "fixed" -> fix, "liked" -> like
            if stem[-1] == stem[-2]:
                forms.add(stem[:-1])  # "stopped" -> stop
            if ending == "ed" and stem.endswith("i"):
                forms.add(stem[:-1] + "y")  # "carried" -> carry
    return frozenset(forms)


# Words a speaker puts around a message without meaning them as part of it, when a pause mark sets
# them off: "shoot Alice a note, the movie starts at nine, okay" sends "the movie starts at nine";
# "跟Bob说一声，嗯，会议改到周二了，谢谢" sends "会议改到周二了". No training request has them there
# (data/instructions.py adds its prefixes and suffixes only to requests without a message), so the
# copier reads them as part of the body (lean/copier.shed_fillers). Lower case, longest first.
OPENING_FILLERS = {
    "en": ("um", "uh", "er", "erm", "hmm", "oh", "well", "okay so", "ok so", "so"),
    "zh": ("那个", "这个", "就是", "嗯", "呃", "额", "哦", "噢"),
}
# Hesitation sounds: never words of a message, set off by a pause or not ("text dad uh the plumber
# comes at noon", as a speech recogniser writes it, sends "the plumber comes at noon"; 额 is left
# out: 额外 is a word). Lower case.
HESITATIONS = {
    "en": ("um", "umm", "uh", "uhh", "uhm", "erm", "hmm"),
    "zh": ("嗯", "呃"),
}  # not "er" (ER), "mm" (10 mm)
CLOSING_FILLERS = {
    "en": (
        "thank you so much",
        "thanks a lot",
        "thank you",
        "thanks",
        "please",
        "okay",
        "ok",
        "alright",
        "cheers",
    ),
    "zh": (
        "麻烦你了",
        "谢谢你",
        "好不好",
        "行不行",
        "可以吗",
        "拜托了",
        "谢谢",
        "谢啦",
        "多谢",
        "好吧",
        "好吗",
        "行吗",
        "麻烦了",
    ),
}


# The recipient named again by a pronoun between the request and the message ("message Bob for me,
# tell him the game starts at eight", "给Bob发条信息，告诉他比赛八点开始"): it introduces the message
# and is never part of it (lean/copier.absorb_gap). Lower case.
RECIPIENT_PRONOUNS = frozenset({"him", "her", "them", "他", "她"})
# ... when it follows one of these (a Chinese one as the end of the character before: 诉 of 告诉):
# "that her keys are on the table" and "她的快递到了" are the message's own words
RECIPIENT_VERBS = frozenset(
    {"tell", "text", "message", "remind", "ask", "ping", "notify", "inform", "warn", "let", "write", "email",
     "诉", "给", "跟", "和", "对", "叫", "让", "醒", "问"}
)  # fmt: skip

# A Chinese recipient said after a preposition ("跟老妈", "向办公室", "给妈妈") is followed by the
# request's own verb phrase ("打个招呼", "传达一下", "报个平安") and then, after a pause mark, the
# message: "跟老妈打个招呼，今晚我住同学家" sends "今晚我住同学家" (lean/copier.shed_request_clause).
RECIPIENT_PREPOSITIONS_ZH = ("跟", "向", "给", "和", "同", "对")
# ... unless that verb phrase says the message itself ("跟妈妈说好的，我马上到" sends "好的，我马上到"):
# a verb of saying in it leaves the message where the copier put it.
SAYING_VERBS_ZH = ("说", "讲", "写", "问", "告诉")

# A remark about the recipient that a speaker adds after the message, set off by a pause mark:
# "message my mom, just say happy birthday, she'll know it's from me" sends "happy birthday";
# "你给Alice发个消息，说今晚来我家吃饭，她都问好几次了" sends "今晚来我家吃饭" (lean/copier.shed_remark). A
# third-person clause after a message may also be the message ("grandma fell, she is in hospital",
# "dinner is at 8, he will pick you up"), and cutting it loses what the user wanted sent, so the
# rule takes only the shapes of a remark: the pronoun (REMARK_SUBJECTS) and a word of how the
# recipient is or what she or he knows, does habitually or has been doing (REMARK_WORDS), and not
# when the clause speaks to the recipient (REMARK_ADDRESS), passes a request on (a modal:
# REMARK_MODALS, or a negation: NEGATIONS_EN / NEGATIONS_ZH) or the message names someone the
# pronoun may mean (REMARK_PERSONS, a contact, a capitalised English word other than "I"). Lower case.
REMARK_SUBJECTS = {"en": ("she", "he"), "zh": ("她", "他")}
REMARK_WORDS = {
    "en": frozenset(
        {
            "know",
            "knows",
            "always",
            "forgets",
            "forgot",
            "forget",
            "keeps",
            "asking",
            "asked",
            "asks",
            "waiting",
            "worries",
            "worried",
            "worry",
            "worrying",
            "loves",
            "likes",
            "hates",
            "usually",
            "understands",
            "remembers",
            "wondering",
            "nagging",
            "bugging",
        }
    ),  # fmt: skip
    "zh": (
        "知道",
        "都问",
        "问了",
        "问过",
        "问好几",
        "老是",
        "总是",
        "一直问",
        "一直在",
        "老忘",
        "总忘",
        "会懂",
        "明白的",
        "喜欢",
        "担心",
        "在等",
        "等了",
        "催",
        "记不住",
        "惦记",
    ),  # fmt: skip
}
REMARK_ADDRESS = {
    "en": frozenset({"you", "your", "yours", "you're", "you'll", "you've", "you'd"}),
    "zh": ("你", "您"),
}
REMARK_MODALS = {
    "en": frozenset(
        {
            "should",
            "must",
            "need",
            "needs",
            "has",
            "have",
            "can",
            "could",
            "may",
            "might",
            "better",
            "ought",
            "shall",
            "will",
            "would",
            "won't",
            "wouldn't",
        }
    ),  # fmt: skip
    "zh": ("要", "得", "该", "应", "可以", "能", "必须", "需要", "记得", "先"),
}
REMARK_PERSONS = {
    "en": frozenset(
        {
            "mom",
            "mum",
            "mother",
            "dad",
            "father",
            "grandma",
            "grandpa",
            "granny",
            "grandmother",
            "grandfather",
            "brother",
            "sister",
            "wife",
            "husband",
            "son",
            "daughter",
            "friend",
            "boss",
            "teacher",
            "doctor",
            "nurse",
            "neighbour",
            "neighbor",
            "plumber",
            "guy",
            "man",
            "woman",
            "boy",
            "girl",
            "kid",
            "baby",
            "uncle",
            "aunt",
            "cousin",
            "boyfriend",
            "girlfriend",
            "kids",
            "babies",
            "boys",
            "girls",
            "friends",
            "guys",
            "parents",
            "children",
            "child",
        }
    ),  # fmt: skip
    "zh": (
        "妈",
        "爸",
        "哥",
        "姐",
        "弟",
        "妹",
        "爷",
        "奶",
        "叔",
        "姨",
        "舅",
        "姑",
        "婆",
        "公",
        "老师",
        "朋友",
        "孩子",
        "儿子",
        "女儿",
        "同事",
        "老板",
        "医生",
        "先生",
        "太太",
        "宝宝",
        "师傅",
    ),  # fmt: skip
}


_A_NOT_A = re.compile(rf"([{CJK_IDEOGRAPHS}])不\1")


def negated(text: str, start: int, *, but: frozenset[str] = frozenset()) -> bool:
    """Whether the word at ``start`` of ``text`` follows a negation closely, in the same clause
    (see NEGATIONS_EN), one of ``but`` aside ("no": "no wait, the shelf" corrects, it does not
    reject the shelf)."""
    before = text[:start].lower().replace("\u2019", "'")
    ends = [m.end() for m in CLAUSE_END.finditer(before)]
    if ends:
        before = before[ends[-1] :]
    # 能不能, 要不要, 可不可以: a question, no negation ("你能不能去办公室等我", "能不能踢狗" asks for it)
    zh = _A_NOT_A.sub(lambda m: " " * len(m.group()), before)
    if any(n in zh[-NEGATION_REACH:] for n in NEGATIONS_ZH):
        return True
    return any(w in NEGATIONS_EN and w not in but for w in EN_WORD.findall(before)[-NEGATION_REACH:])


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


# OpenCC's character tables (opencc-python-reimplemented ships them): Taiwan and Hong Kong variant
# forms to OpenCC's standard Traditional, then Traditional to Simplified
_OPENCC_TABLES = ("TWVariantsRev.txt", "HKVariantsRev.txt", "TSCharacters.txt")


@functools.lru_cache(maxsize=1)
def _traditional_table() -> dict[int, str]:
    """One character for one: each Traditional (or Taiwan / Hong Kong variant) character that
    OpenCC's tables map to a single character, to its first Simplified candidate; a character
    that is itself what some Traditional character becomes stays (Simplified text uses it). Empty,
    with one warning, when the tables cannot be read."""
    steps: list[dict[str, str]] = []
    try:
        folder = resources.files("opencc") / "dictionary"
        for name in _OPENCC_TABLES:
            step: dict[str, str] = {}
            for line in (folder / name).read_text(encoding="utf-8").splitlines():
                source, _, targets = line.partition("\t")
                first = targets.split(" ")[0] if targets else ""
                if len(source) == 1 and len(first) == 1:
                    step[source] = first
            steps.append(step)
    except (ImportError, OSError, UnicodeDecodeError) as e:
        log.warning(
            "Traditional Chinese is read as written (the model knows Simplified): OpenCC's tables are"
            " not readable (%s); pip install opencc-python-reimplemented",
            e,
        )
        return {}
    variants, simplified = {**steps[1], **steps[0]}, steps[2]
    written = set(simplified.values())  # characters Simplified text uses ("么" of "麼", even if 么 maps on)
    table = {}
    for c in (set(variants) | set(simplified)) - written:
        standard = variants.get(c, c)
        target = simplified.get(standard, standard)
        if target != c:
            table[ord(c)] = target
    return table


def to_simplified(text: str) -> str:
    """``text`` with Traditional Chinese characters as Simplified ("把客廳的燈打開" -> "把客厅的灯打开"),
    character by character (so the length and every position stay: mention ranges read on it are
    the text's). Speech recognisers write Mandarin in either script (Whisper often in Traditional),
    and the model, its templates and its vocabularies know Simplified. Simplified text, and text
    without Chinese, is unchanged (checked on every Chinese training phrasing and written set)."""
    return text.translate(_traditional_table()) if has_cjk(text) else text


def fold_input(text: str) -> str:
    """The characters of a request as the training text writes them: full-width Latin letters and
    digits as ASCII (:func:`fold_full_width`) and Traditional Chinese as Simplified
    (:func:`to_simplified`); one character for one. The prompt, the safety screen and the
    mention rules all read a request through this."""
    return to_simplified(fold_full_width(text))


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
