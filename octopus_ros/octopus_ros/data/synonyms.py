"""English verb synonyms from WordNet, for training: say a request with a verb its phrasings do not use.

A small LM trained from scratch knows only the verbs of its phrasings. A robot owner says "scoop
up the keys", "irrigate the plant" or "halt", and the model, which never read those verbs, falls
back on the object it recognises and acts on it with whatever function that object appears with
most. Synonym replacement (Wei & Zou 2019, "EDA") is the usual remedy when no pretrained LM brings
the words: at training time a verb of the instruction is replaced now and then by a synonym, so
the answer is learnt from more ways of saying it.

The synonyms are WordNet 3.0's (Debian's ``wordnet-base``, fetched with ``apt-get download`` and
unpacked with ``dpkg-deb -x`` at setup, as the decline corpus's fortunes are; nothing is downloaded
at run time). For each verb lemma only its first sense is used (WordNet orders senses by how
often they were tagged in a corpus, so the first is the common one): "pick up" -> "lift up",
"gather up"; "fetch" -> "bring", "convey"; "stop" -> "halt"; "look for" -> "search", "seek".
Synonyms with more than :data:`MAX_SENSES` senses ("get", "take", "make": they mean anything) are
left out, and so are the lemma's other senses ("shelve" is first "postpone" in WordNet, so it is
never offered for anything; that is the price of not guessing senses).

Chinese has no synonym source here (no Chinese WordNet is packaged by Debian or on PyPI as data),
so only English instructions are varied.

The table is written to ``<share>/generated/synonyms_en.json`` (``{lemma: [synonyms]}``, ignored by
git). :func:`substitute` replaces one verb span of a text, never a slot word (colour, object,
place, contact...), only where a verb stands (the start of a clause, after "you", "to", "please"...).

usage: python -m octopus_ros.data.synonyms [--deb FILE] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from octopus_ros.paths import share_dir

log = logging.getLogger(__name__)

PACKAGE = "wordnet-base"
# a synonym with more senses than this means too many things to say one request ("get", "take")
MAX_SENSES = 15
MAX_SPAN = 3  # longest lemma, in words ("take hold of")
# words that look like verbs to WordNet but carry the request's manner, not its action ("please",
# "can you", "I want", "let me"): never replaced
NOT_REPLACED = frozenset(
    [
        "please",
        "can",
        "could",
        "will",
        "would",
        "may",
        "might",
        "must",
        "shall",
        "should",
        "do",
        "does",
        "did",
        "be",
        "is",
        "are",
        "was",
        "let",
        "want",
        "need",
        "like",
        "mind",
        "help",
        "thank",
        "thanks",
        "see",
        "say",
        "know",
        "think",
        "try",
        "make",
        "get",
        "have",
        "go",
        "come",
        "okay",
        "ok",
        "alright",
        "hey",
        "yes",
        "no",
        "now",
        "well",
        "so",
        "oh",
        "right",
        "off",
        "time",
        "back",
        "down",
        "out",
        "over",
        "up",
        "on",
        "in",
        "excuse",
    ]
)
# a verb is replaced where an imperative or a request puts it: at the start of the text or of a
# clause, or after one of these ("can you pick up", "please fetch", "time to water", "and bring")
VERB_AFTER = frozenset(["you", "to", "please", "and", "then", "just", "now", "also", "kindly"])
_WORD = re.compile(r"^[a-z]+(?:-[a-z]+)?$")
_TRAIL = re.compile(r"^(.*?)([^A-Za-z]*)$")


def default_path() -> Path:
    return share_dir() / "generated" / "synonyms_en.json"


def parse_wordnet(
    index_verb: str, data_verb: str, cntlist: str, max_senses: int = MAX_SENSES
) -> dict[str, list[str]]:
    """{lemma: synonyms of its first sense} from WordNet's ``index.verb`` and ``data.verb`` texts.

    Lemmas and synonyms are lower case with spaces (``pick_up`` -> ``pick up``); only plain words
    (letters, one hyphen) of at most :data:`MAX_SPAN` words, and synonyms with at most
    ``max_senses`` senses of their own.

    A synonym is kept only when the lemma's first sense is its first sense too ("fetch" and "bring"
    share theirs; "find" is first "come upon by chance", whose "happen" is first "come to pass"):
    a word whose common meaning is another is not offered. And only when WordNet's sense-tagged
    corpus (``cntlist.rev``) has the synonym in that sense at least once: that leaves out the
    words nobody says ("locomote", "hotfoot", "explicate").
    """
    tagged: dict[str, int] = {}
    for line in cntlist.splitlines():
        f = line.split()
        if len(f) == 3 and "%2:" in f[0]:
            tagged[f[0]] = int(f[2])
    first: dict[str, str] = {}
    senses: dict[str, int] = {}
    for line in index_verb.splitlines():
        if not line or line.startswith(" "):  # the licence header
            continue
        f = line.split()
        lemma, synset_cnt, p_cnt = f[0], int(f[2]), int(f[3])
        offsets = f[4 + p_cnt + 2 :]
        if len(offsets) != synset_cnt or not offsets:
            raise ValueError(f"index.verb: malformed line {line[:80]!r}")
        first[lemma] = offsets[0]
        senses[lemma] = synset_cnt
    synsets: dict[str, list[tuple[str, str]]] = {}  # offset -> [(word, sense key)]
    for line in data_verb.splitlines():
        if not line or line.startswith(" "):
            continue
        f = line.split(" ")
        lex_file, w_cnt = f[1], int(f[3], 16)
        synsets[f[0]] = [
            (w.lower(), f"{w.lower()}%2:{lex_file}:{int(f[5 + 2 * i], 16):02d}::")
            for i, w in enumerate(f[4 + 2 * i] for i in range(w_cnt))
        ]
    table: dict[str, list[str]] = {}
    for lemma, offset in first.items():
        words = synsets.get(offset)
        if words is None:
            raise ValueError(f"data.verb: no synset {offset} (of {lemma!r})")
        out = []
        for w, key in words:
            if w == lemma or w in out or first.get(w) != offset or not tagged.get(key):
                continue
            if senses.get(w, max_senses + 1) > max_senses:
                continue
            if len(w.split("_")) <= MAX_SPAN and all(_WORD.match(p) for p in w.split("_")):
                out.append(w)
        key = lemma.replace("_", " ")
        if out and len(key.split()) <= MAX_SPAN and all(_WORD.match(p) for p in key.split()):
            table[key] = [w.replace("_", " ") for w in out]
    return table


def build(out: str | Path | None = None, deb: str | Path | None = None) -> int:
    """Write the synonym table; ``deb``: a ``wordnet-base`` .deb already at hand (else fetched)."""
    out = Path(out) if out else default_path()
    with tempfile.TemporaryDirectory(prefix="synonyms_") as tmp:
        work = Path(tmp)
        if deb is None:
            from octopus_ros.data.decline_corpus import fetch_debs

            fetch_debs(work, (PACKAGE,))
            found = sorted(work.glob(f"{PACKAGE}_*.deb"))
            if not found:
                raise FileNotFoundError(f"apt-get download {PACKAGE} left no .deb in {work}")
            deb = found[0]
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True)
        wn = work / "x" / "usr" / "share" / "wordnet"
        table = parse_wordnet(
            (wn / "index.verb").read_text(encoding="utf-8", errors="replace"),
            (wn / "data.verb").read_text(encoding="utf-8", errors="replace"),
            (wn / "cntlist.rev").read_text(encoding="utf-8", errors="replace"),
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(table, ensure_ascii=False, sort_keys=True), encoding="utf-8")
    tmp_out.replace(out)
    log.info("synonyms %s: %d verb lemmas with first-sense synonyms", out, len(table))
    return len(table)


def load_table(path: str | Path | None = None) -> dict[str, tuple[str, ...]]:
    """The built table; FileNotFoundError names the file and the fix."""
    path = Path(path) if path else default_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no synonym table (build it at setup: python -m octopus_ros.data.synonyms)"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): tuple(str(s) for s in v) for k, v in raw.items()}
    except (json.JSONDecodeError, AttributeError, TypeError) as e:
        raise ValueError(f"{path}: malformed synonym table ({e})") from e


def spans(
    text: str, table: dict[str, tuple[str, ...]], protected: Iterable[str] = ()
) -> list[tuple[int, int]]:
    """(start, end) word indices of ``text.split(' ')`` that form a lemma of ``table`` and may be
    replaced: where a verb stands (the start of the text or of a clause, or after a word of
    :data:`VERB_AFTER`), no protected word in it, no punctuation inside it. Elsewhere a verb-looking
    word is most often a noun or a particle ("the plant needs water", "pick it up off the floor").
    """
    keep = frozenset(protected)
    units = text.split(" ")
    bare = []
    for u in units:
        m = _TRAIL.match(u)
        bare.append((m.group(1).lower(), m.group(2)))
    found = []
    for i in range(len(units)):
        if i > 0 and not bare[i - 1][1] and bare[i - 1][0] not in VERB_AFTER:
            continue
        for n in range(min(MAX_SPAN, len(units) - i), 0, -1):
            words = [w for w, _ in bare[i : i + n]]
            if any(p for _, p in bare[i : i + n - 1]):  # punctuation inside the span
                continue
            if words[0] in NOT_REPLACED or any(not _WORD.match(w) or w in keep for w in words):
                continue
            if " ".join(words) in table:
                found.append((i, i + n))
                break
    return found


def all_substitutions(
    text: str, table: dict[str, tuple[str, ...]], protected: Iterable[str] = ()
) -> list[str]:
    """Every text :func:`substitute` can make of ``text`` (one span, one synonym each)."""
    units = text.split(" ")
    return [
        _replaced(units, i, j, choice)
        for i, j in spans(text, table, protected)
        for choice in table[_lemma(units, i, j)]
    ]


def _lemma(units: list[str], i: int, j: int) -> str:
    """The table key of the words ``units[i:j]`` (lower case, trailing punctuation left out)."""
    return " ".join(_TRAIL.match(u).group(1).lower() for u in units[i:j])


def _replaced(units: list[str], i: int, j: int, choice: str) -> str:
    """``units`` joined with ``units[i:j]`` replaced by ``choice``, which keeps the replaced words'
    leading capital and trailing punctuation."""
    if units[i][:1].isupper():
        choice = choice[:1].upper() + choice[1:]
    return " ".join(units[:i] + [choice + _TRAIL.match(units[j - 1]).group(2)] + units[j:])


def substitute(
    text: str, table: dict[str, tuple[str, ...]], rng: np.random.Generator, protected: Iterable[str] = ()
) -> str | None:
    """``text`` with one verb span replaced by a first-sense synonym, or None when it has none.

    The synonym keeps the replaced words' leading capital and trailing punctuation."""
    found = spans(text, table, protected)
    if not found:
        return None
    i, j = found[int(rng.integers(0, len(found)))]
    units = text.split(" ")
    options = table[_lemma(units, i, j)]
    return _replaced(units, i, j, options[int(rng.integers(0, len(options)))])


