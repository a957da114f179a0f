"""Connectors: map the vision tower's patch tokens (B, N, W) to LM input embeddings (B, K, D).

- :class:`MLPProjector` (LLaVA): a two-layer MLP per patch token, optionally after average
  pooling the patch grid (K = N / stride^2).
- :class:`PerceiverResampler` (Flamingo/Otter): K learned latents cross-attend to the patch
  tokens; K is fixed and usually much smaller than N, which shortens the LM prefill.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError, ConnectorConfig


class MLPProjector(nn.Module):
    """Linear -> GELU -> Linear on each (optionally pooled) patch token."""

    def __init__(
        self,
        *,
        in_dim: int,
        out_dim: int,
        hidden_dim: int | None = None,
        grid_size: int,
        pool_stride: int = 1,
    ):
        super().__init__()
        if grid_size % pool_stride:
            raise ConfigError(
                f"pool_stride {pool_stride} does not divide the {grid_size}x{grid_size} patch grid"
            )
        self.grid_size = grid_size
        self.pool_stride = pool_stride
        hidden_dim = hidden_dim or out_dim
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    @property
    def num_tokens(self) -> int:
        return (self.grid_size // self.pool_stride) ** 2

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, N, W), the grid_size^2 grid tokens first -> (B, K, D)."""
        if self.pool_stride > 1:
            B, N, W = tokens.shape
            g = self.grid_size
            grid, extra = tokens[:, : g * g], tokens[:, g * g :]  # extra: the tower's colour tokens
            x = grid.transpose(1, 2).reshape(B, W, g, g)  # (B, W, g, g)
            x = F.avg_pool2d(x, self.pool_stride)  # (B, W, g/s, g/s)
            tokens = torch.cat([x.flatten(2).transpose(1, 2), extra], dim=1)  # (B, K, W)
        return self.fc2(self.act(self.fc1(tokens)))  # (B, K, D)


class PerceiverAttention(nn.Module):
    """Latents attend to [media tokens; latents] (Flamingo's resampler attention)."""

    def __init__(self, *, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """media: (B, N, C), latents: (B, K, C) -> (B, K, C)."""
        media = self.norm_media(media)
        latents = self.norm_latents(latents)
        B, K, _ = latents.shape
        h = self.heads
        q = self.to_q(latents)  # (B, K, h*d)
        k, v = self.to_kv(torch.cat([media, latents], dim=1)).chunk(2, dim=-1)  # (B, N+K, h*d) each
        q, k, v = (t.reshape(B, t.shape[1], h, -1).transpose(1, 2) for t in (q, k, v))  # (B, h, T, d)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, h, K, d)
        out = out.transpose(1, 2).reshape(B, K, -1)  # (B, K, h*d)
        return self.to_out(out)


class PerceiverResampler(nn.Module):
    """``num_latents`` learned queries, ``depth`` x (cross-attention + feed-forward), then a
    projection to the LM width."""

    def __init__(
        self,
        *,
        dim: int,
        out_dim: int,
        num_latents: int = 16,
        depth: int = 2,
        heads: int = 4,
        dim_head: int = 32,
        ff_mult: int = 2,
    ):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * dim**-0.5)  # (K, C)
        self.layers = nn.ModuleList()
        for _ in range(depth):
            ff = nn.Sequential(
                nn.LayerNorm(dim),
                nn.Linear(dim, dim * ff_mult, bias=False),
                nn.GELU(),
                nn.Linear(dim * ff_mult, dim, bias=False),
            )
            self.layers.append(
                nn.ModuleList([PerceiverAttention(dim=dim, heads=heads, dim_head=dim_head), ff])
            )
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, out_dim)

    @property
    def num_tokens(self) -> int:
        return self.latents.shape[0]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, N, C) -> (B, K, D)."""
        latents = self.latents.unsqueeze(0).expand(tokens.shape[0], -1, -1)  # (B, K, C)
        for attn, ff in self.layers:
            latents = latents + attn(tokens, latents)
            latents = latents + ff(latents)
        return self.proj(self.norm(latents))  # (B, K, D)


def build_connector(config: ConnectorConfig, *, vision_width: int, grid_size: int, lm_dim: int) -> nn.Module:
    """The connector described by ``config``."""
    if config.type == "mlp":
        return MLPProjector(
            in_dim=vision_width,
            out_dim=lm_dim,
            hidden_dim=config.hidden_dim,
            grid_size=grid_size,
            pool_stride=config.pool_stride,
        )
    if config.type == "perceiver":
        return PerceiverResampler(
            dim=vision_width,
            out_dim=lm_dim,
            num_latents=config.num_latents,
            depth=config.depth,
            heads=config.heads,
            dim_head=config.dim_head,
            ff_mult=config.ff_mult,
        )
    raise ConfigError(f"connector.type must be 'mlp' or 'perceiver', got {config.type!r}")
