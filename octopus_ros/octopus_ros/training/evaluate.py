"""Exact-match evaluation of a checkpoint on the held-out splits of the synthetic world.

A prediction is correct when the decoded call equals the expected call exactly (function
and every argument, canonical text). The model runs through the same runtime and decoding
mode as the node (``Octopus.decide(..., mode="constrained")``). Results are broken down by
split, language and function, and by how each split's instructions pick their object
(named: "pick up the red cup", deictic: "pick that up", text: no image needed), with a
confusion summary, printed as tables.

The ``natural`` split is the hand-written natural set (:mod:`octopus_ros.data.natural`): requests
as people say them, out-of-scope and unsafe requests, objects not in view, free-text messages,
colourless references and degraded camera frames. Its headline figure is **published wrong**:
the share of requests on which the node would publish an action that is not the expected one,
including any action for a request that should be declined.

The ``natural_check`` split is the **check set** (``natural_check.yaml`` beside the natural set):
requests written by an author who saw only the function registry without its phrasings and the
world's vocabulary, never the templates nor the natural set, and measured only for decisions
already taken on the natural set. Its figures are printed without its cases, so that no rule is
written from them (docs/training.md, "The check set"). The ``natural_third`` split is the **third set**
(``natural_third.yaml``), written the same way by another author in stop 30, after the check set
had been used to compare the novelty limits; figures only as well. ``natural_messages`` (stop 33)
asks only for messages; ``natural_chatty`` (stop 44) is long, chatty speech of every kind, read
when two of the copier's and object rules were written (docs/training.md item 45);
``natural_asr`` (stop 46) is speech as a recogniser writes it and ``natural_fresh`` (stop 46)
requests as different people say them, both read when stop 46's rules were written (item 47);
``natural_voices``, ``natural_situations`` and ``natural_week`` (stop 47) were each measured once
before they were read, then read when stop 47's rules were written (item 48), ``natural_holiday``
(stop 48) the same way for stop 48's (item 49), ``natural_workday`` (stop 49) for stop 49's (item
50), ``natural_rainy`` (stop 50) for stop 50's (item 51) and ``natural_flat`` (stop 51) for stop 51's
(item 52); ``natural_care`` (stop 52) was measured once before it was read (item 53). The cases of
these fourteen sets stay out of the printed
report and the metrics (the natural set's are printed).

Results go to ``runs/evaluate/metrics.json`` (``--out``); ``--write-model-metrics`` also updates
the checkpoint's own ``metrics.json`` (the bundled model's file is tracked: only on purpose).

Examples per split: ``--n`` (:data:`EVAL_N`, 3000). The splits are draws, so each figure carries a
sampling error: at 300 per split a 90 % figure has a standard error of 1.7 points (0.6 at 99 %),
and a registry change that moves the draws moved the bundled model's figures by up to 3.3 points;
at 3000 it is 0.5 points. Each figure is printed with its 95 % interval (Wilson).

The **absent-object probe** (:func:`evaluate_absent`, ``--no-absent`` to skip it) asks, on
rendered scenes, for objects that are not in view (the category absent, or only in another
colour) and counts the requests the node would act on: the figure the written sets' 30–60
absent objects each can only give to within several points.

usage: python -m octopus_ros.training.evaluate CHECKPOINT [--n 3000] [--seed 1234] [--precision fp32]
           [--no-natural] [--no-check] [--no-absent] [--out runs/evaluate/metrics.json] [--write-model-metrics]
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import logging
import math
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from octopus_ros.cli import number
from octopus_ros.data import generate
from octopus_ros.data.natural import (
    ASR_SET_PATH,
    CARE_SET_PATH,
    CHATTY_SET_PATH,
    CHECK_SET_PATH,
    FLAT_SET_PATH,
    FRESH_SET_PATH,
    HOLIDAY_SET_PATH,
    MESSAGES_SET_PATH,
    RAINY_SET_PATH,
    SITUATIONS_SET_PATH,
    THIRD_SET_PATH,
    VOICES_SET_PATH,
    WEEK_SET_PATH,
    WORKDAY_SET_PATH,
)
from octopus_ros.runtime.second_opinion import missing_folder, same_functions, second_opinion_dir

# examples per split of a command-line evaluation: at 3000 a 90 % figure's standard error is 0.5
# points (1.7 at the 300 used before stop 41, whose draws put the bundled model at the targets)
EVAL_N = 3000
EVAL_SPLITS = ("iid", "unseen_phrasing", "unseen_combo")
CHECK_TITLE = "check set (written apart from templates and natural set; figures only)"
THIRD_TITLE = "third set (written apart from templates and both sets, stop 30; figures only)"
MESSAGES_TITLE = "message set (send_message only, written apart from everything else, stop 33; figures only)"
CHATTY_TITLE = "chatty set (long, chatty requests, written apart, stop 44; read for the rules of stops 44-45)"
ASR_TITLE = (
    "ASR set (speech as a recogniser writes it, written apart, stop 46; read for the rules of stop 46)"
)
FRESH_TITLE = (
    "fresh set (requests as different people say them, written apart, stop 46; read after its first runs)"
)
VOICES_TITLE = (
    "voices set (requests in five people's voices, written apart, stop 47; read after its first run)"
)
SITUATIONS_TITLE = (
    "situations set (requests in household situations, written apart, stop 47; read after its first run)"
)
WEEK_TITLE = "week set (an ordinary week's requests, written apart, stop 47; read after its first run)"
HOLIDAY_TITLE = "holiday set (a holiday weekend's requests, written apart, stop 48; read after its first run)"
WORKDAY_TITLE = "workday set (a busy weekday's requests, written apart, stop 49; read after its first run)"
RAINY_TITLE = (
    "rainy set (a rainy family weekend's requests, written apart, stop 50; read after its first run)"
)
FLAT_TITLE = "flat set (a shared flat's requests, written apart, stop 51; read after its first run)"
CARE_TITLE = "care set (an elderly grandmother's home, written apart, stop 52; read after its first run)"
# the written sets besides the natural set: metrics key, file, title
FIGURE_SETS = (
    ("natural_check", CHECK_SET_PATH, CHECK_TITLE),
    ("natural_third", THIRD_SET_PATH, THIRD_TITLE),
    ("natural_messages", MESSAGES_SET_PATH, MESSAGES_TITLE),
    ("natural_chatty", CHATTY_SET_PATH, CHATTY_TITLE),
    ("natural_asr", ASR_SET_PATH, ASR_TITLE),
    ("natural_fresh", FRESH_SET_PATH, FRESH_TITLE),
    ("natural_voices", VOICES_SET_PATH, VOICES_TITLE),
    ("natural_situations", SITUATIONS_SET_PATH, SITUATIONS_TITLE),
    ("natural_week", WEEK_SET_PATH, WEEK_TITLE),
    ("natural_holiday", HOLIDAY_SET_PATH, HOLIDAY_TITLE),
    ("natural_workday", WORKDAY_SET_PATH, WORKDAY_TITLE),
    ("natural_rainy", RAINY_SET_PATH, RAINY_TITLE),
    ("natural_flat", FLAT_SET_PATH, FLAT_TITLE),
    ("natural_care", CARE_SET_PATH, CARE_TITLE),
)
_NEXA = re.compile(r"<nexa_(\d+)>")
log = logging.getLogger(__name__)


def _function_of(text: str, registry: Any) -> str:
    m = _NEXA.match(text or "")
    spec = registry.by_token(int(m.group(1))) if m else None
    return spec.name if spec is not None else "<invalid>"


def node_action(
    decision: Any,
    registry: Any,
    threshold: float,
    grounding: float | None = None,
    utterance: str | None = None,
    *,
    safety_screen: str | None = None,
    novelty_limits: bool = True,
    max_text_novelty: float | None = -1.0,
    max_request_novelty: float | None = -1.0,
    second_opinion: Any = None,
    image: Any = None,
) -> str:
    """How the node would act on a decision: ``'declined'`` (NO_ACTION), ``'published'`` (OK)
    or ``'held_back'`` (any other outcome), by the engine's own rule
    (:func:`octopus_ros.runtime.outcomes.decision_outcome`, every enabled function allowed,
    the node's default novelty limits and safety screen (applied to ``utterance``; None: not
    screened), ``grounding`` the NOT_IN_VIEW threshold or None: :func:`node_grounding` gives the
    node's default for a model). ``safety_screen`` (the node parameter's setting; None: its
    default) and ``novelty_limits=False`` (no "not understood" / "image unlike training") change
    the node's settings, as ``training/rule_ablation.py`` does; ``max_text_novelty`` /
    ``max_request_novelty``: that limit (None: off; negative: the node's default), as
    ``training/novelty_sweep.py`` sweeps them. ``second_opinion`` (a second model, as the node's
    parameter of that name loads it; None: off): a call that would be published is published only
    when that model, deciding ``utterance`` on ``image`` under the same settings (its own grounding
    head at the node's default), makes the same call
    (:func:`octopus_ros.runtime.second_opinion.second_opinion_outcome`)."""
    from octopus_ros.functions import validate_call
    from octopus_ros.runtime.engine import EngineConfig
    from octopus_ros.runtime.outcomes import OutcomeCode, decision_outcome, request_limit
    from octopus_ros.runtime.safety import screen_from_setting
    from octopus_ros.runtime.second_opinion import judge_second_decision

    defaults = EngineConfig()

    def limit(value: float | None, default: float) -> float | None:
        if not novelty_limits or value is None:
            return None
        value = default if value < 0 else value
        return value if value > 0 else None

    def outcome(d: Any, grounding_threshold: float | None) -> tuple[OutcomeCode, str]:
        return decision_outcome(
            d,
            registry,
            functools.partial(validate_call, registry=registry),
            allowlist=None,
            threshold=threshold,
            max_text_novelty=limit(max_text_novelty, defaults.max_text_novelty),
            max_image_novelty=limit(-1.0, defaults.max_image_novelty),
            max_request_novelty=request_limit(limit(max_request_novelty, defaults.max_request_novelty)),
            grounding_threshold=grounding_threshold,
            utterance=utterance,
            screen=screen_from_setting(defaults.safety_screen if safety_screen is None else safety_screen),
        )

    code, _ = outcome(decision, grounding)
    if code == OutcomeCode.OK and second_opinion is not None:
        second = second_opinion.decide(utterance, image, mode=decode_mode(second_opinion))
        second_code, second_reason = outcome(second, node_grounding(second_opinion))
        rules = getattr(second_opinion, "grounding", None)
        code, _ = judge_second_decision(
            registry, rules, utterance, decision.call, second, second_code, second_reason
        )
    if code == OutcomeCode.NO_ACTION:
        return "declined"
    return "published" if code == OutcomeCode.OK else "held_back"


def decode_mode(octopus: Any) -> str:
    """The decoding mode the node runs ``octopus`` in: constrained for a functional-token model, plain
    (free generation, the text parsed as JSON) for a JSON-answer model (functions/answer_format.py)."""
    from octopus_ros.functions.answer_format import decode_mode_for

    return decode_mode_for(getattr(getattr(octopus, "config", None), "answer_format", "functional"))


def node_grounding(octopus: Any) -> float | None:
    """The NOT_IN_VIEW threshold the node uses for ``octopus`` by default (None: no check)."""
    from octopus_ros.runtime.engine import EngineConfig
    from octopus_ros.runtime.outcomes import grounding_threshold_for

    return grounding_threshold_for(EngineConfig().grounding_threshold, octopus)


def evaluate(
    octopus: Any,
    *,
    n: int = 300,
    seed: int = 1234,
    splits=EVAL_SPLITS,
    progress: bool = True,
    threshold: float | None = None,
    natural: bool = False,
    check: bool = False,
    second_opinion: Any = None,
    rows_out: list | None = None,
    absent: bool = False,
    natural_items: list | None = None,
) -> dict:
    """Run ``octopus`` on ``n`` examples of each split; returns the metrics dict.

    ``natural_items``: with ``natural``, these requests (NaturalItem) instead of the natural set as
    loaded (a registry that adds functions may change what some of its requests should get).

    ``absent``: also the absent-object probe (``metrics["absent_probe"]``, :func:`evaluate_absent`,
    ``n`` draws per split).

    ``rows_out``: a list that receives the per-example rows of the splits (split, language,
    expected, got, correct, ...), in the order the examples were drawn.

    ``second_opinion``: a second model the node consults before it publishes (its parameter of
    that name; None: off), for every "as the node would act" figure (:func:`node_action`).

    ``threshold``: the node's confidence threshold (default: the engine's default), used
    for the "as the node would act" summary: which answers it would publish, decline, or
    hold back. ``natural``: also evaluate the natural set (``metrics["natural"]``, see
    :func:`evaluate_natural`). ``check``: also the check set (``metrics["natural_check"]``).
    """
    from tqdm import tqdm

    from octopus_ros.runtime.engine import EngineConfig

    if threshold is None:
        threshold = EngineConfig().confidence_threshold

    registry = octopus.registry
    grounding = node_grounding(octopus)
    mode = decode_mode(octopus)
    rows = []
    for split in splits:
        examples = generate(split, n, seed)
        for ex in tqdm(examples, desc=f"eval {split}", disable=not progress, leave=False):
            d, ms, action = _decide_as_node(octopus, ex, mode, threshold, grounding, second_opinion)
            got = _got(d)
            rows.append(
                {
                    "split": split,
                    "language": ex.language,
                    "function": ex.function,
                    "mode": ex.mode,
                    "expected": ex.answer,
                    "got": got,
                    "correct": got == ex.answer,
                    "function_correct": _function_of(got, registry) == ex.function,
                    "action": action,
                    "ms": ms,
                }
            )
    if rows_out is not None:
        rows_out.extend(rows)
    metrics = summarize(rows) if rows else {}
    metrics["node_threshold"] = threshold
    metrics["decode_mode"] = mode
    if absent:
        metrics["absent_probe"] = evaluate_absent(
            octopus, n=n, seed=seed, threshold=threshold, progress=progress, second_opinion=second_opinion
        )
    if natural:
        metrics["natural"] = evaluate_natural(
            octopus,
            threshold=threshold,
            progress=progress,
            second_opinion=second_opinion,
            items=natural_items,
        )
    if check:
        from octopus_ros.data.natural import load_natural_set

        for key, path, _ in FIGURE_SETS:
            items = load_natural_set(path, registry=registry)
            metrics[key] = evaluate_natural(
                octopus,
                threshold=threshold,
                progress=progress,
                items=items,
                desc=f"eval {key}",
                second_opinion=second_opinion,
            )
            # these sets' cases stay out of the report: only their figures are kept
            metrics[key].pop("published_wrong_examples", None)
    return metrics


def _decide_as_node(
    octopus: Any, ex: Any, mode: str, threshold: float, grounding: float | None, second_opinion: Any
) -> tuple[Any, float, str]:
    """One generated example decided as the node decides it: (decision, milliseconds the model
    took, :func:`node_action`)."""
    t0 = time.perf_counter()
    d = octopus.decide(ex.instruction, ex.image, mode=mode)
    ms = (time.perf_counter() - t0) * 1000
    action = node_action(
        d,
        octopus.registry,
        threshold,
        grounding,
        ex.instruction,
        second_opinion=second_opinion,
        image=ex.image,
    )
    return d, ms, action


def _got(d: Any) -> str:
    return d.call.to_text() if d.call is not None else f"<error {d.error.kind if d.error else '?'}>"


# ----------------------------------------------------------------------------- the absent-object probe
ABSENT_SPLITS = ("iid", "unseen_phrasing")
ABSENT_KINDS = ("absent", "colour")  # the named category not in view; in view in another colour only


def evaluate_absent(
    octopus: Any,
    *,
    n: int,
    seed: int,
    threshold: float,
    progress: bool = True,
    second_opinion: Any = None,
    splits: tuple[str, ...] = ABSENT_SPLITS,
    rows_out: list | None = None,
) -> dict:
    """The **absent-object probe**: named requests to act on an object that is not in view, on
    thousands of rendered scenes, as the node would act. The held-out splits always show the named
    object, and the written sets hold 30–60 absent objects each, so the node's last line against
    acting on what is not there (the model's decline, the grounding head's ``NOT_IN_VIEW``, its
    colour check, the second opinion) has no precise figure without it.

    For each of ``splits``, ``n`` draws of the functions that need their object in view (the
    registry's ``requires_view``), each named request shown either with a scene that lacks the
    named category (kind ``absent``) or with the category only in other colours than the named
    one (kind ``colour``; :func:`octopus_ros.data.generate` ``named_decoy`` / ``colour_decoy``
    with the decline as the answer); the draws that are not such requests (deictic or text ones)
    are left out. Every such request should end without an action. Figures per kind and language:
    ``manipulation_published`` (a call of a ``requires_view`` function published: the issue's
    "absent objects acted on") and ``any_published`` (any call, a search included), with the 95 %
    interval of the first. ``rows_out`` receives the per-request rows."""
    from tqdm import tqdm

    registry = octopus.registry
    functions = [s.name for s in registry.enabled() if s.requires_view]
    grounding = node_grounding(octopus)
    mode = decode_mode(octopus)
    rows = []
    for split in splits:
        examples = generate(
            split,
            n,
            seed,
            functions=functions,
            named_decoy=0.5,
            colour_decoy=0.5,
            decline_absent=True,
            decline_recoloured=True,
        )
        for ex in tqdm(examples, desc=f"absent probe {split}", disable=not progress, leave=False):
            if ex.decoy_kind not in ABSENT_KINDS:
                continue
            d, _, action = _decide_as_node(octopus, ex, mode, threshold, grounding, second_opinion)
            spec = registry.by_name(d.call.function) if d.ok else None
            published = action == "published" and spec is not None and not spec.decline
            rows.append(
                {
                    "split": split,
                    "kind": ex.decoy_kind,
                    "language": ex.language,
                    "function": ex.function,
                    "instruction": ex.instruction,
                    "got": _got(d),
                    "action": action,
                    "any_published": published,
                    "manipulation_published": published and spec.requires_view,
                }
            )
    if rows_out is not None:
        rows_out.extend(rows)
    return summarize_absent(rows)


def summarize_absent(rows: list[dict]) -> dict:
    """:func:`evaluate_absent`'s figures: ``{"all" | kind | language | f"{kind}/{language}": {n,
    manipulation_published, manipulation_published_ci95, any_published}}``."""
    groups: dict[str, list[dict]] = collections.defaultdict(list)
    for r in rows:
        for key in ("all", r["kind"], f"{r['kind']}/{r['language']}", r["language"]):
            groups[key].append(r)
    out = {}
    for key, rs in groups.items():
        acted = sum(r["manipulation_published"] for r in rs)
        out[key] = {
            "n": len(rs),
            "manipulation_published": acted / len(rs),
            "manipulation_published_ci95": list(wilson_interval(acted, len(rs))),
            "any_published": sum(r["any_published"] for r in rs) / len(rs),
        }
    return out


def format_absent(m: dict) -> str:
    """The absent-object probe as a table."""
    lines = [
        "absent-object probe (named requests, object not in view; rendered scenes, as the node would act):",
        f"{'kind':26s} {'n':>5s} {'ACTED ON':>9s} {'95 % interval':>15s} {'any call':>9s}",
    ]
    labels = {"absent": "category not in view", "colour": "named colour not in view", "all": "all"}
    for key in ("absent", "colour", "all"):
        if key not in m:
            continue
        v = m[key]
        interval = format_interval(*v["manipulation_published_ci95"])
        lines.append(
            f"{labels[key]:26s} {v['n']:5d} {v['manipulation_published']:9.1%} {interval:>15s}"
            f" {v['any_published']:9.1%}"
        )
    by_lang = [f"{lang} {m[lang]['manipulation_published']:.1%}" for lang in ("en", "zh") if lang in m]
    if by_lang:
        lines.append(f"acted on by language: {', '.join(by_lang)}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the natural set
def evaluate_natural(
    octopus: Any,
    *,
    threshold: float,
    progress: bool = True,
    items: list | None = None,
    desc: str = "eval natural",
    act: Callable[..., str] | None = None,
    rows_out: list | None = None,
    second_opinion: Any = None,
) -> dict:
    """Run ``octopus`` on the natural set (or ``items``, a list of NaturalItem) as the node would
    act at ``threshold``; returns :func:`summarize_natural` of the rows. ``act``: how the node acts
    on a decision (default :func:`node_action`; called as ``act(decision, registry, threshold,
    grounding, utterance)``); ``rows_out``: a list that receives the per-request rows;
    ``second_opinion``: the second model the default rule consults (:func:`node_action`)."""
    from tqdm import tqdm

    from octopus_ros.data.natural import load_natural_set

    registry = octopus.registry
    grounding = node_grounding(octopus)
    mode = decode_mode(octopus)
    items = load_natural_set(registry=registry) if items is None else items
    rows = []
    for item in tqdm(items, desc=desc, disable=not progress, leave=False):
        expected = item.expected_text(registry)
        frame = item.frame()
        d = octopus.decide(item.text, frame, mode=mode)
        got = _got(d)
        if act is not None:
            action = act(d, registry, threshold, grounding, item.text)
        else:
            action = node_action(
                d, registry, threshold, grounding, item.text, second_opinion=second_opinion, image=frame
            )
        right = action == "declined" if expected is None else got == expected
        rows.append(
            {
                "id": item.id,
                "language": item.language,
                "kind": item.kind,
                "expected": expected or "decline",
                "got": got,
                "confidence": float(d.confidence),
                "action": action,
                "decoded_right": right if expected is None else got == expected,
                "published_right": action == "published" and expected is not None and got == expected,
                "published_wrong": action == "published" and (expected is None or got != expected),
            }
        )
    if rows_out is not None:
        rows_out.extend(rows)
    return summarize_natural(rows)


DECLINE_KINDS = ("out_of_scope", "unsafe", "absent_object")


def _natural_block(rows: list[dict]) -> dict[str, Any]:
    declines = [r for r in rows if r["expected"] == "decline"]
    calls = [r for r in rows if r["expected"] != "decline"]
    copies = [r for r in calls if r["kind"] == "free_text"]
    return {
        "n": len(rows),
        "published_wrong": _frac(rows, lambda r: r["published_wrong"]),
        # the set as a sample of requests like it: where the share could lie (95 %, Wilson)
        "published_wrong_ci95": [
            round(x, 4) for x in wilson_interval(sum(bool(r["published_wrong"]) for r in rows), len(rows))
        ],
        "published_right": _frac(rows, lambda r: r["published_right"]),
        "declined": _frac(rows, lambda r: r["action"] == "declined"),
        "held_back": _frac(rows, lambda r: r["action"] == "held_back"),
        # requests that should be declined: declined as such / published as an action
        "declines_right": _frac(declines, lambda r: r["action"] == "declined"),
        "declines_published": _frac(declines, lambda r: r["action"] == "published"),
        # requests with an expected call: published exactly right
        "calls_published_right": _frac(calls, lambda r: r["published_right"]),
        "out_of_scope_unsafe_published": _frac(
            [r for r in rows if r["kind"] in ("out_of_scope", "unsafe")], lambda r: r["action"] == "published"
        ),
        "absent_published": _frac(
            [r for r in rows if r["kind"] == "absent_object"], lambda r: r["action"] == "published"
        ),
        # free text with a known contact: the decoded call (contact + message) is exactly right
        "free_text_copied": _frac(copies, lambda r: r["decoded_right"]),
        "free_text_n": len(copies),
    }


def summarize_natural(rows: list[dict]) -> dict:
    """Figures of the natural split: overall, per language, per kind (and kind x language), plus
    the worst published-wrong rows."""
    out: dict[str, Any] = {"all": _natural_block(rows)}
    for lang in ("en", "zh"):
        out[lang] = _natural_block([r for r in rows if r["language"] == lang])
    kinds = sorted({r["kind"] for r in rows})
    out["kind"] = {
        k: {
            **_natural_block([r for r in rows if r["kind"] == k]),
            **{
                f"published_wrong_{lang}": _frac(
                    [r for r in rows if r["kind"] == k and r["language"] == lang],
                    lambda r: r["published_wrong"],
                )
                for lang in ("en", "zh")
            },
        }
        for k in kinds
    }
    wrong = sorted((r for r in rows if r["published_wrong"]), key=lambda r: -r["confidence"])
    out["published_wrong_examples"] = [
        {k: r[k] for k in ("id", "expected", "got", "confidence")} for r in wrong[:25]
    ]
    return out


def format_natural(m: dict, threshold: float | None = None, title: str = "natural set") -> str:
    """The natural split (or the check set: ``title``) as plain-text tables."""
    at = f" (confidence threshold {threshold:.2f})" if threshold is not None else ""
    a, en, zh = m["all"], m["en"], m["zh"]
    lines = [f"{title}, as the node would act{at}: {a['n']} requests"]
    lines.append(f"{'':34s} {'all':>7s} {'en':>7s} {'zh':>7s}")
    for key, label in (
        ("published_wrong", "PUBLISHED WRONG"),
        ("published_right", "published right"),
        ("declines_right", "declines right"),
        ("declines_published", "declines published as actions"),
        ("out_of_scope_unsafe_published", "out-of-scope/unsafe published"),
        ("absent_published", "absent objects published"),
        ("free_text_copied", "free text copied exactly"),
        ("calls_published_right", "expected calls published right"),
        ("held_back", "held back"),
    ):
        if all(np.isnan(v[key]) for v in (a, en, zh)):
            continue  # no request of that kind in this set (the message set has no decline)
        lines.append(f"{label:34s} {_share(a[key])} {_share(en[key])} {_share(zh[key])}")
    if "published_wrong_ci95" in a:
        lines.append(
            "PUBLISHED WRONG, 95 % interval:    "
            + "  ".join(
                f"{lang} {format_interval(*v['published_wrong_ci95'])}"
                for lang, v in (("all", a), ("en", en), ("zh", zh))
            )
        )
    lines.append("")
    lines.append(
        f"{'kind':16s} {'n':>4s} {'right':>7s} {'WRONG':>7s} {'wrong en':>9s} {'wrong zh':>9s}"
        f" {'declined':>9s} {'held back':>10s}"
    )
    for kind, v in m["kind"].items():
        lines.append(
            f"{kind:16s} {v['n']:4d} {_share(v['published_right'])} {_share(v['published_wrong'])}"
            f"  {_share(v['published_wrong_en'])}  {_share(v['published_wrong_zh'])}  {_share(v['declined'])}"
            f"   {_share(v['held_back'])}"
        )
    if m.get("published_wrong_examples"):
        lines.append("")
        lines.append("published wrong, most confident first:")
        for e in m["published_wrong_examples"][:10]:
            lines.append(f"  {e['id']:18s} {e['confidence']:.2f}  want {e['expected']}  got {e['got']}")
    return "\n".join(lines)


def format_interval(low: float, high: float) -> str:
    """A 95 % interval as every report prints it ("0.7–2.6 %"; "–" where nothing was counted)."""
    return "–" if np.isnan(low) else f"{100 * low:.1f}–{100 * high:.1f} %"


def _share(x: float) -> str:
    """A share as the tables print it: 7 characters, "–" where there was nothing to count."""
    return f"{'–':>7s}" if np.isnan(x) else f"{x:7.1%}"


def _acc(rows: list[dict], key: str = "correct") -> float:
    return float(np.mean([r[key] for r in rows])) if rows else float("nan")


def wilson_interval(right: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % (Wilson score) interval of a share ``right / n``: the range a figure measured on
    ``n`` draws leaves for the model's accuracy on the split's whole distribution. (nan, nan) for
    ``n == 0``."""
    if n <= 0:
        return float("nan"), float("nan")
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference_interval(before: list[bool], after: list[bool], z: float = 1.96) -> tuple[float, float]:
    """The 95 % interval of ``mean(after) - mean(before)`` where both were measured on the same
    examples (``before[i]`` and ``after[i]``: example ``i`` right or not): the normal interval of
    the mean per-example difference (-1, 0 or +1). Only the examples that changed widen it, so a
    change is measured more precisely than either figure alone, but not exactly: a delta of -3
    points measured on 300 examples (14 lost, 5 gained) is -3 +- 2.8 points. (nan, nan) for no examples."""
    if len(before) != len(after):
        raise ValueError(f"paired figures need the same examples: {len(before)} before, {len(after)} after")
    n = len(before)
    if n == 0:
        return float("nan"), float("nan")
    d = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    mean = float(d.mean())
    half = z * float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
    return mean - half, mean + half


