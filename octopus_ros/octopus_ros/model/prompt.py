"""Prompt format (Otter-like): system prompt, the image tokens, then ``User: ... GPT:``.

Training and inference tokenize the prompt and the answer separately and concatenate the ids,
so the model sees exactly the same token boundaries in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import OctopusConfig
from .tokenizer import IMAGE_TOKEN

IGNORE_INDEX = -100  # labels with this value carry no loss


@dataclass
class TrainingExample:
    """One tokenized (prompt, answer) pair; ``labels`` is -100 on the prompt."""

    input_ids: list[int]
    labels: list[int]

    @property
    def attention_mask(self) -> list[int]:
        return [1] * len(self.input_ids)


PROMPT_PLACEHOLDERS = ("system", "images", "instruction")


def check_prompt_template(template: str) -> None:
    """Raise ValueError naming the problem when ``template`` is not a usable prompt template:
    it must be a ``str.format`` template using only {system}, {images} and {instruction},
    and must contain {images} and {instruction}."""
    import string

    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as e:
        raise ValueError(f"prompt_template is not a valid format string: {e}") from e
    unknown = sorted({f for f in fields if f not in PROMPT_PLACEHOLDERS})
    if unknown:
        raise ValueError(
            f"prompt_template has unknown placeholder(s) {unknown}; allowed: {list(PROMPT_PLACEHOLDERS)}"
        )
    missing = [f for f in ("images", "instruction") if f not in fields]
    if missing:
        raise ValueError(f"prompt_template lacks the placeholder(s) {missing}")


class PromptFormat:
    """Builds prompts and training examples for a tokenizer + config."""

    def __init__(self, *, tokenizer, config: OctopusConfig):
        config.require_token_ids()
        if config.num_image_tokens is None:
            raise ValueError("config.num_image_tokens is not set (resolve the config first)")
        self.tokenizer = tokenizer
        self.config = config
        check_prompt_template(config.prompt_template)

    def build_prompt(self, instruction: str) -> str:
        """The prompt text: system prompt + ``<image>`` x K + user turn + assistant cue."""
        return self.config.prompt_template.format(
            system=self.config.system_prompt,
            images=IMAGE_TOKEN * self.config.num_image_tokens,
            instruction=instruction.strip(),
        )

    def encode_prompt(self, instruction: str) -> list[int]:
        """Token ids of :meth:`build_prompt` (the tokenizer's own BOS, if any, included)."""
        return self.tokenizer.encode(self.build_prompt(instruction), add_special_tokens=True)

    def system_prefix_ids(self) -> list[int]:
        """Ids before the first ``<image>`` token: the part of every prompt that never changes,
        whose KV cache can be computed once and reused."""
        ids = self.encode_prompt("x")
        return ids[: ids.index(self.config.image_token_id)]

    def encode_answer(self, answer: str) -> list[int]:
        """Answer ids; an answer that does not end with ``<nexa_end>`` (plain-text mode) gets eos."""
        ids = self.tokenizer.encode(answer, add_special_tokens=False)
        if not ids or ids[-1] != self.config.nexa_end_id:
            ids.append(self.config.eos_token_id)
        return ids

    def build_training_example(self, instruction: str, answer: str) -> TrainingExample:
        """input_ids = prompt + answer; loss only on the answer tokens."""
        prompt = self.encode_prompt(instruction)
        answer_ids = self.encode_answer(answer)
        return TrainingExample(
            input_ids=prompt + answer_ids, labels=[IGNORE_INDEX] * len(prompt) + answer_ids
        )


def collate(examples: list[TrainingExample], *, pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: input_ids, attention_mask, labels, each (B, T)."""
    T = max(len(e.input_ids) for e in examples)
    B = len(examples)
    input_ids = torch.full((B, T), pad_token_id, dtype=torch.long)
    labels = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        input_ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        attention_mask[i, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
