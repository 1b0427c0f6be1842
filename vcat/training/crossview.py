"""Cross-view completion (CroCo's pre-training objective) around a timm ViT encoder.

The first image of a pair loses most of its patches (``mask_ratio``, 0.9 as in CroCo); the
encoder sees only its visible patches, and all patches of the second image (the same encoder
for both). A small decoder puts mask tokens back in place, attends to itself and across to the
second image's tokens, and predicts the pixels of every patch; the loss is the mean squared
error on the masked patches only, against per-patch normalised pixels (``norm_pix_loss``, as
CroCo and MAE do). The encoder is any timm VisionTransformer with no class token; after
pre-training it is the backbone, and its weights alone are the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import build_sincos2d_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn


@dataclass(frozen=True)
class DecoderConfig:
    dim: int = 128
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0


class CrossBlock(nn.Module):
    """Self-attention on the first view's tokens, cross-attention to the second's, then an MLP,
    each pre-normalised with a residual connection."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.norm_memory = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm3 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        h, m = self.norm2(x), self.norm_memory(memory)
        x = x + self.cross_attn(h, m, m, need_weights=False)[0]
        return x + self.mlp(self.norm3(x))


class CrossViewCompletion(nn.Module):
    """The encoder (a timm ``VisionTransformer`` without class token), a decoder and the loss."""

    def __init__(
        self,
        encoder: VisionTransformer,
        decoder: DecoderConfig = DecoderConfig(),
        mask_ratio: float = 0.9,
        norm_pix_loss: bool = True,
    ) -> None:
        super().__init__()
        if encoder.num_prefix_tokens:
            raise ValueError("the encoder must have no class or register token (class_token=False)")
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must lie in (0, 1), not {mask_ratio}")
        self.encoder = encoder
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        grid = encoder.patch_embed.grid_size
        self.grid = (int(grid[0]), int(grid[1]))
        self.patch = int(encoder.patch_embed.patch_size[0])
        self.decoder_embed = nn.Linear(encoder.embed_dim, decoder.dim)
        self.memory_embed = nn.Linear(encoder.embed_dim, decoder.dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder.dim))
        self.register_buffer(
            "decoder_pos", build_sincos2d_pos_embed(list(self.grid), decoder.dim)[None]
        )
        self.blocks = nn.ModuleList(
            CrossBlock(decoder.dim, decoder.heads, decoder.mlp_ratio) for _ in range(decoder.depth)
        )
        self.norm = nn.LayerNorm(decoder.dim)
        self.predict = nn.Linear(decoder.dim, self.patch * self.patch * 3)
        nn.init.normal_(self.mask_token, std=0.02)

    @property
    def patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def random_masks(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Boolean (batch, patches) masks, True where a patch is hidden; exactly
        ``round(mask_ratio * patches)`` per image, drawn from ``generator``."""
        hidden = round(self.mask_ratio * self.patches)
        order = torch.rand(batch, self.patches, generator=generator).argsort(dim=1)
        masks = torch.zeros(batch, self.patches, dtype=torch.bool)
        masks.scatter_(1, order[:, :hidden], True)
        return masks

    def encode(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder tokens of ``images``: all patches, or only those ``masks`` leaves visible."""
        enc = self.encoder
        tokens = enc.patch_embed(images) + enc.pos_embed
        if masks is not None:
            tokens = tokens[~masks].reshape(tokens.shape[0], -1, tokens.shape[-1])
        tokens = enc.norm_pre(enc.pos_drop(tokens))
        for block in enc.blocks:
            tokens = block(tokens)
        return enc.norm(tokens)

    def forward(
        self, first: torch.Tensor, second: torch.Tensor, masks: torch.Tensor
    ) -> torch.Tensor:
        """The loss on one batch of pairs (images normalised as the encoder expects)."""
        visible = self.decoder_embed(self.encode(first, masks))
        batch = first.shape[0]
        tokens = self.mask_token.expand(batch, self.patches, -1).clone()
        tokens[~masks] = visible.reshape(-1, visible.shape[-1])
        tokens = tokens + self.decoder_pos
        memory = self.memory_embed(self.encode(second)) + self.decoder_pos
        for block in self.blocks:
            tokens = block(tokens, memory)
        predicted = self.predict(self.norm(tokens))
        target = self.patchify(first)
        if self.norm_pix_loss:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        error = ((predicted - target) ** 2).mean(-1)
        return (error * masks).sum() / masks.sum()

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, patches, patch*patch*3), row by row as the encoder orders them."""
        b, c, _, _ = images.shape
        (gh, gw), p = self.grid, self.patch
        x = images.reshape(b, c, gh, p, gw, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, p * p * c)
