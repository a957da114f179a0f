"""benchmarks/bench_model.py (issue 14 item 6): the modes run interleaved sample by sample, and
the quick run prints the rows and the ratios the README quotes, oracle rows marked timing-only."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
bench_model = pytest.importorskip("bench_model")


class _FakeOctopus:
    """Stands in for Octopus in the scheduling test only: records nothing, times nothing."""

    class _Model:
        lm = None

    def __init__(self):
        self.model = self._Model()

    def decide(self, instruction, image, *, mode):
        from octopus_ros.model.runtime import Decision

        t = {"preprocess": 0.0, "encode": 0.0, "prefill": 0.0, "decode": 0.01, "tokens": 3.0, "total": 0.02}
        t["forward_passes"] = 2.0
        return Decision(None, None, 0.0, instruction, t)


def test_modes_are_interleaved_sample_by_sample():
    runs = {label: (_FakeOctopus(), "constrained", "functional") for label in ("A", "B", "C")}
    samples = [(np.zeros((2, 2, 3), np.uint8), f"s{i}") for i in range(4)]
    order: list = []
    bench_model.measure_interleaved(runs, samples, 2, order=order)
    assert len(order) == 3 * 4 * 3  # warm-up round + 2 timed rounds, every sample in every mode
    for k in range(0, len(order), 3):  # each sample runs in all modes before the next sample
        block = order[k : k + 3]
        assert len({(r, i) for r, i, _ in block}) == 1 and {lab for _, _, lab in block} == {"A", "B", "C"}
    firsts = [order[k][2] for k in range(0, len(order), 3)]
    assert len(set(firsts)) == 3  # the order rotates: no mode always runs first


def test_quick_run_prints_rows_and_ratios(capsys):
    bench_model.main(["--quick", "--samples", "3", "--threads", "1"])
    out = capsys.readouterr().out
    for mode in ("constrained+JF", "constrained ", "hf.generate", "JSON text"):
        assert f"fp32  {mode}" in out and f"int8  {mode}" in out, mode
    assert "timing only" in out
    assert "constrained / hf.generate per pass: without JF" in out
    assert "JSON text / functional tokens" in out
