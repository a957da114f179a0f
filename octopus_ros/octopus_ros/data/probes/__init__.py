"""Probe sets written apart from the project's training data, to measure policy from outside.

:func:`load_safety_probe` reads ``safety_probe.yaml``: bilingual requests a home robot must refuse
(``unsafe``) and requests that only look risky or are plain function requests (``safe``), written
without seeing the request-level safety screen. The loader validates the schema and every error
names the file, the line and the entry (``unsafe.en[3]``).

Quick start::

    from octopus_ros.data.probes import load_safety_probe
    rows = load_safety_probe()   # [{'text', 'kind', 'part', 'lang', 'id', 'line'}, ...]
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from pathlib import Path

import yaml

from octopus_ros.functions.language import has_cjk

__all__ = [
    "LANGUAGES",
    "PARTS",
    "SAFE_KINDS",
    "UNSAFE_KINDS",
    "ProbeError",
    "load_safety_probe",
    "safety_probe_path",
]

log = logging.getLogger(__name__)

UNSAFE_KINDS: tuple[str, ...] = (
    "harm_person",
    "harm_pet",
    "property",
    "fire",
    "weapon_poison",
    "security",
    "privacy",
    "robot_hazard",
)
SAFE_KINDS: tuple[str, ...] = ("safe_lookalike", "safe_plain")
PARTS: dict[str, tuple[str, ...]] = {"unsafe": UNSAFE_KINDS, "safe": SAFE_KINDS}
LANGUAGES: tuple[str, ...] = ("en", "zh")
MAX_TEXT = 200  # characters; a spoken request, not a paragraph

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ProbeError(ValueError):
    """A probe file that does not follow its schema; the message names file, line and entry."""


def safety_probe_path() -> Path:
    """Path of the packaged ``safety_probe.yaml``."""
    return Path(str(resources.files(__package__).joinpath("safety_probe.yaml")))


def _mapping(node: yaml.Node, path: Path, where: str) -> dict[str, yaml.Node]:
    """Keys -> value nodes of a YAML mapping node with string keys and no duplicates."""
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.MappingNode):
        raise ProbeError(f"{path}:{line}: {where}: expected a mapping, got {node.tag.rsplit(':', 1)[-1]}")
    out: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        key_line = key_node.start_mark.line + 1
        if not isinstance(key, str) or key_node.tag != "tag:yaml.org,2002:str":
            raise ProbeError(f"{path}:{key_line}: {where}: keys must be strings")
        if key in out:
            raise ProbeError(f"{path}:{key_line}: {where}: duplicate key {key!r}")
        out[key] = value_node
    return out


def _exact_keys(
    found: dict[str, yaml.Node], wanted: tuple[str, ...], node: yaml.Node, path: Path, where: str
):
    """Raise unless ``found`` has exactly the keys ``wanted``."""
    line = node.start_mark.line + 1
    missing = [k for k in wanted if k not in found]
    extra = [k for k in found if k not in wanted]
    if missing or extra:
        raise ProbeError(
            f"{path}:{line}: {where}: expected keys {list(wanted)}"
            + (f", missing {missing}" if missing else "")
            + (f", unknown {extra}" if extra else "")
        )


def _string(node: yaml.Node, path: Path, where: str) -> str:
    """Value of a plain string scalar node."""
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
        raise ProbeError(f"{path}:{line}: {where}: expected a string")
    return node.value


def _norm(text: str) -> str:
    """Comparison form for duplicate detection: case-folded, whitespace collapsed."""
    return " ".join(text.casefold().split())


def load_safety_probe(path: str | Path | None = None) -> list[dict]:
    """Validated rows of a safety probe file (default: the packaged ``safety_probe.yaml``).

    Each row is ``{'text', 'kind', 'part', 'lang', 'id', 'line'}``, in file order; ``id`` is
    ``'<part>.<lang>[<index>]'`` and ``line`` its 1-based line in the file.

    Schema: a mapping with exactly the keys ``unsafe`` and ``safe``; each a mapping with exactly
    ``en`` and ``zh``; each a non-empty list of ``{text, kind}`` mappings. ``kind`` must belong to
    the part (:data:`UNSAFE_KINDS` / :data:`SAFE_KINDS`). ``text`` is a non-empty single-line string
    of at most :data:`MAX_TEXT` characters without surrounding spaces; ``zh`` texts contain Chinese
    characters and ``en`` texts do not. No text appears twice in the file (case and spacing ignored).

    Raises:
        ProbeError: the file is missing, not YAML, or breaks the schema; the message names the file,
            the line and the entry.
    """
    path = Path(path) if path is not None else safety_probe_path()
    try:
        rows = _load(path)
    except ProbeError as e:
        log.error("%s", e)
        raise
    log.debug("loaded %d safety probe rows from %s", len(rows), path)
    return rows


def _load(path: Path) -> list[dict]:
    """Rows of ``path`` (see :func:`load_safety_probe`); raises ProbeError."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ProbeError(f"{path}: cannot read the probe file: {e}") from e
    try:
        root = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise ProbeError(f"{path}: not valid YAML: {e}") from e
    if root is None:
        raise ProbeError(f"{path}:1: empty file, expected keys {list(PARTS)}")
    top = _mapping(root, path, "top level")
    _exact_keys(top, tuple(PARTS), root, path, "top level")

    rows: list[dict] = []
    seen: dict[str, str] = {}  # normalised text -> id of its first entry
    for part, kinds in PARTS.items():
        langs = _mapping(top[part], path, part)
        _exact_keys(langs, LANGUAGES, top[part], path, part)
        for lang in LANGUAGES:
            seq = langs[lang]
            where = f"{part}.{lang}"
            if not isinstance(seq, yaml.SequenceNode) or not seq.value:
                raise ProbeError(
                    f"{path}:{seq.start_mark.line + 1}: {where}: expected a non-empty list of entries"
                )
            for i, item in enumerate(seq.value):
                entry_id = f"{where}[{i}]"
                line = item.start_mark.line + 1
                fields = _mapping(item, path, entry_id)
                _exact_keys(fields, ("text", "kind"), item, path, entry_id)
                text = _string(fields["text"], path, f"{entry_id}.text")
                kind = _string(fields["kind"], path, f"{entry_id}.kind")
                if kind not in kinds:
                    raise ProbeError(
                        f"{path}:{line}: {entry_id}: kind {kind!r} is not one of {list(kinds)} ({part})"
                    )
                if not text.strip():
                    raise ProbeError(f"{path}:{line}: {entry_id}: empty text")
                if text != text.strip() or _CONTROL.search(text):
                    raise ProbeError(
                        f"{path}:{line}: {entry_id}: text has surrounding spaces or control characters"
                    )
                if len(text) > MAX_TEXT:
                    raise ProbeError(f"{path}:{line}: {entry_id}: text longer than {MAX_TEXT} characters")
                chinese = has_cjk(text)
                if lang == "zh" and not chinese:
                    raise ProbeError(
                        f"{path}:{line}: {entry_id}: a zh text without Chinese characters: {text!r}"
                    )
                if lang == "en" and chinese:
                    raise ProbeError(
                        f"{path}:{line}: {entry_id}: an en text with Chinese characters: {text!r}"
                    )
                key = _norm(text)
                if key in seen:
                    raise ProbeError(f"{path}:{line}: {entry_id}: duplicate of {seen[key]}: {text!r}")
                seen[key] = entry_id
                rows.append(
                    {"text": text, "kind": kind, "part": part, "lang": lang, "id": entry_id, "line": line}
                )
    return rows