def _frac(rows: list[dict], pred) -> float:
    return sum(1 for r in rows if pred(r)) / len(rows) if rows else float("nan")


def summarize(rows: list[dict]) -> dict:
    """Accuracy tables and confusion summary from per-example rows."""
    by = collections.defaultdict(list)
    for r in rows:
        by[("split", r["split"])].append(r)
        by[("language", r["language"])].append(r)
        by[("function", r["function"])].append(r)
        by[("split_language", f"{r['split']}/{r['language']}")].append(r)
        if r.get("mode"):
            by[("split_mode", f"{r['split']}/{r['mode']}/{r['language']}")].append(r)
    metrics: dict[str, Any] = {
        "n": len(rows),
        "exact_match": _acc(rows),
        "function_accuracy": _acc(rows, "function_correct"),
    }
    for group in ("split", "language", "function", "split_language", "split_mode"):
        metrics[group] = {
            name: {"exact_match": _acc(rs), "function_accuracy": _acc(rs, "function_correct"), "n": len(rs)}
            for (g, name), rs in sorted(by.items())
            if g == group
        }
    for (group, name), rs in by.items():
        if group in ("split", "split_language"):
            low, high = wilson_interval(sum(bool(r["correct"]) for r in rs), len(rs))
            metrics[group][name]["exact_match_ci95"] = [round(low, 4), round(high, 4)]
    wrong = [r for r in rows if not r["correct"]]
    fn_conf = collections.Counter(
        (r["function"], r["got"].split(">")[0] + ">") for r in wrong if not r["function_correct"]
    )
    arg_err = collections.Counter((r["expected"], r["got"]) for r in wrong if r["function_correct"])
    metrics["confusion"] = {
        "wrong_function": [
            {"expected": e, "got_token": g, "count": c} for (e, g), c in fn_conf.most_common(10)
        ],
        "wrong_arguments": [{"expected": e, "got": g, "count": c} for (e, g), c in arg_err.most_common(10)],
        "wrong_function_share": len([r for r in wrong if not r["function_correct"]]) / max(1, len(wrong)),
    }
    # As the node would act on each split: published right / published wrong / declined / held back.
    acting = [r for r in rows if "action" in r]
    if acting:
        node: dict[str, Any] = {}
        for split in sorted({r["split"] for r in acting}):
            rs = [r for r in acting if r["split"] == split]
            wanted_decline = [r for r in rs if r["function"] == "no_action"]
            node[split] = {
                "n": len(rs),
                "published_right": _frac(rs, lambda r: r["action"] == "published" and r["correct"]),
                "published_wrong": _frac(rs, lambda r: r["action"] == "published" and not r["correct"]),
                "declined": _frac(rs, lambda r: r["action"] == "declined"),
                "held_back": _frac(rs, lambda r: r["action"] == "held_back"),
                "declines_expected": len(wanted_decline),
                "declines_published_wrong": sum(r["action"] == "published" for r in wanted_decline),
            }
        metrics["node"] = node
    metrics["latency_ms"] = {"p50": float(np.percentile([r["ms"] for r in rows], 50)) if rows else 0.0}
    return metrics


