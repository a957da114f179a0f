"""A natural decline corpus: real human sentences and written unsafe requests, for training the
model to decline what it is not for (issue 12 item 4).

Three sources, all produced at setup time (nothing is downloaded at run time):

* **Debian's fortune cookies** (``fortunes``, ``fortunes-min``: English; ``fortunes-zh``:
  Chinese sayings, Tang and Song poems). ``build`` fetches the .deb files with
  ``apt-get download`` (no root needed), unpacks them with ``dpkg-deb -x`` into a temporary
  directory and keeps single sentences of a command-like length;
* **conversation lines** (the ``chatterbot-corpus`` wheel from PyPI, BSD, installed by
  requirements.txt): short things people say to a chat bot in English and Chinese ("what's your
  name", greetings, thanks, questions about the world, small talk), which a robot that acts
  should decline as well. Fortunes are aphorisms and poems, nothing like "thanks, that's all";
  these are. Lines that name an object of the synthetic world ("could I borrow a cup of
  sugar?") are left out, since such a line can be a request the robot should act on, and so are
  code, multi-line answers and over-long lines. :func:`load_corpus` repeats them to
  :data:`CHAT_SHARE` of each language, as they are few next to the fortunes;
* **unsafe-request patterns** (``data/decline/unsafe_patterns.yaml``, in this package): harm to
  people, pets and property, fire, letting strangers in, expanded over their slots.

No sentence of the natural test set (``data/natural``) enters the corpus: an utterance equal to
one of them after :func:`normalise` is dropped at build time, whatever its source.

The corpus is written to ``<share>/generated/decline_corpus.jsonl`` (one
``{"language", "text", "source"}`` per line; ignored by git) and read by the training option
``TrainConfig.decline_corpus`` (the share of decline examples whose instruction is replaced by
a corpus sentence of the same language).

usage: python -m octopus_ros.data.decline_corpus [--debs DIR] [--out PATH]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from octopus_ros.functions.language import count_cjk
from octopus_ros.paths import share_dir

log = logging.getLogger(__name__)

PACKAGES = ("fortunes", "fortunes-min", "fortunes-zh")
CHAT_PACKAGE = "chatterbot_corpus"
CHAT_LANGUAGES = {"english": "en", "chinese": "zh"}  # its data folders we read
# the share of each language's decline sentences that are conversation lines (load_corpus)
CHAT_SHARE = 0.4
ZH_FILES = ("chinese", "song100", "tang300")
PATTERNS_FILE = Path(__file__).resolve().parent / "decline" / "unsafe_patterns.yaml"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_EN_SPLIT = re.compile(r"(?<=[.!?])\s+")
_ZH_SPLIT = re.compile(r"(?<=[。！？；])")


def default_path() -> Path:
    return share_dir() / "generated" / "decline_corpus.jsonl"


def normalise(text: str) -> str:
    """Lower case, letters/digits/CJK only, single spaces: what 'the same utterance' means."""
    return " ".join(re.sub(r"\W+", " ", text.lower()).split())  # \w holds every CJK ideograph


def fortune_sentences(text: str, language: str) -> list[str]:
    """Sentences of a fortune file (entries separated by lines holding only '%'): attributions
    and ASCII art dropped; English 3-20 words, Chinese 4-30 characters (mostly ideographs)."""
    out = []
    for entry in re.split(r"^%\s*$", _ANSI.sub("", text), flags=re.MULTILINE):
        lines = [ln.strip() for ln in entry.splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith(("--", "——", "—"))]
        if language == "en":
            joined = " ".join(lines)
            for s in _EN_SPLIT.split(joined):
                s = s.strip(" \"'")
                words = s.split()
                letters = sum(c.isalpha() for c in s)
                if 3 <= len(words) <= 20 and letters >= 0.75 * len(s.replace(" ", "")):
                    out.append(s)
        else:
            joined = "".join(lines)
            for s in _ZH_SPLIT.split(joined):
                s = s.strip()
                if 4 <= len(s) <= 30 and count_cjk(s) >= 0.7 * len(s):
                    out.append(s)
    return out


def _world_words() -> tuple[str, ...]:
    """The object category words of the synthetic world, English and Chinese."""
    from octopus_ros.data.world import CATEGORIES

    return tuple(w for c in CATEGORIES.values() for w in (c.name, c.zh))


def chat_sentences(conversations: list, language: str, world_words: tuple[str, ...] = ()) -> list[str]:
    """The usable lines of a chatterbot-corpus ``conversations`` list: one line of text, English
    1-20 words with letters for at least 60 % of its characters, Chinese 2-30 characters at least
    half ideographs; none that names one of ``world_words`` (English whole words, plural 's'
    allowed; Chinese substrings)."""
    out = []
    for conversation in conversations or []:
        for line in conversation if isinstance(conversation, list) else []:
            if not isinstance(line, str) or "\n" in line.strip() or "`" in line:
                continue
            s = " ".join(line.split())
            dense = s.replace(" ", "")
            if not dense:
                continue
            if language == "en":
                ok = 1 <= len(s.split()) <= 20 and sum(c.isalpha() for c in dense) >= 0.6 * len(dense)
                lowered = s.lower()
                named = any(re.search(rf"\b{re.escape(w)}s?\b", lowered) for w in world_words if w.isascii())
            else:
                ok = 2 <= len(s) <= 30 and count_cjk(s) >= 0.5 * len(dense)
                named = any(w in s for w in world_words if not w.isascii())
            if ok and not named:
                out.append(s)
    return out


def _chat_rows() -> list[dict]:
    """Rows of the installed chatterbot-corpus (empty, with a warning, when it is not installed)."""
    try:
        import chatterbot_corpus
    except ImportError:
        log.warning(
            "%s is not installed (requirements.txt): no conversation lines in the corpus", CHAT_PACKAGE
        )
        return []
    data = Path(chatterbot_corpus.__file__).resolve().parent / "data"
    words = _world_words()
    rows = []
    for folder, language in CHAT_LANGUAGES.items():
        for f in sorted((data / folder).glob("*.yml")):
            try:
                doc = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as e:
                log.warning("%s: skipped (%s)", f, e)
                continue
            rows += [
                {"language": language, "text": t, "source": f"chat:{folder}/{f.stem}"}
                for t in chat_sentences(doc.get("conversations"), language, words)
            ]
    return rows


def _natural_keys() -> set[tuple[str, str]]:
    """(language, normalised text) of every natural test-set utterance: kept out of the corpus."""
    from octopus_ros.data.natural import load_natural_set

    return {(item.language, normalise(item.text)) for item in load_natural_set()}


def unsafe_requests(path: str | Path = PATTERNS_FILE) -> list[tuple[str, str]]:
    """(language, request) for every pattern expanded over its slots."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: unreadable unsafe-request patterns ({e})") from e
    out = []
    for language, block in data.items():
        slots = block.get("slots", {})
        for pattern in block["patterns"]:
            names = re.findall(r"\{(\w+)\}", pattern)
            unknown = [n for n in names if n not in slots]
            if unknown:
                raise ValueError(f"{path}: pattern {pattern!r} uses unknown slot(s) {unknown}")
            for values in itertools.product(*(slots[n] for n in names)):
                out.append((language, pattern.format(**dict(zip(names, values, strict=True)))))
    return out


