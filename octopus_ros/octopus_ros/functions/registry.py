"""The function registry: which robot functions exist, their functional tokens and typed arguments.

The registry is loaded from ``config/functions.yaml`` (schema documented at the top of that file)
and is immutable once built. Every schema problem raises :class:`RegistryError` whose message
starts with ``<file>:<line>:`` of the offending entry, e.g.::

    config/functions.yaml:41: functions[3] 'stop': token 2 is already used by 'navigate_to' (line 30)

Pure Python: no torch, no rclpy.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from octopus_ros.paths import read_config_text

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
ARG_TYPES = ("string", "int", "float", "bool", "enum")
DEFAULT_MAX_LENGTH = 48
NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
# Characters an enum value may not contain (quotes and escapes would clash with the call syntax).
_ENUM_FORBIDDEN = re.compile(r"['\"\\\x00-\x1f\x7f-\x9f\u2028\u2029]")

_TOP_KEYS = ("version", "functions")
_FUNCTION_KEYS = (
    "name",
    "token",
    "enabled",
    "decline",
    "halts",
    "claims",
    "requires_view",
    "view_arg",
    "view_object",
    "description",
    "args",
    "examples",
    "phrasings",
)
_ARG_KEYS = (
    "name", "type", "min", "max", "values", "max_length", "source", "named", "narrow", "unsaid",
    "claims", "names_object", "description", "examples", "said",
)  # fmt: skip
ARG_SOURCES = ("utterance",)  # where a string argument's value must come from (``source``)


class RegistryError(ValueError):
    """The function registry (YAML file or dict) does not follow the schema."""


def copied_args(spec: Any) -> tuple[Any, ...]:
    """The ``source: utterance`` arguments of ``spec`` (a :class:`FunctionSpec` or a stand-in with
    ``args``; None has none): the arguments whose value is copied from the request."""
    return tuple(a for a in getattr(spec, "args", ()) if getattr(a, "source", None) == "utterance")


def copied_values(spec: Any, call: Any) -> list[str]:
    """The values ``call`` (a call of ``spec``) gives its :func:`copied_args`, non-empty ones only,
    in the call's order: the text that is the message's, not the request's."""
    names = {a.name for a in copied_args(spec)}
    return [str(a.value) for a in getattr(call, "args", ()) if a.name in names and str(a.value).strip()]


def per_spec_cache(maxsize: int):
    """``functools.lru_cache`` for a function of one registry object (a :class:`FunctionSpec` or
    :class:`FunctionRegistry`, both hashable), computed afresh for an unhashable stand-in."""
    import functools

    def wrap(fn):
        cached = functools.lru_cache(maxsize=maxsize)(fn)

        @functools.wraps(fn)
        def call(obj):
            try:
                return cached(obj)
            except TypeError:  # an unhashable stand-in
                return fn(obj)

        call.cache_clear = cached.cache_clear
        return call

    return wrap


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_name(value: Any, what: str) -> None:
    if not isinstance(value, str) or NAME_RE.fullmatch(value) is None:
        raise RegistryError(f"{what} name {value!r} must match [a-z][a-z0-9_]*")


def _check_description(value: Any, *, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, Mapping) or not value:
        raise RegistryError(f"description must be a mapping of language to text, got {value!r}")
    if required and "en" not in value:
        raise RegistryError("description needs at least an English ('en') text")
    for lang, text in value.items():
        if not isinstance(lang, str) or not lang:
            raise RegistryError(f"description language {lang!r} must be a non-empty string")
        if not isinstance(text, str) or not text.strip():
            raise RegistryError(f"description[{lang!r}] must be non-empty text, got {text!r}")


def _check_claims(value: Any, *, decline: bool) -> dict[str, tuple[str, ...]]:
    """A function's ``claims`` as ``{language: (words, ...)}`` (see :class:`FunctionSpec`)."""
    if not value:
        return {}
    if decline:
        raise RegistryError("the decline function asks for nothing: it cannot have claims")
    if not isinstance(value, Mapping):
        raise RegistryError(f"claims must be a mapping of language to a list of words, got {value!r}")
    out: dict[str, tuple[str, ...]] = {}
    for lang, words in value.items():
        if not isinstance(lang, str) or not lang:
            raise RegistryError(f"claims language {lang!r} must be a non-empty string")
        if isinstance(words, str) or not isinstance(words, (list, tuple)) or not words:
            raise RegistryError(f"claims[{lang!r}] must be a non-empty list of words, got {words!r}")
        for word in words:
            if not isinstance(word, str) or not word.strip():
                raise RegistryError(f"claims[{lang!r}] must hold non-empty words, got {word!r}")
        out[lang] = tuple(w.strip() for w in words)
    return out


