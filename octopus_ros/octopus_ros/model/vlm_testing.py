"""Tiny random VLM directories in the layout of real downloads (for tests): seconds on CPU.

    path = make_tiny_vlm(tmp_path / "smol", "idefics3", functions=config_path("functions.yaml"))
    octopus = Octopus.load(path)                     # the VLM backend (model/vlm.py)

Each is a ``save_pretrained`` model (random weights, a few layers of width 32) with its processor
(image processor, chat template) and a byte-level BPE tokenizer trained here on a small corpus,
with the family's own special tokens; nothing is downloaded. ``functions`` adds the functional
tokens (model/vlm.add_functional_tokens) and copies the registry beside them; without it the
directory is a "pretrained" VLM that has no functional tokens yet.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

FAMILIES = ("idefics3", "qwen2_vl", "qwen2_5_vl")

CORPUS = [
    "You are the brain of a robot. Look at the camera image and answer the user's request with exactly one function call.",
    "pick up the red cup",
    "please bring me the blue bottle",
    "go to the kitchen and stop",
    "text Bob that the meeting is cancelled",
    "把红色的杯子拿起来",
    "去厨房",
    "<nexa_0>('red cup')<nexa_end>",
    "System: User: Assistant: system user assistant",
    "red green blue yellow cup bottle box ball left right 0 1 2 3 4 5 6 7 8 9 . - True False ' ( ) ,",
]

SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
IDEFICS3_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<end_of_utterance>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),
]
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def tiny_vlm_tokenizer(family: str, *, vocab_size: int = 420):
    """A byte-level BPE tokenizer with the family's special tokens (as a pretrained one has them)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = IDEFICS3_SPECIALS if family == "idefics3" else QWEN_SPECIALS
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(CORPUS * 3, trainer)
    eos = "<end_of_utterance>" if family == "idefics3" else "<|im_end|>"
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=eos, pad_token="<|endoftext|>")


def tiny_vlm_parts(family: str, *, seed: int = 0, spare_rows: int = 8):
    """(model, processor) of a tiny random VLM of ``family`` (idefics3, qwen2_vl, qwen2_5_vl)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    tok = tiny_vlm_tokenizer(family)
    ids = tok.convert_tokens_to_ids
    vocab = len(tok) + spare_rows
    text = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=ids("<|im_start|>"),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    if family == "idefics3":
        from transformers import (
            Idefics3Config,
            Idefics3ForConditionalGeneration,
            Idefics3ImageProcessor,
            Idefics3Processor,
        )

        config = Idefics3Config(
            vision_config=dict(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=32,
                patch_size=8,
            ),
            text_config=dict(model_type="llama", **text),
            scale_factor=2,
            image_token_id=ids("<image>"),
            tie_word_embeddings=False,
        )
        model = Idefics3ForConditionalGeneration(config)
        image_processor = Idefics3ImageProcessor(
            size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True
        )
        processor = Idefics3Processor(
            image_processor=image_processor,
            tokenizer=tok,
            image_seq_len=4,
            chat_template=SMOLVLM_CHAT_TEMPLATE,
        )
    else:
        from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

        vision = dict(patch_size=4, spatial_merge_size=2, temporal_patch_size=2, in_channels=3, num_heads=2)
        rope = {"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 10000.0}
        special = dict(
            image_token_id=ids("<|image_pad|>"),
            video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"),
            vision_end_token_id=ids("<|vision_end|>"),
            tie_word_embeddings=True,
        )
        if family == "qwen2_vl":
            from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

            config = Qwen2VLConfig(
                vision_config=dict(depth=2, embed_dim=32, hidden_size=32, mlp_ratio=2, **vision),
                text_config=dict(rope_parameters=rope, **text),
                **special,
            )
            model = Qwen2VLForConditionalGeneration(config)
        else:
            from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

            config = Qwen2_5_VLConfig(
                vision_config=dict(
                    depth=2,
                    hidden_size=32,
                    intermediate_size=64,
                    out_hidden_size=32,
                    window_size=16,
                    fullatt_block_indexes=[1],
                    **vision,
                ),
                text_config=dict(rope_parameters=rope, **text),
                **special,
            )
            model = Qwen2_5_VLForConditionalGeneration(config)
        grid = dict(patch_size=4, merge_size=2, temporal_patch_size=2)
        image_processor = Qwen2VLImageProcessor(
            size={"shortest_edge": 8 * 8 * 4, "longest_edge": 32 * 32}, **grid
        )
        processor = Qwen2VLProcessor(
            image_processor=image_processor,
            tokenizer=tok,
            video_processor=Qwen2VLVideoProcessor(**grid),
            chat_template=QWEN_CHAT_TEMPLATE,
        )
    return model.eval(), processor


def make_tiny_vlm(
    path: str | Path,
    family: str,
    *,
    functions: str | Path | None = None,
    num_functions: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a tiny random VLM directory; with ``functions`` (a functions.yaml) the functional
    tokens of that registry (or ``num_functions`` of them) are added and the file copied in."""
    from .vlm import add_functional_tokens

    path = Path(path)
    model, processor = tiny_vlm_parts(family, seed=seed)
    if functions is not None:
        from octopus_ros.data.registry_data import warm_start_text
        from octopus_ros.functions import FunctionRegistry

        registry = FunctionRegistry.from_yaml(functions)
        texts = {s.token: warm_start_text(s) for s in registry}
        add_functional_tokens(model, processor.tokenizer, num_functions or registry.num_tokens, texts=texts)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    processor.save_pretrained(str(path))
    if functions is not None:
        shutil.copyfile(functions, path / "functions.yaml")
    return path