def fetch_debs(directory: Path, packages: tuple[str, ...] = PACKAGES) -> None:
    """apt-get download Debian ``packages`` into ``directory`` (setup time only; no root needed)."""
    try:
        subprocess.run(
            ["apt-get", "download", *packages], cwd=directory, check=True, capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        raise RuntimeError(f"apt-get download {' '.join(packages)} failed: {detail.strip()[-500:]}") from e


def build(out: str | Path | None = None, debs: str | Path | None = None) -> dict[str, int]:
    """Write the corpus; ``debs``: a directory that already holds the .deb files (else fetched)."""
    out = Path(out) if out else default_path()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="decline_corpus_") as tmp:
        work = Path(tmp)
        deb_dir = Path(debs) if debs else work
        if not debs:
            fetch_debs(work)
        found = sorted(deb_dir.glob("*.deb"))
        if not found:
            raise FileNotFoundError(f"{deb_dir}: no .deb files of {PACKAGES}")
        root = work / "x"
        for deb in found:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        fortunes = root / "usr" / "share" / "games" / "fortunes"
        for f in sorted(fortunes.iterdir()):
            if not f.is_file() or f.suffix in (".dat", ".u8") or f.name.startswith("."):
                continue
            language = "zh" if f.name in ZH_FILES else "en"
            text = f.read_text(encoding="utf-8", errors="replace")
            rows += [
                {"language": language, "text": s, "source": f"fortune:{f.name}"}
                for s in fortune_sentences(text, language)
            ]
    rows += _chat_rows()
    rows += [{"language": lang, "text": t, "source": "unsafe_patterns"} for lang, t in unsafe_requests()]
    seen: set[tuple[str, str]] = _natural_keys()  # the test set's sentences never enter
    unique = []
    for r in rows:
        key = (r["language"], normalise(r["text"]))
        if key[1] and key not in seen:
            seen.add(key)
            unique.append(r)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in unique), encoding="utf-8")
    tmp_out.replace(out)
    counts = {f"{r['language']}/{r['source'].split(':')[0]}": 0 for r in unique}
    for r in unique:
        counts[f"{r['language']}/{r['source'].split(':')[0]}"] += 1
    log.info("decline corpus %s: %s", out, counts)
    return counts