@dataclass(frozen=True)
class ArgSpec:
    """One declared argument of a function.

    ``min``/``max`` are required for ``int`` and ``float`` (and only allowed there); ``values``
    only for ``enum``; ``max_length`` only for ``string`` (default 48 characters, counted after
    unescaping). ``source: utterance`` (string only) says the value is copied from the user's
    words: the call grammar bound to an utterance (:meth:`CallGrammar.bind`) accepts only its
    spans. ``named: true`` (enum only) says the request must name the value: a call is not
    published unless one of the value's spoken forms (:meth:`spoken_forms`) is in the utterance
    (a message goes to someone the user named, never to a guessed contact; functions/mentions.py).
    ``narrow: true`` (enum or bool) is the grammar half of ``named`` alone: when the request says
    one or more of the values, the bound grammar offers only those; a request that says none
    leaves them all open, and nothing is declined for it (set_light's on / off: "turn the hall light
    off" cannot come out on, and "it is too dark in the kitchen" stays a call). ``unsaid`` (a narrow
    bool only: true or false) is the value a request that says neither asks for: set_light's
    ``unsaid: true`` offers on to "I need some light in the kitchen" and "走廊亮个灯", which ask for
    light without saying on, while "make sure the lights are off" still says off. On an int or
    float argument, the values said are the numbers the request says in digits or words
    (functions/numbers.py: "eighty percent" and "八成" say 0.8), those within min..max.
    ``said`` (an enum or bool; ``{language: {value: [words]}}``) adds words that say a value
    without being a way to fill a ``{slot}`` of it ("brighten", 熄 for set_light's on; the bare
    厨房 or "ground" of a place or location whose slots read "in the kitchen", "on the ground"):
    they count wherever the request is read for what it says (:meth:`spoken_forms`: the
    grammar's narrowing of a named or narrow argument, a value said only as where something comes
    from, functions/mentions.origin_args), and training never puts them in a slot, where "turn
    the {room} lights {on}" must read on / off.
    ``claims: true`` (enum only) says a request that says one of the values asks for this function:
    recycle's bins ("compost it", "the can goes in the recycling", "拿去堆肥"); a call of another
    function on such a request is declined (functions/mentions.claimed_elsewhere: "the purple can
    goes in the recycling" decided as ``pick_up('purple can')``), unless the value is said only
    after a negation ("don't put it in the trash, put it on the table").
    ``names_object: true`` (string only, not copied) says the value names a physical object
    ("red cup"): when the request names objects the model knows (its grounding vocabulary), the
    bound grammar offers only those (:meth:`CallGrammar.bind` ``objects``), so the model picks
    among the objects it heard instead of swapping one for a pair it saw more in training.
    Raises :class:`RegistryError` when the combination is invalid.
    """

    name: str
    type: str
    min: int | float | None = None
    max: int | float | None = None
    values: tuple[str, ...] = ()
    max_length: int | None = None
    source: str | None = None  # 'utterance': the value is a span of the user's words (string only)
    named: bool = False  # enum only: the utterance must say the value (one of its spoken forms)
    narrow: bool = False  # not string: the grammar offers the values the request says (none said: all)
    unsaid: bool | None = None  # narrow bool only: the value offered when the request says neither
    claims: bool = False  # enum only: a request that says a value asks for this function
    names_object: bool = False  # string only: the value names an object (CallGrammar.bind objects)
    description: dict[str, str] | None = field(default=None, hash=False)
    # language -> {value: spoken forms}, see functions/examples.py (None: no examples)
    examples: dict[str, dict[Any, tuple[str, ...]]] | None = field(default=None, hash=False)
    # language -> {value: words that say it without filling a {slot}} (None: none; named/narrow only)
    said: dict[str, dict[Any, tuple[str, ...]]] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        _check_name(self.name, "argument")
        if self.type not in ARG_TYPES:
            raise RegistryError(f"unknown type {self.type!r} (one of {', '.join(ARG_TYPES)})")
        numeric = self.type in ("int", "float")
        if not numeric and (self.min is not None or self.max is not None):
            raise RegistryError(f"min/max are only valid for int and float arguments, not {self.type}")
        if self.type != "enum" and self.values:
            raise RegistryError(f"values are only valid for enum arguments, not {self.type}")
        if self.type != "string" and self.max_length is not None:
            raise RegistryError(f"max_length is only valid for string arguments, not {self.type}")
        if self.source is not None:
            if self.type != "string":
                raise RegistryError(f"source is only valid for string arguments, not {self.type}")
            if self.source not in ARG_SOURCES:
                raise RegistryError(f"source must be one of {', '.join(ARG_SOURCES)}, got {self.source!r}")
        if not isinstance(self.named, bool):
            raise RegistryError(f"named must be true or false, got {self.named!r}")
        if self.named and self.type != "enum":
            raise RegistryError(f"named is only valid for enum arguments, not {self.type}")
        if not isinstance(self.narrow, bool):
            raise RegistryError(f"narrow must be true or false, got {self.narrow!r}")
        if self.narrow and self.type == "string":
            raise RegistryError("narrow is only valid for enum, bool, int and float arguments, not string")
        if self.unsaid is not None:
            if not isinstance(self.unsaid, bool):
                raise RegistryError(f"unsaid must be true or false, got {self.unsaid!r}")
            if self.type != "bool" or not self.narrow:
                raise RegistryError("unsaid is only valid for a bool argument with narrow: true")
        if not isinstance(self.claims, bool):
            raise RegistryError(f"claims must be true or false, got {self.claims!r}")
        if self.claims and self.type != "enum":
            raise RegistryError(f"claims is only valid for enum arguments, not {self.type}")
        if not isinstance(self.names_object, bool):
            raise RegistryError(f"names_object must be true or false, got {self.names_object!r}")
        if self.names_object and (self.type != "string" or self.source is not None):
            raise RegistryError(
                "names_object is only valid for string arguments that are not copied (no source)"
            )
        if numeric:
            self._check_bounds()
        if self.type == "enum":
            self._check_values()
        if self.type == "string":
            length = DEFAULT_MAX_LENGTH if self.max_length is None else self.max_length
            if not _is_int(length) or length < 1:
                raise RegistryError(f"max_length must be an integer >= 1, got {length!r}")
            object.__setattr__(self, "max_length", length)
        _check_description(self.description, required=False)
        if self.description is not None:
            object.__setattr__(self, "description", dict(self.description))
        if self.examples is not None:
            from .examples import parse_arg_examples

            object.__setattr__(self, "examples", parse_arg_examples(self, self.examples))
        if self.said is not None:
            from .examples import parse_arg_examples

            if self.type not in ("enum", "bool"):
                raise RegistryError("said is only read for enum and bool arguments")
            object.__setattr__(self, "said", parse_arg_examples(self, self.said, "said"))
            self._check_said()

    def _check_said(self) -> None:
        """A ``said`` word may say only its own value: one that is also a form of another value
        would narrow a request to a value it does not mean."""
        owner: dict[str, Any] = {}
        for table in (self.examples or {}, self.said or {}):
            for by_value in table.values():
                for value, forms in by_value.items():
                    for form in forms:
                        key = str(form).strip().lower()
                        if owner.setdefault(key, value) != value:
                            raise RegistryError(f"said: {form!r} says both {owner[key]!r} and {value!r}")

    def _check_bounds(self) -> None:
        if self.min is None or self.max is None:
            raise RegistryError(f"{self.type} arguments need both min and max")
        for key in ("min", "max"):
            value = getattr(self, key)
            if self.type == "int" and not _is_int(value):
                raise RegistryError(f"{key} of an int argument must be an integer, got {value!r}")
            if self.type == "float":
                if not (_is_int(value) or isinstance(value, float)) or not math.isfinite(value):
                    raise RegistryError(f"{key} of a float argument must be a finite number, got {value!r}")
                object.__setattr__(self, key, float(value))
        if self.min > self.max:
            raise RegistryError(f"min {self.min!r} is greater than max {self.max!r}")

    def _check_values(self) -> None:
        values = self.values
        if isinstance(values, str) or not isinstance(values, Iterable):
            raise RegistryError(f"enum values must be a list of strings, got {values!r}")
        values = tuple(values)
        if not values:
            raise RegistryError("enum arguments need a non-empty list of values")
        for v in values:
            if not isinstance(v, str):
                raise RegistryError(f"enum value {v!r} must be a string (quote it in YAML)")
            if not v or _ENUM_FORBIDDEN.search(v):
                raise RegistryError(
                    f"enum value {v!r} must be non-empty, without quotes, backslashes or controls"
                )
        if len(set(values)) != len(values):
            dup = sorted({v for v in values if values.count(v) > 1})
            raise RegistryError(f"duplicate enum values {dup}")
        object.__setattr__(self, "values", values)

    def to_dict(self) -> dict[str, Any]:
        """The YAML-shaped mapping of this argument (only the keys its type uses)."""
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.type in ("int", "float"):
            out["min"], out["max"] = self.min, self.max
        if self.type == "enum":
            out["values"] = list(self.values)
        if self.type == "string":
            out["max_length"] = self.max_length
        if self.source is not None:
            out["source"] = self.source
        if self.named:
            out["named"] = True
        if self.narrow:
            out["narrow"] = True
        if self.unsaid is not None:
            out["unsaid"] = self.unsaid
        if self.claims:
            out["claims"] = True
        if self.names_object:
            out["names_object"] = True
        if self.description:
            out["description"] = dict(self.description)
        if self.examples:
            out["examples"] = {
                lang: {v: list(forms) for v, forms in by_value.items()}
                for lang, by_value in self.examples.items()
            }
        if self.said:
            out["said"] = {
                lang: {v: list(forms) for v, forms in by_value.items()}
                for lang, by_value in self.said.items()
            }
        return out

    def spoken_forms(self, value: Any) -> tuple[str, ...]:
        """How users say ``value``: its ``examples`` forms in every language, its ``said`` words,
        then the value itself
        (``_`` read as a space; not for a bool), without repeats."""
        forms: list[str] = []
        for by_value in (*(self.examples or {}).values(), *(self.said or {}).values()):
            forms += [str(f) for f in by_value.get(value, ())]
        if self.type != "bool":  # "True" / "False" are the call's words, not how a request says it
            forms.append(str(value).replace("_", " "))
        return tuple(dict.fromkeys(f for f in forms if f))

    def signature(self) -> str:
        """Short human-readable type, e.g. ``string<=32``, ``float[0.0..1.0]``, ``enum{a|b}``."""
        if self.type == "string":
            return f"string<={self.max_length}"
        if self.type in ("int", "float"):
            return f"{self.type}[{self.min}..{self.max}]"
        if self.type == "enum":
            return "enum{" + "|".join(self.values) + "}"
        return self.type


