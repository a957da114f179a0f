"""Checkpoint format: exact round trip, token ids survive, corrupt/truncated/mismatched errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from octopus_ros.model import CheckpointError, load_checkpoint, save_checkpoint
from octopus_ros.model.testing import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tok = tiny_tokenizer(num_functions=13)
    model = tiny_model(tok, seed=3)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(path, model, tok, metrics={"exact_match": 0.5})
    return path, model, tok


@pytest.fixture
def copy_of(saved, tmp_path):
    path = tmp_path / "copy"
    shutil.copytree(saved[0], path)
    return path


def test_round_trip_is_exact(saved):
    path, model, tok = saved
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "metrics.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert not list(path.glob("*.bin")) and not list(path.glob("*.pt"))  # no pickle
    ckpt = load_checkpoint(path)
    a, b = model.state_dict(), ckpt.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # tied LM head is still tied after loading
    assert ckpt.model.lm.lm_head.weight.data_ptr() == ckpt.model.lm.get_input_embeddings().weight.data_ptr()
    assert ckpt.metrics == {"exact_match": 0.5}
    px = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.encode_image(px), ckpt.model.encode_image(px))


def test_functional_token_ids_survive(saved):
    path, model, tok = saved
    ckpt = load_checkpoint(path)
    for field in ("image_token_id", "nexa_token_ids", "nexa_end_id", "pad_token_id", "eos_token_id"):
        assert getattr(ckpt.config, field) == getattr(model.config, field)
    call = "<nexa_7>('cup')<nexa_end>"
    assert ckpt.tokenizer.encode(call, add_special_tokens=False) == tok.encode(call, add_special_tokens=False)
    assert ckpt.tokenizer.convert_tokens_to_ids("<nexa_7>") == ckpt.config.nexa_token_ids[7]
    assert ckpt.model.lm.config.eos_token_id == model.config.eos_token_id


@pytest.mark.parametrize("precision", ["fp32", "int8"])  # int8 checks before it builds anything
def test_flipped_byte_is_a_sha_error(copy_of, precision):
    weights = copy_of / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: sha256 mismatch"):
        load_checkpoint(copy_of, precision=precision)


def test_truncated_weights(copy_of):
    weights = copy_of / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated"):
        load_checkpoint(copy_of)


def test_missing_and_garbage_files(copy_of):
    (copy_of / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: unreadable tokenizer"):
        load_checkpoint(copy_of)
    (copy_of / "config.json").write_text("[1, 2")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        load_checkpoint(copy_of)
    (copy_of / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json: missing"):
        load_checkpoint(copy_of)


def test_architecture_mismatch_names_the_tensors(copy_of):
    cfg_file = copy_of / "config.json"
    record = json.loads(cfg_file.read_text())
    record["model"]["lm"]["intermediate_size"] = 48  # weights were saved with 64
    cfg_file.write_text(json.dumps(record))
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors: weights do not match config\.json.*shape mismatch"
    ):
        load_checkpoint(copy_of)


def test_token_id_mismatch(copy_of):
    cfg_file = copy_of / "config.json"
    record = json.loads(cfg_file.read_text())
    record["model"]["nexa_token_ids"][2] += 1
    cfg_file.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: special tokens do not match.*<nexa_2>"):
        load_checkpoint(copy_of)


def test_garbage_tokenizer_config_is_the_file_named(copy_of):
    (copy_of / "tokenizer_config.json").write_text("{garbage")
    with pytest.raises(CheckpointError, match=r"tokenizer_config\.json: unreadable tokenizer"):
        load_checkpoint(copy_of)


def test_integer_weights_with_a_matching_hash_are_refused(copy_of):
    """Weights cast to int8 (the config's sha256 and size updated to match) must not load silently."""
    from safetensors.torch import load_file, save_file

    from octopus_ros.model.checkpoint import sha256_file

    weights = copy_of / "model.safetensors"
    save_file({k: v.to(torch.int8) for k, v in load_file(str(weights)).items()}, str(weights))
    cfg_file = copy_of / "config.json"
    record = json.loads(cfg_file.read_text())
    record["weights"].update(sha256=sha256_file(weights), bytes=weights.stat().st_size)
    cfg_file.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: .*non-floating dtype"):
        load_checkpoint(copy_of)
