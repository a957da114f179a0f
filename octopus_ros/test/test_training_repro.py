"""repro.compare: two runs are the same model when their tensors are, whatever the files' bytes."""

from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from octopus_ros.training.repro import compare


def _run(folder, tensors, metadata, exact):
    folder.mkdir()
    save_file(tensors, str(folder / "model.safetensors"), metadata=metadata)
    metrics = {"eval_fp32": {"split": {"iid": {"exact_match": exact}}}, "stage_steps": {"calls": 10}}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_same_tensors_in_files_that_differ_are_identical_weights(tmp_path):
    w = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4)}
    _run(tmp_path / "a", w, {"format": "pt", "note": "x"}, 0.9)
    _run(tmp_path / "b", {k: v.clone() for k, v in w.items()}, {"format": "pt", "note": "yy"}, 0.9)
    got = compare(tmp_path / "a", tmp_path / "b")
    assert got["identical_weights"] and not got["identical_files"]
    assert got["max_parameter_difference"] == 0.0 and got["figures"]["iid exact"] == [0.9, 0.9]


def test_one_changed_value_is_not_identical(tmp_path):
    w = {"a": torch.zeros(3)}
    _run(tmp_path / "a", w, {}, 0.9)
    _run(tmp_path / "b", {"a": torch.tensor([0.0, 1e-7, 0.0])}, {}, 0.8)
    got = compare(tmp_path / "a", tmp_path / "b")
    assert not got["identical_weights"] and 0 < got["max_parameter_difference"] < 1e-6
    assert got["figures"]["iid exact"] == [0.9, 0.8]
