"""Character-level grammar of canonical call text, for grammar-constrained decoding.

The decoder asks :meth:`CallGrammar.advance` whether a token's text may come next and caches its
answers per :class:`GrammarState`, so states are small hashable tuples, and states that behave
the same compare equal (e.g. inside a free string only the length so far is kept).

Accepted language (a subset of what :func:`~octopus_ros.functions.parser.parse_call` accepts)::

    call   := FN "(" [arg (", " arg)*] ")" END
    FN     := "<nexa_i>" for an allowed function i     (consumed whole, never split)
    END    := "<nexa_end>"                             (consumed whole, never split)
    string := "'" (char | "\\\\" | "\\'"){1,max_length} "'"   char: not ' \\ < > or a control
    enum   := "'" one of the declared values "'"
    int    := "-"? ("0" | [1-9][0-9]*)                  no "-0"; within [min, max]
    float  := "-"? ("0" | [1-9][0-9]*) "." [0-9]{1,3}  within [min, max]
    bool   := "True" | "False"

Number prefixes that can no longer reach [min, max] are rejected as soon as they are typed.

Copied strings: an argument declared ``source: utterance`` in the registry must be a span
(contiguous substring) of the user's utterance, with the call syntax's escapes (``\\'`` is ``'``).
:meth:`CallGrammar.bind` returns the grammar for one utterance; it tracks the span typed so far
in a trie of the utterance's word-aligned spans (:class:`WordSpans`: a span starts and ends at a
word boundary, every character a boundary in Chinese), so the model can only copy whole words. Without ``bind`` such an argument is a free string.
Functional tokens must arrive whole inside one ``advance`` text (a tokenizer's special token), so
a model cannot spell ``<nexa_3>`` out of ordinary pieces; everything else may be split anywhere.

Named values: an enum argument declared ``named: true`` takes a value only when the utterance says
it (functions/mentions.py). A bound grammar offers such an argument only the values the utterance
says, so the model chooses among the rooms or contacts it heard instead of guessing one; when the
utterance says none, every value stays open and the runtime declines the call as unnamed (one
rule, two uses: the grammar narrows, the runtime still checks). An enum or bool argument declared
``narrow: true`` is narrowed the same way, and nothing is declined when the request says none of its
values (set_light's on / off: "it is too dark in the kitchen" says neither and stays a call).

Named objects: a string argument declared ``names_object: true`` (pick_up's object) takes, when
the request names objects of the model's vocabulary, only one of those phrases
(:meth:`CallGrammar.bind` ``objects``, given by the runtime from its grounding vocabulary:
lean/grounding.py ``GroundingRules.named_phrases``): "put the blue keys on the floor" can no
longer come out as ``place('blue book', …)``, a pair the model saw more often. A request that
names none leaves the argument a free string. The runtime's object-swap check (lean/decision.py
``object_mismatch``) is the same rule for the decode modes without a grammar.
"""

from __future__ import annotations

import copy as _copy
import logging
import re
from collections.abc import Iterable
from typing import NamedTuple

from .calls import NEXA_END, format_float
from .mentions import says
from .numbers import said_numbers
from .registry import FunctionRegistry

log = logging.getLogger(__name__)


def _choices(arg) -> tuple:
    """The values an enum or bool argument can take."""
    return (True, False) if arg.type == "bool" else arg.values


def said_values(arg, utterance: str) -> list:
    """The values of a named or ``narrow`` enum / bool argument that ``utterance`` says (its spoken
    forms; [] when it says none): what the bound grammar offers that argument when it is fewer
    than all (:meth:`CallGrammar.bind`). A ``narrow`` value said right after a negation is not
    counted as said (functions/mentions.says ``plainly``); a ``narrow`` bool said only that way
    ("别开着", "don't switch it off") says its other value, and one that says neither its ``unsaid``
    value when it has one ("I need some light in the kitchen"); when a request says both values,
    one said only as how things are ("the lights are still on, turn them off", "灯一直开着，熄了吧":
    functions/mentions.says ``stated``) is not what it asks for; a ``named`` value is counted as
    said however it is said, as the runtime's check of the same rule counts it."""
    values = _choices(arg)
    said = [v for v in values if says(utterance, arg.spoken_forms(v), plainly=not arg.named)]
    if len(said) > 1 and not arg.named:
        asked = [v for v in said if says(utterance, arg.spoken_forms(v), plainly=True, stated=False)]
        said = asked or said
    if not said and arg.type == "bool" and not arg.named:
        unwanted = [v for v in values if says(utterance, arg.spoken_forms(v))]
        said = [v for v in values if v not in unwanted] if len(unwanted) == 1 else []
        if not unwanted and arg.unsaid is not None:
            said = [arg.unsaid]
    return said