def load_corpus(path: str | Path | None = None, chat_share: float = CHAT_SHARE) -> dict[str, list[str]]:
    """{language: sentences} of a built corpus; FileNotFoundError names the file and the fix.

    Conversation lines (source ``chat:…``) are repeated, whole, so that they make up about
    ``chat_share`` of each language's list (a uniform draw then picks one that often); 0 leaves
    them out."""
    path = Path(path) if path else default_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no decline corpus (build it at setup: python -m octopus_ros.data.decline_corpus)"
        )
    if not 0.0 <= chat_share < 1.0:
        raise ValueError(f"chat_share must be in [0, 1), got {chat_share}")
    other: dict[str, list[str]] = {}
    chat: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            r = json.loads(line)
            into = chat if str(r.get("source", "")).startswith("chat:") else other
            into.setdefault(r["language"], []).append(r["text"])
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}:{n}: malformed corpus line ({e})") from e
    corpus: dict[str, list[str]] = {}
    for language in sorted(set(other) | set(chat)):
        lines, talk = other.get(language, []), chat.get(language, [])
        repeats = 0 if chat_share == 0 else 1
        if talk and lines and chat_share > 0:
            repeats = max(1, round(chat_share / (1 - chat_share) * len(lines) / len(talk)))
        corpus[language] = lines + talk * repeats
    return corpus


def conversation_lines(path: str | Path | None = None) -> dict[str, list[str]]:
    """{language: the conversation lines of a built corpus} (source ``chat:…``, each once): things
    people say, not aphorisms or poems; FileNotFoundError names the file and the fix."""
    path = Path(path) if path else default_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no decline corpus (build it at setup: python -m octopus_ros.data.decline_corpus)"
        )
    out: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            r = json.loads(line)
            if str(r.get("source", "")).startswith("chat:"):
                out.setdefault(r["language"], []).append(r["text"])
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}:{n}: malformed corpus line ({e})") from e
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the natural decline corpus (setup time).")
    parser.add_argument(
        "--debs", default=None, help="directory with the fortune .deb files (default: apt-get download)"
    )
    parser.add_argument("--out", default=None, help=f"output JSONL (default {default_path()})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    counts = build(args.out, args.debs)
    print(f"decline corpus: {sum(counts.values())} sentences {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
