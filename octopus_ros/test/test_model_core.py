"""Model core: configs, tokenizer, prompt, OctopusModel forward, freezing (tiny random models)."""

from __future__ import annotations

import json

import pytest
import torch

from octopus_ros.model import (
    ConfigError,
    OctopusConfig,
    PromptFormat,
    build_model,
    collate,
    get_model_config,
    list_models,
    load_tokenizer,
    resolve_config,
)
from octopus_ros.model.testing import tiny_config, tiny_model
from octopus_ros.model.tokenizer import IMAGE_TOKEN, NEXA_END_TOKEN, nexa_token, special_token_ids
from octopus_ros.paths import default_model_dir


@pytest.fixture(scope="module")
def model(tok):
    return tiny_model(tok)


def test_named_configs_resolve():
    assert {
        "octopus-tiny",
        "octopus-tiny-rn",
        "octopus-tiny-rnc",
        "octopus-tiny-perceiver",
        "octopus-0.5b-shape",
    } <= set(list_models())
    rn = resolve_config(get_model_config("octopus-tiny-rn"))  # the v3/v4 bundled models' architecture
    assert rn.vision.is_resnet and rn.vision.grid_size == 2 and rn.vision.width == 1024
    assert rn.num_image_tokens == 4
    rnc = resolve_config(get_model_config("octopus-tiny-rnc"))  # the bundled model's: + 2 colour tokens
    assert rnc.vision.shape_input == "luma" and rnc.num_image_tokens == 4 + 2
    bundled = json.loads((default_model_dir() / "config.json").read_text())["model"]
    assert bundled["name"] == "octopus-tiny-rnc" and bundled["num_image_tokens"] == 6
    tiny = resolve_config(get_model_config("octopus-tiny"))
    assert tiny.num_image_tokens == 64 and tiny.vision.image_size == 64
    big = resolve_config(get_model_config("octopus-0.5b-shape"))
    assert big.num_image_tokens == 49 and big.lm["hidden_size"] == 896
    perceiver = resolve_config(get_model_config("octopus-tiny-perceiver"))
    assert perceiver.num_image_tokens == 16
    with pytest.raises(ConfigError, match="unknown model config"):
        get_model_config("no-such-model")


def test_config_json_round_trip_and_errors(tmp_path):
    cfg = tiny_config(connector="perceiver")
    path = tmp_path / "c.json"
    cfg.to_json(path)
    assert OctopusConfig.from_json(path) == cfg
    with pytest.raises(ConfigError, match="unknown OctopusConfig field"):
        OctopusConfig.from_dict({"bogus": 1})
    with pytest.raises(ConfigError, match="model_type"):
        resolve_config(cfg.replace(lm={"model_type": "gpt2"}))
    with pytest.raises(ConfigError, match="num_image_tokens is 7"):
        resolve_config(cfg.replace(num_image_tokens=7))
    assert OctopusConfig.from_dict({"lm": "/some/hf_dir"}).lm_path == "/some/hf_dir"


def test_tokenizer_specials_chinese_and_punctuation(tok, tmp_path):
    ids = special_token_ids(tok, 13)
    assert len(set(ids.nexa)) == 13 and ids.image not in ids.nexa
    call = "<nexa_3>('红色的杯子', 2)<nexa_end>"
    enc = tok.encode(call, add_special_tokens=False)
    assert enc[0] == ids.nexa[3] and enc[-1] == ids.nexa_end
    assert tok.decode(enc) == call
    pieces = tok.convert_ids_to_tokens(enc)
    for p in "(),'":  # call punctuation is always its own token
        assert p in pieces
    # forced text tokenizes the same on its own as inside a call
    assert tok.encode("')", add_special_tokens=False) == tok.encode(
        "'", add_special_tokens=False
    ) + tok.encode(")", add_special_tokens=False)
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.encode(call, add_special_tokens=False) == enc
    assert special_token_ids(again, 13) == ids
    for t in (IMAGE_TOKEN, NEXA_END_TOKEN, nexa_token(12)):
        assert t in again.all_special_tokens