@dataclass(frozen=True)
class FunctionSpec:
    """One robot function: its name, functional token ``<nexa_{token}>`` and arguments.

    ``halts``: the function stops the robot (stop). Stopping can harm no one, so a call of it is
    never declined for the words around it: not by the safety screen ("stop, you're about to drive
    into the wall", "快停下来要撞墙了" name a hazard to avoid) nor as a negated request. The model's
    own checks (confidence, the second opinion) still apply, and the novelty limits too unless the
    request says one of the function's ``claims`` words ("whoa whoa stop stop": the words and the
    model agree on stopping; runtime/outcomes.decision_outcome).

    ``claims`` (``{language: [words]}``): words that ask for this function and for no other, as
    take_photo's "photo", "pic", 拍照 and stop's "freeze", 站住 do. A call of another function on a
    request that says one of them, not right after a negation and outside what the call copies, is
    declined (functions/mentions.claimed_elsewhere: "Grab a quick pic of the living room, the
    landlord asked for one" decided as ``navigate_to('living_room')``), unless the words are the
    called function's own too (:func:`functions.asking.asking_words`: describe_scene asks "what is
    in the picture" with "picture"). English words are whole words, each form written out
    ("photo", "photos"). The argument-level ``claims: true`` is the same rule for an enum's values.

    ``requires_view``: the function acts on an object that must be in the camera's view when the
    call is published (issue 12 item 3; :meth:`view_phrase` names it for a call). What the
    object is: ``view_arg``, the name of a string or enum argument whose value names it
    (``pick_up(object)``), or ``view_object``, a fixed phrase for a function without such an
    argument (``water_plant`` -> ``plant``). Exactly one of the two goes with ``requires_view:
    true``, and neither without it.
    """

    name: str
    token: int
    enabled: bool = True
    decline: bool = False
    halts: bool = False
    # language -> words that ask for this function and no other (see the class doc)
    claims: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    requires_view: bool = False
    view_arg: str | None = None
    view_object: str | None = None
    description: dict[str, str] = field(default_factory=dict, hash=False)
    args: tuple[ArgSpec, ...] = ()
    # language -> example phrasings (functions/examples.py); training data, never used at run time
    examples: dict[str, tuple[Any, ...]] = field(default_factory=dict, hash=False)
    # the synthetic world's phrasings (functions/phrasings.py, a PhrasingSet); training data only
    phrasings: Any = field(default=None, hash=False)

    def __post_init__(self) -> None:
        _check_name(self.name, "function")
        if not _is_int(self.token) or self.token < 0:
            raise RegistryError(f"token must be an integer >= 0, got {self.token!r}")
        for key in ("enabled", "decline", "halts", "requires_view"):
            if not isinstance(getattr(self, key), bool):
                raise RegistryError(f"{key} must be true or false, got {getattr(self, key)!r}")
        _check_description(self.description, required=True)
        object.__setattr__(self, "description", dict(self.description))
        args = tuple(self.args)
        if not all(isinstance(a, ArgSpec) for a in args):
            raise RegistryError("args must be ArgSpec instances")
        names = [a.name for a in args]
        if len(set(names)) != len(names):
            raise RegistryError(f"duplicate argument names in {names}")
        if self.decline and args:
            raise RegistryError("the decline function must take no arguments")
        if self.halts and (self.decline or self.requires_view):
            raise RegistryError(
                "halts: true is for a function that stops the robot, not the decline nor a view function"
            )
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "claims", _check_claims(self.claims, decline=self.decline))
        self._check_view()
        if self.examples:
            from .examples import Phrasing, parse_function_examples

            if not all(isinstance(p, Phrasing) for ps in self.examples.values() for p in ps):
                object.__setattr__(self, "examples", parse_function_examples(self.name, args, self.examples))
        if self.phrasings is not None:
            from .phrasings import PhrasingSet, parse_phrasings

            if not isinstance(self.phrasings, PhrasingSet):
                object.__setattr__(self, "phrasings", parse_phrasings(self.name, args, self.phrasings))

    def _check_view(self) -> None:
        given = [k for k in ("view_arg", "view_object") if getattr(self, k) is not None]
        if not self.requires_view:
            if given:
                raise RegistryError(f"{given[0]} is only valid with requires_view: true")
            return
        if self.decline:
            raise RegistryError("the decline function cannot require a view")
        if len(given) != 1:
            raise RegistryError(
                "requires_view: true needs exactly one of view_arg (the argument naming the object) "
                f"or view_object (a fixed phrase), got {given or 'neither'}"
            )
        if self.view_arg is not None:
            arg = next((a for a in self.args if a.name == self.view_arg), None)
            if arg is None:
                raise RegistryError(
                    f"view_arg {self.view_arg!r} is not an argument of {self.name} "
                    f"(arguments: {[a.name for a in self.args]})"
                )
            if arg.type not in ("string", "enum"):
                raise RegistryError(
                    f"view_arg {self.view_arg!r} must be a string or enum argument, not {arg.type}"
                )
        elif not isinstance(self.view_object, str) or not self.view_object.strip():
            raise RegistryError(f"view_object must be a non-empty phrase, got {self.view_object!r}")

    def view_phrase(self, call: Any) -> str | None:
        """The phrase naming the object a call of this function needs in view (None: no view needed).

        ``call`` is an :class:`~octopus_ros.functions.Call` of this function."""
        if not self.requires_view:
            return None
        if self.view_object is not None:
            return self.view_object
        for a in call.args:
            if a.name == self.view_arg:
                return str(a.value)
        return None

    @property
    def token_text(self) -> str:
        """The functional token's literal text, e.g. ``<nexa_3>``."""
        return f"<nexa_{self.token}>"

    def training_says(self) -> dict[str, list[str]]:
        """language -> the phrasings (``say`` text with its ``{slot}`` fields) the function trains
        on: its ``examples`` and its world ``phrasings`` that are not held out."""
        out: dict[str, list[str]] = {}
        for lang, items in (self.examples or {}).items():
            out.setdefault(lang, []).extend(p.say for p in items)
        if self.phrasings is not None:
            for lang, items in self.phrasings.languages:
                out.setdefault(lang, []).extend(p.say for p in items if not p.heldout)
        return out

    def training_literals(self) -> dict[str, list[str]]:
        """language -> the words of each :meth:`training_says` phrasing outside its ``{slot}``
        fields, one string per phrasing (a slot becomes a space; case as written): the words that
        ask for the function, which the request rules read (functions/negation.py, mentions.py,
        lean/copier.carrier_words)."""
        import string

        return {
            lang: [" ".join(lit for lit, *_ in string.Formatter().parse(say)) for say in says]
            for lang, says in self.training_says().items()
        }

    def describe(self, lang: str = "en") -> str:
        """The description in ``lang``, falling back to English."""
        return self.description.get(lang) or self.description["en"]

    def to_dict(self) -> dict[str, Any]:
        """The YAML-shaped mapping of this function."""
        return {
            "name": self.name,
            "token": self.token,
            "enabled": self.enabled,
            "decline": self.decline,
            **({"halts": True} if self.halts else {}),
            **({"claims": {k: list(v) for k, v in self.claims.items()}} if self.claims else {}),
            **({"requires_view": True} if self.requires_view else {}),
            **({"view_arg": self.view_arg} if self.view_arg is not None else {}),
            **({"view_object": self.view_object} if self.view_object is not None else {}),
            "description": dict(self.description),
            "args": [a.to_dict() for a in self.args],
            **(
                {"examples": {k: [p.to_yaml() for p in ps] for k, ps in self.examples.items()}}
                if self.examples
                else {}
            ),
            **({"phrasings": self.phrasings.to_yaml()} if self.phrasings is not None else {}),
        }


