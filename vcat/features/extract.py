"""A timm backbone as VOP's feature extractor: patch tokens, a global descriptor and the
patch centres, for batches of square uint8 images.

``descriptors`` are the patch tokens of ``forward_features`` (a ViT's tokens after its prefix
tokens; a CNN's feature map, one token per cell); ``global_descriptor`` is
``forward_head(features, pre_logits=True)``, which is what the entry's ``global_pool`` says:
the class token for ``token``, the mean of the patch tokens for ``avg``. ``keypoints`` are the
centres of the patches in pixels of the padded input, row by row: for patch size ``p`` and
patch (row i, column j), ``[p*j + p/2 + 0.5, p*i + p/2 + 0.5]`` (VOP's grid, ``14*i + 7.5``).

On CUDA the forward runs under bf16 autocast with the input in channels-last order; outputs
are float32 in every case.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn


class BackboneError(ValueError):
    """The network does not give patch tokens on a square grid."""


@dataclass(frozen=True)
class Outputs:
    """One batch's features on the CPU, float32."""

    descriptors: NDArray[np.float32]  # (B, P, D)
    global_descriptor: NDArray[np.float32]  # (B, D)


def keypoints(grid: int, patch: float) -> NDArray[np.float32]:
    """The centres of a ``grid`` x ``grid`` grid of ``patch``-pixel patches, row-major (x, y)."""
    centres = np.arange(grid, dtype=np.float64) * patch + patch / 2 + 0.5
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


class Extractor:
    """``model`` on ``device`` for inputs of ``size`` x ``size`` pixels, normalised with
    ``mean`` and ``std`` (per channel, on [0, 1] values)."""

    def __init__(
        self,
        model: nn.Module,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device,
    ) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.size = size
        self.model = model.eval().to(device)
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        shape = (1, 3, 1, 1)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(shape) * 255
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(shape) * 255
        self.grid, self.patch, self.dims = self._probe()
        self.keypoints = keypoints(self.grid, self.patch)

    def _probe(self) -> tuple[int, float, int]:
        """The token grid's side, the patch size and the descriptors' dimension, from one
        forward of a black image."""
        tokens, pooled = self._forward(torch.zeros(1, self.size, self.size, 3, dtype=torch.uint8))
        count = tokens.shape[1]
        side = math.isqrt(count)
        if side * side != count:
            raise BackboneError(
                f"the network gives {count} patch tokens for a {self.size}x{self.size} input, "
                "not a square grid; VOP's layout needs one"
            )
        if pooled.ndim != 2:
            raise BackboneError(
                f"forward_head(pre_logits=True) gives shape {tuple(pooled.shape)}, not one "
                "vector per image"
            )
        return side, self.size / side, int(tokens.shape[2])

    def _tokens(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 4:  # a feature map: NCHW unless the model says NHWC
            if getattr(self.model, "output_fmt", "NCHW") == "NHWC":
                return features.flatten(1, 2)
            return features.flatten(2).transpose(1, 2)
        if features.ndim == 3:
            return features[:, int(getattr(self.model, "num_prefix_tokens", 0)) :]
        raise BackboneError(f"forward_features gives shape {tuple(features.shape)}, not tokens")

    @torch.inference_mode()
    def _forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        batch = (batch - self.mean) / self.std  # NHWC storage: already channels-last
        if not self.cuda:
            batch = batch.contiguous()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else nullcontext()
        with autocast:
            features = self.model.forward_features(batch)
            pooled = self.model.forward_head(features, pre_logits=True)
        return self._tokens(features).float(), pooled.float()

    def __call__(self, images: torch.Tensor) -> Outputs:
        """Features of ``images`` (B x size x size x 3, uint8 RGB)."""
        tokens, pooled = self._forward(images)
        return Outputs(tokens.cpu().numpy(), pooled.cpu().numpy())
