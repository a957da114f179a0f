"""Where does a model read the object of a named instruction from: the words or the picture?
And does its vision tower tell colour and category apart on pairs it never saw?

    python -m octopus_ros.training.probe --model octopus_ros/models/octopus_tiny
    python -m octopus_ros.training.probe --model octopus_ros/models/octopus_tiny --vision

For named instructions ("I lost my black keys") the call's colour is teacher-forced
(``<nexa_8>('black``) and the model's choice among the object words is compared with the
named one, with the instruction's own image, a flat grey image and the image of another
scene that holds no object of the named category. A model that reads the words keeps its
accuracy without the picture; one that reads the picture drops to chance. The same is
done with the colour word left out of the instruction (English only), which separates the
colour-object pair in the words from the picture. Figures per split and language, one table.

``--vision``: linear probes (softmax regression) for the salient target's category and colour,
fitted on the tower's features of training-split scenes (deictic layout) and scored on new
scenes of training pairs (iid) and of held-out colour x object pairs. A tower whose features
factorise keeps its held-out accuracy close to its iid accuracy; one that has learned
colour x category conjunctions does not.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import numpy as np
import torch

from octopus_ros.data import CATEGORY_NAMES, COLOUR_NAMES, generate
from octopus_ros.data.instructions import OBJECT_FUNCTIONS
from octopus_ros.training.stages import pixels


def object_choices(octopus, instruction: str, prefix: str, image: np.ndarray, cat_ids: list[int]) -> str:
    """The object word the model ranks first after ``prefix`` (teacher-forced)."""
    ids = octopus.prompt.encode_prompt(instruction) + octopus.tokenizer.encode(
        prefix, add_special_tokens=False
    )
    with torch.no_grad():
        out = octopus.model(input_ids=torch.tensor([ids]), pixel_values=octopus.preprocess(image))
    return CATEGORY_NAMES[int(out.logits[0, -1, cat_ids].argmax())]


def probe(octopus, split: str, n: int, seed: int = 1234) -> dict[tuple[str, str], list[bool]]:
    tok = octopus.tokenizer
    cat_ids = [tok.encode(" " + c, add_special_tokens=False)[0] for c in CATEGORY_NAMES]
    examples = generate(split, n, seed)
    grey = np.full_like(examples[0].image, 128)
    rows: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for j, ex in enumerate(examples):
        if ex.mode != "named":
            continue
        t = ex.scene.target
        key = f"('{t.colour} {t.category}"
        if key not in ex.answer:
            continue
        prefix = ex.answer[: ex.answer.index(key) + 2 + len(t.colour)]
        other = next(
            e for e in examples[j + 1 :] + examples if all(o.category != t.category for o in e.scene.objects)
        )

        def right(instruction: str, image: np.ndarray, _t=t, _p=prefix) -> bool:
            return object_choices(octopus, instruction, _p, image, cat_ids) == _t.category

        lang = ex.language
        rows[(lang, "own image")].append(right(ex.instruction, ex.image))
        rows[(lang, "grey image")].append(right(ex.instruction, grey))
        rows[(lang, "other scene")].append(right(ex.instruction, other.image))
        if lang == "en" and f"{t.colour} " in ex.instruction:
            rows[(lang, "own image, no colour word")].append(
                right(ex.instruction.replace(f"{t.colour} ", ""), ex.image)
            )
    return rows


def _tower_features(
    model, split: str, n: int, seed: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Pooled and token features of the deictic examples among ``n`` of ``split``, with the
    target's category and colour indices."""
    examples = [e for e in generate(split, n, seed, functions=OBJECT_FUNCTIONS) if e.mode == "deictic"]
    pooled, tokens = [], []
    with torch.no_grad():
        for i in range(0, len(examples), 64):
            batch = examples[i : i + 64]
            p, t = model.image_features(pixels(np.stack([e.image for e in batch]), model))
            pooled.append(p)
            tokens.append(t.flatten(1))
    cats = torch.tensor([CATEGORY_NAMES.index(e.scene.target.category) for e in examples])
    cols = torch.tensor([COLOUR_NAMES.index(e.scene.target.colour) for e in examples])
    return {"pooled": torch.cat(pooled), "tokens": torch.cat(tokens)}, cats, cols


def _fit_linear(x: torch.Tensor, y: torch.Tensor, classes: int, steps: int) -> torch.nn.Linear:
    layer = torch.nn.Linear(x.shape[1], classes)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(layer(x), y) + 1e-4 * layer.weight.square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return layer


def vision_probe(
    model, *, n_train: int = 4000, n_test: int = 1000, steps: int = 300
) -> dict[tuple[str, str], tuple[float, float]]:
    """{(features, label): (iid accuracy, held-out-pair accuracy)} of linear probes."""
    torch.manual_seed(0)
    train_x, train_cat, train_col = _tower_features(model, "train", n_train, 5)
    iid_x, iid_cat, iid_col = _tower_features(model, "iid", n_test, 7)
    held_x, held_cat, held_col = _tower_features(model, "unseen_combo", n_test, 6)
    out = {}
    for feats in ("pooled", "tokens"):
        mu, sd = train_x[feats].mean(0), train_x[feats].std(0) + 1e-5
        for label, y, y_iid, y_held in (
            ("category", train_cat, iid_cat, held_cat),
            ("colour", train_col, iid_col, held_col),
        ):
            k = int(max(y.max(), y_iid.max(), y_held.max())) + 1
            layer = _fit_linear((train_x[feats] - mu) / sd, y, k, steps)
            with torch.no_grad():
                out[(feats, label)] = tuple(
                    float((layer((xs[feats] - mu) / sd).argmax(1) == ys).float().mean())
                    for xs, ys in ((iid_x, y_iid), (held_x, y_held))
                )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint directory")
    parser.add_argument("--splits", nargs="*", default=["iid", "unseen_combo"])
    parser.add_argument(
        "--n", type=int, default=300, help="examples generated per split (named ones are probed)"
    )
    parser.add_argument(
        "--vision", action="store_true", help="linear probes of the vision tower instead (see above)"
    )
    args = parser.parse_args(argv)
    from octopus_ros.model.runtime import Octopus

    octopus = Octopus.load(args.model)
    if args.vision:
        print(f"{'features':9s} {'label':9s} {'iid':>7s} {'held-out pair':>14s}")
        for (feats, label), (iid, held) in vision_probe(octopus.model).items():
            print(f"{feats:9s} {label:9s} {100 * iid:6.1f}% {100 * held:13.1f}%")
        return 0
    print(f"{'split':14s} {'lang':4s} {'condition':28s} {'n':>4s} {'object right':>12s}")
    for split in args.splits:
        for (lang, cond), hits in sorted(probe(octopus, split, args.n).items()):
            print(f"{split:14s} {lang:4s} {cond:28s} {len(hits):4d} {100 * sum(hits) / len(hits):11.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
