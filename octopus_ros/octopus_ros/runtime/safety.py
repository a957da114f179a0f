"""Request-level safety screen: requests a home robot declines, whatever the model makes of them.

The model learns to decline unsafe requests (data/decline), but a learnt decline is a
probability: "set the kitchen on fire" can still come out as ``navigate_to('kitchen')`` with
confidence 1.0. The screen is the deterministic layer in front of publication. It reads the
utterance, not the call, so a request that names a hazard is declined (``NO_ACTION``, reason
"unsafe request (fire, ...): 'fire'") even when the model's call looks harmless.

Its word lists are data (``safety.yaml`` next to this module, schema at its top), one file for
both languages, loaded once; a robot owner can pass their own file (octopus_node parameter
``safety_screen``). A rule fires when the request holds a term of every one of its lists, e.g.
a harm verb *and* a person or animal ("kick the dog"), so that "kick off the cleaning" or "kill
the music" pass. English terms match whole words (``kick*`` any ending, ``let ... in`` with up
to :data:`GAP` words between); Chinese terms match as substrings after the ``ignore`` compounds
(打开, 机器人, ...) are blanked out.

What it cannot do: it matches words, not meaning. A paraphrase with none of its words passes
(the model's own decline and the novelty checks are the layers behind it), and a harmless
request that uses its words in a harmless sense is declined. The measured figures for both
(the natural set and the independent safety probe) are in docs/training.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# a match that follows a negation closely does not count: "don't let strangers in", "别撞到猫"
from octopus_ros.functions.language import (
    EN_WORD,
    fold_input,
    has_cjk,
    negated,
)
from octopus_ros.paths import read_config_text

DEFAULT_FILE = Path(__file__).with_name("safety.yaml")
GAP = 4  # words an English " ... " term may skip
LANGUAGES = ("en", "zh")


class SafetyScreenError(ValueError):
    """A malformed screen file; the message starts with the file's path."""

    def __init__(self, path: str | Path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True)
class Hit:
    """Why a request was screened out."""

    rule: str
    reason: str
    terms: tuple[str, ...]  # the term that matched from each of the rule's lists

    def describe(self) -> str:
        shown = " + ".join(repr(t) for t in self.terms)
        return f"unsafe request ({self.reason}): {shown}"


class _EnTerm:
    """One English term: words in order, ``*`` suffix wildcards, ``...`` gaps of up to GAP words,
    ``a|b`` a word that may be any of its alternatives ("cat*|dog in|into the oven|fridge")."""

    def __init__(self, text: str):
        self.text = text
        # (gap before, ((stem, prefix match), ...) the word's alternatives)
        self.parts: list[tuple[bool, tuple[tuple[str, bool], ...]]] = []
        gap = False
        for w in text.lower().split():
            if w == "...":
                gap = True
                continue
            alternatives = tuple((a.rstrip("*"), a.endswith("*")) for a in w.split("|"))
            if not all(stem for stem, _ in alternatives):
                raise ValueError(f"empty alternative in term {text!r}")
            self.parts.append((gap, alternatives))
            gap = False
        if not self.parts:
            raise ValueError(f"empty term {text!r}")

    def _word(self, i: int, word: str) -> bool:
        return any(word.startswith(stem) if prefix else word == stem for stem, prefix in self.parts[i][1])

    def found(self, words: list[str], after_negation: frozenset[int] = frozenset()) -> str | None:
        """The words of ``words`` the term matches first (gaps included), not starting at a
        position ``after_negation``; None when it does not occur."""
        for start in range(len(words)):
            if start not in after_negation and (end := self._from(words, 0, start)) > 0:
                return " ".join(words[start:end])
        return None

    def _from(self, words: list[str], i: int, at: int) -> int:
        """End (exclusive) of a match of parts ``i``... starting at word ``at``; 0 when none."""
        if at >= len(words) or not self._word(i, words[at]):
            return 0
        if i + 1 == len(self.parts):
            return at + 1
        reach = GAP + 1 if self.parts[i + 1][0] else 1
        return next((end for k in range(1, reach + 1) if (end := self._from(words, i + 1, at + k))), 0)


@dataclass(frozen=True)
class _Rule:
    name: str
    reason: str
    lists: tuple[tuple[Any, ...], ...]


