"""The node's runtime rules one at a time: what each buys on the natural set and on the check set.

``python -m octopus_ros.training.rule_ablation [MODEL] [--rules R ...] [--out FILE]`` decides every
request of the natural set (data/natural/natural_set.yaml) and of the check set
(natural_check.yaml) as the node acts, once with the rules as shipped and once with each rule
switched off, and prints the headline figures side by side: published wrong, expected calls
published right, out-of-scope/unsafe published, absent objects published, free text copied.

Most of these rules were written after reading natural-set cases (docs/training.md items 10-19);
the check set was written apart from it and from the templates, so a rule that only fits the
natural set shows here as a gain there and none on the check set. The check set's cases are not
printed (its figures only), as in ``make evaluate``.

Rules (``--rules``; default all):

- ``object_swap``: a call on another object than the one the request names with its colour is
  NO_ACTION (lean/decision.object_mismatch);
- ``object_narrowing``: the grammar offers a ``names_object`` argument only the objects the request
  names with their colours (lean/decision.named_objects, functions/grammar.py);
- ``colourless_resolution``: a colourless reference takes the colour in view, and the guessed
  colour is left out of the confidence (lean/decision.resolve_colourless, discount_colour_guess);
- ``colour_guess_discount``: only the second half of the above;
- ``colour_mismatch``: NOT_IN_VIEW when the named colour is improbable and another is there
  (lean/grounding.colour_mismatch), and ``colour_mismatch_ratio``: only its ratio part (stop 27);
- ``grounding_check``: the NOT_IN_VIEW check as a whole (the node's ``grounding_threshold``);
- ``span_copier``: copied arguments take the copier's span instead of the LM's choice;
- ``safety_screen``: the node's default ``safety_screen``; ``novelty_limits``: its
  ``max_text_novelty`` / ``max_image_novelty`` / ``max_request_novelty``; ``request_novelty``:
  only the last.

No rclpy. Takes about 1.5 minutes per configuration with the bundled model on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from octopus_ros.paths import default_model_dir

FIGURES = (
    ("published_wrong", "published wrong"),
    ("calls_published_right", "expected calls published right"),
    ("out_of_scope_unsafe_published", "out-of-scope/unsafe published"),
    ("absent_published", "absent objects published"),
    ("free_text_copied", "free text copied"),
)


@contextlib.contextmanager
def rule_off(rule: str, octopus: Any) -> Iterator[dict[str, Any]]:
    """Within the block, ``octopus`` decides (and the node acts) with ``rule`` switched off; yields
    the keyword arguments of :func:`octopus_ros.training.evaluate.node_action` to use
    (``"shipped"``: nothing off)."""
    from octopus_ros.lean import decision, grounding

    act: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if rule == "object_swap":
            stack.enter_context(mock.patch.object(decision, "object_mismatch", lambda *a, **k: None))
        elif rule == "object_narrowing":
            stack.enter_context(mock.patch.object(octopus, "narrow_objects", False))
        elif rule == "colourless_resolution":
            stack.enter_context(mock.patch.object(octopus, "resolve_colour", False))
        elif rule == "colour_guess_discount":
            stack.enter_context(mock.patch.object(decision, "discount_colour_guess", lambda *a, **k: None))
        elif rule == "colour_mismatch":
            stack.enter_context(mock.patch.object(grounding, "colour_mismatch", lambda *a, **k: None))
        elif rule == "colour_mismatch_ratio":
            original = grounding.colour_mismatch

            def without_ratio(probs, named, rule):
                return original(probs, named, (rule[0], rule[1], math.inf, math.inf))

            stack.enter_context(mock.patch.object(grounding, "colour_mismatch", without_ratio))
        elif rule == "grounding_check":
            act["grounding"] = None
        elif rule == "span_copier":
            stack.enter_context(mock.patch.object(octopus, "copier", None))
        elif rule == "safety_screen":
            act["safety_screen"] = ""
        elif rule == "novelty_limits":
            act["novelty_limits"] = False
        elif rule == "request_novelty":
            act["max_request_novelty"] = None
        elif rule != "shipped":
            raise ValueError(f"unknown rule {rule!r}; known: {', '.join(RULES)}")
        yield act


RULES = (
    "object_swap",
    "object_narrowing",
    "colourless_resolution",
    "colour_guess_discount",
    "colour_mismatch",
    "colour_mismatch_ratio",
    "grounding_check",
    "span_copier",
    "safety_screen",
    "novelty_limits",
    "request_novelty",
)


def _actor(act: dict[str, Any]) -> Callable[..., str]:
    from octopus_ros.training.evaluate import node_action

    def run(d, registry, threshold, grounding, utterance):
        g = act.get("grounding", grounding)
        extra = {k: v for k, v in act.items() if k != "grounding"}
        return node_action(d, registry, threshold, g, utterance, **extra)

    return run


def ablate(
    octopus: Any, rules=RULES, *, threshold: float | None = None, progress: bool = True, every: int = 1
) -> dict:
    """{"shipped" | rule: {"natural": figures, "check": figures}} (summarize_natural's blocks
    without their cases); ``every``: only every n-th request of each set (a quick look)."""
    from octopus_ros.data.natural import CHECK_SET_PATH, NATURAL_SET_PATH, load_natural_set
    from octopus_ros.runtime.engine import EngineConfig
    from octopus_ros.training.evaluate import evaluate_natural

    threshold = EngineConfig().confidence_threshold if threshold is None else threshold
    sets = {
        "natural": load_natural_set(NATURAL_SET_PATH, registry=octopus.registry)[::every],
        "check": load_natural_set(CHECK_SET_PATH, registry=octopus.registry)[::every],
    }
    out: dict[str, Any] = {}
    for rule in ("shipped", *rules):
        out[rule] = {}
        for name, items in sets.items():
            with rule_off(rule, octopus) as act:
                m = evaluate_natural(
                    octopus,
                    threshold=threshold,
                    progress=progress,
                    items=items,
                    desc=f"{rule}: {name}",
                    act=_actor(act),
                )
            m.pop("published_wrong_examples", None)
            out[rule][name] = m
    return out


def format_ablation(out: dict) -> str:
    """One row per configuration, the two sets' figures side by side (all / en / zh for the
    headline)."""
    lines = []
    head = f"{'rule switched off':24s}"
    for _, label in FIGURES:
        head += f" | {label[:22]:>22s}"
    for name in ("natural", "check"):
        lines.append(f"{name} set ({out['shipped'][name]['all']['n']} requests), as the node acts")
        lines.append(head)
        for rule, sets in out.items():
            m = sets[name]
            row = f"{rule:24s}"
            for key, _ in FIGURES:
                row += f" | {m['all'][key]:6.1%} ({m['en'][key]:5.1%} {m['zh'][key]:5.1%})"
            lines.append(row)
        lines.append("")
    lines.append("(all (en zh); 'shipped' = every rule on)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from octopus_ros.model import Octopus

    parser = argparse.ArgumentParser(
        description="Switch the node's runtime rules off one at a time and compare the natural set "
        "and the check set.",
    )
    parser.add_argument("model", nargs="?", default=str(default_model_dir()), help="checkpoint dir")
    parser.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES), help="rules to switch off")
    parser.add_argument("--threshold", type=float, default=None, help="confidence threshold (node default)")
    parser.add_argument("--out", default="runs/rule_ablation/metrics.json", help="figures as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    octopus = Octopus.load(args.model)
    out = ablate(octopus, args.rules, threshold=args.threshold)
    print(format_ablation(out))
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model": args.model, "figures": out}, indent=2), encoding="utf-8")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
