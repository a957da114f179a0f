"""How much each runtime path (int8, bf16, fp16, ONNX image encoder) changes the model's
decisions compared with fp32 torch.

    report = compare_runtimes("octopus_ros/models/octopus_tiny", samples)
    print(format_report(report))

``samples`` are (image, instruction) or (image, instruction, expected call text) tuples; with
expected texts the report also gives each path's exact-match accuracy.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .runtime import Octopus

log = logging.getLogger(__name__)

# (label, Octopus.load keyword arguments)
DEFAULT_PATHS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("int8", {"precision": "int8"}),
    ("bf16", {"precision": "bf16"}),
    ("onnx", {"vision_backend": "onnx"}),
    ("onnx-int8", {"vision_backend": "onnx-int8"}),
    ("int8+onnx-int8", {"precision": "int8", "vision_backend": "onnx-int8"}),
)


@dataclass
class PathReport:
    """Agreement of one runtime path with fp32 torch over the samples."""

    label: str
    n: int = 0
    call_agreement: float = 0.0  # same call text as fp32
    function_agreement: float = 0.0  # same function (or both errors)
    accuracy: float | None = None  # exact call match with the expected texts, if given
    mean_abs_confidence_delta: float = 0.0
    max_embed_rel_error: float = 0.0  # max |embeds - fp32 embeds| / max |fp32 embeds|
    median_latency_s: float = 0.0  # decide() on a raw frame
    disagreements: list[tuple[str, str, str]] = field(default_factory=list)  # (instruction, fp32, this)


def _normalise(samples: Iterable[Sequence]) -> list[tuple[np.ndarray, str, str | None]]:
    out = []
    for s in samples:
        if len(s) not in (2, 3):
            raise ValueError("samples must be (image, instruction) or (image, instruction, expected_text)")
        out.append((s[0], s[1], s[2] if len(s) == 3 else None))
    return out


def _run(octopus: Octopus, samples, *, mode: str, allowlist) -> tuple[list, list[torch.Tensor], list[float]]:
    decisions, embeds, latency = [], [], []
    for image, instruction, _ in samples:
        enc = octopus.encode(image)
        embeds.append(enc.embeds.float().cpu())
        d = octopus.decide(instruction, image, allowlist=allowlist, mode=mode)
        decisions.append(d)
        latency.append(d.timings["total"])
    return decisions, embeds, latency


def _same_call(a, b) -> bool:
    return (
        a.raw_text == b.raw_text
        if a.call is not None and b.call is not None
        else a.call is None and b.call is None
    )


def _matches(decision, expected: str | None, registry, allowlist) -> bool:
    from octopus_ros.functions import parse_call

    want = parse_call(expected, registry, allowlist=allowlist)
    return decision.call is not None and not hasattr(want, "kind") and decision.call == want


def compare_runtimes(
    checkpoint: str | Path,
    samples: Iterable[Sequence],
    *,
    paths: Sequence[tuple[str, dict[str, Any]]] = DEFAULT_PATHS,
    mode: str = "constrained",
    allowlist: Sequence[str] | None = None,
    registry=None,
    device: str = "cpu",
) -> dict[str, PathReport]:
    """Run every sample through fp32 torch and through each path; report agreement with fp32.

    ``paths``: (label, keyword arguments of :meth:`Octopus.load`). fp16/bf16 need a device that
    supports them (bf16 works on CPU, fp16 is meant for CUDA).
    """
    samples = _normalise(samples)
    ref = Octopus.load(checkpoint, device=device, precision="fp32", registry=registry)
    ref_dec, ref_emb, ref_lat = _run(ref, samples, mode=mode, allowlist=allowlist)
    reports = {
        "fp32": _report("fp32", samples, ref_dec, ref_dec, ref_emb, ref_emb, ref_lat, ref.registry, allowlist)
    }
    exported: dict[str, Path] = {}  # vision backend -> ONNX file, exported once for all paths
    for label, kwargs in paths:
        kwargs = {"device": device, "registry": ref.registry, **kwargs}
        backend = kwargs.get("vision_backend", "torch")
        if backend != "torch" and "onnx_path" not in kwargs:
            if backend not in exported:
                exported[backend] = _onnx_file(checkpoint, backend)
            kwargs["onnx_path"] = exported[backend]
        octopus = Octopus.load(checkpoint, **kwargs)
        dec, emb, lat = _run(octopus, samples, mode=mode, allowlist=allowlist)
        reports[label] = _report(label, samples, ref_dec, dec, ref_emb, emb, lat, ref.registry, allowlist)
        del octopus
    return reports


def _onnx_file(checkpoint: str | Path, backend: str) -> Path:
    """The checkpoint's own ONNX file for ``backend``, or a fresh export in a temp directory."""
    import tempfile

    from .checkpoint import WEIGHTS_FILE, load_checkpoint, sha256_file
    from .onnx_export import export_vision_onnx

    name = "vision.int8.onnx" if backend == "onnx-int8" else "vision.onnx"
    path = Path(checkpoint) / name
    if path.is_file():
        return path
    ckpt = load_checkpoint(checkpoint)
    path = Path(tempfile.mkdtemp(prefix="octopus_onnx_")) / name
    sha = sha256_file(Path(checkpoint) / WEIGHTS_FILE)
    return export_vision_onnx(ckpt.model, path, weights_sha256=sha, quantize_int8=backend == "onnx-int8")


def _report(label, samples, ref_dec, dec, ref_emb, emb, lat, registry, allowlist) -> PathReport:
    n = len(samples)
    rep = PathReport(label=label, n=n, median_latency_s=statistics.median(lat) if lat else 0.0)
    if not n:
        return rep
    same = [_same_call(a, b) for a, b in zip(ref_dec, dec, strict=True)]
    rep.call_agreement = sum(same) / n
    rep.function_agreement = (
        sum(
            (a.call.function if a.call else None) == (b.call.function if b.call else None)
            for a, b in zip(ref_dec, dec, strict=True)
        )
        / n
    )
    rep.mean_abs_confidence_delta = statistics.mean(
        abs(a.confidence - b.confidence) for a, b in zip(ref_dec, dec, strict=True)
    )
    rep.max_embed_rel_error = max(
        float((b - a).abs().max() / a.abs().max().clamp_min(1e-12)) for a, b in zip(ref_emb, emb, strict=True)
    )
    expected = [s[2] for s in samples]
    if all(e is not None for e in expected):
        rep.accuracy = (
            sum(_matches(d, e, registry, allowlist) for d, e in zip(dec, expected, strict=True)) / n
        )
    rep.disagreements = [
        (s[1], a.raw_text, b.raw_text)
        for s, a, b, ok in zip(samples, ref_dec, dec, same, strict=True)
        if not ok
    ][:10]
    return rep


def format_report(reports: dict[str, PathReport]) -> str:
    """A small text table of :func:`compare_runtimes` results."""
    lines = [
        f"{'path':<16}{'n':>5}{'same call':>11}{'same fn':>9}{'accuracy':>10}{'|dconf|':>9}{'emb err':>9}{'ms':>8}"
    ]
    for r in reports.values():
        acc = "-" if r.accuracy is None else f"{r.accuracy:.1%}"
        lines.append(
            f"{r.label:<16}{r.n:>5}{r.call_agreement:>11.1%}{r.function_agreement:>9.1%}{acc:>10}"
            f"{r.mean_abs_confidence_delta:>9.4f}{r.max_embed_rel_error:>9.1e}{1000 * r.median_latency_s:>8.1f}"
        )
    return "\n".join(lines)
