"""Prompt format (Otter-like): system prompt, in-context examples, the image tokens, then
``User: ... GPT:``. The format itself is torch-free and lives in :mod:`octopus_ros.lean.prompt`
(both runtimes build prompts with it); this module re-exports it and adds the training batch
``collate``.
"""

from __future__ import annotations

import torch

from octopus_ros.lean.prompt import (  # noqa: F401 - re-exported: the model room's API
    IGNORE_INDEX,
    IMAGE_TOKEN,
    PROMPT_PLACEHOLDERS,
    ContextExample,
    PromptFormat,
    TrainingExample,
    as_context,
    check_prompt_template,
    model_utterance,
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
