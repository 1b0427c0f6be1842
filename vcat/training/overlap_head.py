"""VOP's overlap head and a loss that the overlap matrix alone can supervise.

The head (after VOP's ``OverlapPredictor``): each patch token goes through a linear
projection ``D -> E``, to which an encoding of its keypoint is added: the patch centre,
centred on the image and divided by half its longer side, through ``Linear(2, 2E)``,
LayerNorm, GELU, dropout, ``Linear(2E, E)``. Retrieval compares these patch embeddings by
cosine similarity (:mod:`vcat.evaluation.overlap_retrieval`).

The loss keeps VOP's contrastive form on the pair's patch-to-patch cosine similarities s:
a positive patch pair costs ``max(0, margin - s)^2``, a negative one ``s^2``, each averaged
over its pair and the two summed, then averaged over the batch. VOP takes its positive patch
pairs from dense depth warps; here they come from the image-level overlap o(i, j) (the
fraction of image i that j sees), as multiple-instance labels: in a pair with o > 0, the
``round(o * P)`` patches of image i (at least one) whose best match in j is most similar are
taken as the seen ones, and each of them with its best match is a positive; every other patch
pair of the two images is a negative. In a pair with o = 0 every patch pair is a negative.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class HeadConfig:
    """The head's shape: patch-token width in, embedding width out, keypoint-encoder dropout."""

    input_dim: int
    embedding_dim: int = 256
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.input_dim < 1 or self.embedding_dim < 1:
            raise ValueError(f"input_dim and embedding_dim must be positive: {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout is a probability in [0, 1): {self}")


def normalize_keypoints(keypoints: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor:
    """Pixel keypoints ``(B, P, 2)`` of images ``[w, h]`` ``(B, 2)`` to roughly [-1, 1]:
    minus the image centre, over half the longer side."""
    size = image_size.to(keypoints.dtype)
    centre = size[:, None, :] / 2
    half = size.max(dim=-1).values[:, None, None] / 2
    return (keypoints - centre) / half


class OverlapHead(nn.Module):
    """Patch tokens + keypoints -> patch embeddings for overlap retrieval (module doc)."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        width = config.embedding_dim
        self.input_proj = nn.Linear(config.input_dim, width)
        self.keypoint_encoder = nn.Sequential(
            nn.Linear(2, 2 * width),
            nn.LayerNorm(2 * width),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(2 * width, width),
        )

    def forward(
        self, descriptors: torch.Tensor, keypoints: torch.Tensor, image_size: torch.Tensor
    ) -> torch.Tensor:
        """Tokens (B, P, D), pixel keypoints ``(B, P, 2)``, sizes ``(B, 2)``: ``(B, P, E)``."""
        if descriptors.shape[-1] != self.config.input_dim:
            raise ValueError(
                f"patch tokens are {descriptors.shape[-1]} wide; this head takes "
                f"{self.config.input_dim}"
            )
        points = normalize_keypoints(keypoints.to(descriptors.dtype), image_size)
        encoded = self.keypoint_encoder(points)
        return self.input_proj(descriptors) + encoded


class PairHead(nn.Module):
    """``head`` on both images of a batch of pairs (``descriptors0/1``, ``keypoints0/1``,
    ``image_size0/1``), in one call: the single forward per step that DistributedDataParallel
    expects."""

    def __init__(self, head: OverlapHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        first = self.head(batch["descriptors0"], batch["keypoints0"], batch["image_size0"])
        second = self.head(batch["descriptors1"], batch["keypoints1"], batch["image_size1"])
        return first, second


def patch_similarity(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every patch of ``first`` with every patch of ``second``:
    ``(B, P, E)`` x ``(B, Q, E)`` -> ``(B, P, Q)``."""
    first = nn.functional.normalize(first, dim=-1)
    second = nn.functional.normalize(second, dim=-1)
    return first @ second.transpose(1, 2)


def overlap_labels(similarity: torch.Tensor, overlap: torch.Tensor) -> torch.Tensor:
    """The positive patch pairs ``(B, P, Q)`` (bool) that the image overlaps ``(B,)`` imply
    for these similarities (module doc); chosen without gradient."""
    with torch.no_grad():
        batch, patches, _ = similarity.shape
        best, partner = similarity.max(dim=2)  # each patch of the first image's best match
        seen = torch.round(overlap.to(similarity.dtype) * patches).clamp(min=1).long()
        seen = torch.where(overlap > 0, seen, torch.zeros_like(seen))
        rank = torch.empty_like(partner)
        order = best.argsort(dim=1, descending=True, stable=True)
        rank.scatter_(1, order, torch.arange(patches, device=rank.device).expand(batch, -1))
        chosen = rank < seen[:, None]  # (B, P): the patches taken as seen
        labels = torch.zeros_like(similarity, dtype=torch.bool)
        labels.scatter_(2, partner[..., None], chosen[..., None])
    return labels


def overlap_loss(
    first: torch.Tensor,
    second: torch.Tensor,
    overlap: torch.Tensor,
    margin: float = 1.0,
    power: int = 2,
) -> torch.Tensor:
    """The batch's mean contrastive loss (module doc) between the patch embeddings of
    ``first`` and ``second`` given the overlaps ``(B,)`` of their images."""
    if not torch.all((overlap >= 0) & (overlap <= 1)):
        raise ValueError("overlaps are fractions in [0, 1]")
    similarity = patch_similarity(first, second)
    positive = overlap_labels(similarity, overlap).to(similarity.dtype)
    negative = 1.0 - positive
    eps = 1e-4  # VOP's guard for pairs without positives
    positive_loss = (positive * (margin - similarity).clamp(min=0) ** 2).sum((1, 2))
    negative_loss = (negative * similarity**power).sum((1, 2))
    per_pair = positive_loss / (positive.sum((1, 2)) + eps) + negative_loss / (
        negative.sum((1, 2)) + eps
    )
    return per_pair.mean()


def head_checkpoint(head: OverlapHead, **extra: Any) -> dict[str, Any]:
    """What rebuilds ``head``: its config and CPU weights (plus ``extra`` entries)."""
    weights = {k: v.detach().to("cpu") for k, v in head.state_dict().items()}
    return {"config": asdict(head.config), "model": weights, **extra}


def head_from_checkpoint(checkpoint: dict[str, Any]) -> OverlapHead:
    """The head a :func:`head_checkpoint` dict describes, in eval mode."""
    try:
        head = OverlapHead(HeadConfig(**checkpoint["config"]))
        head.load_state_dict(checkpoint["model"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"not an overlap-head checkpoint: {exc}") from None
    return head.eval()


def embed_patches(
    head: OverlapHead,
    descriptors: np.ndarray,
    keypoints: np.ndarray,
    image_size: np.ndarray,
    batch_size: int = 64,
) -> np.ndarray:
    """``head``'s embeddings (N, P, E) float32 of N images, in eval mode (no dropout)."""
    head.eval()
    device = next(head.parameters()).device
    parts = []
    with torch.no_grad():
        for start in range(0, len(descriptors), batch_size):
            part = slice(start, start + batch_size)
            out = head(
                torch.as_tensor(descriptors[part], dtype=torch.float32, device=device),
                torch.as_tensor(keypoints[part], dtype=torch.float32, device=device),
                torch.as_tensor(image_size[part], dtype=torch.float32, device=device),
            )
            parts.append(out.float().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, 0, head.config.embedding_dim))
