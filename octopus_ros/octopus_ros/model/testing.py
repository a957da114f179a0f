"""Tiny random models for tests (of this package and of the nodes): seconds to build on CPU.

tok = tiny_tokenizer(num_functions=13)
model = tiny_model(tok, num_functions=13)                 # OctopusModel, random weights
path = make_tiny_checkpoint(tmp_path / "ckpt", functions_yaml)
"""

from __future__ import annotations

from pathlib import Path

import torch

from .config import OctopusConfig
from .modeling import OctopusModel, build_model
from .tokenizer import attach_tokenizer, train_tokenizer

# A small bilingual corpus that covers the prompt template and the call syntax.
TINY_CORPUS = [
    "You are the brain of a robot. Look at the camera image and answer the user's request with exactly one function call.",
    "User: pick up the red cup GPT:",
    "User: please bring me the blue bottle GPT:",
    "User: go to the kitchen GPT:",
    "User: 把红色的杯子拿起来 GPT:",
    "User: 请把蓝色的瓶子递给我 GPT:",
    "User: 去厨房 GPT:",
    "<nexa_0>('red cup')<nexa_end>",
    "<nexa_1>('kitchen', 0.5)<nexa_end>",
    "<nexa_2>(3, True)<nexa_end>",
    "<nexa_12>()<nexa_end>",
    "grasp(object='red cup')",
    '{"function": "grasp", "arguments": {"object": "red cup"}}',
    "red green blue yellow cup bottle box ball left right up down 0 1 2 3 4 5 6 7 8 9 . - True False",
    "红色 绿色 蓝色 黄色 杯子 瓶子 盒子 球 左 右",
]


def tiny_config(
    *,
    connector: str = "mlp",
    image_size: int = 32,
    hidden: int = 32,
    layers: int = 2,
    tower: str = "vit",
) -> OctopusConfig:
    """A test-sized config: ViT (image_size px, 8 px patches, width 32) or, with
    ``tower="resnet"``, CLIP's ModifiedResNet (width 8: 256-wide tokens on a stride-32 grid),
    or ``tower="resnet-colour"``, that ResNet on luma with 2 colour tokens; Qwen2 LM (hidden 32)."""
    if tower == "vit":
        vision_cfg = {
            "image_size": image_size,
            "patch_size": 8,
            "layers": layers,
            "width": 32,
            "head_width": 16,
        }
    elif tower in ("resnet", "resnet-colour"):
        vision_cfg = {"image_size": image_size, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16}
    else:
        raise ValueError(f"tower must be 'vit', 'resnet' or 'resnet-colour', got {tower!r}")
    factorised = {"shape_input": "luma", "colour_tokens": 2} if tower == "resnet-colour" else {}
    return OctopusConfig.from_dict(
        {
            "name": f"octopus-test-{tower}-{connector}",
            "vision": {"open_clip": {"embed_dim": 32, "vision_cfg": vision_cfg}, **factorised},
            "connector": {"type": connector, "num_latents": 4, "depth": 1, "heads": 2, "dim_head": 16},
            "lm": {
                "model_type": "qwen2",
                "vocab_size": 256,
                "hidden_size": hidden,
                "intermediate_size": 2 * hidden,
                "num_hidden_layers": layers,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "max_position_embeddings": 512,
                "tie_word_embeddings": True,
            },
        }
    )


def tiny_tokenizer(*, num_functions: int = 13, vocab_size: int = 400, texts: list[str] | None = None):
    """A byte-level BPE tokenizer trained on :data:`TINY_CORPUS` (plus ``texts``), specials added."""
    return train_tokenizer(
        (texts or []) + TINY_CORPUS * 4, vocab_size, min_frequency=2, num_functions=num_functions
    )


def tiny_model(tokenizer, *, num_functions: int = 13, seed: int = 0, **config_kwargs) -> OctopusModel:
    """A random tiny OctopusModel matched to ``tokenizer`` (whose specials are added if needed)."""
    config = attach_tokenizer(tiny_config(**config_kwargs), tokenizer, num_functions)
    torch.manual_seed(seed)
    return build_model(config)