class SafetyScreen:
    """A loaded screen; :meth:`check` returns the first rule a request trips, or None."""

    def __init__(self, path: str | Path = DEFAULT_FILE):
        import yaml

        self.path = Path(path)
        try:
            doc = yaml.safe_load(read_config_text(self.path))
        except (OSError, yaml.YAMLError) as e:
            raise SafetyScreenError(self.path, f"cannot read the safety screen: {e}") from e
        if not isinstance(doc, dict) or not set(doc) <= set(LANGUAGES) or not doc:
            raise SafetyScreenError(self.path, f"top level must map some of {LANGUAGES} to rules")
        self._ignore: dict[str, list[str]] = {}
        self._rules: dict[str, list[_Rule]] = {}
        # Chinese terms written with an ignored compound in them ("打开煤气"): read as written, on
        # the text before the compounds are blanked (打开 is blanked so that 打 "hit" alone does not
        # match, which would leave such a term nothing to match)
        self._as_written: frozenset[str] = frozenset()
        for lang, block in doc.items():
            self._load_language(lang, block)

    def _load_language(self, lang: str, block: Any) -> None:
        where = f"{lang}"
        if not isinstance(block, dict) or not isinstance(block.get("rules"), dict) or not block["rules"]:
            raise SafetyScreenError(self.path, f"{where}: needs a non-empty 'rules' mapping")
        lists = block.get("lists") or {}
        ignore = block.get("ignore") or []
        if not isinstance(lists, dict) or not isinstance(ignore, list):
            raise SafetyScreenError(self.path, f"{where}: 'lists' must be a mapping and 'ignore' a list")
        self._ignore[lang] = sorted((str(w).lower() for w in ignore), key=len, reverse=True)

        def terms(raw: Any, at: str, named: tuple[str, ...] = ()) -> tuple[Any, ...]:
            if isinstance(raw, str) and raw.startswith("@"):
                if raw[1:] not in lists:
                    raise SafetyScreenError(self.path, f"{at}: unknown list {raw!r}")
                if raw[1:] in named:
                    raise SafetyScreenError(self.path, f"{at}: list {raw!r} names itself")
                return terms(lists[raw[1:]], f"{where}.lists.{raw[1:]}", (*named, raw[1:]))
            if not isinstance(raw, list) or not raw or not all(isinstance(t, str) and t.strip() for t in raw):
                raise SafetyScreenError(self.path, f"{at}: a term list must be a non-empty list of strings")
            if any(t.startswith("@") for t in raw):  # a list named inside a list: its terms there
                return tuple(z for t in raw for z in terms(t if t.startswith("@") else [t], at, named))
            if lang == "en":
                try:
                    return tuple(_EnTerm(t) for t in raw)
                except ValueError as e:
                    raise SafetyScreenError(self.path, f"{at}: {e}") from e
            try:
                return tuple(z for t in raw for z in _zh_spellings(t))
            except ValueError as e:
                raise SafetyScreenError(self.path, f"{at}: {e}") from e

        rules = []
        for name, rule in block["rules"].items():
            at = f"{where}.rules.{name}"
            if not isinstance(rule, dict) or not isinstance(rule.get("all_of"), list) or not rule["all_of"]:
                raise SafetyScreenError(self.path, f"{at}: needs 'reason' and a non-empty 'all_of' list")
            if not isinstance(rule.get("reason"), str) or not rule["reason"].strip():
                raise SafetyScreenError(self.path, f"{at}: needs a 'reason'")
            lists_ = tuple(terms(raw, f"{at}.all_of[{i}]") for i, raw in enumerate(rule["all_of"]))
            rules.append(_Rule(str(name), rule["reason"].strip(), lists_))
        self._rules[lang] = rules
        if lang == "zh":
            ignored = self._ignore[lang]
            self._as_written = frozenset(
                t for r in rules for lst in r.lists for t in lst if any(c in t for c in ignored)
            )

    @property
    def rule_names(self) -> list[str]:
        return sorted({r.name for rules in self._rules.values() for r in rules})

    def check(self, text: str) -> Hit | None:
        """The first rule ``text`` trips (English rules on its Latin words, Chinese rules on the
        rest), or None when no rule fires."""
        # as the model reads it: full-width letters as ASCII, Traditional Chinese as Simplified
        # (functions/language.fold_input, as lean/prompt.model_utterance reads it)
        lowered = fold_input(str(text)).lower().replace("\u2019", "'")
        if "en" in self._rules:
            blanked = _blank(lowered, self._ignore["en"])
            found_words = list(EN_WORD.finditer(blanked))
            words = [m.group() for m in found_words]
            # positions of the words said as what not to do (language.negated: one rule for the
            # screen and the grammar)
            after_negation = frozenset(i for i, m in enumerate(found_words) if negated(blanked, m.start()))
            for rule in self._rules["en"]:
                found = [
                    next((m for t in lst if (m := t.found(words, after_negation))), None)
                    for lst in rule.lists
                ]
                if all(f is not None for f in found):
                    return Hit(rule.name, rule.reason, tuple(found))
        if "zh" in self._rules and has_cjk(lowered):
            zh = _blank(lowered, self._ignore["zh"])
            for rule in self._rules["zh"]:
                found = [
                    next((t for t in lst if _zh_found(lowered if t in self._as_written else zh, t)), None)
                    for lst in rule.lists
                ]
                if all(f is not None for f in found):
                    return Hit(rule.name, rule.reason, tuple(found))
        return None


def _zh_spellings(term: str) -> list[str]:
    """A Chinese term's spellings: parts separated by spaces are joined in order, each part any
    of its ``|`` alternatives ("猫|狗 塞进|关进" = 猫塞进, 猫关进, 狗塞进, 狗关进)."""
    import itertools

    slots = [part.split("|") for part in term.split()]
    if not slots or not all(a for slot in slots for a in slot):
        raise ValueError(f"empty part in term {term!r}")
    return ["".join(p) for p in itertools.product(*slots)]


def _blank(text: str, compounds: list[str]) -> str:
    """``text`` with every ``compounds`` entry (longest first) replaced by as many spaces."""
    for w in compounds:
        text = text.replace(w, " " * len(w))
    return text


def _zh_found(text: str, term: str) -> bool:
    """``term`` occurs in ``text`` somewhere not right after a negation."""
    start = 0
    while (i := text.find(term, start)) >= 0:
        if not negated(text, i):
            return True
        start = i + 1
    return False


_default: SafetyScreen | None = None


def default_screen() -> SafetyScreen:
    """The package's screen (``safety.yaml``), loaded once."""
    global _default
    if _default is None:
        _default = SafetyScreen(DEFAULT_FILE)
    return _default


def screen_from_setting(setting: str) -> SafetyScreen | None:
    """The screen a ``safety_screen`` setting names: "default" = the package's file, "" = none,
    anything else = the path of a file with the same schema (SafetyScreenError naming it)."""
    setting = str(setting).strip()
    if not setting:
        return None
    return default_screen() if setting == "default" else SafetyScreen(setting)
