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
colour of the same object is probable at its place, or far more probable than the named one where
the head is unsure of every colour (a dim or noisy frame; :func:`lean.grounding.colour_mismatch`):
"the purple book" where a green book is sets :attr:`Grounding.other_colour`. The first heads read colour from the tower's features too and learnt
which colours go with which objects in training (a held-out colour pair: 16 % colour accuracy); the
pixel-only colour branch cannot, and reads held-out pairs as well as seen ones (figures in
grounding.json). The pair's probability is :attr:`Grounding.colour_score`. **Unknown objects**: a
phrase with no category word of the head's vocabulary cannot be grounded
(:attr:`Grounding.grounded` is False, score -1): the caller must not block on it, only report it,
because the head has no evidence either way.

Colourless phrases ("the cup"): :attr:`Grounding.colour` is the most probable of the category's
colours at the category's place and :attr:`Grounding.resolved` the full name ("red cup" /
"红色杯子"); both runtimes (lean/decision.resolve_colourless) put it in the call when the head
is sure enough of it. The head cannot count: in the synthetic world a category
appears at most once per scene, so it resolves to one colour.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from octopus_ros.lean.grounding import (  # noqa: F401 - re-exported: the model room's API
    COLOUR_SOURCES,
    FORMAT,
    FORMAT_VERSION,
    GROUNDING_FILE,
    GROUNDING_META,
    Grounding,
    GroundingError,
    GroundingMaps,
    GroundingRules,
    _followed_by_category,
    _whole_word,
    colour_mismatch,
    read_grounding_meta,
)

log = logging.getLogger(__name__)


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

    COLOUR_SOURCES = COLOUR_SOURCES
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
class GroundingModel(GroundingRules):
    """A loaded grounding head with its vocabulary, threshold and recorded metrics."""

    head: GroundingHead
    categories: list[dict[str, Any]]  # {name, en, zh, colours: [...]} in class order
    colours: list[dict[str, Any]]  # {name, en, zh, zh_short} in class order
    threshold: float = 0.5
    metrics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    # (named_below, other_at_least, ratio_other_at_least, ratio_times_named): a phrase's colour
    # counts as not in view when its pair probability is below named_below while another colour of
    # the same object is at least other_at_least, or at least ratio_other_at_least and
    # ratio_times_named times the named one (lean/grounding.colour_mismatch; inf: no ratio branch).
    # None: colours never block (heads whose colour is not read from the pixels alone, colour_from
    # "maps", are too often wrong for that).
    colour_mismatch: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        self.head.eval()
        self._index_words()

    # -- files ----------------------------------------------------------------------------------
    @classmethod
    def exists(cls, directory: str | Path) -> bool:
        return (Path(directory) / GROUNDING_META).is_file()

    @classmethod
    def load(cls, directory: str | Path) -> GroundingModel:
        """Read ``grounding.json`` + ``grounding.safetensors``; GroundingError naming the file."""
        directory = Path(directory)
        m = read_grounding_meta(directory)  # GroundingError naming grounding.json
        weights_path = directory / GROUNDING_FILE
        categories, colours = m["categories"], m["colours"]
        head = GroundingHead(m["map_channels"], len(categories), len(colours), m["hidden"], m["colour_from"])
        try:
            from safetensors.torch import load_file

            state = load_file(str(weights_path))
            head.load_state_dict(state)
        except Exception as e:  # safetensors and load_state_dict raise several types
            raise GroundingError(weights_path, f"cannot load the head's weights: {e}") from e
        return cls(head, categories, colours, m["threshold"], m["metrics"], m["meta"], m["colour_mismatch"])

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
            below, at_least, ratio_at_least, times = self.colour_mismatch
            meta["colour_mismatch"] = {"named_below": below, "other_at_least": at_least}
            if math.isfinite(ratio_at_least) and math.isfinite(times):
                meta["colour_mismatch"].update(ratio_other_at_least=ratio_at_least, ratio_times_named=times)
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


def auroc(positive: list[float], negative: list[float]) -> float:
    """Area under the ROC curve (ties count half); NaN when either side is empty."""
    if not positive or not negative:
        return math.nan
    pos = torch.tensor(positive, dtype=torch.float64)
    neg = torch.tensor(negative, dtype=torch.float64)
    greater = (pos[:, None] > neg[None, :]).double().sum()
    ties = (pos[:, None] == neg[None, :]).double().sum()
    return float((greater + 0.5 * ties) / (len(positive) * len(negative)))
