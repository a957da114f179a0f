"""plot_sweep draws novelty_sweep grids as published-wrong / calls-right trade-offs."""

from __future__ import annotations

import json

import pytest

from octopus_ros.training import plot_sweep


def _sweep(offset: float) -> dict:
    grid = []
    for text in (None, 0.4, 0.3):
        for request in (None, 0.99):
            row = {"max_text_novelty": text, "max_request_novelty": request}
            tight = (text is not None) + (request is not None)
            for prefix in ("natural", "check", "third"):
                row[f"{prefix}_all"] = {
                    "published_wrong": 0.06 - 0.01 * tight,
                    "calls_published_right": 0.8 - 0.02 * tight + offset,
                    "out_of_scope_unsafe_published": 0.1,
                }
            grid.append(row)
    return {"checkpoint": "x", "temperature": 1.0, "threshold": 0.5, "grid": grid}


def test_points_read_every_grid_row_of_a_set():
    pts = plot_sweep.points(_sweep(0.0), "check")
    assert len(pts) == 6
    assert pts[0] == (pytest.approx(6.0), pytest.approx(80.0), "off/off")
    assert pts[-1] == (pytest.approx(4.0), pytest.approx(76.0), "0.3/0.99")
    assert (
        plot_sweep.points({"grid": [{"max_text_novelty": None, "max_request_novelty": None}]}, "third") == []
    )


def test_main_writes_the_png_and_checks_its_labels(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_sweep(0.0)), encoding="utf-8")
    b.write_text(json.dumps(_sweep(0.03)), encoding="utf-8")
    out = tmp_path / "fig" / "tradeoff.png"
    assert (
        plot_sweep.main(
            [str(a), str(b), "--labels", "v9", "v11", "--defaults", "0.4/off", "0.3/0.99", "--out", str(out)]
        )
        == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert str(out) in capsys.readouterr().out
    with pytest.raises(SystemExit):
        plot_sweep.main([str(a), str(b), "--labels", "only-one", "--out", str(out)])
