"""Replaying a recorded run: offline (the model reads the bag, no DDS) and scoring.

The online replay (the bag republished into a live octopus_node) is ``octopus_ros.ros.replay``;
both produce :class:`Decided` rows, scored here by :func:`score` against the labels.

**Offline** (:func:`replay_offline`) runs the node's own request policy — the runtime's
:class:`~octopus_ros.runtime.engine.ActionEngine` with the model, the registry's validation, the
allowlist and the confidence threshold — on a clock that is the bag's: each utterance arrives at
its bag time with its labelled frame (see :mod:`octopus_ros.bags.labels`, "Which frame"), and
``max_image_age`` is measured between the two bag times. The engine's rate limit, queue and
timeouts are off (a replay is not a burst) and so is its vision prefetch (every utterance is
decided on exactly its frame).

**Scores** (lines labelled ``ok`` only): accuracy (the published call equals the label, or the
label is the decline and nothing was published), published wrong (a call was published and it
is not the label's — the costly error on a robot), missed (the label is an action, nothing was
published), outcome counts, and latency (offline: model time per utterance; online: the node's
Outcome latency, arrival to outcome). A run whose every utterance ended ``NO_FRESH_IMAGE`` is
an error, never a silent result (:func:`freshness_problem`); so is a replay with nothing to score
(:func:`nothing_to_score`: ``accuracy -`` is not a result either).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from octopus_ros.bags.io import BagError, Run, load_frame, read_run
from octopus_ros.bags.labels import Label

log = logging.getLogger(__name__)


@dataclass
class Decided:
    """What became of one utterance in a replay."""

    n: int
    utterance: str
    outcome: str  # Outcome code name, "" if no outcome arrived
    call: str | None  # the published call by name (OK only), e.g. "pick_up('red cup')"
    raw_output: str
    confidence: float
    latency_s: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _plain(text: str | None, registry: Any) -> str | None:
    """A call by name in canonical form (or the text itself when it does not parse)."""
    from octopus_ros.functions import ParseError, parse_plain

    if text is None:
        return None
    parsed = parse_plain(text, registry)
    return text if isinstance(parsed, ParseError) else parsed.to_plain()


def score(labels: list[Label], decided: list[Decided], registry: Any) -> dict[str, Any]:
    """Scores of a replay against the labels (lines with status ``ok``); see the module docstring."""
    by_n = {d.n: d for d in decided}
    decline = f"{registry.decline_function.name}()"
    n_scored = correct = wrong = missed = 0
    wrong_rows = []
    for lab in labels:
        d = by_n.get(lab.n)
        if lab.status != "ok" or lab.answer is None or d is None:
            continue
        n_scored += 1
        expected = _plain(lab.answer, registry)
        published = d.outcome == "OK"
        right = _plain(d.call, registry) == expected if published else expected == decline
        if right:
            correct += 1
        elif published:
            wrong += 1
            wrong_rows.append(
                {"n": lab.n, "utterance": lab.utterance, "label": expected, "published": d.call}
            )
        else:
            missed += 1
    latencies = [d.latency_s for d in decided if d.outcome]
    outcomes = collections.Counter(d.outcome or "NO_OUTCOME" for d in decided)
    return {
        "utterances": len(decided),
        "scored": n_scored,
        "accuracy": correct / n_scored if n_scored else None,
        "published_wrong": wrong,
        "published_wrong_rate": wrong / n_scored if n_scored else None,
        "missed": missed,
        "published_wrong_calls": wrong_rows,
        "outcomes": dict(sorted(outcomes.items())),
        "latency_ms": {
            "p50": float(np.percentile(latencies, 50)) * 1e3 if latencies else None,
            "p95": float(np.percentile(latencies, 95)) * 1e3 if latencies else None,
        },
    }


def freshness_problem(decided: list[Decided]) -> str | None:
    """An error message when every utterance ended NO_FRESH_IMAGE (None otherwise).

    That is what a replay with stale stamps gives (the recorded image stamps are minutes old
    against the node's clock); it must never pass for a result.
    """
    stale = [d for d in decided if d.outcome == "NO_FRESH_IMAGE"]
    if decided and len(stale) == len(decided):
        return (
            f"every one of the {len(decided)} utterances ended NO_FRESH_IMAGE ({stale[0].reason}): the node "
            "judged every frame too old. Replay with --time rebase (the default: image stamps moved to "
            "the replay's clock), or start the node with -p image_age_source:=receipt for --time keep."
        )
    if stale:
        log.warning(
            "%d of %d utterances ended NO_FRESH_IMAGE, e.g. %s", len(stale), len(decided), stale[0].reason
        )
    return None


def load_model(
    model_path: str = "", functions: str = "", *, device: str = "cpu", precision: str = "fp32"
) -> Any:
    """The Octopus model as octopus_node loads it (bundled model when ``model_path`` is empty)."""
    from octopus_ros.model.runtime import Octopus
    from octopus_ros.paths import default_model_dir

    return Octopus.load(
        model_path or str(default_model_dir()), device=device, precision=precision, registry=functions or None
    )


def replay_offline(
    labels: list[Label],
    model: Any,
    *,
    allowlist: tuple[str, ...] = (),
    confidence_threshold: float = 0.5,
    max_image_age: float = 1.0,
    decode_mode: str = "constrained",
    timeout: float = 120.0,
    second_opinion: Any = None,
) -> list[Decided]:
    """Decide every labelled utterance with the node's engine on the bag's clock (no DDS).
    ``second_opinion``: the second model the node consults before it publishes (None: off), so that
    published wrong is what the node with that setting would publish."""
    from octopus_ros.functions import validate_call
    from octopus_ros.runtime.engine import ActionEngine, EngineConfig
    from octopus_ros.runtime.outcomes import Frame, Request, Source

    registry = model.registry
    config = EngineConfig(
        allowlist=tuple(allowlist),
        confidence_threshold=confidence_threshold,
        max_image_age=max_image_age,
        queue_depth=1 << 30,
        request_timeout=float("inf"),
        rate_limit=0.0,
        prefetch_rate=0.0,
        prefetch_max_lag=0.0,
        decode_mode=decode_mode,
    )
    clock = [0.0]
    engine = ActionEngine(
        model=model,
        second_opinion=second_opinion,
        registry=registry,
        config=config,
        validate=functools.partial(validate_call, registry=registry),
        on_result=lambda result: None,
        now=lambda: clock[0],
    )
    engine.start()
    decided = []
    fed = None
    try:
        for seq, lab in enumerate(labels):
            if lab.image is not None:
                key = (lab.image["bag"], lab.image["topic"], lab.image["stamp_ns"])
                if key != fed:
                    rgb = load_frame(*key)
                    engine.on_frame(
                        Frame(seq, 0.0, key[2] * 1e-9, "", lambda rgb=rgb: rgb)  # receipt time = bag time
                    )
                    fed = key
            clock[0] = lab.received_ns * 1e-9
            done = threading.Event()
            box: list[Any] = []
            request = Request(
                id=f"utt-offline-{lab.n:05d}",
                text=lab.utterance,
                source=Source.UTTERANCE,
                arrived=clock[0],
                done=lambda r, box=box, done=done: (box.append(r), done.set()),
            )
            engine.submit(request)
            if not done.wait(timeout):
                raise TimeoutError(
                    f"no decision for utterance {lab.n} ({lab.utterance!r}) in {timeout:.0f} s"
                )
            r = box[0]
            published = r.call if r.code.name == "OK" else None
            decided.append(
                Decided(
                    n=lab.n,
                    utterance=lab.utterance,
                    outcome=r.code.name,
                    call=published.to_plain() if published is not None else None,
                    raw_output=r.raw_text,
                    confidence=round(float(r.confidence), 4),
                    latency_s=float(r.inference_s),
                    reason=r.reason,
                )
            )
            log.info("[%d] %r -> %s %s", lab.n, lab.utterance, r.code.name, decided[-1].call or r.reason)
    finally:
        engine.stop()
    return decided


def labels_for(
    bag: str | Path | Run,
    labels_path: str | Path | None,
    registry: Any = None,
    *,
    image_topic: str | None = None,
    speech_topic: str | None = None,
) -> list[Label]:
    """What a replay of ``bag`` is scored against: the labels file's lines matched to the bag's
    utterances (:func:`match_labels`), or (none given) the bag's utterances with the recorded
    node's decisions as labels (``registry`` needed then).

    The bag replayed is always ``bag`` (the one on the command line), read on ``image_topic`` /
    ``speech_topic`` (a topic the bag lacks is a :class:`BagError` listing its topics): never the
    bag the labels file's relative references happen to resolve to.
    """
    from octopus_ros.bags.labels import extract, read_labels

    run = bag if isinstance(bag, Run) else read_run(bag, image_topic=image_topic, speech_topic=speech_topic)
    if labels_path:
        labels = match_labels(read_labels(labels_path), run, labels_path, image_topic=image_topic)
    else:
        labels = []
    if not run.utterances:
        raise BagError(
            f"{run.path}: no utterance in the bag (nothing on {run.speech_topic}): nothing to replay or score"
        )
    if labels_path:
        return labels
    if registry is None:
        raise ValueError("labels_for without a labels file needs the registry")
    log.info("no labels file: scoring against the recorded node's own decisions")
    return extract(run, registry, auto_confirm=True)


def match_labels(
    labels: list[Label], run: Run, labels_path: str | Path, *, image_topic: str | None = None
) -> list[Label]:
    """The labels of ``run``: each line's utterance must be the bag's utterance of the same number
    (text and bag time), and its frame on the camera topic replayed. A labels file made from
    another bag is a :class:`LabelError` naming both. Frames are then read from ``run``'s bag,
    whatever the line's reference says (a labels file moved to another folder still works)."""
    from octopus_ros.bags.labels import LabelError

    here = run.path.resolve()
    problems = []
    for lab in labels:
        if lab.image is not None:
            ref = Path(lab.image["bag"])
            if ref.exists() and ref.resolve() != here:
                raise LabelError(
                    f"{labels_path} is labelled on the bag {ref} ({lab.where}), not on {run.path}: replay "
                    f"{ref}, or give the labels of {run.path} (octopus_label extract {run.path} --out ...)"
                )
        if lab.n > len(run.utterances):
            problems.append(
                f"{lab.where}: utterance {lab.n} {lab.utterance!r}, but {run.path} has only "
                f"{len(run.utterances)} utterance(s) on {run.speech_topic}"
            )
            continue
        utt = run.utterances[lab.n - 1]
        if (utt.text, utt.log_ns) != (lab.utterance, lab.received_ns):
            problems.append(
                f"{lab.where}: utterance {lab.n} is {lab.utterance!r} at bag time {lab.received_ns} ns, "
                f"but in {run.path} it is {utt.text!r} at {utt.log_ns} ns"
            )
            continue
        if lab.image is not None and lab.image["topic"] != run.image_topic:
            flag = " (--image-topic)" if image_topic else ""
            problems.append(
                f"{lab.where}: its frame is on {lab.image['topic']}, but the camera topic replayed is "
                f"{run.image_topic}{flag}: extract the labels with that --image-topic"
            )
    if problems:
        more = f"\n... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise LabelError(
            f"{labels_path} does not match the bag {run.path} (the labels of another run?):\n"
            + "\n".join(problems[:10])
            + more
        )
    return [
        dataclasses.replace(lab, image={**lab.image, "bag": str(here)}) if lab.image is not None else lab
        for lab in labels
    ]