# ----------------------------------------------------------------------------- YAML with lines
class _LineDict(dict):
    """A dict that remembers the (1-based) line of the YAML mapping it came from."""

    line: int | None = None


class _LineList(list):
    """A list that remembers the (1-based) line of each of its items in the YAML file."""

    item_lines: list[int] | None = None


# libyaml's parser when PyYAML has it (the phrasings make the bundled file ~700 lines: 8x faster)
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_SafeLoader):
    """SafeLoader whose mappings are :class:`_LineDict`, whose sequences are :class:`_LineList`
    and which rejects duplicate keys."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode):
    data = _LineDict()
    data.line = node.start_mark.line + 1
    yield data
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key_node.value!r} (first on line {seen[key_node.value]})",
                    key_node.start_mark,
                )
            seen[key_node.value] = line
    data.update(loader.construct_mapping(node))


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode):
    data = _LineList()
    data.item_lines = [item.start_mark.line + 1 for item in node.value]
    yield data
    data.extend(loader.construct_sequence(node))


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _line(obj: Any) -> int | None:
    return getattr(obj, "line", None)


class _Where:
    """Builds ``source:line: path: message`` prefixes for errors."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, line: int | None, path: str, message: str) -> RegistryError:
        at = f"{self.source}:{line}" if line is not None else self.source
        return RegistryError(f"{at}: {path}: {message}" if path else f"{at}: {message}")


