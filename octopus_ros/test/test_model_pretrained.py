"""Real pretrained parts (model/pretrained.py) and new functional tokens (model/functional_tokens.py).

"Real-format" weights are built locally at test size: an open_clip model directory
(open_clip_config.json + the CLIP state dict) and a save_pretrained Qwen2 directory with its own
tokenizer (model.testing.make_real_format_parts).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from octopus_ros.functions import FunctionRegistry, load_default_registry
from octopus_ros.model import Octopus, load_checkpoint, load_tokenizer, save_checkpoint
from octopus_ros.model.config import CLIP_MEAN, ConfigError
from octopus_ros.model.functional_tokens import extend_functional_tokens
from octopus_ros.model.pretrained import build_from_parts, resolve_vision
from octopus_ros.model.testing import make_real_format_parts, make_tiny_checkpoint
from octopus_ros.model.tokenizer import nexa_token

ORDINARY = [
    "open the front door please",
    "what is on the table?",
    "The quick brown fox, 123 times!",
    "User: turn on the light\nGPT:",
    "请关上厨房的窗户",
    "把客厅的灯打开，谢谢",
    "机器人 robot 混合 mixed",
    "<nexa is not a token> (image) 'quoted'",
]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return make_real_format_parts(tmp_path_factory.mktemp("parts"), image_size=224, mean=0.5, std=0.25)


def _build(parts, **kwargs):
    vision_dir, lm_dir = parts
    registry = load_default_registry()
    texts = {s.token: f"{s.name.replace('_', ' ')}: {s.describe()}" for s in registry}
    return build_from_parts(
        vision=resolve_vision(vision_dir), lm=lm_dir, num_functions=13, texts=texts, **kwargs
    )


def test_the_lm_keeps_its_own_tokenizer(parts):
    _, lm_dir = parts
    original = load_tokenizer(lm_dir)
    before = [original.encode(t, add_special_tokens=False) for t in ORDINARY]
    model, tok = _build(parts)
    assert [tok.encode(t, add_special_tokens=False) for t in ORDINARY] == before
    vocab = tok.get_vocab()
    for name in ("<image>", "<nexa_end>", *(nexa_token(i) for i in range(13))):
        assert vocab[name] >= len(original)  # appended, never replacing an ordinary token
        assert name in tok.all_special_tokens
        assert tok.encode(f"x{name}y", add_special_tokens=False).count(vocab[name]) == 1
    # The LM had spare rows: its vocabulary is not resized, its pretrained rows are intact.
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(lm_dir, local_files_only=True)
    emb = model.lm.get_input_embeddings().weight
    assert emb.shape == lm.get_input_embeddings().weight.shape
    assert torch.equal(emb[: len(original)], lm.get_input_embeddings().weight[: len(original)])


def test_images_at_the_towers_own_size_and_normalisation(parts, tmp_path):
    model, tok = _build(parts)
    v = model.config.vision
    assert (v.image_size, v.image_mean, v.image_std) == (224, (0.5,) * 3, (0.25,) * 3)
    save_checkpoint(tmp_path / "ckpt", model, tok, functions=load_default_registry())
    octopus = Octopus.load(tmp_path / "ckpt")
    white = np.full((300, 500, 3), 255, np.uint8)
    pixels = octopus.preprocess(white)
    assert pixels.shape == (1, 3, 224, 224)
    assert torch.allclose(pixels, torch.full_like(pixels, (1 - 0.5) / 0.25))
    decision = octopus.decide("stop", white)
    assert decision.call is not None or decision.error is not None


def test_tower_size_follows_its_config(tmp_path):
    vision_dir, lm_dir = make_real_format_parts(tmp_path, image_size=256)
    model, _ = build_from_parts(vision=resolve_vision(vision_dir), lm=lm_dir, num_functions=13)
    assert model.config.vision.image_size == 256
    assert model.config.num_image_tokens == (256 // 32) ** 2


def test_functional_rows_start_from_the_mean_of_their_texts(parts):
    model, tok = _build(parts)
    registry = load_default_registry()
    emb = model.lm.get_input_embeddings().weight
    for spec in registry:
        text = f"{spec.name.replace('_', ' ')}: {spec.describe()}"
        ids = tok.encode(text, add_special_tokens=False)
        row = emb[tok.get_vocab()[nexa_token(spec.token)]]
        assert torch.allclose(row, emb[ids].mean(0), atol=1e-6), spec.name
    random_model, random_tok = _build(parts, init="random")
    rid = random_tok.get_vocab()[nexa_token(0)]
    ids = random_tok.encode("pick up: Pick up an object.", add_special_tokens=False)
    remb = random_model.lm.get_input_embeddings().weight
    assert not torch.allclose(remb[rid], remb[ids].mean(0), atol=1e-3)


def _registry_with_open_door(tmp_path) -> FunctionRegistry:
    from octopus_ros.paths import config_path

    text = config_path("functions.yaml").read_text(encoding="utf-8").rstrip("\n") + (
        "\n  - name: open_door\n    token: 13\n    description: {en: Open a door of the house.}\n"
        "    args:\n      - name: door\n        type: enum\n        values: [front, back]\n"
    )
    path = tmp_path / "functions.yaml"
    path.write_text(text, encoding="utf-8")
    return FunctionRegistry.from_yaml(path)


def test_a_fourteenth_function_gets_the_next_token(tmp_path):
    registry = _registry_with_open_door(tmp_path)
    ckpt = load_checkpoint(make_tiny_checkpoint(tmp_path / "tiny"))
    model, tok = ckpt.model, ckpt.tokenizer
    with pytest.raises(ValueError, match="needs 14 functional tokens but the model has 13"):
        Octopus(model=model, tokenizer=tok, registry=registry)
    before_ids = [tok.encode(t, add_special_tokens=False) for t in ORDINARY]
    before_rows = model.lm.get_input_embeddings().weight.detach().clone()
    n_tok = len(tok)

    new = extend_functional_tokens(model, tok, 14, texts={13: "open door: Open a door of the house."})

    assert new == [13]
    assert model.config.nexa_token_ids[13] == tok.get_vocab()["<nexa_13>"] == n_tok
    assert [tok.encode(t, add_special_tokens=False) for t in ORDINARY] == before_ids
    emb = model.lm.get_input_embeddings().weight
    assert torch.equal(emb[:n_tok], before_rows[:n_tok])
    ids = tok.encode("open door: Open a door of the house.", add_special_tokens=False)
    assert torch.allclose(emb[n_tok], before_rows[ids].mean(0), atol=1e-6)
    assert extend_functional_tokens(model, tok, 14) == []  # idempotent
    Octopus(model=model, tokenizer=tok, registry=registry)
    save_checkpoint(tmp_path / "grown", model, tok, functions=registry)
    octopus = Octopus.load(tmp_path / "grown")
    assert octopus.grammar(("open_door",)).accepts("<nexa_13>('front')<nexa_end>")


def test_resolve_vision_normalisation_sources(tmp_path, parts):
    vision_dir, _ = parts
    openai = resolve_vision("ViT-B-32", None, tag="openai")
    assert openai.image_mean == pytest.approx(CLIP_MEAN) and openai.model_name == "ViT-B-32"
    siglip = resolve_vision("ViT-B-16-SigLIP", None, tag="webli")
    assert siglip.image_mean == (0.5, 0.5, 0.5) and siglip.resize_mode == "squash"
    assumed = resolve_vision(vision_dir / "open_clip_config.json", vision_dir / "open_clip_model.safetensors")
    assert assumed.image_std == (0.25,) * 3  # from the file's preprocess_cfg
    explicit = resolve_vision(vision_dir, image_mean=[0.1, 0.2, 0.3], image_std=[1, 1, 1])
    assert explicit.image_mean == (0.1, 0.2, 0.3) and explicit.normalisation_from == "explicit mean/std"
    with pytest.raises(ConfigError, match="no pretrained tag"):
        resolve_vision("ViT-B-32", None, tag="nonsense")
    with pytest.raises(ConfigError, match="open_clip_config.json"):
        resolve_vision(tmp_path)