def test_prompt_and_training_example(tok, model):
    fmt = PromptFormat(tokenizer=tok, config=model.config)
    prompt = fmt.build_prompt("pick up the red cup")
    assert prompt.count(IMAGE_TOKEN) == model.config.num_image_tokens
    assert prompt.startswith(model.config.system_prompt) and prompt.endswith("GPT:")
    ex = fmt.build_training_example("pick up the red cup", "<nexa_0>('red cup')<nexa_end>")
    n_prompt = len(fmt.encode_prompt("pick up the red cup"))
    assert ex.labels[:n_prompt] == [-100] * n_prompt
    assert ex.labels[n_prompt:] == ex.input_ids[n_prompt:]
    assert (
        ex.input_ids[n_prompt] == model.config.nexa_token_ids[0]
        and ex.input_ids[-1] == model.config.nexa_end_id
    )
    plain = fmt.build_training_example("去厨房", "go_to(place='kitchen')")
    assert plain.input_ids[-1] == model.config.eos_token_id
    assert fmt.encode_prompt("anything")[: len(fmt.system_prefix_ids())] == fmt.system_prefix_ids()


@pytest.mark.parametrize(
    ("connector", "tower"),
    [
        ("mlp", "vit"),
        ("perceiver", "vit"),
        ("mlp", "resnet"),
        ("mlp", "resnet-colour"),
        ("perceiver", "resnet-colour"),
    ],
)
def test_forward_shapes_loss_and_backward(tok, connector, tower):
    size = 64 if tower.startswith("resnet") else 32  # the ResNet's stride-32 grid: 2x2 tokens at 64 px
    m = tiny_model(tok, connector=connector, tower=tower, image_size=size)
    K, D = m.config.num_image_tokens, m.config.lm["hidden_size"]
    if connector == "mlp" and tower.startswith("resnet"):
        assert 4 + (2 if tower == "resnet-colour" else 0) == K  # 2x2 grid (+ 2 colour tokens)
    px = torch.randn(2, 3, size, size)
    assert m.encode_image(px).shape == (2, K, D)
    pooled = m.clip_embedding(px)
    assert pooled.shape == (2, 32) and torch.allclose(pooled.norm(dim=-1), torch.ones(2))
    fmt = PromptFormat(tokenizer=tok, config=m.config)
    batch = collate(
        [
            fmt.build_training_example("pick up the red cup", "<nexa_0>('red cup')<nexa_end>"),
            fmt.build_training_example("去厨房", "<nexa_1>('kitchen', 0.5)<nexa_end>"),
        ],
        pad_token_id=m.config.pad_token_id,
    )
    m.train()
    out = m(**batch, pixel_values=px)
    assert out.logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(out.loss)
    out.loss.backward()
    assert (
        m.vision.visual.conv1.weight.grad is not None and m.connector.parameters().__next__().grad is not None
    )


def test_image_token_mismatch_names_both_counts(tok, model):
    fmt = PromptFormat(tokenizer=tok, config=model.config)
    ids = torch.tensor([fmt.encode_prompt("hi")])
    K = model.config.num_image_tokens
    with pytest.raises(ValueError, match=rf"{K} <image> token\(s\) but {2 * K} image embedding"):
        model(ids, image_embeds=torch.zeros(2, K, 32))
    with pytest.raises(ValueError, match=rf"{K} <image> token\(s\) but 0 image embedding"):
        model(ids)


def test_freeze_unfreeze_parts(tok):
    m = tiny_model(tok)
    m.freeze("vision", "lm")
    m.unfreeze("embeddings")
    assert not any(p.requires_grad for p in m.vision.parameters())
    assert all(p.requires_grad for p in m.connector.parameters())
    assert m.lm.get_input_embeddings().weight.requires_grad
    assert not m.lm.model.layers[0].mlp.up_proj.weight.requires_grad
    assert m.num_parameters(trainable_only=True) == m.num_parameters("connector") + m.num_parameters(
        "embeddings"
    )
    with pytest.raises(ValueError, match="unknown model part"):
        m.freeze("wheels")


def test_resize_token_embeddings_keeps_ids_on_lm_config(tok):
    m = tiny_model(tok)
    n = m.lm.get_input_embeddings().num_embeddings
    m.resize_token_embeddings(n + 8)
    assert m.lm.get_input_embeddings().num_embeddings == n + 8 == m.config.lm["vocab_size"]
    assert m.lm.config.eos_token_id == m.config.eos_token_id == m.lm.generation_config.eos_token_id