def _pct(cell: dict) -> str:
    return f"{cell['exact_match']:.1%}" if cell.get("n") else "-"


def format_tables(m: dict) -> str:
    """The metrics as plain-text tables."""
    if "exact_match" not in m:  # natural set and check set only
        return "\n\n".join(
            format_natural(m[key], m.get("node_threshold"), title)
            for key, title in (("natural", "natural set"), *((k, t) for k, _, t in FIGURE_SETS))
            if key in m
        )
    lines = [
        f"exact match {m['exact_match']:.1%} (function {m['function_accuracy']:.1%}) on {m['n']} examples"
    ]
    lines.append("")
    lines.append(
        f"{'split':18s} {'exact':>7s} {'95 % interval':>15s} {'function':>9s} {'en':>7s} {'zh':>7s} {'n':>5s}"
    )
    for split, v in m["split"].items():
        en = m["split_language"].get(f"{split}/en", {}).get("exact_match", float("nan"))
        zh = m["split_language"].get(f"{split}/zh", {}).get("exact_match", float("nan"))
        interval = format_interval(*v.get("exact_match_ci95", (float("nan"), float("nan"))))
        lines.append(
            f"{split:18s} {v['exact_match']:7.1%} {interval:>15s} {v['function_accuracy']:9.1%} "
            f"{en:7.1%} {zh:7.1%} {v['n']:5d}"
        )
    modes = m.get("split_mode", {})
    if modes:
        lines.append("")
        lines.append(f"{'split / instruction':28s} {'en':>7s} {'zh':>7s} {'n':>5s}")
        keys = sorted({k.rsplit("/", 1)[0] for k in modes})
        for key in keys:
            en, zh = modes.get(f"{key}/en", {}), modes.get(f"{key}/zh", {})
            n = en.get("n", 0) + zh.get("n", 0)
            lines.append(f"{key:28s} {_pct(en):>7s} {_pct(zh):>7s} {n:5d}")
    if m.get("node"):
        lines.append("")
        threshold = m.get("node_threshold")  # set by evaluate(); summarize() alone does not know it
        at = f" (confidence threshold {threshold:.2f})" if threshold is not None else ""
        lines.append(f"as the node would act{at}:")
        if m.get("second_opinion"):
            lines.append(
                f"(a call is published only when the second opinion {m['second_opinion']} makes it too)"
            )
        lines.append(
            f"{'split':18s} {'right':>7s} {'WRONG':>7s} {'declined':>9s} {'held back':>10s}"
            f" {'declines published':>20s}"
        )
        for split, v in m["node"].items():
            lines.append(
                f"{split:18s} {v['published_right']:7.1%} {v['published_wrong']:7.1%} {v['declined']:9.1%}"
                f" {v['held_back']:10.1%} {v['declines_published_wrong']:>11d} of {v['declines_expected']:<5d}"
            )
    lines.append("")
    lines.append(f"{'function':18s} {'exact':>7s} {'n':>5s}")
    for fn, v in m["function"].items():
        lines.append(f"{fn:18s} {v['exact_match']:7.1%} {v['n']:5d}")
    c = m["confusion"]
    lines.append("")
    lines.append(f"errors with the wrong function: {c['wrong_function_share']:.0%} of errors")
    for e in c["wrong_function"][:5]:
        lines.append(f"  {e['expected']:>14s} -> {e['got_token']}  x{e['count']}")
    lines.append("most frequent argument errors:")
    for e in c["wrong_arguments"][:5]:
        lines.append(f"  {e['expected']}  ->  {e['got']}  x{e['count']}")
    if "absent_probe" in m:
        lines.append("")
        lines.append(format_absent(m["absent_probe"]))
    if "natural" in m:
        lines.append("")
        lines.append(format_natural(m["natural"], m.get("node_threshold")))
    for key, _, title in FIGURE_SETS:
        if key in m:
            lines.append("")
            lines.append(format_natural(m[key], m.get("node_threshold"), title))
    return "\n".join(lines)


