"""The grounding head's phrase rules, torch-free: which object and colour a phrase names, and
what the head's per-frame probabilities say about it (the colour-mismatch rule, colourless
phrases). The head itself (a torch module) and what the scores mean are in
``octopus_ros.model.grounding``; its exported graph runs in the onnxruntime runtime. Both
runtimes ground phrases with :class:`GroundingRules`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octopus_ros.functions.language import detect_language

GROUNDING_FILE = "grounding.safetensors"
GROUNDING_META = "grounding.json"
FORMAT = "octopus_ros.grounding"
FORMAT_VERSION = 1


COLOUR_SOURCES = ("pixels", "maps")  # what a head's colour logits may read (GroundingHead)


class GroundingError(ValueError):
    """A bad grounding head file; the message starts with the file's path."""

    def __init__(self, path: str | Path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")


@dataclass
class GroundingMaps:
    """What the head saw in one frame: probabilities that each category / (category, colour) is in view."""

    category: Any  # (C,) numpy array or torch tensor
    pair: Any  # (C, K)


@dataclass
class Grounding:
    """The answer for one phrase. ``score`` is -1 when the phrase cannot be grounded."""

    phrase: str
    grounded: bool
    score: float = -1.0
    category: str | None = None
    colour: str | None = None  # the phrase's colour, else the resolved one (None: single-colour category)
    colour_given: bool = False
    # probability of the (category, colour) pair: the phrase's colour, else the resolved one
    colour_score: float = float("nan")
    resolved: str | None = None  # the full name of what is in view, e.g. 'red cup'
    reason: str = ""
    # a named colour the head does not see, where it is sure of another colour of that object
    # (GroundingModel.colour_mismatch): the full name of what is there instead, and its probability
    other_colour: str | None = None
    other_score: float = float("nan")


class GroundingRules:
    """Phrase parsing and grounding over a head's vocabulary. Users set ``categories`` ({name, en,
    zh, colours}), ``colours`` ({name, en, zh, zh_short}), ``colour_mismatch`` and call
    :meth:`_index_words` once (``GroundingModel`` and the onnxruntime runtime's grounding do)."""

    categories: list[dict[str, Any]]
    colours: list[dict[str, Any]]
    colour_mismatch: tuple[float, float, float, float] | None

    def _index_words(self) -> None:
        self._cat_index = {c["name"]: i for i, c in enumerate(self.categories)}
        self._col_index = {c["name"]: i for i, c in enumerate(self.colours)}
        words: list[tuple[str, str, str]] = []  # (word, kind, name)
        for c in self.categories:
            words += [(c["en"], "category", c["name"]), (c["zh"], "category", c["name"])]
        for c in self.colours:
            words += [(c["en"], "colour", c["name"]), (c["zh"], "colour", c["name"])]
            words += [(c["zh_short"], "colour_short", c["name"])]
        self._words = sorted(words, key=lambda w: -len(w[0]))

    def _scan(self, phrase: str) -> tuple[str, list[tuple[int, int, str, str]]]:
        """The normalised ``phrase`` and its vocabulary words, in order: (start, end, kind, name),
        kind "category" or "colour"; the longest word wins where two overlap (红色 over 红)."""
        text = re.sub(r"\s+", " ", str(phrase).strip().lower())
        hits: list[tuple[int, int, str, str]] = []
        taken = [False] * len(text)
        for word, kind, name in self._words:  # longest first, so 红色 wins over 红
            start = 0
            while (i := text.find(word, start)) >= 0:
                start = i + 1
                if any(taken[i : i + len(word)]):
                    continue
                if re.fullmatch(r"[a-z ]+", word) and not _whole_word(text, i, len(word)):
                    continue
                if kind == "colour_short" and not _followed_by_category(text, i + len(word), self.categories):
                    continue
                taken[i : i + len(word)] = [True] * len(word)
                hits.append((i, i + len(word), "colour" if kind.startswith("colour") else kind, name))
        return text, sorted(hits)

    def parse(self, phrase: str) -> tuple[str | None, str | None]:
        """(category, colour) named by ``phrase``; None for what it does not name. The last word of
        each kind names the object ("cup of tea" aside)."""
        found = {kind: name for _, _, kind, name in self._scan(phrase)[1]}
        return found.get("category"), found.get("colour")

    def mentions(self, utterance: str) -> dict[str, set[str]]:
        """The object categories ``utterance`` names, each with the colours said right before it
        ("the red cup", "红色的杯子", "红杯子"; a colour before another noun, "the blue box", is
        not the cup's): {category: {colour, ...}}, an empty set for a category named without a
        colour. Words the vocabulary does not hold name nothing. A bare category word may be part
        of another noun ("trash can", 书架 "bookshelf"); one with its colour before it is not."""
        text, hits = self._scan(utterance)
        out: dict[str, set[str]] = {}
        for k, (a, _, kind, name) in enumerate(hits):
            if kind != "category":
                continue
            colours = out.setdefault(name, set())
            if k > 0 and hits[k - 1][2] == "colour" and _adjacent(text[hits[k - 1][1] : a]):
                colours.add(hits[k - 1][3])
        return out

    def colourless(self, utterance: str) -> str | None:
        """The object category a colourless reference names ("grab the cup", "把杯子拿起来": 'cup'),
        whose colour is the view's to give: the category ``utterance`` names (:meth:`parse`) when
        it names no colour; None when it names a colour or no object."""
        category, colour = self.parse(utterance)
        return category if colour is None else None

    def determined(self, utterance: str) -> set[str]:
        """The object categories ``utterance`` names in English with a determiner right before the
        category word and no colour ("the apple", "that banana", "my phone"), or as the request's
        first word set off by a comma or colon ("Banana, pick it up") or followed by a place
        ("Keys on the counter"): a bare word that is a noun
        where it stands, unless another category word follows it ("the dog bowl" is a
        bowl). Without the determiner a category word may be another word ("can
        you…", "trash can"); Chinese has no such mark (书 in 书架 "bookshelf"), so it names none."""
        text, hits = self._scan(utterance)
        out: set[str] = set()
        for k, (a, b, kind, name) in enumerate(hits):
            if kind != "category" or not text[a:b].isascii():
                continue
            before = text[:a].rstrip()
            rest = text[b:].lstrip(" ")
            # the request's first word, said alone ("Banana, pick it up") or as the subject of a
            # place ("Keys on the counter, please"): a noun there
            called = not before and (rest.startswith(_CALL_MARKS) or rest.split(" ", 1)[0] in _PLACE_WORDS)
            if not called and not (len(before) < len(text[:a]) and before.rsplit(" ", 1)[-1] in _DETERMINERS):
                continue
            following = hits[k + 1] if k + 1 < len(hits) else None
            if following is not None and following[2] == "category" and not text[b : following[0]].strip():
                continue  # "the dog bowl": the first word says what kind of bowl
            out.add(name)
        return out

    def named_phrases(self, utterance: str, *, bare: bool = False) -> tuple[str, ...]:
        """The objects ``utterance`` names with their colours (:meth:`mentions`), as the model
        writes them in a call ("blue keys", also for "蓝色的钥匙"). What a ``names_object``
        argument may be (functions/grammar.py ``CallGrammar.bind``); empty when it names none.

        Only colour-qualified mentions count, as in the object-swap check (lean/decision.py
        ``object_mismatch``): a bare category word may be another word ("can you…", "trash can",
        书架 "bookshelf"). ``bare``: also each category named without a colour, in every colour it
        comes in (a measurement option)."""
        out: list[str] = []
        for name, said in self.mentions(utterance).items():
            if not said and not bare:
                continue
            category = self.categories[self._cat_index[name]]
            colours = [c for c in self._col_index if c in said] if said else category["colours"]
            out += [self._name(category, colour, "en") for colour in colours]
        return tuple(dict.fromkeys(out))

    def category_word(self, name: str, lang: str = "en") -> str:
        """The word of category ``name`` in ``lang`` ("en" / "zh"); KeyError for an unknown one."""
        return self.categories[self._cat_index[name]][lang]

    def ground(self, maps: GroundingMaps, phrase: str) -> Grounding:
        """Is ``phrase`` in view? See the module docstring for unknown and colourless phrases."""
        category, colour = self.parse(phrase)
        if category is None:
            return Grounding(phrase, False, reason=f"{phrase!r} names no object the grounding head knows")
        ci = self._cat_index[category]
        cat = self.categories[ci]
        lang = detect_language(str(phrase))
        score = float(maps.category[ci])
        if colour is not None:
            pair = float(maps.pair[ci, self._col_index[colour]])
            named = Grounding(
                phrase, True, score, category, colour, True, pair, self._name(cat, colour, lang)
            )
            if self.colour_mismatch is not None and len(cat["colours"]) > 1:
                # the named colour may be one the object never comes in ("orange cup")
                probs = {c: float(maps.pair[ci, self._col_index[c]]) for c in cat["colours"]}
                probs[colour] = pair
                other = colour_mismatch(probs, colour, self.colour_mismatch)
                if other is not None:
                    named.other_colour, named.other_score = self._name(cat, other, lang), probs[other]
            return named
        if len(cat["colours"]) == 1:
            only = cat["colours"][0]
            return Grounding(phrase, True, score, category, only, False, 1.0, self._name(cat, only, lang))
        probs = {c: float(maps.pair[ci, self._col_index[c]]) for c in cat["colours"]}
        best = max(probs, key=probs.get)
        return Grounding(phrase, True, score, category, best, False, probs[best], self._name(cat, best, lang))

    def _name(self, category: dict[str, Any], colour: str, lang: str) -> str:
        if len(category["colours"]) == 1:
            return category[lang]
        col = self.colours[self._col_index[colour]]
        return f"{col['en']} {category['en']}" if lang == "en" else f"{col['zh']}{category['zh']}"


def colour_mismatch(
    probs: dict[str, float], named: str, rule: tuple[float, float, float, float]
) -> str | None:
    """The colour in view instead of ``named``, by the colour-mismatch rule
    (GroundingModel.colour_mismatch = (named_below, other_at_least, ratio_other_at_least,
    ratio_times_named)), or None: the named colour's pair probability is below ``named_below``
    while the object's most probable other colour is at least ``other_at_least``, or at least
    ``ratio_other_at_least`` and ``ratio_times_named`` times the named one (a frame where every
    colour is unsure: dim, noisy). ``probs``: the pair probability of each colour the object comes
    in, and of ``named``."""
    below, at_least, ratio_at_least, times = rule
    others = [c for c in probs if c != named]
    if not others:
        return None
    other = max(others, key=probs.get)
    p_named, p_other = probs[named], probs[other]
    if p_named >= below:
        return None
    return (
        other if p_other >= at_least or (p_other >= ratio_at_least and p_other >= times * p_named) else None
    )


def colour_check_rule(
    setting: str, head_rule: tuple[float, float, float, float] | None
) -> tuple[float, float, float, float] | None:
    """The colour-mismatch rule a ``colour_check`` setting (node parameter) means for a head whose
    own rule (grounding.json) is ``head_rule``: "" or "head" = the head's own; "none" or "off" = no
    colour check (a named colour is never refused; ``-p colour_check:=off`` reaches the node as
    YAML's false, so the parameter's form is "none"); "NAMED_BELOW,OTHER_AT_LEAST" (e.g. "0.2,0.3") = a
    named colour scored below the first while another colour of the object scores at least the
    second is refused, with the head's ratio branch kept (none when the head has no rule). A
    stricter rule refuses more wrong colours and more right ones (docs/training.md item 43:
    0.1,0.3 (the heads' own) acted on 2.8 % of absent colours with stop 42's heads, 0.2,0.3 on 1.9 %, 0.3,0.3 on
    1.4 %, for 0.3-1.4 points of held-out right calls). ValueError for anything else."""
    value = (setting or "").strip().lower()
    if value in ("", "head"):
        return head_rule
    if value in ("none", "off"):
        return None
    parts = value.split(",")
    try:
        below, at_least = (float(x) for x in parts)
    except ValueError:
        raise ValueError(
            f"colour_check must be 'head', 'none' or 'NAMED_BELOW,OTHER_AT_LEAST' (two numbers in [0, 1], "
            f"e.g. '0.2,0.3'), got {setting!r}"
        ) from None
    if not (0.0 <= below <= 1.0 and 0.0 <= at_least <= 1.0):
        raise ValueError(f"colour_check's two numbers must be in [0, 1], got {setting!r}")
    ratio_at_least, times = (head_rule[2], head_rule[3]) if head_rule is not None else (math.inf, math.inf)
    return below, at_least, ratio_at_least, times


# English words that make the category word after them a noun: "the apple", "my phone"
# what sets off a category word that opens a request as the thing it is about ("Banana, pick it
# up", "Keys: on the counter"): the word said alone, then the request
_CALL_MARKS = (",", ":", ";", "-", "—")
# prepositions that make a request's first word the thing put somewhere ("Keys on the counter")
_PLACE_WORDS = frozenset({"on", "onto", "in", "into", "under", "off", "back", "next", "beside", "by", "near"})
_DETERMINERS = frozenset(
    ("the", "this", "that", "these", "those", "my", "your", "our", "his", "her", "their")
    + ("a", "an", "some", "any", "another", "one")
)


def _whole_word(text: str, i: int, n: int) -> bool:
    before = text[i - 1] if i > 0 else " "
    after = text[i + n] if i + n < len(text) else " "
    if text.startswith(("'t", "’t"), i + n) and (i + n + 2 >= len(text) or not text[i + n + 2].isalpha()):
        return False  # "can't", "can’t": a contraction, not the category word
    # plural 's' of an English category word ("cups") still names the category
    return not before.isalpha() and (
        not after.isalpha() or (after == "s" and (i + n + 1 >= len(text) or not text[i + n + 1].isalpha()))
    )


# what may stand between a Chinese colour and the category it qualifies: 色, 的, and a demonstrative
# with its measure word ("黄的那个苹果", "红色那只杯子")
_ZH_BETWEEN = re.compile("色?的?(?:[那这哪][个只本把双瓶罐支颗根条部件])?")


def _adjacent(between: str) -> bool:
    """Whether a colour word followed by ``between`` and then a category word qualifies it."""
    return _ZH_BETWEEN.fullmatch(between.strip()) is not None


def _followed_by_category(text: str, j: int, categories: list[dict[str, Any]]) -> bool:
    rest = text[j:]
    rest = rest[_ZH_BETWEEN.match(rest).end() :]
    return any(rest.startswith(c["zh"]) for c in categories)


def read_grounding_meta(directory: str | Path) -> dict[str, Any]:
    """``grounding.json`` of ``directory``, checked: GroundingError naming the file when it is not a
    grounding head file or an entry is missing or malformed. Returns the entries a head is built
    from: categories, colours, map_channels, hidden, colour_from, threshold, colour_mismatch
    ((named_below, other_at_least) or None), metrics and the whole ``meta``."""
    meta_path = Path(directory) / GROUNDING_META
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise GroundingError(meta_path, f"cannot read: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise GroundingError(meta_path, f"not a grounding head file (format must be {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise GroundingError(
            meta_path, f"format_version must be {FORMAT_VERSION}, got {meta.get('format_version')!r}"
        )
    try:
        categories, colours = list(meta["categories"]), list(meta["colours"])
        map_channels = [int(c) for c in meta["map_channels"]]
        hidden = int(meta["hidden"])
        colour_from = str(meta.get("colour_from", "maps"))  # heads written before it: "maps"
        threshold = float(meta["threshold"])
        for c in categories:
            _ = (c["name"], c["en"], c["zh"], list(c["colours"]))
        for c in colours:
            _ = (c["name"], c["en"], c["zh"], c["zh_short"])
    except (KeyError, TypeError, ValueError) as e:
        raise GroundingError(meta_path, f"missing or malformed entry: {e!r}") from e
    if not 0.0 < threshold < 1.0:
        raise GroundingError(meta_path, f"threshold must be in (0, 1), got {threshold}")
    if colour_from not in COLOUR_SOURCES:
        raise GroundingError(meta_path, f"colour_from must be one of {COLOUR_SOURCES}, got {colour_from!r}")
    mismatch = meta.get("colour_mismatch")
    if mismatch is not None:
        try:  # the ratio came later: off (infinite) for the heads written before it
            mismatch = (
                float(mismatch["named_below"]),
                float(mismatch["other_at_least"]),
                float(mismatch.get("ratio_other_at_least", math.inf)),
                float(mismatch.get("ratio_times_named", math.inf)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise GroundingError(
                meta_path, f"colour_mismatch needs named_below and other_at_least: {e!r}"
            ) from e
    return {
        "categories": categories,
        "colours": colours,
        "map_channels": map_channels,
        "hidden": hidden,
        "colour_from": colour_from,
        "threshold": threshold,
        "colour_mismatch": mismatch,
        "metrics": dict(meta.get("metrics") or {}),
        "meta": meta,
    }
