"""CLIP zero-shot grounding against the grounding head, on the same tower and scenes (issue 12.3).

Is the named object in view? Two ways were open: the seeds' CLIP zero-shot, scoring "a photo of a
{colour} {object}" against the alternatives with the text tower trained beside the image tower,
or a small head trained for it (model/grounding.py). This measures both on one stage-1 checkpoint
(``train_all`` saves stage 1's text tower beside it: ``OUT/stages/vision/clip_text.safetensors``)::

    python -m octopus_ros.training.train_all --out runs/s1 --skip text align calls refine
    python -m octopus_ros.training.zero_shot runs/s1/stages/vision [--json runs/s1/zero_shot.json]

Zero-shot scores, per scene and phrase: the cosine of the image's CLIP embedding and the phrase's
(``cosine``), and the CLIP softmax over the alternatives at the trained logit scale (``softmax``:
categories against categories, colour x object pairs against every valid pair). The head is
trained on that tower's maps exactly as ``make train`` trains it (training/grounding.py, not
saved). Every figure is measured on the head's own test scenes (the same seeds): AUROC of the
in-view check (category), of the colour pair (wrong colours and absent objects as negatives), of
held-out colour x object pairs, and of camera-degraded frames.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F

from octopus_ros.data.captions import with_article
from octopus_ros.data.tasks import default_splits
from octopus_ros.data.world import CATEGORIES, COLOURS

log = logging.getLogger(__name__)

TEXT_TOWER = "clip_text.safetensors"
FIGURES = (
    "category",
    "pair",
    "wrong_colour",
    "heldout_pair",
    "heldout_category",
    "camera_category",
    "camera_pair",
)


def save_text_tower(directory: str | Path, text: Any, logit_scale: float) -> Path:
    """Write stage 1's text tower (training/stages.TextEncoder) into ``directory``."""
    path = Path(directory) / TEXT_TOWER
    meta = {
        "vocab": str(text.embed.num_embeddings),
        "dim": str(text.embed.embedding_dim),
        "embed_dim": str(text.proj[-1].out_features),
        "logit_scale": repr(float(logit_scale)),
    }
    save_file({k: v.detach().contiguous() for k, v in text.state_dict().items()}, str(path), metadata=meta)
    return path


def load_text_tower(directory: str | Path) -> tuple[Any, float]:
    """(TextEncoder, logit scale) saved by :func:`save_text_tower`; FileNotFoundError naming the file."""
    from safetensors import safe_open

    from octopus_ros.training.stages import TextEncoder

    path = Path(directory) / TEXT_TOWER
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no stage-1 text tower (train_all saves one in OUT/stages/vision since stop 35)"
        )
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    text = TextEncoder(vocab=int(meta["vocab"]), dim=int(meta["dim"]), embed_dim=int(meta["embed_dim"]))
    text.load_state_dict(load_file(str(path)))
    return text.eval(), float(meta["logit_scale"])


def prompts() -> tuple[list[str], list[tuple[int, int, str]]]:
    """The zero-shot prompts: one per category ("a photo of a cup") and one per valid colour x
    category pair ("a photo of a red cup"), as (category index, colour index, text)."""
    cats = [f"a photo of {with_article(c.en)}" for c in CATEGORIES.values()]
    pairs = []
    names = list(COLOURS)
    for ci, c in enumerate(CATEGORIES.values()):
        for col in c.colours:
            pairs.append((ci, names.index(col), f"a photo of {with_article(COLOURS[col].en + ' ' + c.en)}"))
    return cats, pairs


@torch.no_grad()
def _embed_texts(text: Any, tok: Any, texts: list[str]) -> torch.Tensor:
    ids = [tok.encode(t, add_special_tokens=False) for t in texts]
    offsets = torch.tensor([0, *torch.tensor([len(i) for i in ids]).cumsum(0)[:-1].tolist()])
    return text(torch.tensor([t for row in ids for t in row]), offsets)  # (T, E), normalised