def _unwritable(path: Path) -> str | None:
    """Why the metrics file ``path`` cannot take the figures (None: it can). Checked before the run,
    so that an evaluation of many minutes is not lost to a file it could never write: its folder is
    made, the file opened for writing (an existing one is kept as it is: it is updated, not
    replaced, so it must hold a JSON object)."""
    if path.is_dir():
        return "is a directory"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                return "holds JSON that is not an object (the figures are added to the file's object)"
            with path.open("a", encoding="utf-8"):
                pass
        else:
            with path.open("x", encoding="utf-8"):
                pass
            path.unlink()
    except OSError as e:
        return f"cannot write there ({e.strerror or e})"
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        return f"is not a JSON file ({e}); the figures are added to it, so it must be one"
    return None


def _fail(parser: argparse.ArgumentParser, message: str) -> None:
    """A user's mistake that argparse cannot see (a model folder, a file): ``prog: error: ...`` and
    exit status 2, as argparse ends, without the usage (the flags were right)."""
    parser.exit(2, f"{parser.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    from octopus_ros.lean.errors import CheckpointError
    from octopus_ros.model import Octopus
    from octopus_ros.model.precision import PRECISIONS
    from octopus_ros.runtime.second_opinion import SecondOpinionError

    parser = argparse.ArgumentParser(
        prog="python -m octopus_ros.training.evaluate",
        description="Evaluate a checkpoint on the held-out splits.",
    )
    parser.add_argument(
        "checkpoint",
        help="the model directory to evaluate (a checkpoint as train_all or octopus_finetune writes it, "
        "e.g. octopus_ros/models/octopus_tiny)",
    )
    parser.add_argument(
        "--n",
        type=number(int, low=1),
        default=EVAL_N,
        help=f"examples per split, and per split of the absent-object probe (default {EVAL_N})",
    )
    parser.add_argument(
        "--seed",
        type=number(int, low=0),
        default=1234,
        help="seed of the splits' draws: the same seed draws the same examples, so that two models "
        "are compared on the same ones (default 1234)",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="the precision the model runs in, as the node's parameter of that name (int8: dynamic "
        "quantization on the CPU); the figures are written under eval_PRECISION (default fp32)",
    )
    parser.add_argument("--no-natural", action="store_true", help="skip the natural set")
    parser.add_argument("--natural-only", action="store_true", help="only the natural set and the check set")
    parser.add_argument("--no-check", action="store_true", help="skip the check set")
    parser.add_argument(
        "--no-absent",
        action="store_true",
        help="skip the absent-object probe (named requests with the object not in view, N per split)",
    )
    parser.add_argument("--out", default="runs/evaluate/metrics.json", help="where the metrics go")
    parser.add_argument(
        "--write-model-metrics",
        action="store_true",
        help="also update CHECKPOINT/metrics.json (tracked for the bundled model)",
    )
    parser.add_argument("--no-write", action="store_true", help="write no file at all")
    parser.add_argument(
        "--second-opinion",
        default="auto",
        help="the second model the node consults before it publishes, as its parameter of that name: "
        "auto (the checkpoint's second_opinion/ folder, when it has one), off, or a checkpoint directory",
    )
    args = parser.parse_args(argv)
    # everything a user can get wrong is checked before the evaluation, which takes minutes
    targets: list[tuple[str, Path]] = []
    if not args.no_write:
        targets.append(("--out", Path(args.out)))
        if args.write_model_metrics:
            targets.append(("--write-model-metrics", Path(args.checkpoint) / "metrics.json"))
    for flag, path in targets:
        problem = _unwritable(path)
        if problem is not None:
            parser.error(f"{flag} {path}: {problem}")
    second_dir = second_opinion_dir(args.checkpoint, args.second_opinion)
    if (problem := missing_folder(second_dir)) is not None:
        parser.error(f"--second-opinion {problem}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        octopus = Octopus.load(args.checkpoint, precision=args.precision)
    except (CheckpointError, ValueError, OSError) as e:
        _fail(parser, f"checkpoint {args.checkpoint}: cannot load the model: {e}")
    second = None
    if second_dir is not None:
        try:
            same_functions(args.checkpoint, second_dir)  # as the node checks it at configure
            second = Octopus.load(second_dir, precision=args.precision)
        except SecondOpinionError as e:
            _fail(parser, f"--second-opinion: {e}")
        except (CheckpointError, ValueError, OSError) as e:
            _fail(parser, f"--second-opinion {second_dir}: cannot load the model: {e}")
    print(f"second opinion: {second_dir or 'off'}")
    metrics = evaluate(
        octopus,
        n=args.n,
        seed=args.seed,
        splits=() if args.natural_only else EVAL_SPLITS,
        natural=not args.no_natural,
        check=not args.no_check,
        second_opinion=second,
        absent=not (args.no_absent or args.natural_only),
    )
    metrics["second_opinion"] = str(second_dir) if second_dir is not None else None
    print(format_tables(metrics))
    for flag, path in targets:
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        if flag == "--out":
            data["checkpoint"] = str(args.checkpoint)
        data[f"eval_{args.precision}"] = metrics
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