def test_build_from_hf_dir_and_open_clip_checkpoint(tok, model, tmp_path):
    from safetensors.torch import save_file

    model.lm.save_pretrained(tmp_path / "lm")
    save_file(
        {f"visual.{k}": v.contiguous() for k, v in model.vision.visual.state_dict().items()},
        tmp_path / "oc.safetensors",
    )
    cfg = model.config.replace(
        lm=str(tmp_path / "lm"), vision={"checkpoint": str(tmp_path / "oc.safetensors")}
    )
    other = build_model(cfg)
    for a, b in ((model.lm, other.lm), (model.vision, other.vision)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_factorised_resnet_grid_tokens_are_colour_blind_and_colour_tokens_are_not(tok):
    """With shape_input 'luma' the open_clip tower's tokens depend on luminance only: an image
    and a recoloured copy of the same luminance give the same grid tokens, while the colour
    tokens (and the pooled embedding) tell them apart."""
    m = tiny_model(tok, tower="resnet-colour", image_size=64, seed=4)
    mean = torch.tensor(m.config.vision.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(m.config.vision.image_std).view(1, 3, 1, 1)
    rgb = torch.rand(1, 3, 64, 64)
    luma = (
        (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True).expand(1, 3, 64, 64)
    )
    with torch.no_grad():
        p1, t1 = m.vision((rgb - mean) / std)
        p2, t2 = m.vision((luma - mean) / std)
    assert t1.shape == (1, 6, m.config.vision.width)
    torch.testing.assert_close(t1[:, :4], t2[:, :4], atol=1e-4, rtol=1e-4)
    assert (t1[:, 4:] - t2[:, 4:]).abs().max() > 1e-3 and (p1 - p2).abs().max() > 1e-3


def test_factorised_vision_config_errors():
    base = tiny_config(tower="resnet", image_size=64)
    with pytest.raises(ConfigError, match="colour-blind"):
        resolve_config(base.replace(vision={"shape_input": "luma"}))
    with pytest.raises(ConfigError, match="shape_input"):
        resolve_config(base.replace(vision={"shape_input": "hsv", "colour_tokens": 1}))
    with pytest.raises(ConfigError, match="ResNet"):
        resolve_config(tiny_config(tower="vit").replace(vision={"colour_tokens": 2}))
    pooled = resolve_config(base.replace(vision={"colour_tokens": 3}, connector={"pool_stride": 2}))
    assert pooled.num_image_tokens == 1 + 3


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("Pick up the red cup.", "Pick up the red cup"),
        ("  把碗洗了。 ", "把碗洗了"),
        ("Stop!!!", "Stop"),
        ("wait...", "wait"),
        ("停下！", "停下"),
        ("text mom: landed safely!", "text mom: landed safely"),
        ("are you ok?", "are you ok?"),  # a question mark stays: the templates have questions
        ("Mr. Smith is here", "Mr. Smith is here"),  # only the end is cut
        ("pick  up\tthe cup ", "pick up the cup"),  # a run of whitespace is one space
        ("跟 Bob 说 晚安", "跟Bob说晚安"),  # Chinese: no space beside a Chinese character
        ("把碗放好， 谢谢。", "把碗放好，谢谢"),
        ("Pick up the 红色 cup", "Pick up the 红色 cup"),  # English with a Chinese word keeps its spaces
        ("。", "。"),  # nothing but marks: left as it is (the model declines it)
        ("", ""),
        ("PICK UP THE RED CUP!", "pick up the red cup"),  # capitals only (a CTC recogniser's): lower case
        ("STOP", "stop"),
        ("TEXT BOB THAT I'M LATE", "text bob that i'm late"),
        ("I", "I"),  # one capital says nothing about the case of the rest
        ("Text BOB that I'm late", "Text BOB that I'm late"),  # some lower case: the case is kept
        ("把TV关了", "把TV关了"),  # Chinese keeps its Latin letters as they are
        ("ＰＩＣＫ ｕｐ ３ cups", "PICK up 3 cups"),  # full-width letters and digits read as ASCII
        ("速度百分之３０，谢谢！", "速度百分之30，谢谢"),  # full-width punctuation stays
    ],
)
def test_model_utterance_cuts_only_the_ending_marks(text, read):
    from octopus_ros.lean.prompt import model_utterance

    assert model_utterance(text) == read
    assert model_utterance(read) == read  # idempotent: build_prompt applies it again


def test_the_prompt_reads_the_utterance_without_its_ending(tok, model):
    fmt = PromptFormat(tokenizer=tok, config=model.config)
    assert fmt.build_prompt("pick up the red cup.") == fmt.build_prompt(" pick up the red cup ")
    assert fmt.build_prompt("are you ok?") != fmt.build_prompt("are you ok")