def nothing_to_score(labels: list[Label], labels_path: str | Path | None) -> str | None:
    """Why a replay of these labels could score nothing (None when some line can be scored).

    A replay that scores nothing prints ``accuracy -``; it must not pass for a result."""
    if any(lab.status == "ok" and lab.answer is not None for lab in labels):
        return None
    todo = sum(lab.status == "todo" for lab in labels)
    if not labels_path:
        return (
            f"no recorded decision to score against: none of the {len(labels)} utterance(s) has an "
            "outcome with a call (or a decline) and a frame; label the run (octopus_label extract) "
            "and replay with --labels"
        )
    if todo:
        return (
            f"no labelled utterance: {todo} line(s) of {labels_path} are still todo; label them first "
            "(status ok, answer the right call)"
        )
    return f"no labelled utterance: no line of {labels_path} has status ok with an answer"


def format_report(title: str, metrics: dict[str, Any]) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f} %"

    lat = metrics["latency_ms"]
    lines = [
        f"{title}: {metrics['utterances']} utterances, {metrics['scored']} labelled",
        f"  accuracy        {pct(metrics['accuracy'])}",
        f"  published wrong {metrics['published_wrong']} ({pct(metrics['published_wrong_rate'])})",
        f"  missed          {metrics['missed']}",
        "  outcomes        " + ", ".join(f"{k} {v}" for k, v in metrics["outcomes"].items()),
        "  latency         "
        + ("-" if lat["p50"] is None else f"p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms"),
    ]
    for row in metrics["published_wrong_calls"][:10]:
        lines.append(
            f"  wrong: [{row['n']}] {row['utterance']!r}: published {row['published']}, label {row['label']}"
        )
    return "\n".join(lines)
