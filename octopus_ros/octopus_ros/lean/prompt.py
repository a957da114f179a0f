"""Prompt format (Otter-like): system prompt, in-context examples, the image tokens, then
``User: ... GPT:``.

Training and inference tokenize the prompt and the answer separately and concatenate the ids,
so the model sees exactly the same token boundaries in both.

In-context examples (Otter / MIMIC-IT's in-context instruction tuning): a prompt may carry k
(instruction -> answer) pairs before the query. Each is written as a finished turn, the part of
the template after ``{images}`` with its instruction, followed by its answer, and they go right
after the system prompt, in the ``{system}`` slot::

    <system prompt>\nUser: pick up the cup\nGPT:<nexa_0>('red cup')<nexa_end>\nUser: ...<nexa_end>
    <image> x K\nUser: <query>\nGPT:

So they are part of the fixed prefix before the first ``<image>`` token: with fixed examples the
system-prompt KV cache covers them, and an image encoding's prefill does too.

Supported: text-only context (instruction and answer), any number of examples, at training and at
inference. Not supported: images of context examples (Otter gives each context example its own
image; here only the query has one, so a record's context images are not used), and templates
without ``{system}`` or whose user turn after ``{images}`` lacks ``{instruction}`` (such a
template still works without context; asking it for context raises ValueError).

Torch-free: shared by the torch runtime (``octopus_ros.model.prompt`` re-exports it and adds
``collate``) and the onnxruntime one (lean/runtime.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from octopus_ros.functions.language import CJK_IDEOGRAPHS, fold_input

IMAGE_TOKEN = "<image>"  # the image placeholder token (model/tokenizer.py adds it)

IGNORE_INDEX = -100  # labels with this value carry no loss


@dataclass
class TrainingExample:
    """One tokenized (prompt, answer) pair; ``labels`` is -100 on the prompt."""

    input_ids: list[int]
    labels: list[int]

    @property
    def attention_mask(self) -> list[int]:
        return [1] * len(self.input_ids)


# a run of full stops, ellipses and exclamation marks (ASCII and CJK) that ends the utterance
_TERMINAL = re.compile(r"[\s.!\u3002\uff01\u2026\uff0e]+$")
# CJK characters and punctuation (ideographs, CJK symbols, full-width forms): Chinese is written
# without spaces, so a space next to one of them is not a word boundary the model ever saw
_CJK = f"\u3000-\u303f{CJK_IDEOGRAPHS}\uff00-\uffef"
_CJK_SPACE = re.compile(rf"(?<=[{_CJK}]) | (?=[{_CJK}])")
_CJK_CHAR = re.compile(rf"[{_CJK}]")
_LATIN = re.compile(r"[A-Za-z]")
_UPPER = re.compile(r"[A-Z]")
_LOWER = re.compile(r"[a-z]")


def model_utterance(text: str) -> str:
    """The utterance as the model reads it: each run of whitespace one space, none around it, in
    Chinese (at least as many CJK characters as Latin letters) no space next to a Chinese character
    or CJK punctuation ("跟 Bob 说 晚安" -> "跟Bob说晚安"; "the 红色 cup" keeps its spaces), and
    without the full stops / exclamation marks that end it ("Pick up the red cup." -> "Pick up the
    red cup", "把碗洗了。" -> "把碗洗了"); a question mark stays. The templates never double a
    space or put one beside a Chinese character: with every space of the natural set doubled
    (English) and a space after every "，" (Chinese), the bundled model published a wrong action
    for 8.2 % of it instead of 4.8 %. Speech recognisers write the ending a
    sentence has; the training requests never end in one (message bodies, the only text that
    could, are cut the same way: data/message_bodies.py), and a model that never saw it reads it as
    a word: with the endings added, the bundled model published a wrong action for 10.4 % of the
    natural set instead of 4.8 %. The prompt (:meth:`PromptFormat.build_prompt`, training and
    inference), the copier and the call grammar all see this text, so a copied message never
    ends with the request's full stop. An utterance that is nothing but such marks stays as it is.

    Case: text in capitals only (no lower-case letter, at least two capitals, not Chinese) is read
    in lower case. Speech recognisers such as wav2vec2's CTC models write "PICK UP THE RED CUP";
    the model was trained on ordinary case and, given capitals, published 1 of the natural set's
    322 English requests (144 as written). Full-width Latin letters and digits are read as ASCII,
    and Traditional Chinese characters as Simplified (functions/language.fold_input).
    """
    stripped = " ".join(fold_input(text).split())
    chinese = len(_CJK_CHAR.findall(stripped)) >= len(_LATIN.findall(stripped))
    if chinese:  # written in Chinese
        stripped = _CJK_SPACE.sub("", stripped)
    elif len(_UPPER.findall(stripped)) >= 2 and not _LOWER.search(stripped):
        stripped = stripped.lower()
    cut = _TERMINAL.sub("", stripped)
    return cut if cut else stripped


def as_written(span: str, utterance: str) -> str:
    """``span``, a piece of :func:`model_utterance` of ``utterance``, in the characters the user
    wrote: Traditional Chinese, full-width letters and capitals as they were, so that a copied
    message goes out in the sender's own script ("跟媽媽說會議取消了" sends "會議取消了", not the
    Simplified text the model read). A space of the span matches any run of whitespace, a space
    the model's text left out beside a Chinese character may be there, and letters match in
    either case; each run of whitespace in the result is one space. A span not found that way
    (it is not a piece of the utterance) is returned unchanged."""
    if not span:
        return span
    parts = []
    for i, ch in enumerate(span):
        if ch == " ":
            parts.append(r"\s+")
            continue
        parts.append(re.escape(ch))
        nxt = span[i + 1 : i + 2]
        if nxt and nxt != " " and (_CJK_CHAR.match(ch) or _CJK_CHAR.match(nxt)):
            parts.append(r"\s*")
    # a copied span is whole words: "at home" is not the end of "THAT HOME" earlier on
    head = r"(?<![A-Za-z0-9])" if span[0].isascii() and span[0].isalnum() else ""
    tail = r"(?![A-Za-z0-9])" if span[-1].isascii() and span[-1].isalnum() else ""
    # fold_input changes one character for one: the match's positions are the utterance's
    found = re.search(head + "".join(parts) + tail, fold_input(utterance), re.IGNORECASE)
    return " ".join(utterance[found.start() : found.end()].split()) if found else span


PROMPT_PLACEHOLDERS = ("system", "images", "instruction")


@dataclass(frozen=True)
class ContextExample:
    """One in-context example: an instruction and its answer as the model writes it
    (``<nexa_i>(...)<nexa_end>``; callers canonicalise it against their registry)."""

    instruction: str
    answer: str


def as_context(context: Sequence) -> tuple[ContextExample, ...]:
    """``context`` as ContextExamples: each item a ContextExample or an (instruction, answer) pair."""
    out = []
    for i, item in enumerate(context or ()):
        if isinstance(item, ContextExample):
            out.append(item)
            continue
        try:
            instruction, answer = item
        except (TypeError, ValueError):
            raise ValueError(
                f"context[{i}] must be an (instruction, answer) pair or a ContextExample, got {item!r}"
            ) from None
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"context[{i}]: the instruction must be non-empty text, got {instruction!r}")
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError(f"context[{i}]: the answer must be non-empty text, got {answer!r}")
        out.append(ContextExample(instruction.strip(), answer.strip()))
    return tuple(out)


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
    """Builds prompts and training examples for a tokenizer + config.

    ``tokenizer``: anything with ``encode(text, add_special_tokens=...)`` (a transformers tokenizer,
    or :class:`octopus_ros.lean.tokenizer.LeanTokenizer`); ``config``: an ``OctopusConfig`` or any
    object with its prompt fields (system_prompt, prompt_template, num_image_tokens, the token ids
    and ``require_token_ids()``)."""

    def __init__(self, *, tokenizer, config):
        config.require_token_ids()
        if config.num_image_tokens is None:
            raise ValueError("config.num_image_tokens is not set (resolve the config first)")
        self.tokenizer = tokenizer
        self.config = config
        check_prompt_template(config.prompt_template)

    def context_text(self, context: Sequence = ()) -> str:
        """The in-context examples as text: for each, the template's user turn (the part after
        ``{images}``) with its instruction, then its answer. "" without examples."""
        examples = as_context(context)
        if not examples:
            return ""
        template = self.config.prompt_template
        turn = template.split("{images}", 1)[1]
        if "{system}" not in template or "{instruction}" not in turn or "{system}" in turn:
            raise ValueError(
                f"prompt_template {template!r} cannot carry in-context examples: it needs {{system}} "
                "before {images} and {instruction} after it"
            )
        return "".join(turn.format(instruction=c.instruction) + c.answer for c in examples)

    def build_prompt(self, instruction: str, context: Sequence = ()) -> str:
        """The prompt text: system prompt + in-context examples (if any) + ``<image>`` x K +
        user turn + assistant cue."""
        return self.config.prompt_template.format(
            system=self.config.system_prompt + self.context_text(context),
            images=IMAGE_TOKEN * self.config.num_image_tokens,
            instruction=model_utterance(instruction),
        )

    def encode_prompt(self, instruction: str, context: Sequence = ()) -> list[int]:
        """Token ids of :meth:`build_prompt` (the tokenizer's own BOS, if any, included)."""
        return self.tokenizer.encode(self.build_prompt(instruction, context), add_special_tokens=True)

    def system_prefix_ids(self, context: Sequence = ()) -> list[int]:
        """Ids before the first ``<image>`` token: the part of every prompt with these in-context
        examples that never changes, whose KV cache can be computed once and reused."""
        ids = self.encode_prompt("x", context)
        return ids[: ids.index(self.config.image_token_id)]

    def encode_answer(self, answer: str) -> list[int]:
        """Answer ids; an answer that does not end with ``<nexa_end>`` (plain-text mode) gets eos."""
        ids = self.tokenizer.encode(answer, add_special_tokens=False)
        if not ids or ids[-1] != self.config.nexa_end_id:
            ids.append(self.config.eos_token_id)
        return ids

    def build_training_example(
        self, instruction: str, answer: str, context: Sequence = ()
    ) -> TrainingExample:
        """input_ids = prompt (with any in-context examples) + answer; loss only on the query's
        answer tokens (the examples' answers are prompt, as in Otter)."""
        prompt = self.encode_prompt(instruction, context)
        answer_ids = self.encode_answer(answer)
        return TrainingExample(
            input_ids=prompt + answer_ids, labels=[IGNORE_INDEX] * len(prompt) + answer_ids
        )
