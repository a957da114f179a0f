"""Where does a model read the object of a named instruction from: the words or the picture?

    python -m octopus_ros.training.probe --model octopus_ros/models/octopus_tiny

For named instructions ("I lost my black keys") the call's colour is teacher-forced
(``<nexa_8>('black``) and the model's choice among the object words is compared with the
named one, with the instruction's own image, a flat grey image and the image of another
scene that holds no object of the named category. A model that reads the words keeps its
accuracy without the picture; one that reads the picture drops to chance. The same is
done with the colour word left out of the instruction (English only), which separates the
colour-object pair in the words from the picture. Figures per split and language, one table.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import numpy as np
import torch

from octopus_ros.data import CATEGORY_NAMES, generate


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint directory")
    parser.add_argument("--splits", nargs="*", default=["iid", "unseen_combo"])
    parser.add_argument(
        "--n", type=int, default=300, help="examples generated per split (named ones are probed)"
    )
    args = parser.parse_args(argv)
    from octopus_ros.model.runtime import Octopus

    octopus = Octopus.load(args.model)
    print(f"{'split':14s} {'lang':4s} {'condition':28s} {'n':>4s} {'object right':>12s}")
    for split in args.splits:
        for (lang, cond), hits in sorted(probe(octopus, split, args.n).items()):
            print(f"{split:14s} {lang:4s} {cond:28s} {len(hits):4d} {100 * sum(hits) / len(hits):11.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
