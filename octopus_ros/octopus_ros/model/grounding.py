"""Grounding head: is the object a call names in view, and which colour is the one in view?

A small convolutional head on the frozen vision tower's spatial feature maps (the maps
:meth:`VisionTower.forward_features` computes on its way to the image tokens, so grounding costs
no second pass of the tower) plus the frame's colours averaged to the same grid (the bundled
tower reads luma only; colour reaches the LM through separate colour tokens). Per grid cell it
predicts a logit for each object category and each colour word; a category is in view with the
highest cell's category logit, a (category, colour) pair with the highest cell's category logit
plus colour logit (multiple-instance pooling). Scoring colour and category at the same cell is
what lets a pair never seen in training score high when both parts are in the same place.

Files in a checkpoint directory (written by ``python -m octopus_ros.training.grounding``):

- ``grounding.safetensors``: the head's weights;
- ``grounding.json``: format, vocabulary (categories with their English/Chinese words and
  colours, colour words), the map channels the head expects, the chosen threshold and the
  measured figures.

Phrases (:meth:`GroundingModel.parse`): the category is the longest category word found in the
phrase (English or Chinese); a colour word in it (``red``, ``红色`` / ``红``) is the phrase's colour.
**The score is the category's** ("is a cup in view?"), with or without a colour. A colour blocks a
call only through the colour-mismatch rule (:attr:`GroundingModel.colour_mismatch`, heads that read
colour from the pixels alone, ``colour_from="pixels"``): the named colour is improbable *and* another
colour of the same object is probable at its place ("the purple book" where a green book is) sets
:attr:`Grounding.other_colour`. The first heads read colour from the tower's features too and learnt
which colours go with which objects in training (a held-out colour pair: 16 % colour accuracy); the
pixel-only colour branch cannot, and reads held-out pairs as well as seen ones (figures in
grounding.json). The pair's probability is :attr:`Grounding.colour_score`. **Unknown objects**: a
phrase with no category word of the head's vocabulary cannot be grounded
(:attr:`Grounding.grounded` is False, score -1): the caller must not block on it, only report it,
because the head has no evidence either way.

Colourless phrases ("the cup"): :attr:`Grounding.colour` is the most probable of the category's
colours at the category's place and :attr:`Grounding.resolved` the full name ("red cup" /
"红色杯子"); the model runtime (``Octopus._resolve_colourless``) puts it in the call when the head
is sure enough of it. The head cannot count: in the synthetic world a category
appears at most once per scene, so it resolves to one colour.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

GROUNDING_FILE = "grounding.safetensors"
GROUNDING_META = "grounding.json"
FORMAT = "octopus_ros.grounding"
FORMAT_VERSION = 1


class GroundingError(ValueError):
    """A bad grounding head file; the message starts with the file's path."""

    def __init__(self, path: str | Path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")


class GroundingHead(nn.Module):
    """Feature maps (finest first) + pixels -> per-cell category and colour logits (coarsest grid).

    ``colour_from``: what the colour logits may read.

    - ``"pixels"`` (the default for new heads): only the cell's pixel colours, raw and relative to
      the frame's mean colour (a grey-world correction for colour casts and dim light), through
      1x1 convolutions. The colour of a cell then cannot depend on which object the tower sees
      there, so the head cannot learn "cans are red" from the training scenes' colour x object
      pairs; it has to read the colour, which is what makes a pair never seen in training
      score like a seen one.
    - ``"maps"`` (format of the first heads): colour and category from the same features.
    """

    COLOUR_SOURCES = ("pixels", "maps")
    PIXEL_CHANNELS = 12  # 2x2 quarters x RGB per cell (:meth:`inputs`)

    def __init__(
        self,
        map_channels: list[int],
        n_categories: int,
        n_colours: int,
        hidden: int = 48,
        colour_from: str = "pixels",
    ):
        super().__init__()
        if colour_from not in self.COLOUR_SOURCES:
            raise ValueError(f"colour_from must be one of {self.COLOUR_SOURCES}, got {colour_from!r}")
        self.map_channels = list(map_channels)
        self.n_categories = n_categories
        self.n_colours = n_colours
        self.hidden = hidden
        self.colour_from = colour_from
        joint = n_categories + (n_colours if colour_from == "maps" else 0)
        self.net = nn.Sequential(
            nn.Conv2d(sum(map_channels) + self.PIXEL_CHANNELS, hidden, 1),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, joint, 1),
        )
        if colour_from == "pixels":
            self.colour_net = nn.Sequential(
                nn.Conv2d(2 * self.PIXEL_CHANNELS, hidden, 1),
                nn.GELU(),
                nn.Conv2d(hidden, hidden, 1),
                nn.GELU(),
                nn.Conv2d(hidden, n_colours, 1),
            )

    @staticmethod
    def inputs(maps: list[torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        """The head's input on the coarsest map's (h, w) grid: every map averaged to it, plus the
        pixels averaged to a grid twice as fine and folded into channels (each cell keeps the
        colours of its four quarters), as one (B, sum(C_i) + 12, h, w) float32 tensor."""
        h, w = maps[-1].shape[-2:]
        parts = [
            m.float() if m.shape[-2:] == (h, w) else F.adaptive_avg_pool2d(m.float(), (h, w)) for m in maps
        ]
        parts.append(F.pixel_unshuffle(F.adaptive_avg_pool2d(pixels.float(), (2 * h, 2 * w)), 2))
        return torch.cat(parts, dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` from :meth:`inputs` -> (category logits (B, C), pair logits (B, C, K))."""
        out = self.net(x).flatten(2)  # (B, C [+ K], h*w)
        cat = out[:, : self.n_categories]  # (B, C, N)
        if self.colour_from == "maps":
            col = out[:, self.n_categories :]  # (B, K, N)
        else:
            px = x[:, -self.PIXEL_CHANNELS :]
            rgb_mean = px.unflatten(1, (3, 4)).mean(dim=(2, 3, 4), keepdim=True)  # (B, 3, 1, 1, 1)
            rel = (px.unflatten(1, (3, 4)) - rgb_mean).flatten(1, 2)
            col = self.colour_net(torch.cat([px, rel], dim=1)).flatten(2)  # (B, K, N)
        pair = (cat.unsqueeze(2) + col.unsqueeze(1)).amax(dim=-1)  # (B, C, K)
        return cat.amax(dim=-1), pair


@dataclass
class GroundingMaps:
    """What the head saw in one frame: probabilities that each category / (category, colour) is in view."""

    category: torch.Tensor  # (C,)
    pair: torch.Tensor  # (C, K)


@dataclass
class Grounding:
    """The answer for one phrase. ``score`` is -1 when the phrase cannot be grounded."""

    phrase: str
    grounded: bool
    score: float = -1.0
    category: str | None = None
    colour: str | None = None  # the phrase's colour, else the resolved one (None: single-colour category)
    colour_given: bool = False
    # probability of the (category, colour) pair: the phrase's colour, else the resolved one
    colour_score: float = float("nan")
    resolved: str | None = None  # the full name of what is in view, e.g. 'red cup'
    reason: str = ""
    # a named colour the head does not see, where it is sure of another colour of that object
    # (GroundingModel.colour_mismatch): the full name of what is there instead, and its probability
    other_colour: str | None = None
    other_score: float = float("nan")


@dataclass
class GroundingModel:
    """A loaded grounding head with its vocabulary, threshold and recorded metrics."""

    head: GroundingHead
    categories: list[dict[str, Any]]  # {name, en, zh, colours: [...]} in class order
    colours: list[dict[str, Any]]  # {name, en, zh, zh_short} in class order
    threshold: float = 0.5
    metrics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    # (named_below, other_at_least): a phrase's colour counts as not in view when its pair
    # probability is below named_below while another colour of the same object is at least
    # other_at_least. None: colours never block (heads whose colour is not read from the pixels
    # alone, colour_from "maps", are too often wrong for that).
    colour_mismatch: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        self.head.eval()
        self._cat_index = {c["name"]: i for i, c in enumerate(self.categories)}
        self._col_index = {c["name"]: i for i, c in enumerate(self.colours)}
        words: list[tuple[str, str, str]] = []  # (word, kind, name)
        for c in self.categories:
            words += [(c["en"], "category", c["name"]), (c["zh"], "category", c["name"])]
        for c in self.colours:
            words += [(c["en"], "colour", c["name"]), (c["zh"], "colour", c["name"])]
            words += [(c["zh_short"], "colour_short", c["name"])]
        self._words = sorted(words, key=lambda w: -len(w[0]))

    # -- files ----------------------------------------------------------------------------------
    @classmethod
    def exists(cls, directory: str | Path) -> bool:
        return (Path(directory) / GROUNDING_META).is_file()

    @classmethod
    def load(cls, directory: str | Path) -> GroundingModel:
        """Read ``grounding.json`` + ``grounding.safetensors``; GroundingError naming the file."""
        directory = Path(directory)
        meta_path, weights_path = directory / GROUNDING_META, directory / GROUNDING_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise GroundingError(meta_path, f"cannot read: {e}") from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise GroundingError(meta_path, f"not a grounding head file (format must be {FORMAT!r})")
        if meta.get("format_version") != FORMAT_VERSION:
            raise GroundingError(
                meta_path, f"format_version must be {FORMAT_VERSION}, got {meta.get('format_version')!r}"
            )
        try:
            categories, colours = list(meta["categories"]), list(meta["colours"])
            map_channels = [int(c) for c in meta["map_channels"]]
            hidden = int(meta["hidden"])
            colour_from = str(meta.get("colour_from", "maps"))  # heads written before it: "maps"
            threshold = float(meta["threshold"])
            for c in categories:
                _ = (c["name"], c["en"], c["zh"], list(c["colours"]))
            for c in colours:
                _ = (c["name"], c["en"], c["zh"], c["zh_short"])
        except (KeyError, TypeError, ValueError) as e:
            raise GroundingError(meta_path, f"missing or malformed entry: {e!r}") from e
        if not 0.0 < threshold < 1.0:
            raise GroundingError(meta_path, f"threshold must be in (0, 1), got {threshold}")
        if colour_from not in GroundingHead.COLOUR_SOURCES:
            raise GroundingError(
                meta_path, f"colour_from must be one of {GroundingHead.COLOUR_SOURCES}, got {colour_from!r}"
            )
        head = GroundingHead(map_channels, len(categories), len(colours), hidden, colour_from)
        try:
            from safetensors.torch import load_file

            state = load_file(str(weights_path))
            head.load_state_dict(state)
        except Exception as e:  # safetensors and load_state_dict raise several types
            raise GroundingError(weights_path, f"cannot load the head's weights: {e}") from e
        mismatch = meta.get("colour_mismatch")
        if mismatch is not None:
            try:
                mismatch = (float(mismatch["named_below"]), float(mismatch["other_at_least"]))
            except (KeyError, TypeError, ValueError) as e:
                raise GroundingError(
                    meta_path, f"colour_mismatch needs named_below and other_at_least: {e!r}"
                ) from e
        return cls(head, categories, colours, threshold, dict(meta.get("metrics") or {}), meta, mismatch)

    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        meta = dict(self.meta)
        meta.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            map_channels=self.head.map_channels,
            hidden=self.head.hidden,
            colour_from=self.head.colour_from,
            categories=self.categories,
            colours=self.colours,
            threshold=self.threshold,
            metrics=self.metrics,
        )
        meta.pop("colour_mismatch", None)
        if self.colour_mismatch is not None:
            below, at_least = self.colour_mismatch
            meta["colour_mismatch"] = {"named_below": below, "other_at_least": at_least}
        state = {k: v.detach().float().contiguous().cpu() for k, v in self.head.state_dict().items()}
        save_file(state, str(directory / GROUNDING_FILE))
        (directory / GROUNDING_META).write_text(
            json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )

    # -- scoring --------------------------------------------------------------------------------
    def check_maps(self, maps: list[torch.Tensor]) -> None:
        got = [int(m.shape[1]) for m in maps]
        if got != self.head.map_channels:
            raise ValueError(
                f"the grounding head expects feature maps of {self.head.map_channels} channels, got {got}"
            )

    @torch.no_grad()
    def maps(self, feature_maps: list[torch.Tensor], pixels: torch.Tensor) -> GroundingMaps:
        """Probabilities for one frame from the tower's maps and the preprocessed pixels."""
        device = next(self.head.parameters()).device
        x = GroundingHead.inputs([m.to(device) for m in feature_maps], pixels.to(device))
        cat, pair = self.head(x)
        return GroundingMaps(category=torch.sigmoid(cat[0]).cpu(), pair=torch.sigmoid(pair[0]).cpu())

    def parse(self, phrase: str) -> tuple[str | None, str | None]:
        """(category, colour) named by ``phrase``; None for what it does not name."""
        text = re.sub(r"\s+", " ", str(phrase).strip().lower())
        found: dict[str, tuple[int, str]] = {}  # kind -> (position, name)
        taken = [False] * len(text)
        for word, kind, name in self._words:  # longest first, so 红色 wins over 红
            start = 0
            while (i := text.find(word, start)) >= 0:
                start = i + 1
                if any(taken[i : i + len(word)]):
                    continue
                if re.fullmatch(r"[a-z ]+", word) and not _whole_word(text, i, len(word)):
                    continue
                if kind == "colour_short" and not _followed_by_category(text, i + len(word), self.categories):
                    continue
                taken[i : i + len(word)] = [True] * len(word)
                key = "colour" if kind.startswith("colour") else kind
                if (
                    key not in found or i > found[key][0]
                ):  # the last one names the object ("cup of tea" aside)
                    found[key] = (i, name)
        return (found.get("category", (0, None))[1], found.get("colour", (0, None))[1])

    def category_word(self, name: str, lang: str = "en") -> str:
        """The word of category ``name`` in ``lang`` ("en" / "zh"); KeyError for an unknown one."""
        return self.categories[self._cat_index[name]][lang]

    def ground(self, maps: GroundingMaps, phrase: str) -> Grounding:
        """Is ``phrase`` in view? See the module docstring for unknown and colourless phrases."""
        category, colour = self.parse(phrase)
        if category is None:
            return Grounding(phrase, False, reason=f"{phrase!r} names no object the grounding head knows")
        ci = self._cat_index[category]
        cat = self.categories[ci]
        lang = "zh" if re.search(r"[\u4e00-\u9fff]", str(phrase)) else "en"
        score = float(maps.category[ci])
        if colour is not None:
            pair = float(maps.pair[ci, self._col_index[colour]])
            named = Grounding(
                phrase, True, score, category, colour, True, pair, self._name(cat, colour, lang)
            )
            if self.colour_mismatch is not None and len(cat["colours"]) > 1:
                # the named colour may be one the object never comes in ("orange cup")
                probs = {c: float(maps.pair[ci, self._col_index[c]]) for c in cat["colours"]}
                probs[colour] = pair
                other = colour_mismatch(probs, colour, self.colour_mismatch)
                if other is not None:
                    named.other_colour, named.other_score = self._name(cat, other, lang), probs[other]
            return named
        if len(cat["colours"]) == 1:
            only = cat["colours"][0]
            return Grounding(phrase, True, score, category, only, False, 1.0, self._name(cat, only, lang))
        probs = {c: float(maps.pair[ci, self._col_index[c]]) for c in cat["colours"]}
        best = max(probs, key=probs.get)
        return Grounding(phrase, True, score, category, best, False, probs[best], self._name(cat, best, lang))

    def _name(self, category: dict[str, Any], colour: str, lang: str) -> str:
        if len(category["colours"]) == 1:
            return category[lang]
        col = self.colours[self._col_index[colour]]
        return f"{col['en']} {category['en']}" if lang == "en" else f"{col['zh']}{category['zh']}"


def colour_mismatch(probs: dict[str, float], named: str, rule: tuple[float, float]) -> str | None:
    """The colour in view instead of ``named``, by the colour-mismatch rule
    (GroundingModel.colour_mismatch = (named_below, other_at_least)), or None. ``probs``: the pair
    probability of each colour the object comes in, and of ``named``."""
    below, at_least = rule
    others = [c for c in probs if c != named]
    if not others:
        return None
    other = max(others, key=probs.get)
    return other if probs[named] < below and probs[other] >= at_least else None


def _whole_word(text: str, i: int, n: int) -> bool:
    before = text[i - 1] if i > 0 else " "
    after = text[i + n] if i + n < len(text) else " "
    # plural 's' of an English category word ("cups") still names the category
    return not before.isalpha() and (
        not after.isalpha() or (after == "s" and (i + n + 1 >= len(text) or not text[i + n + 1].isalpha()))
    )


def _followed_by_category(text: str, j: int, categories: list[dict[str, Any]]) -> bool:
    rest = text[j:].lstrip("的")
    return any(rest.startswith(c["zh"]) for c in categories)


def auroc(positive: list[float], negative: list[float]) -> float:
    """Area under the ROC curve (ties count half); NaN when either side is empty."""
    if not positive or not negative:
        return math.nan
    pos = torch.tensor(positive, dtype=torch.float64)
    neg = torch.tensor(negative, dtype=torch.float64)
    greater = (pos[:, None] > neg[None, :]).double().sum()
    ties = (pos[:, None] == neg[None, :]).double().sum()
    return float((greater + 0.5 * ties) / (len(positive) * len(negative)))
