"""The native VLM backend (model/vlm.py): SmolVLM / Idefics3, Qwen2-VL, Qwen2.5-VL behind Octopus.

Tiny random models of each family, saved with save_pretrained into a temp dir (nothing is
downloaded), load through ``Octopus.load``'s backend selector and decide under the call grammar.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from octopus_ros.functions import FunctionRegistry
from octopus_ros.model import CheckpointError, Octopus
from octopus_ros.model.vlm import VLMOctopus, add_functional_tokens, prepare_vlm
from octopus_ros.model.vlm_testing import CORPUS, FAMILIES, make_tiny_vlm, tiny_vlm_parts
from octopus_ros.paths import config_path

FUNCTIONS = config_path("functions.yaml")
UTTERANCES = ["pick up the red cup", "go to the kitchen", "text Bob that the meeting is cancelled", "去厨房"]


def frame(seed: int = 0, shape=(48, 64, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlm")
    return {f: make_tiny_vlm(root / f, f, functions=FUNCTIONS) for f in FAMILIES}


@pytest.fixture(scope="module")
def loaded(tiny_dirs):
    return {f: Octopus.load(p) for f, p in tiny_dirs.items()}


@pytest.fixture
def copy_of(tiny_dirs, tmp_path):
    def make(family: str = "idefics3"):
        dst = tmp_path / family
        shutil.copytree(tiny_dirs[family], dst)
        return dst

    return make


@pytest.mark.parametrize("family", FAMILIES)
def test_backend_selector_loads_each_family(loaded, family):
    octopus = loaded[family]
    assert isinstance(octopus, VLMOctopus)
    assert octopus.model.config.model_type == family
    assert octopus.registry.num_tokens == FunctionRegistry.from_yaml(FUNCTIONS).num_tokens


def test_octopus_checkpoint_still_loads_as_octopus(tmp_path):
    from octopus_ros.model.testing import make_tiny_checkpoint

    path = make_tiny_checkpoint(tmp_path / "ckpt", FUNCTIONS)
    octopus = Octopus.load(path)
    assert type(octopus) is Octopus


@pytest.mark.parametrize("family", FAMILIES)
def test_prefill_matches_the_models_own_forward(loaded, family):
    """The spliced image segment, the cached prefixes and (Qwen) the M-RoPE positions give the
    logits of the model's own forward on the processor's full prompt, and so does a decode step."""
    from PIL import Image

    octopus = loaded[family]
    image = frame(1)
    ids = octopus.prompt.encode_prompt(UTTERANCES[0])
    before, middle, after = octopus.prompt._split(())
    text = octopus.tokenizer.decode(before) + octopus.processor.image_token + middle + UTTERANCES[0] + after
    inputs = octopus.processor(
        images=[Image.fromarray(image)], text=[text], return_tensors="pt", add_special_tokens=False
    )
    with torch.no_grad():
        ref = octopus.model(**inputs).logits[0, -1]
        nxt = int(ref.argmax())
        longer = dict(inputs, input_ids=torch.cat([inputs["input_ids"], torch.tensor([[nxt]])], 1))
        longer["attention_mask"] = torch.ones_like(longer["input_ids"])
        if "mm_token_type_ids" in inputs:
            longer["mm_token_type_ids"] = torch.cat(
                [inputs["mm_token_type_ids"], torch.zeros((1, 1), dtype=torch.int)], 1
            )
        ref_step = octopus.model(**longer).logits[0, -1]
    for enc in (octopus.encode(image), octopus.encode(image, prefill=False)):
        with torch.no_grad():
            logits, cache, _ = octopus._prefill(ids, enc)
            step = octopus._lm(input_ids=torch.tensor([[nxt]]), past_key_values=cache).logits[0, -1]
        torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(step, ref_step, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_decide_under_grammar_and_allowlist(loaded, family):
    octopus = loaded[family]
    registry = octopus.registry
    decline = registry.decline_function.name
    for i, utterance in enumerate(UTTERANCES):
        image = frame(i)
        free = octopus.decide(utterance, image)
        assert free.ok, (free.raw_text, free.error)
        assert 0.0 <= free.confidence <= 1.0
        # an allowlist without the unconstrained choice: the answer moves inside it
        others = [s.name for s in registry.enabled() if s.name not in (free.call.function, decline)]
        allow = (others[i % len(others)],)
        d = octopus.decide(utterance, image, allowlist=allow)
        assert d.ok, (d.raw_text, d.error)
        assert d.call.function in registry.allowed_names(allow)
        assert d.call.function != free.call.function or free.call.function == decline
        assert 0.0 <= d.confidence <= 1.0
        assert d.raw_text.startswith("<nexa_") and d.raw_text.endswith("<nexa_end>")
        assert d.timings["tokens"] >= 2 and "prefill" in d.timings


@pytest.mark.parametrize("family", FAMILIES)
def test_pre_encoded_frame_gives_the_same_decision(loaded, tiny_dirs, family):
    octopus = loaded[family]
    uncached = Octopus.load(tiny_dirs[family], prefix_cache=False)
    for i, utterance in enumerate(UTTERANCES):
        image = frame(10 + i)
        enc = octopus.encode(image)
        assert enc.kv is not None
        a = octopus.decide(utterance, enc)
        b = octopus.decide(utterance, image)
        c = uncached.decide(utterance, image)
        assert a.raw_text == b.raw_text == c.raw_text
        assert a.confidence == pytest.approx(b.confidence, rel=1e-4, abs=1e-12)
        assert a.confidence == pytest.approx(c.confidence, rel=1e-4, abs=1e-12)
        # the second decision on the frame reuses the encoding: only the words are prefilled
        assert a.timings["encode"] == 0.0 and b.timings["encode"] > 0.0


def test_in_context_examples_and_other_modes(loaded, tiny_dirs):
    octopus = loaded["qwen2_vl"]
    uncached = Octopus.load(tiny_dirs["qwen2_vl"], prefix_cache=False)
    context = [("stop right now", "stop()")]
    image = frame(3)
    enc = octopus.encode(image)
    a = octopus.decide(UTTERANCES[0], enc, context=context)  # another prefix than the encoding's
    b = uncached.decide(UTTERANCES[0], image, context=context)
    assert a.raw_text == b.raw_text and a.confidence == pytest.approx(b.confidence, rel=1e-4, abs=1e-12)
    # the encoding's KV (system prompt + image, no examples) is not used for a prompt with examples:
    # same logits as a prefill from nothing (the examples move them by ~1e-2 on these weights)
    ids = octopus.prompt.encode_prompt(UTTERANCES[0], octopus.canonical_context(context))
    with torch.no_grad():
        cached, *_ = octopus._prefill(ids, enc)
        fresh, *_ = uncached._prefill(ids, uncached.encode(image))
    torch.testing.assert_close(cached, fresh, atol=1e-5, rtol=1e-4)
    for mode in ("generate", "plain"):
        d = octopus.decide(UTTERANCES[0], enc, mode=mode)  # random weights: usually unparsable
        assert d.mode == mode and d.timings["tokens"] >= 1
        assert d.ok or d.error is not None


def test_int8_loads_and_decides(tiny_dirs):
    octopus = Octopus.load(tiny_dirs["idefics3"], precision="int8")
    linears = [m for m in octopus.model.modules() if type(m) is torch.nn.Linear]
    assert not linears  # every Linear is dynamically quantised
    d = octopus.decide(UTTERANCES[0], frame(0))
    assert d.ok and 0.0 <= d.confidence <= 1.0


@pytest.mark.parametrize("family", ["idefics3", "qwen2_vl"])
def test_functional_tokens_keep_ordinary_ids(family):
    model, processor = tiny_vlm_parts(family)
    tok = processor.tokenizer
    texts = [t for t in CORPUS if "<nexa" not in t] + ["open the window", "<|im_start|>user\nhi"]
    before = [tok.encode(t, add_special_tokens=False) for t in texts]
    rows = model.get_input_embeddings().weight.detach().clone()
    n = len(tok)
    ids = add_functional_tokens(model, tok, 13, texts={i: f"function {i}" for i in range(13)})
    assert [tok.encode(t, add_special_tokens=False) for t in texts] == before
    assert ids == list(range(n, n + 13)) and tok.convert_tokens_to_ids("<nexa_end>") == n + 13
    assert set(ids) <= set(tok.all_special_ids)
    assert tok.encode("<nexa_3>('red cup')<nexa_end>", add_special_tokens=False)[0] == ids[3]
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] >= len(tok)
    torch.testing.assert_close(emb[: rows.shape[0]][:n], rows[:n])  # existing rows unchanged


def test_prepare_vlm_adds_the_registry_tokens(tmp_path):
    src = make_tiny_vlm(tmp_path / "pretrained", "qwen2_vl")  # a "downloaded" VLM: no functional tokens
    with pytest.raises(CheckpointError) as e:
        Octopus.load(src, registry=FUNCTIONS)
    assert e.value.file.endswith("tokenizer.json") and "no functional tokens" in e.value.problem
    dst = prepare_vlm(src, tmp_path / "prepared", FUNCTIONS)
    octopus = Octopus.load(dst)
    assert isinstance(octopus, VLMOctopus) and (dst / "functions.yaml").is_file()
    assert octopus.decide(UTTERANCES[0], frame(0)).ok


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _config_edit(key, value):
    def edit(path):
        config = json.loads(path.read_text())
        config[key] = value
        path.write_text(json.dumps(config))

    return edit


def _text_layers(path):
    config = json.loads(path.read_text())
    config["text_config"]["num_hidden_layers"] = 3
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    "name,damage,culprit,words",
    [
        ("model.safetensors", lambda p: p.unlink(), "model.safetensors", "missing"),
        ("model.safetensors", _truncate, "model.safetensors", "unreadable"),
        ("tokenizer.json", lambda p: p.unlink(), "tokenizer.json", "missing"),
        ("tokenizer.json", lambda p: p.write_text("{ not json"), "tokenizer.json", "unreadable"),
        ("config.json", _config_edit("model_type", "llava"), "config.json", "not a supported VLM family"),
        ("config.json", lambda p: p.write_text("{ not json"), "config.json", "not valid JSON"),
        ("config.json", _text_layers, "model.safetensors", "do not match config.json"),
        ("functions.yaml", lambda p: p.unlink(), "functions.yaml", "missing"),
    ],
)
def test_damaged_directories_name_the_file(copy_of, name, damage, culprit, words):
    path = copy_of("idefics3")
    if name == "config.json" and words == "not valid JSON":
        # an unreadable config.json is not recognised as a HF directory: ask the backend directly
        damage(path / name)
        with pytest.raises(CheckpointError) as e:
            VLMOctopus.load(path)
    else:
        damage(path / name)
        with pytest.raises(CheckpointError) as e:
            Octopus.load(path)
    assert e.value.file == str(path / culprit), e.value
    assert words in e.value.problem, e.value.problem


def test_registry_needing_more_tokens_names_the_registry(tmp_path):
    path = make_tiny_vlm(tmp_path / "five", "qwen2_vl", functions=FUNCTIONS, num_functions=5)
    with pytest.raises(CheckpointError) as e:
        Octopus.load(path)
    assert e.value.file == str(path / "functions.yaml")
    assert "needs 13 functional tokens" in e.value.problem and "has 5" in e.value.problem


def test_tokenizer_without_functional_tokens(tmp_path):
    path = make_tiny_vlm(tmp_path / "bare", "idefics3")
    with pytest.raises(CheckpointError) as e:
        Octopus.load(path, registry=FUNCTIONS)
    assert e.value.file == str(path / "tokenizer.json") and "no functional tokens" in e.value.problem


def test_bad_frames_are_value_errors(loaded):
    octopus = loaded["idefics3"]
    for bad in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((0, 4, 3), np.uint8)):
        with pytest.raises(ValueError):
            octopus.encode(bad)