def _check_keys(where: _Where, mapping: Mapping, allowed: tuple[str, ...], path: str) -> None:
    unknown = [k for k in mapping if k not in allowed]
    if unknown:
        raise where.error(_line(mapping), path, f"unknown key(s) {unknown} (allowed: {', '.join(allowed)})")


# ----------------------------------------------------------------------------- registry
class FunctionRegistry:
    """Immutable set of :class:`FunctionSpec` with unique names and tokens and one decline function.

    Build it with :meth:`from_yaml` or :meth:`from_dict`; constructing it directly from specs
    runs the same cross-function checks (without line numbers).
    """

    def __init__(self, functions: Iterable[FunctionSpec], *, source: str = "<specs>") -> None:
        specs = tuple(functions)
        self._setup(specs, source, [None] * len(specs))

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> FunctionRegistry:
        """Load and validate a ``functions.yaml`` file."""
        source = str(path)
        try:
            text = read_config_text(path)
        except OSError as e:
            raise RegistryError(f"{source}: cannot read: {e}") from e
        try:
            data = yaml.load(text, Loader=_LineLoader)  # a (C)SafeLoader subclass: safe
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = mark.line + 1 if mark is not None else None
            where = f"{source}:{line}" if line is not None else source
            raise RegistryError(f"{where}: invalid YAML: {e.problem or e.context}") from e
        except yaml.YAMLError as e:
            raise RegistryError(f"{source}: invalid YAML: {e}") from e
        registry = cls.from_dict(data, source=source)
        log.debug("loaded %d functions from %s", len(registry), source)
        return registry

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> FunctionRegistry:
        """Validate a YAML-shaped mapping (``{'version': 1, 'functions': [...]}``)."""
        where = _Where(source)
        if not isinstance(data, Mapping):
            raise where.error(
                1, "", f"expected a mapping with 'version' and 'functions', got {type(data).__name__}"
            )
        top_line = _line(data)
        _check_keys(where, data, _TOP_KEYS, "")
        if data.get("version") != SCHEMA_VERSION or isinstance(data.get("version"), bool):
            raise where.error(top_line, "version", f"must be {SCHEMA_VERSION}, got {data.get('version')!r}")
        entries = data.get("functions")
        if not isinstance(entries, list) or not entries:
            raise where.error(top_line, "functions", "must be a non-empty list")
        specs, lines = [], []
        for i, entry in enumerate(entries):
            specs.append(cls._function_from_dict(where, i, entry, top_line))
            lines.append(_line(entry))
        registry = cls.__new__(cls)
        registry._setup(tuple(specs), source, lines, top_line=top_line)
        return registry

    @staticmethod
    def _function_from_dict(where: _Where, i: int, entry: Any, top_line: int | None) -> FunctionSpec:
        path = f"functions[{i}]"
        if not isinstance(entry, Mapping):
            raise where.error(top_line, path, f"must be a mapping, got {entry!r}")
        line = _line(entry)
        if isinstance(entry.get("name"), str):
            path += f" {entry['name']!r}"
        _check_keys(where, entry, _FUNCTION_KEYS, path)
        for key in ("name", "token", "description"):
            if key not in entry:
                raise where.error(line, path, f"missing required key {key!r}")
        raw_args = entry.get("args") or []
        if not isinstance(raw_args, list):
            raise where.error(line, path, f"args must be a list, got {raw_args!r}")
        args = []
        for j, raw in enumerate(raw_args):
            arg_path = f"{path}.args[{j}]"
            if not isinstance(raw, Mapping):
                raise where.error(line, arg_path, f"must be a mapping, got {raw!r}")
            _check_keys(where, raw, _ARG_KEYS, arg_path)
            for key in ("name", "type"):
                if key not in raw:
                    raise where.error(_line(raw), arg_path, f"missing required key {key!r}")
            kwargs = dict(raw)
            if "values" in kwargs:
                values = kwargs["values"]
                kwargs["values"] = tuple(values) if isinstance(values, list) else values
            try:
                args.append(ArgSpec(**kwargs))
            except RegistryError as e:
                raise where.error(_line(raw) or line, arg_path, str(e)) from None
        try:
            return FunctionSpec(
                name=entry["name"],
                token=entry["token"],
                enabled=entry.get("enabled", True),
                decline=entry.get("decline", False),
                halts=entry.get("halts", False),
                claims=entry.get("claims") or {},
                requires_view=entry.get("requires_view", False),
                view_arg=entry.get("view_arg"),
                view_object=entry.get("view_object"),
                description=entry["description"],
                args=tuple(args),
                examples=entry.get("examples") or {},
                phrasings=entry.get("phrasings"),
            )
        except RegistryError as e:
            # a phrasings error knows the line of the phrasing itself
            raise where.error(getattr(e, "line", None) or line, path, str(e)) from None

    def _setup(
        self,
        specs: tuple[FunctionSpec, ...],
        source: str,
        lines: list[int | None],
        *,
        top_line: int | None = None,
    ) -> None:
        where = _Where(source)
        by_name: dict[str, int] = {}
        by_token: dict[int, int] = {}

        def fail(k: int, message: str) -> RegistryError:
            return where.error(lines[k], f"functions[{k}] {specs[k].name!r}", message)

        def at(k: int) -> str:
            return f" (line {lines[k]})" if lines[k] is not None else f" (functions[{k}])"

        if not specs:
            raise where.error(None, "functions", "must not be empty")
        for k, spec in enumerate(specs):
            if not isinstance(spec, FunctionSpec):
                raise where.error(None, f"functions[{k}]", f"expected a FunctionSpec, got {spec!r}")
            if spec.name in by_name:
                raise fail(k, f"duplicate name; first declared at{at(by_name[spec.name])}")
            if spec.token in by_token:
                first = by_token[spec.token]
                raise fail(k, f"token {spec.token} is already used by {specs[first].name!r}{at(first)}")
            by_name[spec.name] = k
            by_token[spec.token] = k
        declines = [k for k, s in enumerate(specs) if s.decline]
        if len(declines) != 1:
            names = [specs[k].name for k in declines]
            line = lines[declines[1]] if len(declines) > 1 else top_line
            raise where.error(
                line,
                "functions",
                f"exactly one function must have decline: true, found {len(declines)} {names}",
            )
        if not specs[declines[0]].enabled:
            raise fail(declines[0], "the decline function must be enabled (it is the model's way to say no)")
        self._functions = tuple(sorted(specs, key=lambda s: s.token))
        self._by_name = {s.name: s for s in self._functions}
        self._by_token = {s.token: s for s in self._functions}
        self._decline = specs[declines[0]]
        self._source = source
        self._allowed_cache: dict[frozenset[str] | None, frozenset[str]] = {}
        missing = self.num_tokens - len(self._functions)
        if missing:
            log.info(
                "%s: %d functional token(s) below %d have no function (never decoded)",
                source,
                missing,
                self.num_tokens,
            )

    # -- queries --------------------------------------------------------------------------
    @property
    def source(self) -> str:
        """Where the registry was loaded from (file path, ``<dict>`` or ``<specs>``)."""
        return self._source

    @property
    def functions(self) -> tuple[FunctionSpec, ...]:
        """All functions, enabled or not, sorted by token."""
        return self._functions

    def enabled(self) -> tuple[FunctionSpec, ...]:
        """The enabled functions, sorted by token."""
        return tuple(s for s in self._functions if s.enabled)

    @property
    def decline_function(self) -> FunctionSpec:
        """The single ``decline: true`` function ("no action / not understood")."""
        return self._decline

    @property
    def num_tokens(self) -> int:
        """Number of functional tokens the model needs: highest token + 1 (disabled ones included)."""
        return self._functions[-1].token + 1

    def by_name(self, name: str) -> FunctionSpec | None:
        """The function called ``name``, or None."""
        return self._by_name.get(name)

    def view_functions(self) -> tuple[FunctionSpec, ...]:
        """The enabled functions with ``requires_view: true``, sorted by token."""
        return tuple(s for s in self._functions if s.enabled and s.requires_view)

    def by_token(self, token: int) -> FunctionSpec | None:
        """The function of ``<nexa_{token}>``, or None."""
        return self._by_token.get(token)

    def allowed_names(self, allowlist: Iterable[str] | None = None) -> frozenset[str]:
        """Names the model may call under ``allowlist``.

        ``None`` or an empty list means every enabled function (the node's convention).
        Disabled functions are never allowed. The decline function is always allowed, so a
        constrained model can still say "no" when nothing on the allowlist fits.
        Unknown names raise :class:`ValueError`.
        """
        key = frozenset(allowlist) if allowlist else None
        cached = self._allowed_cache.get(key)
        if cached is not None:
            return cached
        if key is None:
            names = {s.name for s in self._functions if s.enabled}
        else:
            unknown = sorted(n for n in key if n not in self._by_name)
            if unknown:
                raise ValueError(
                    f"allowlist names unknown functions {unknown} (known: {sorted(self._by_name)})"
                )
            disabled = sorted(n for n in key if not self._by_name[n].enabled)
            if disabled:
                log.warning("allowlist names disabled functions %s; they stay disabled", disabled)
            names = {n for n in key if self._by_name[n].enabled}
        names.add(self._decline.name)
        result = frozenset(names)
        self._allowed_cache[key] = result
        return result

    def describe(
        self, lang: str = "en", *, allowlist: Iterable[str] | None = None, tokens: bool = True
    ) -> str:
        """Prompt text listing the allowed functions, one per line, in ``lang`` (fallback English).

        ``tokens=True``: ``<nexa_0> pick_up(object: string<=32): Pick up an object.``;
        ``tokens=False`` omits the functional token (plain-text baseline prompts).
        """
        allowed = self.allowed_names(allowlist)
        lines = []
        for spec in self._functions:
            if spec.name not in allowed:
                continue
            params = ", ".join(f"{a.name}: {a.signature()}" for a in spec.args)
            head = f"{spec.token_text} " if tokens else ""
            lines.append(f"{head}{spec.name}({params}): {spec.describe(lang)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The YAML-shaped mapping; ``from_dict(to_dict())`` gives an equal registry."""
        return {"version": SCHEMA_VERSION, "functions": [s.to_dict() for s in self._functions]}

    def interface_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without what only training reads (each function's ``examples`` and
        ``phrasings``): the functions, tokens, arguments, their values and spoken forms, and the
        descriptions, as a downstream node needs them (octopus_node's ``~/function_registry``).
        ``from_dict`` loads it."""
        functions = []
        for spec in self._functions:
            entry = spec.to_dict()
            entry.pop("examples", None)
            entry.pop("phrasings", None)
            functions.append(entry)
        return {"version": SCHEMA_VERSION, "functions": functions}

    # -- container protocol ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._functions)

    def __iter__(self):
        return iter(self._functions)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FunctionRegistry):
            return NotImplemented
        return self._functions == other._functions

    def __hash__(self) -> int:
        return hash(self._functions)

    def __repr__(self) -> str:
        return f"FunctionRegistry({len(self)} functions from {self._source})"