@torch.no_grad()
def scores(
    octopus: Any, text: Any, logit_scale: float, images: list
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"cosine" | "softmax": (category scores (B, C), pair scores (B, C, K))} for ``images``."""
    cats, pairs = prompts()
    cat_t = _embed_texts(text, octopus.tokenizer, cats)
    pair_t = _embed_texts(text, octopus.tokenizer, [p for _, _, p in pairs])
    img = []
    for i in range(0, len(images), 64):
        px = torch.cat([octopus.preprocess(im) for im in images[i : i + 64]])
        img.append(octopus.model.clip_embedding(px))
    img = torch.cat(img)
    out = {}
    for name in ("cosine", "softmax"):
        c, p = img @ cat_t.T, img @ pair_t.T
        if name == "softmax":
            c, p = F.softmax(logit_scale * c, dim=-1), F.softmax(logit_scale * p, dim=-1)
        pair = torch.full((len(images), len(CATEGORIES), len(COLOURS)), float("-inf"))
        for j, (ci, ki, _) in enumerate(pairs):
            pair[:, ci, ki] = p[:, j]
        out[name] = (c, pair)
    return out


def measure(model_dir: str | Path, *, test_scenes: int = 600, head_steps: int = 600, seed: int = 0) -> dict:
    """Zero-shot (both scores) and a trained head on ``model_dir``'s tower, the head's test scenes."""
    from octopus_ros.model import Octopus
    from octopus_ros.model.grounding import auroc
    from octopus_ros.training import grounding as g

    text, logit_scale = load_text_tower(model_dir)
    octopus = Octopus.load(model_dir, prefix_cache=False)
    size = int(octopus.config.vision.open_clip["vision_cfg"]["image_size"])
    heldout = default_splits().heldout_combos
    # the seeds training/grounding.train gives its test, held-out and camera scenes
    test_s = g.make_scenes(seed + 2, test_scenes)
    held_s = g.make_scenes(seed + 3, max(test_scenes // 3, 1), heldout_targets=sorted(heldout))
    cam_s = g.make_scenes(seed + 4, test_scenes)
    sets = {
        "test": (test_s, g.frames(test_s, size, 0.0, seed + 2), seed + 12),
        "held": (held_s, g.frames(held_s, size, 0.0, seed + 3), seed + 13),
        "camera": (cam_s, g.frames(cam_s, size, 1.0, seed + 4), seed + 14),
    }
    result: dict[str, Any] = {"model": str(model_dir), "test_scenes": test_scenes, "logit_scale": logit_scale}
    phrases: dict[str, dict[str, Any]] = {"cosine": {}, "softmax": {}}
    for key, (scenes, images, s) in sets.items():
        for name, (cat, pair) in scores(octopus, text, logit_scale, images).items():
            phrases[name][key] = g.phrase_scores(scenes, cat, pair, s, heldout)
    for name, ph in phrases.items():  # the figures training/grounding.train reports, same pairing
        test, held, camera = ph["test"], ph["held"], ph["camera"]
        pairs = {
            "category": test["category"],
            "pair": test["pair"],
            "wrong_colour": test["wrong_colour"],
            "heldout_pair": held["heldout_pair"],
            "heldout_category": held["category"],
            "camera_category": camera["category"],
            "camera_pair": camera["pair"],
        }
        result[f"zero_shot_{name}"] = {k: round(auroc(*v), 4) for k, v in pairs.items()}
    head = g.train(model_dir, steps=head_steps, test_scenes=test_scenes, seed=seed, save=False)
    result["head"] = {k: head.metrics[k]["auroc"] for k in FIGURES if k in head.metrics}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a stage-1 checkpoint with its text tower (OUT/stages/vision)")
    parser.add_argument("--test-scenes", type=int, default=600, help="test scenes (as the grounding head's)")
    parser.add_argument(
        "--head-steps", type=int, default=600, help="steps of the head trained for comparison"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    result = measure(args.model, test_scenes=args.test_scenes, head_steps=args.head_steps, seed=args.seed)
    rows = ("zero_shot_cosine", "zero_shot_softmax", "head")
    print(f"AUROC on the grounding head's test scenes ({args.model})")
    print(f"{'figure':18s}" + "".join(f"{r:>19s}" for r in rows))
    for k in FIGURES:
        print(f"{k:18s}" + "".join(f"{result[r].get(k, float('nan')):19.4f}" for r in rows))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