def _literal(arg, value) -> str:
    """How ``value`` of an enum or bool argument is written in a call: ``'kitchen'``, ``True``."""
    return str(value) if arg.type == "bool" else f"'{value}'"


class GrammarState(NamedTuple):
    """Where the grammar is: ``phase`` (see below), function token, argument index, sub-state, counter.

    The meaning of ``sub``/``n`` depends on the argument kind: string (sub 0 before the quote,
    1 inside with ``n`` characters so far, 2 after a backslash), enum/bool (``sub`` = trie node),
    number (``sub`` = lexer state | 8 when negative, ``n`` = magnitude digits so far).
    """

    phase: int
    fn: int = -1
    arg: int = 0
    sub: int = 0
    n: int = 0


# phases
_START, _OPEN, _ARG, _SEP, _END, _DONE = range(6)
# argument kinds
_K_STR, _K_TRIE, _K_NUM = range(3)
# string sub-states
_S_OPEN, _S_IN, _S_ESC = range(3)
# number lexer states (| _NEG for a negative number): _N_DOT + d = after "." with d decimals
_N_START, _N_MINUS, _N_INT, _N_ZERO, _N_DOT = range(5)
_NEG = 8
_NUMBER_PROBES = "-0123456789.,)"
# Everything that stops a run of plain string characters.
_STRING_STOP = re.compile(r"['\\<>\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TOKEN_RE = re.compile(r"<nexa_([0-9]+)>")

_SUB_BITS = 2  # string sub-state in the low bits of ``sub``; the span automaton's node above


def _joins(a: str, b: str) -> bool:
    """Whether ``a`` then ``b`` sit inside one word: both letters or digits of a spaced script
    (Chinese and Japanese characters are words of their own, so every position between them is a
    boundary)."""
    return _wordish(a) and _wordish(b)


def _wordish(c: str) -> bool:
    return c.isalnum() and not ("\u3040" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff")


_APOSTROPHES = "'\u2019"  # ' and ’


def inside_word(text: str, i: int) -> bool:
    """Whether position ``i`` of ``text`` (between ``text[i-1]`` and ``text[i]``) is inside a word,
    so no copied span may start or end there: between two letters or digits of a spaced script, and
    on either side of an apostrophe between two of them ("I'll", "don't", "Bob's")."""
    if i <= 0 or i >= len(text):
        return False
    a, b = text[i - 1], text[i]
    if _joins(a, b):
        return True
    if b in _APOSTROPHES:  # "I|'ll"
        return _wordish(a) and i + 1 < len(text) and _wordish(text[i + 1])
    if a in _APOSTROPHES:  # "I'|ll"
        return _wordish(b) and i >= 2 and _wordish(text[i - 2])
    return False


_FAR = 1 << 30  # "never": a span node from which no whole span can be reached
# Characters a call's string cannot hold even escaped: a copied span never runs through one (so a
# span such as "quotes' " before "<b>" is a dead end the grammar refuses to enter).
_UNCOPYABLE = re.compile(r"[<>\x00-\x1f\x7f-\x9f\u2028\u2029]")


class WordSpans:
    """The spans of a text that start and end at word boundaries, as a trie.

    ``step(node, ch)`` is the node after reading ``ch``, or None when the typed characters stop
    being the start of such a span; node 0 is the empty string. ``closable(node)``: the typed
    characters are a whole span (they end at a word boundary somewhere they start at one). A span
    never starts or ends with white space, and never starts or ends inside a word ("ing i" is not
    a span of "the meeting is cancelled"; "meeting is" is). Built in O(words x length).
    """

    def __init__(self, text: str, *, whole_only: bool = False) -> None:
        self.text = text
        n = len(text)
        starts = [i for i in range(n) if not text[i].isspace() and not inside_word(text, i)]
        ends = {j for j in range(1, n + 1) if not text[j - 1].isspace() and not inside_word(text, j)}
        if whole_only:  # the text itself and nothing else (one path: node k is k characters in)
            starts, ends = [0], {n}
        nxt: list[dict[str, int]] = [{}]
        closable = [False]
        last = max(ends, default=0)  # past it no span can end: no node there
        for i in starts:
            node = 0
            for j in range(i, last):
                ch = text[j]
                if _UNCOPYABLE.match(ch):
                    break
                child = nxt[node].get(ch)
                if child is None:
                    child = len(nxt)
                    nxt[node][ch] = child
                    nxt.append({})
                    closable.append(False)
                node = child
                if j + 1 in ends:
                    closable[node] = True
        self._next = nxt
        self._closable = closable
        # reach[node]: the fewest characters that make the typed span whole (0 where it is one).
        # Children are created after their parent, so one pass from the last node suffices.
        reach = [0 if c else _FAR for c in closable]
        for node in range(len(nxt) - 1, -1, -1):
            if not closable[node] and nxt[node]:
                reach[node] = 1 + min(reach[child] for child in nxt[node].values())
        self._reach = reach

    def step(self, node: int, ch: str) -> int | None:
        return self._next[node].get(ch)

    def closable(self, node: int) -> bool:
        return self._closable[node]

    def contains(self, text: str) -> bool:
        """Whether ``text`` is one of the spans (non-empty, word-aligned)."""
        node = 0
        for ch in text:
            node = self.step(node, ch)
            if node is None:
                return False
        return bool(text) and self.closable(node)

    def escapable(self, node: int) -> bool:
        """Whether a character that the call syntax escapes (``'`` or ``\\``) can come next."""
        return "'" in self._next[node] or "\\" in self._next[node]

    def reach(self, node: int) -> int:
        """The fewest characters still needed before the span typed so far can be closed."""
        return self._reach[node]

    def has_next(self, node: int) -> bool:
        """Whether some character can extend the span typed so far."""
        return bool(self._next[node])


_START_STATE = GrammarState(_START)
_DONE_STATE = GrammarState(_DONE)


def _overlaps(a: int, b: int, neg: int, lo: int, hi: int) -> bool:
    """Whether magnitudes [a, b] (negated when ``neg``) meet [lo, hi]."""
    if neg:
        a, b = -b, -a
    return a <= hi and lo <= b


def _milli_bound(bound: float, *, lower: bool) -> int:
    """Integer thousandths n such that ``n/1000 >= bound`` (lower) or ``<= bound`` (upper), tightest.

    Uses the same float comparison as the parser (``float(text)`` vs the float bound), so the
    grammar and :func:`~octopus_ros.functions.calls.check_value` agree at the edges.
    """
    n = int(bound * 1000)
    if lower:
        n -= 2
        while n / 1000 < bound:
            n += 1
    else:
        n += 2
        while n / 1000 > bound:
            n -= 1
    return n


class CallGrammar:
    """Grammar of canonical calls to the allowed functions of ``registry``.

    ``allowlist``: function names; None or empty = every enabled function. Disabled functions are
    never allowed; the registry's decline function always is (see
    :meth:`FunctionRegistry.allowed_names`).
    """

    def __init__(self, registry: FunctionRegistry, *, allowlist: Iterable[str] | None = None) -> None:
        self.registry = registry
        self.allowed_names = registry.allowed_names(allowlist)
        self.utterance: str | None = None  # set on the grammars returned by bind()
        self._span: WordSpans | None = None
        self._exact: WordSpans | None = None  # bind(copy=...): the one value of a lone copied argument
        self._base: CallGrammar = self
        self._trie: list[dict[str, int]] = [{}]  # node 0 unused: sub == 0 means "at the root"
        self._tokens: dict[str, int] = {}  # "<nexa_3>" -> 3, allowed functions only
        self._args: dict[int, tuple[tuple, ...]] = {}  # token -> compiled argument specs
        self._last: dict[int, int] = {}  # token -> index of the last argument (-1 if none)
        for spec in registry.functions:
            if spec.name not in self.allowed_names:
                continue
            self._tokens[spec.token_text] = spec.token
            self._args[spec.token] = tuple(self._compile(a) for a in spec.args)
            self._last[spec.token] = len(spec.args) - 1
        self._token_list = sorted(self._tokens.values())
        # named enum arguments: (token, argument index) -> ArgSpec; bind() narrows their values
        self._named_args = {
            (spec.token, i): a
            for spec in registry.functions
            if spec.token in self._args
            for i, a in enumerate(spec.args)
            if (a.type == "enum" and a.named) or (a.type in ("enum", "bool") and a.narrow)
        }
        # narrow int / float arguments: bind() offers them the numbers the request says
        self._number_args = {
            (spec.token, i): a
            for spec in registry.functions
            if spec.token in self._args
            for i, a in enumerate(spec.args)
            if a.type in ("int", "float") and a.narrow
        }
        # names_object string arguments: bind(objects=) narrows them to the objects the request names
        self._object_args = {
            (spec.token, i): a
            for spec in registry.functions
            if spec.token in self._args
            for i, a in enumerate(spec.args)
            if a.names_object  # the registry allows it on strings that are not copied only
        }
        self._narrowed: frozenset[int] = frozenset()  # bind(): functions with a narrowed argument
        # functions with a copied argument: their states depend on the bound utterance
        self._copy_fns = frozenset(
            t for t, specs in self._args.items() if any(sp[0] == _K_STR and sp[2] for sp in specs)
        )
        # ... and those with exactly one: the span copier's value applies to them (bind(copy=))
        self._lone_copy = {
            t: max(sp[1] for sp in specs if sp[0] == _K_STR and sp[2])
            for t, specs in self._args.items()
            if sum(sp[0] == _K_STR and sp[2] for sp in specs) == 1
        }
        log.debug("call grammar for %s", sorted(self.allowed_names))

    def bind(
        self, utterance: str, *, copy: str | None = None, objects: Iterable[str] | None = None
    ) -> CallGrammar:
        """This grammar for one utterance: arguments declared ``source: utterance`` accept only
        spans of ``utterance`` (pass the text exactly as the model reads it). Cheap: the compiled
        tables are shared; only the utterance's span trie is built.

        ``copy``: one span of the utterance (see :meth:`is_span`) that is then the only value a
        function with exactly one copied argument accepts for it (the span copier's choice,
        lean/copier.py); the grammar forces it, so jump-forward writes it without a choice.
        Functions with several copied arguments keep every span. ValueError for a ``copy`` that
        is not a span.

        ``objects``: the object phrases the request names, as the model writes them ("blue keys";
        the runtime's grounding vocabulary gives them). A ``names_object`` argument then accepts
        only one of them; None or empty leaves it a free string. Phrases that such an argument
        could not hold (too long, quotes, ``<``) are left out."""
        if not isinstance(utterance, str):
            raise TypeError(f"utterance must be text, got {type(utterance).__name__}")
        bound = _copy.copy(self._base)
        bound.utterance = utterance
        bound._span = WordSpans(utterance) if self._copy_fns else None
        bound._exact = None
        bound._narrow(utterance)
        if objects:
            bound._narrow_objects(tuple(objects))
        if copy is not None:
            if bound._span is None or not bound.is_span(copy):
                raise ValueError(f"{copy!r} is not a word-aligned span of the utterance {utterance!r}")
            too_long = [t for t, limit in self._lone_copy.items() if len(copy) > limit]
            if too_long:
                raise ValueError(f"{copy!r} is longer than a copied argument allows")
            bound._exact = WordSpans(copy, whole_only=True)
        return bound

    def _narrow(self, utterance: str) -> None:
        """Named enum arguments, and ``narrow`` enum / bool ones, accept only the values
        ``utterance`` says (all when it says none; a bool's values are said by its ``examples``).
        A ``narrow`` value said right after a negation ("卫生间的灯别开着了") is not counted as
        said (functions/mentions.says ``plainly``); a ``narrow`` bool said only that way is
        offered its other value (off); a ``named`` value is counted as said, as the runtime's
        check of the same rule counts it. ``narrow`` int / float arguments accept only the numbers
        ``utterance`` says (functions/numbers.py) within their min..max, as a call writes them;
        all values when none is in range, or when one would be a prefix of another ("0.2" and
        "0.25": a number has no closing quote to end it in the trie)."""
        offered: dict[tuple[int, int], list[str]] = {}
        for key, arg in self._named_args.items():
            values = _choices(arg)
            said = said_values(arg, utterance)
            if said and len(said) < len(values):
                offered[key] = [_literal(arg, v) for v in said]
        numbers = said_numbers(utterance) if self._number_args else []
        for key, arg in self._number_args.items():
            if arg.type == "int":
                said = [str(int(v)) for v in numbers if float(v).is_integer()]
            else:
                said = [format_float(v) for v in numbers]
            said = [t for t in dict.fromkeys(said) if arg.min <= float(t) <= arg.max]
            if said and not any(a != b and b.startswith(a) for a in said for b in said):
                offered[key] = said
        self._offer_only(offered)

    def _narrow_objects(self, phrases: tuple[str, ...]) -> None:
        """``names_object`` string arguments accept only ``phrases`` (those such an argument can
        hold), as an enum-like trie."""
        offered: dict[tuple[int, int], list[str]] = {}
        for key, arg in self._object_args.items():
            fits = [
                p
                for p in dict.fromkeys(phrases)
                if 0 < len(p) <= arg.max_length and not _STRING_STOP.search(p)
            ]
            if fits:
                offered[key] = [f"'{p}'" for p in fits]
        self._offer_only(offered)

    def _offer_only(self, offered: dict[tuple[int, int], list[str]]) -> None:
        """Each argument ``(function token, index)`` of ``offered`` accepts only its call texts
        ("'kitchen'", "True", "0.8"): a trie argument in this grammar's own copies of the argument
        and node tables (the shared ones are never changed), and its function is narrowed."""
        if not offered:
            return
        if self._trie is self._base._trie:
            self._trie = list(self._base._trie)
        args = dict(self._args)
        for (fn, i), words in offered.items():
            specs = list(args[fn])
            specs[i] = (_K_TRIE, self._build_trie(words))
            args[fn] = tuple(specs)
        self._args = args
        self._narrowed = self._narrowed | frozenset(fn for fn, _ in offered)

    def without_copying(self) -> CallGrammar:
        """This bound grammar without the functions that take the copier's span (those with
        exactly one copied argument): the request asks for none of them (lean/copier.copy_span,
        functions/mentions.asks_nothing). The decline function always stays."""
        if self is self._base:
            raise ValueError("without_copying() applies to a bound grammar (bind())")
        drop = set(self._lone_copy) - {self.registry.decline_function.token}
        self._tokens = {text: t for text, t in self._tokens.items() if t not in drop}
        self._token_list = [t for t in self._token_list if t not in drop]
        return self

    def _span_of(self, fn: int) -> WordSpans | None:
        """The span trie a copied argument of function ``fn`` reads."""
        if self._exact is not None and fn in self._lone_copy:
            return self._exact
        return self._span

    def copies_text(self) -> bool:
        """Whether an allowed function has a ``source: utterance`` argument."""
        return bool(self._copy_fns)

    def is_span(self, text: str) -> bool:
        """Whether ``text`` is a word-aligned span of the bound utterance (what a copied argument
        may be)."""
        return self._span is not None and self._span.contains(text)

    def cache_key(self, state: GrammarState) -> object:
        """What a cache of :meth:`advance` results must key on besides the state: the unbound
        grammar where the utterance cannot matter (so every request shares those entries),
        this bound grammar inside a function with a copied or narrowed named argument."""
        if state[1] in self._narrowed or (self._span is not None and state[1] in self._copy_fns):
            return self
        return self._base

    def _compile(self, arg) -> tuple:
        if arg.type == "string":
            return (_K_STR, arg.max_length, arg.source == "utterance")
        if arg.type in ("enum", "bool"):
            return (_K_TRIE, self._build_trie([_literal(arg, v) for v in _choices(arg)]))
        if arg.type == "int":
            lo, hi, scale, decimals = arg.min, arg.max, 1, 0
        else:
            lo, hi = _milli_bound(arg.min, lower=True), _milli_bound(arg.max, lower=False)
            scale, decimals = 1000, 3
        return (_K_NUM, lo, hi, scale, decimals, max(abs(lo), abs(hi)))

    def _build_trie(self, words: list[str]) -> int:
        root = len(self._trie)
        self._trie.append({})
        for word in words:
            node = root
            for ch in word:
                nxt = self._trie[node].get(ch)
                if nxt is None:
                    nxt = len(self._trie)
                    self._trie.append({})
                    self._trie[node][ch] = nxt
                node = nxt
        return root

    # -- public API ---------------------------------------------------------------------------
    def start(self) -> GrammarState:
        """The state before the functional token."""
        return _START_STATE

    def allowed_function_tokens(self) -> list[int]:
        """Token indices i of the ``<nexa_i>`` that may start a call, ascending."""
        return list(self._token_list)

    def is_complete(self, state: GrammarState) -> bool:
        """True once ``<nexa_end>`` has been consumed."""
        return state[0] == _DONE

    def accepts(self, text: str) -> bool:
        """Whether ``text`` is one complete call of this grammar."""
        state = self.advance(_START_STATE, text)
        return state is not None and state[0] == _DONE

    def advance(self, state: GrammarState, text: str) -> GrammarState | None:
        """The state after consuming ``text`` from ``state``, or None if the grammar forbids it."""
        phase, fn, arg, sub, n = state
        i, end = 0, len(text)
        while i < end:
            if phase == _ARG:
                spec = self._args[fn][arg]
                kind = spec[0]
                if kind == _K_STR:
                    span = self._span_of(fn) if spec[2] else None
                    node, sub = sub >> _SUB_BITS, sub & ((1 << _SUB_BITS) - 1)
                    if sub == _S_IN:
                        m = _STRING_STOP.search(text, i)
                        j = end if m is None else m.start()
                        if j > i:  # a run of plain characters
                            n += j - i
                            if n > spec[1]:
                                return None
                            if span is not None:
                                for c in text[i:j]:
                                    node = span.step(node, c)
                                    if node is None:
                                        return None
                                if n + span.reach(node) > spec[1]:
                                    return None  # no whole span fits in max_length from here
                            sub, i = _S_IN | node << _SUB_BITS, j
                            continue
                        c = text[i]
                        if c == "'":
                            if n == 0 or (span is not None and not span.closable(node)):
                                return None
                            phase, sub, n = _SEP, 0, 0
                        elif c == "\\" and n < spec[1] and (span is None or span.escapable(node)):
                            sub = _S_ESC | node << _SUB_BITS
                        else:
                            return None
                    elif sub == _S_OPEN:
                        if text[i] != "'":
                            return None
                        sub = _S_IN
                    else:  # after a backslash
                        if text[i] not in "\\'":
                            return None
                        if span is not None:
                            node = span.step(node, text[i])
                            if node is None or n + 1 + span.reach(node) > spec[1]:
                                return None
                        sub, n = _S_IN | node << _SUB_BITS, n + 1
                    i += 1
                elif kind == _K_TRIE:
                    nxt = self._trie[sub or spec[1]].get(text[i])
                    if nxt is None:
                        return None
                    if self._trie[nxt]:
                        sub = nxt
                    else:  # a leaf: the whole value (with its closing quote) is typed
                        phase, sub = _SEP, 0
                    i += 1
                else:
                    step = self._number_step(spec, sub, n, text[i])
                    if step is None:
                        return None
                    if step[0] < 0:  # number complete; the separator is handled as _SEP
                        phase, sub, n = _SEP, 0, 0
                    else:
                        sub, n = step
                        i += 1
            elif phase == _SEP:
                c = text[i]
                if sub == 0:
                    if c == ")" and arg == self._last[fn]:
                        phase = _END
                    elif c == "," and arg < self._last[fn]:
                        sub = 1
                    else:
                        return None
                else:
                    if c != " ":
                        return None
                    phase, arg, sub = _ARG, arg + 1, 0
                i += 1
            elif phase == _START:
                m = _TOKEN_RE.match(text, i)
                if m is None or m.group(0) not in self._tokens:
                    return None
                phase, fn, arg = _OPEN, self._tokens[m.group(0)], 0
                i = m.end()
            elif phase == _OPEN:
                if text[i] != "(":
                    return None
                if self._last[fn] < 0:
                    phase, arg = _SEP, -1
                else:
                    phase, arg = _ARG, 0
                i += 1
            elif phase == _END:
                if not text.startswith(NEXA_END, i):
                    return None
                return _DONE_STATE if i + len(NEXA_END) == end else None
            else:  # _DONE: nothing may follow
                return None
        return GrammarState(phase, fn, arg, sub, n)

    def _number_step(self, spec: tuple, sub: int, n: int, c: str) -> tuple[int, int] | None:
        """Next (sub, n) of a number after character ``c``; (-1, 0) if ``c`` ends it; None if invalid."""
        _, lo, hi, scale, decimals, bound = spec
        code, neg = sub & 7, sub & _NEG
        if "0" <= c <= "9":
            d = ord(c) - 48
            if code in (_N_START, _N_MINUS):
                if d == 0 and code == _N_MINUS and decimals == 0:
                    return None  # "-0"
                mag = d
                new_code = _N_ZERO if d == 0 else _N_INT
            elif code == _N_INT:
                mag, new_code = n * 10 + d, _N_INT
            elif code >= _N_DOT and code - _N_DOT < decimals:
                v, k = n * 10 + d, code - _N_DOT + 1
                f = 10 ** (decimals - k)
                if not _overlaps(v * f, (v + 1) * f - 1, neg, lo, hi):
                    return None
                return (_N_DOT + k) | neg, v
            else:
                return None
            # integer part so far = mag; can more digits (and decimals) still land in range?
            a, b = mag * scale, (mag + 1) * scale - 1
            while True:
                if _overlaps(a, b, neg, lo, hi):
                    return new_code | neg, mag
                if mag == 0 or new_code == _N_ZERO or a > bound:
                    return None
                a, b = a * 10, (b + 1) * 10 - 1
        if c == "-":
            return (_N_MINUS | _NEG, 0) if code == _N_START and lo < 0 else None
        if c == ".":
            if decimals == 0 or code not in (_N_INT, _N_ZERO):
                return None
            if not _overlaps(n * scale, (n + 1) * scale - 1, neg, lo, hi):
                return None
            return _N_DOT | neg, n
        if c == "," or c == ")":
            if decimals:
                if code <= _N_DOT:
                    return None
                value = n * 10 ** (decimals - (code - _N_DOT))
            elif code in (_N_INT, _N_ZERO):
                value = n
            else:
                return None
            if neg:
                value = -value
            return (-1, 0) if lo <= value <= hi else None
        return None

    def forced(self, state: GrammarState) -> str:
        """The longest text the grammar forces from ``state`` ("" where a real choice exists).

        E.g. ``"('"`` after ``<nexa_0>`` (a string argument), ``")<nexa_end>"`` after the closing
        quote of the last argument, the rest of an enum value once only one value fits. From the
        start it is the functional token only when exactly one function is allowed.
        """
        out = []
        while True:
            piece = self._forced_piece(state)
            if not piece:
                return "".join(out)
            state = self.advance(state, piece)
            if state is None:  # cannot happen; keep forced() total
                log.error("forced piece %r rejected by the grammar", piece)
                return ""
            out.append(piece)

    def _forced_piece(self, state: GrammarState) -> str:
        phase, fn, arg, sub, n = state
        if phase == _START:
            return f"<nexa_{self._token_list[0]}>" if len(self._token_list) == 1 else ""
        if phase == _OPEN:
            return "("
        if phase == _SEP:
            if sub == 1:
                return " "
            return ")" if arg == self._last[fn] else ","
        if phase == _END:
            return NEXA_END
        if phase == _DONE:
            return ""
        spec = self._args[fn][arg]
        if spec[0] == _K_STR:
            node, sub = sub >> _SUB_BITS, sub & ((1 << _SUB_BITS) - 1)
            if sub == _S_OPEN or (sub == _S_IN and n == spec[1]):
                return "'"
            span = self._span_of(fn) if spec[2] else None
            if sub == _S_IN and n > 0 and span is not None and not span.has_next(node):
                return "'"  # the span reached the end of the utterance: only closing is left
            if sub == _S_IN and span is not None and span is self._exact and not span.closable(node):
                # the copier's span: the rest of it is forced (node k of its one path = k characters)
                return span.text[node:].replace("\\", "\\\\").replace("'", "\\'")
            return ""
        if spec[0] == _K_TRIE:
            children = self._trie[sub or spec[1]]
            return next(iter(children)) if len(children) == 1 else ""
        allowed = [c for c in _NUMBER_PROBES if self.advance(state, c) is not None]
        return allowed[0] if len(allowed) == 1 else ""

    def __repr__(self) -> str:
        bound = "" if self.utterance is None else f", bound to {self.utterance[:30]!r}"
        return f"CallGrammar({sorted(self.allowed_names)}{bound})"
