"""What a fine-tuned checkpoint keeps of its base: the files beside the weights that make the
node's decisions trustworthy (issue 12), carried over by ``octopus_finetune`` when they still
hold, refitted when they can be, and named in a warning when they cannot.

A checkpoint's companion files, and what each reads:

- ``grounding.json`` + ``grounding.safetensors`` (NOT_IN_VIEW, colourless references): the
  vision tower's feature maps and the pixels. Copied when the tower did not train
  (``--train-vision`` off, the default); otherwise dropped with the command that retrains it.
- ``training_vocab.json`` (text novelty, "not understood"): every word of the requests the model
  was trained to act on (training/novelty_profile.py ``action_texts``). Written as the base's
  vocabulary plus the fine-tuning requests', so that the new function's words ("light", "灯") are
  not "never seen".
- ``image_profile.safetensors`` (image novelty, "image unlike training"): the image tokens the LM
  sees, i.e. tower and connector. Copied when both stayed frozen; otherwise refitted on the
  fine-tuning images (at least 200 distinct ones; else dropped with a warning).
- ``request_profile.safetensors`` (request novelty, "not understood"): the LM's hidden state
  where it picks the function, per function. Any fine-tune moves it and a new function has no
  class in the base's, so it is refitted on the fine-tuned model from a sample of the fine-tuning
  requests (the decline corpus's sentences their own class), a few minutes on one thread; dropped
  with a warning when there are too few.
- ``span_copier.safetensors`` (message bodies copied from the utterance): tied to the sha256 of
  the weights it read. It reads nothing but the LM's input embeddings, so where the fine-tune left
  the base's rows as they were (LoRA; new functional tokens only add rows) it is carried over,
  bound to the new weights. Otherwise it is retrained on the new checkpoint (``--copier-steps``,
  about 3-4 minutes on one thread) when the base had one. Carried before the request profile is
  refitted, whose refit loads the saved checkpoint.

Without this a fine-tuned model silently loses all five: an absent object is published again,
a colourless reference gets a guessed colour, and message bodies are recalled rather than copied.
No rclpy.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from octopus_ros.lean.copier import COPIER_FILE
from octopus_ros.lean.grounding import GROUNDING_FILE, GROUNDING_META
from octopus_ros.lean.novelty import IMAGE_PROFILE_FILE, REQUEST_PROFILE_FILE, TEXT_VOCAB_FILE, TextNovelty

log = logging.getLogger(__name__)

MIN_PROFILE_IMAGES = 200  # distinct fine-tuning images needed to refit an image profile


def carry_over(
    base: Path | None,
    out: Path,
    *,
    model: Any,
    registry: Any,
    texts: Sequence[str],
    images: Callable[[], Sequence[np.ndarray]],
    vision_trained: bool,
    connector_trained: bool,
    copier_steps: int,
    requests: Callable[[], Sequence[dict]] | None = None,
    message_bodies: Callable[[], dict] | None = None,
    message_share: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, str]:
    """Write into the saved checkpoint ``out`` what it keeps of ``base`` (None: a model built from
    parts, which has none of these files). ``texts``: the fine-tuning text (instructions, answers,
    descriptions); ``images``: the fine-tuning images, for an image profile to refit;
    ``requests``: shuffled fine-tuning requests (``instruction``, ``answer``, ``image``, optional
    ``class``), for a request profile to refit (None: dropped); ``message_bodies`` (language ->
    sentences) and ``message_share``: that share of the requests that copy a message read with
    one of those bodies, as stage 4 trains (``novelty_profile.with_new_bodies``). Returns {file:
    what happened}, for metrics.json."""
    done: dict[str, str] = {}
    if base is None:
        return done
    base, out = Path(base), Path(out)

    if (base / GROUNDING_FILE).is_file() and (base / GROUNDING_META).is_file():
        if vision_trained:
            done["grounding"] = "dropped: the vision tower trained"
            log.warning(
                "the grounding head of %s reads the vision tower, which trained: %s has no NOT_IN_VIEW "
                "check until you run: python -m octopus_ros.training.grounding %s",
                base,
                out,
                out,
            )
        else:
            for name in (GROUNDING_FILE, GROUNDING_META):
                shutil.copy2(base / name, out / name)
            done["grounding"] = "copied (vision tower frozen)"

    if (base / TEXT_VOCAB_FILE).is_file():
        vocabulary = TextNovelty.load(base / TEXT_VOCAB_FILE).vocabulary
        added = TextNovelty.from_texts(texts).vocabulary - vocabulary
        TextNovelty(vocabulary | added).save(out / TEXT_VOCAB_FILE)
        done["text_vocabulary"] = f"base + {len(added)} units of the fine-tuning text"

    if (base / IMAGE_PROFILE_FILE).is_file():
        if not (vision_trained or connector_trained):
            shutil.copy2(base / IMAGE_PROFILE_FILE, out / IMAGE_PROFILE_FILE)
            done["image_profile"] = "copied (vision tower and connector frozen)"
        else:
            from octopus_ros.model.novelty import ImageNovelty
            from octopus_ros.training.novelty_profile import image_features

            pictures = list({id(p): p for p in images()}.values())  # sources share background images
            if len(pictures) < MIN_PROFILE_IMAGES:
                done["image_profile"] = (
                    f"dropped: {len(pictures)} distinct fine-tuning images are too few to refit it"
                )
                log.warning("image novelty of %s dropped: %s", out, done["image_profile"])
            else:
                ImageNovelty.fit(image_features(model, pictures)).save(out / IMAGE_PROFILE_FILE)
                done["image_profile"] = f"refitted on {len(pictures)} fine-tuning images"

    if (base / COPIER_FILE).is_file():
        from octopus_ros.training.span_copier import copy_functions, train

        why_not = _copier_reads_otherwise(base, model, registry) or _bind_copier(base, out)
        if why_not is None:
            done["span_copier"] = "carried over (the input embeddings it reads are unchanged)"
        elif copier_steps <= 0:
            done["span_copier"] = "dropped (--copier-steps 0)"
            log.warning(
                "no span copier in %s (--copier-steps 0): run python -m octopus_ros.training.span_copier %s",
                out,
                out,
            )
        elif not copy_functions(registry):
            done["span_copier"] = "dropped: no function copies an argument from the utterance"
        else:
            try:
                meta = train(out, steps=copier_steps, seed=seed, progress=progress)
            except (ValueError, OSError) as e:  # e.g. copy functions the synthetic world does not know
                done["span_copier"] = f"dropped: {e}"
                log.warning("span copier of %s not retrained (%s): messages are decoded without it", out, e)
            else:
                exact = meta.get("heldout_phrasing", {})
                done["span_copier"] = (
                    f"retrained ({copier_steps} steps; held-out phrasing {exact}; not carried over: {why_not})"
                )

    if (base / REQUEST_PROFILE_FILE).is_file():
        from octopus_ros.training.novelty_profile import write_request_profile

        try:
            if requests is None:
                raise ValueError("no fine-tuning requests were given to refit it")
            summary = write_request_profile(
                out,
                requests(),
                {},
                seed=seed,
                progress=progress,
                message_bodies=message_bodies() if message_bodies is not None else None,
                message_share=message_share,
            )
        except ValueError as e:
            done["request_profile"] = f"dropped: {e}"
            log.warning("request novelty of %s dropped: %s", out, e)
        else:
            done["request_profile"] = (
                f"refitted on the fine-tuned model ({summary['classes']} classes,"
                f" {summary['reference_calls']} reference calls)"
            )

    for name, what in done.items():
        log.info("carried over from %s: %s %s", base, name, what)
    return done


def _copier_reads_otherwise(base: Path, model: Any, registry: Any) -> str | None:
    """Why the base's span copier would not read the fine-tuned ``model`` as it read the base;
    None when it reads exactly the same. The copier reads nothing but the LM's input embeddings
    of the utterance's tokens (lean/copier.py). A LoRA fine-tune leaves those rows as they were,
    and new functional tokens only add rows that no utterance holds; then the same copier gives
    the same spans, and retraining it would only replace it with a differently seeded one."""
    import torch

    from octopus_ros.lean.copier import SpanCopier
    from octopus_ros.model.checkpoint import CheckpointError, load_checkpoint
    from octopus_ros.training.span_copier import copier_max_chars, copy_functions

    if model is None:
        return "no fine-tuned model given"
    try:
        copier = SpanCopier.load(base)
        base_table = load_checkpoint(base).model.lm.get_input_embeddings().weight.detach()
    except (CheckpointError, OSError, ValueError) as e:
        return f"the base's copier or weights cannot be read: {e}"
    if copier is None:
        return "the base has no copier"
    functions = sorted(copy_functions(registry))
    if sorted(copier.meta.get("functions", ())) != functions:
        return (
            f"it copies for {copier.meta.get('functions')}, the registry's copying functions are {functions}"
        )
    max_chars = copier_max_chars(registry) if functions else None
    if copier.max_chars != max_chars:
        return f"its longest copy is {copier.max_chars} characters, the registry's {max_chars}"
    table = model.lm.get_input_embeddings().weight.detach()
    n = base_table.shape[0]
    if (
        table.shape[0] < n
        or table.shape[1] != base_table.shape[1]
        or not torch.equal(table[:n].float(), base_table.float())
    ):
        return "the fine-tuning changed the input embeddings of the base's tokens"
    return None


def _bind_copier(base: Path, out: Path) -> str | None:
    """Write the base's span copier into the saved checkpoint ``out``, bound to its weights'
    sha256 (the one it was trained on kept beside it); the reason when it cannot be."""
    from octopus_ros.lean.copier import SpanCopier, copier_weights_sha

    sha = copier_weights_sha(out)
    if sha is None:
        return "the saved checkpoint records no weights sha256"
    copier = SpanCopier.load(base)
    copier.meta = {
        **copier.meta,
        "weights_sha256": sha,
        "carried_from_weights_sha256": copier.meta.get("weights_sha256"),
    }
    copier.save(out)
    return None