def adversarial_decode(tokenizer, grammar, function: int, wanted, *, seed: int, jump_forward: bool = True):
    """Constrained decoding of ``grammar`` with a fake LM that picks function ``function``, wants
    every token whose text (quotes and spaces stripped) is part of one of the ``wanted`` strings
    (+20 on its logit), never wants to stop, and adds Gaussian noise from ``seed``: what a grammar
    rule must hold against (the named-contact and named-object tests). Returns the DecodeResult."""
    import numpy as np

    from .decoding import ConstrainedDecoder

    config = tiny_model(tokenizer).config
    decoder = ConstrainedDecoder(
        tokenizer=tokenizer, nexa_token_ids=config.nexa_token_ids, nexa_end_id=config.nexa_end_id
    )
    texts = [tokenizer.decode([i]) for i in range(len(tokenizer))]
    want = torch.tensor(
        [20.0 if any(t.strip("' ") and t.strip("' ") in w for w in wanted) else 0.0 for t in texts]
    )
    rng = np.random.default_rng(seed)

    def logits() -> torch.Tensor:
        out = want + torch.from_numpy(rng.normal(0, 3, len(tokenizer)).astype(np.float32))
        out[config.nexa_end_id] = -50.0
        return out

    first = logits()
    first[config.nexa_token_ids[function]] = 100.0
    return decoder.decode(first, lambda ids: logits(), grammar, max_new_tokens=200, jump_forward=jump_forward)


def make_tiny_checkpoint(
    path: str | Path,
    functions: str | Path | None = None,
    *,
    num_functions: int = 13,
    seed: int = 0,
    **config_kwargs,
) -> Path:
    """Write a random tiny checkpoint directory (for node and integration tests)."""
    from .checkpoint import save_checkpoint

    tokenizer = tiny_tokenizer(num_functions=num_functions)
    model = tiny_model(tokenizer, num_functions=num_functions, seed=seed, **config_kwargs)
    return save_checkpoint(
        path, model, tokenizer, functions=functions, metrics={"note": "random tiny test model"}
    )


# -- "real-format" parts: what a user downloads, at test size ----------------------------------
REAL_FORMAT_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "open the front door please",
    "please close the window in the kitchen",
    "turn on the light in the living room",
    "what is on the table",
    "机器人请打开前门",
    "请关上厨房的窗户",
    "把客厅的灯打开",
    "桌子上有什么",
    "User: GPT: You are a helpful robot.",
]


def make_real_format_parts(
    root: str | Path, *, image_size: int = 224, mean: float = 0.5, std: float = 0.5, seed: int = 0
) -> tuple[Path, Path]:
    """Write a tiny open_clip model and a tiny Qwen2 LM in the layouts real downloads use.

    Returns (vision_dir, lm_dir): ``vision_dir`` holds ``open_clip_config.json`` (``model_cfg``
    + ``preprocess_cfg`` with ``mean``/``std``, as open_clip models on the HF hub do) and
    ``open_clip_model.safetensors`` (the whole CLIP state dict, text tower included); ``lm_dir``
    is a ``save_pretrained`` Qwen2ForCausalLM with its own byte-level BPE tokenizer beside it
    (``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>`` specials, spare embedding rows, tied
    embeddings, like Qwen2.5-0.5B). Built locally; nothing is downloaded.
    """
    import json

    from open_clip.model import CLIP
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    root = Path(root)
    vision_dir, lm_dir = root / "open_clip_tiny", root / "qwen2_tiny"
    vision_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model_cfg = {
        "embed_dim": 32,
        "vision_cfg": {
            "image_size": image_size,
            "patch_size": 32,
            "layers": 1,
            "width": 32,
            "head_width": 16,
        },
        "text_cfg": {"context_length": 16, "vocab_size": 128, "width": 32, "heads": 2, "layers": 1},
    }
    clip = CLIP(**model_cfg)
    save_file(
        {k: v.contiguous() for k, v in clip.state_dict().items()},
        str(vision_dir / "open_clip_model.safetensors"),
    )
    preprocess = {"size": image_size, "mean": [mean] * 3, "std": [std] * 3, "resize_mode": "shortest"}
    (vision_dir / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess}, indent=2), encoding="utf-8"
    )

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        REAL_FORMAT_CORPUS * 3,
        trainers.BpeTrainer(
            vocab_size=420,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.save_pretrained(str(lm_dir))
    vocab = (len(tok) + 63) // 64 * 64 + 64  # spare rows, as real checkpoints have
    lm_cfg = Qwen2Config(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    Qwen2ForCausalLM(lm_cfg).save_pretrained(str(lm_dir))
    return vision_dir, lm_dir