# slot phrases hold these too ("on the table", "pick up"): they stay protected for word dropout, not here
_FUNCTION_WORDS = frozenset(["the", "my", "on", "in", "into", "up"])


def heldout_pattern(template_text: str) -> re.Pattern | None:
    """A pattern that finds a phrasing's literal words, in order, in a normalised text (slots match
    anything); None for a phrasing with no literal words."""
    from octopus_ros.data.decline_corpus import normalise

    parts = [normalise(p) for p in re.split(r"\{\w+\}", template_text)]
    parts = [p for p in parts if p]
    if not parts:
        return None
    return re.compile(r"\b" + r"\b.*\b".join(re.escape(p) for p in parts) + r"\b")


@dataclass(frozen=True)
class SynonymVariation:
    """:func:`substitute` for training data, kept off what the model is measured on: a variant that
    is an utterance of the natural test set, or that says a held-out phrasing the original did not
    say, is not produced (the unseen-phrasing split and the natural set stay unseen)."""

    table: dict[str, tuple[str, ...]]
    protected: frozenset[str]
    heldout: tuple[re.Pattern, ...] = ()
    avoid: frozenset[str] = frozenset()

    @classmethod
    def for_training(cls, path: str | Path | None = None, language: str = "en") -> SynonymVariation:
        from octopus_ros.data.augment import protected_vocabulary
        from octopus_ros.data.decline_corpus import normalise
        from octopus_ros.data.instructions import TEMPLATES
        from octopus_ros.data.natural import load_natural_set

        en, _ = protected_vocabulary()
        patterns = (heldout_pattern(t.text) for t in TEMPLATES if t.heldout and t.language == language)
        return cls(
            table=load_table(path),
            protected=en - _FUNCTION_WORDS,
            heldout=tuple(p for p in patterns if p is not None),
            avoid=frozenset(normalise(i.text) for i in load_natural_set() if i.language == language),
        )

    def kept(self, text: str, out: str) -> bool:
        """Whether ``out``, a variant of ``text``, may be trained on."""
        from octopus_ros.data.decline_corpus import normalise

        key, before = normalise(out), normalise(text)
        return key not in self.avoid and not any(p.search(key) and not p.search(before) for p in self.heldout)

    def variants(self, text: str) -> list[str]:
        """Every variant :meth:`vary` can return for ``text``."""
        return [v for v in all_substitutions(text, self.table, self.protected) if self.kept(text, v)]

    def vary(self, text: str, rng: np.random.Generator) -> str | None:
        """``text`` with one verb replaced by a synonym, or None (no verb, or a variant kept off)."""
        out = substitute(text, self.table, rng, self.protected)
        return out if out is not None and self.kept(text, out) else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deb", default=None, help=f"a {PACKAGE} .deb file (default: apt-get download)")
    p.add_argument("--out", default=None, help=f"output JSON (default: {default_path()})")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        n = build(args.out, args.deb)
    except (RuntimeError, FileNotFoundError, ValueError, subprocess.CalledProcessError) as e:
        print(f"synonyms: {e}", file=sys.stderr)
        return 1
    print(f"wrote {n} verb lemmas to {args.out or default_path()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
