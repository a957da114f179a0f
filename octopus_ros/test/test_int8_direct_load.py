"""Loading a checkpoint directly in int8 (issue 14 item 2, memory): ``load_checkpoint(path,
precision="int8")`` builds the int8 model from the weights file tensor by tensor, and must be the
very model that loading fp32 and quantizing it (``apply_precision``) gives: same int8 weights and
scales, same logits, same decisions. ``Octopus.load(..., precision="int8")`` uses it."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from octopus_ros.functions import FunctionRegistry, load_default_registry
from octopus_ros.model import CheckpointError, apply_precision, attach_tokenizer, load_checkpoint
from octopus_ros.model import checkpoint as checkpoint_module
from octopus_ros.model.checkpoint import save_checkpoint, sha256_file
from octopus_ros.model.modeling import build_model
from octopus_ros.model.precision import Int8Embedding, SafetensorsWeights, build_int8
from octopus_ros.model.runtime import Octopus
from octopus_ros.model.testing import make_tiny_checkpoint, tiny_config, tiny_tokenizer
from octopus_ros.paths import default_model_dir

UTTERANCES = ["pick up the red cup", "go to the kitchen", "把红色的杯子拿起来", "wave at me"]


def _same(a, b) -> bool:
    """Equal state-dict entries: plain tensors bit for bit, quantized ones by int8 values,
    scheme and scales, packed (weight, bias) tuples entry by entry."""
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if not isinstance(a, torch.Tensor):
        return a == b
    if a.is_quantized:
        if not (b.is_quantized and a.qscheme() == b.qscheme() and torch.equal(a.int_repr(), b.int_repr())):
            return False
        if a.qscheme() == torch.per_channel_affine:
            return torch.equal(a.q_per_channel_scales(), b.q_per_channel_scales())
        return a.q_scale() == b.q_scale() and a.q_zero_point() == b.q_zero_point()
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def assert_same_int8_model(ref: torch.nn.Module, got: torch.nn.Module) -> None:
    sr, sg = ref.state_dict(), got.state_dict()
    assert sorted(sr) == sorted(sg)
    differ = [k for k in sr if not _same(sr[k], sg[k])]
    assert not differ, f"{len(differ)} of {len(sr)} entries differ, e.g. {differ[:5]}"
    # non-persistent buffers too (rotary frequencies): they are not in the state dict
    br, bg = dict(ref.named_buffers()), dict(got.named_buffers())
    assert sorted(br) == sorted(bg)
    assert all(torch.equal(br[k], bg[k]) for k in br)
    assert [type(m) for m in ref.modules()] == [type(m) for m in got.modules()]
    assert isinstance(got.lm.get_input_embeddings(), Int8Embedding)
    assert not any(type(m) is torch.nn.Linear for m in got.lm.modules())
    cfg = ref.config
    size = cfg.vision.image_size
    ids = torch.tensor([[cfg.image_token_id] * cfg.num_image_tokens + [5, 6, 7, 8]])
    pixels = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ref(ids, pixel_values=pixels).logits, got(ids, pixel_values=pixels).logits)


def _untied_checkpoint(path):
    tok = tiny_tokenizer(num_functions=13)
    cfg = tiny_config()
    cfg = attach_tokenizer(cfg.replace(lm={**cfg.lm, "tie_word_embeddings": False}), tok, 13)
    torch.manual_seed(3)
    model = build_model(cfg)
    head, emb = model.lm.get_output_embeddings(), model.lm.get_input_embeddings()
    assert head.weight is not emb.weight
    return save_checkpoint(path, model, tok)


@pytest.fixture(scope="module")
def tied_ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tied") / "ckpt")


@pytest.fixture(scope="module")
def untied_ckpt(tmp_path_factory):
    return _untied_checkpoint(tmp_path_factory.mktemp("untied") / "ckpt")


@pytest.fixture
def copy_of(tied_ckpt, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(tied_ckpt, dst)
    return dst


def test_tied_checkpoint_loads_as_the_quantized_fp32_model(tied_ckpt):
    ref = apply_precision(load_checkpoint(tied_ckpt).model, precision="int8")
    got = load_checkpoint(tied_ckpt, precision="int8").model
    head, emb = got.lm.get_output_embeddings(), got.lm.get_input_embeddings()
    assert torch.equal(head.weight().int_repr(), emb.qweight)  # the tied head packs the same rows
    assert_same_int8_model(ref, got)


def test_untied_checkpoint_loads_as_the_quantized_fp32_model(untied_ckpt):
    record = json.loads((untied_ckpt / "config.json").read_text())
    assert record["model"]["lm"]["tie_word_embeddings"] is False
    ref = apply_precision(load_checkpoint(untied_ckpt).model, precision="int8")
    got = load_checkpoint(untied_ckpt, precision="int8").model
    head, emb = got.lm.get_output_embeddings(), got.lm.get_input_embeddings()
    assert not torch.equal(head.weight().int_repr(), emb.qweight)  # its own rows
    assert_same_int8_model(ref, got)


def test_bundled_model_loads_as_the_quantized_fp32_model_and_decides_alike():
    path = default_model_dir()
    fp32 = load_checkpoint(path)
    registry = FunctionRegistry.from_yaml(fp32.functions_path)
    ref = Octopus(model=fp32.model, tokenizer=fp32.tokenizer, registry=registry, precision="int8")
    got = Octopus.load(path, precision="int8")  # the direct int8 load
    assert_same_int8_model(ref.model, got.model)
    ref.grounding = got.grounding  # the same runtime rules (the grounding vocabulary narrows objects)
    rng = np.random.default_rng(0)
    size = got.config.vision.image_size
    for text in UTTERANCES:
        frame = rng.integers(0, 255, (size * 2, size * 3, 3), dtype=np.uint8)
        a, b = ref.decide(text, frame), got.decide(text, frame)
        assert a.raw_text == b.raw_text and a.ok == b.ok, text
        assert a.confidence == pytest.approx(b.confidence, abs=1e-6), text


@pytest.fixture
def built_on(monkeypatch):
    """The device of every model build_modules builds from here on (meta: the direct int8 load)."""
    real = checkpoint_module.build_modules
    devices = []

    def spy(config):
        model = real(config)
        devices.append(next(model.parameters()).device.type)
        return model

    monkeypatch.setattr(checkpoint_module, "build_modules", spy)
    return devices


def test_octopus_load_int8_never_builds_the_fp32_model(tied_ckpt, built_on):
    """Octopus.load(precision="int8") goes through the direct load: build_modules (the fp32 model)
    only ever runs on the meta device."""
    devices = built_on
    octopus = Octopus.load(tied_ckpt, precision="int8", registry=load_default_registry())
    assert devices and set(devices) == {"meta"}, devices
    assert isinstance(octopus.model.lm.get_input_embeddings(), Int8Embedding)
    devices.clear()
    Octopus.load(tied_ckpt, registry=load_default_registry())  # fp32: built for real
    assert devices == ["cpu"]


def test_safetensors_reader_reads_what_safetensors_does():
    from safetensors.torch import load_file

    file = default_model_dir() / "model.safetensors"
    ref = load_file(str(file))
    with SafetensorsWeights(file) as weights:
        assert sorted(weights.tensors) == sorted(ref)
        for name, t in ref.items():
            assert weights.tensors[name] == (tuple(t.shape), t.dtype)
            got = weights.tensor(name)
            assert torch.equal(got, t.float() if t.is_floating_point() else t), name
            if t.ndim == 2 and t.shape[0] > 3:
                assert torch.equal(weights.rows(name, 1, 3), t[1:3].float()), name


def _rewrite_weights(ckpt, tensors: dict[str, torch.Tensor], metadata=None) -> None:
    """Replace the weights file and record its size and sha256, so only the content is wrong."""
    from safetensors.torch import save_file

    file = ckpt / "model.safetensors"
    save_file(tensors, str(file), metadata=metadata)
    _record_hash(ckpt)


def _record_hash(ckpt) -> None:
    file, cfg_file = ckpt / "model.safetensors", ckpt / "config.json"
    record = json.loads(cfg_file.read_text())
    record["weights"].update(sha256=sha256_file(file), bytes=file.stat().st_size)
    cfg_file.write_text(json.dumps(record))


def _state(ckpt) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(ckpt / "model.safetensors"))


@pytest.mark.parametrize(
    "change, message",
    [
        ("drop", r"missing tensor"),
        ("extra", r"unexpected tensor"),
        ("shape", r"shape mismatch"),
        ("int8", r"non-floating dtype"),
    ],
)
def test_mismatched_weights_name_the_file(copy_of, change, message):
    state = _state(copy_of)
    name = next(k for k in state if k.startswith("lm.") and k.endswith("mlp.up_proj.weight"))
    if change == "drop":
        del state[name]
    elif change == "extra":
        state["lm.extra.weight"] = torch.zeros(2)
    elif change == "shape":
        state[name] = state[name][:-1].contiguous()
    else:
        state = {k: v.to(torch.int8) for k, v in state.items()}
    _rewrite_weights(copy_of, state)
    for precision in ("fp32", "int8"):  # both paths refuse it, naming the file
        with pytest.raises(CheckpointError, match=rf"model\.safetensors: weights do not match.*{message}"):
            load_checkpoint(copy_of, precision=precision)


def test_the_dropped_tied_head_is_the_only_tensor_that_may_be_absent(copy_of):
    state = _state(copy_of)
    assert "lm.lm_head.weight" not in state  # stored once, as the embedding table
    _rewrite_weights(copy_of, state, metadata={"format": "pt"})  # no alias map in the file: not needed
    load_checkpoint(copy_of, precision="int8")
    del state["lm.model.embed_tokens.weight"]
    state["lm.lm_head.weight"] = _state(copy_of)["lm.model.embed_tokens.weight"]
    _rewrite_weights(copy_of, state)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: .*missing tensor.*embed_tokens"):
        load_checkpoint(copy_of, precision="int8")


@pytest.mark.parametrize(
    "damage",
    [
        b"not a safetensors file at all",  # header length far beyond the file
        (16).to_bytes(8, "little") + b"{not json at all",
        None,  # a tensor whose data lies past the end of the file
    ],
)
def test_a_corrupt_file_with_a_matching_hash_is_unreadable_and_named(copy_of, damage):
    file = copy_of / "model.safetensors"
    if damage is None:
        data = file.read_bytes()
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + n])
        name = next(k for k in header if k != "__metadata__")
        begin, end = header[name]["data_offsets"]
        header[name]["data_offsets"] = [begin + 10**9, end + 10**9]
        raw = json.dumps(header).encode()
        damage = len(raw).to_bytes(8, "little") + raw + data[8 + n :]
    file.write_bytes(damage)
    _record_hash(copy_of)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: unreadable safetensors file"):
        load_checkpoint(copy_of, precision="int8")


def test_precision_other_than_fp32_or_int8_is_refused(tied_ckpt):
    with pytest.raises(ValueError, match="fp32 or int8"):
        load_checkpoint(tied_ckpt, precision="bf16")


def test_random_build_int8_still_refuses_external_weights(tmp_path):
    from octopus_ros.model.testing import make_real_format_parts

    vision_dir, lm_dir = make_real_format_parts(tmp_path, image_size=32)
    tok = tiny_tokenizer(num_functions=13)
    cfg = attach_tokenizer(tiny_config(), tok, 13)
    with pytest.raises(ValueError, match="build_int8 builds random weights"):
        build_int8(cfg.replace(lm_path=str(lm_dir)))
    vision = {**dataclasses.asdict(cfg.vision), "checkpoint": str(vision_dir / "open_clip_model.safetensors")}
    with pytest.raises(ValueError, match="build_int8 builds random weights"):
        build_int8(cfg.replace(vision=vision))


def test_span_copier_reads_the_int8_token_table(tied_ckpt):
    """The span copier's embeddings (Octopus._copier_embed) come from the int8 rows: an
    Int8Embedding has no ``.weight`` (this used to raise AttributeError in every int8 decision
    of a checkpoint with a span_copier.safetensors)."""
    octopus = Octopus.load(tied_ckpt, precision="int8", registry=load_default_registry())
    emb = octopus.model.lm.get_input_embeddings()
    ids = [1, 2, 3]
    want = emb.qweight[ids].float() * emb.scale[ids].unsqueeze(-1)
    assert np.array_equal(octopus._copier_embed(ids), want.numpy())


def test_an_onnx_image_side_that_exists_keeps_the_direct_int8_load(tied_ckpt, built_on, tmp_path):
    """With ``vision_backend="onnx"`` and its file present, the int8 load never builds the fp32
    model either; only an encoder that has to be exported first needs the fp32 tower."""
    from octopus_ros.model.onnx_export import export_vision_onnx

    fp32 = load_checkpoint(tied_ckpt)
    onnx_file = tmp_path / "vision.onnx"
    export_vision_onnx(fp32.model, onnx_file, weights_sha256=sha256_file(tied_ckpt / "model.safetensors"))
    devices = built_on
    devices.clear()  # the fp32 model above was built for the export; only the loads below count
    registry = load_default_registry()
    octopus = Octopus.load(
        tied_ckpt, precision="int8", registry=registry, vision_backend="onnx", onnx_path=onnx_file
    )
    assert devices and set(devices) == {"meta"}, devices
    assert isinstance(octopus.model.lm.get_input_embeddings(), Int8Embedding)
    # the image tokens are the ONNX encoder's (the fp32 tower's export), not an int8 torch tower's
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    got = octopus.encode(image).embeds.float().numpy()
    want = octopus.vision_encoder.encode_image(octopus.preprocess(image)).float().numpy()
    with torch.no_grad():
        fp32_tokens = fp32.model.encode_image(octopus.preprocess(image)).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=0)
    np.testing.assert_allclose(got, fp32_tokens, atol=1e-4)
    assert octopus.decide("pick up the red cup", image).raw_text  # and it decides
    devices.clear()
    Octopus.load(tied_ckpt, precision="int8", registry=registry, vision_backend="onnx",
                 onnx_path=tmp_path / "missing.onnx")  # fmt: skip
    assert devices == ["cpu"]  # exported first: from the fp32 tower
