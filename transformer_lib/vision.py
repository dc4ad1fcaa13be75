"""Lesson 05: beyond text. An image becomes a sequence of patches (ViT, Dosovitskiy et al. 2021).

Legend: B batch, C channels, Hi x Wi image size, p patch size, N = (Hi / p) * (Wi / p) patches,
D = d_model.

    image (B, C, Hi, Wi) -> N patches of C*p*p numbers (row by row) -> linear to D
                         -> [CLS] in front -> + learned positions -> (B, 1 + N, D)

After that the encoder of lesson 05 runs unchanged: it never knew its inputs were words.
"""
from __future__ import annotations

import torch
from torch import nn

from .positional import LearnedPositionalEmbedding
from .validation import check_positive_int, check_tensor


def image_to_patches(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping ``patch_size`` x ``patch_size`` squares, row by row, and flatten each.

    Args:
        images: ``(B, C, Hi, Wi)``, float; Hi and Wi divisible by ``patch_size``.
        patch_size: side p of a square patch.

    Returns:
        ``(B, N, C * p * p)`` with N = (Hi / p) * (Wi / p); patch n is at grid row n // (Wi / p),
        column n % (Wi / p), and holds its channels one after the other, each row by row.
    """
    if isinstance(images, torch.Tensor) and images.dim() in (2, 3):
        raise ValueError(f"images must be (B, C, Hi, Wi), got shape {tuple(images.shape)}: for one grey "
                         f"image of shape (Hi, Wi) pass image[None, None]; for (C, Hi, Wi) pass image[None]")
    check_tensor("images", images, ndim=4, floating=True)
    p = check_positive_int("patch_size", patch_size)
    B, C, Hi, Wi = images.shape
    if Hi % p or Wi % p:
        raise ValueError(f"image size {Hi} x {Wi} must be divisible by patch_size={p}: "
                         f"crop or pad the image, or pick a patch size that divides both")
    x = images.reshape(B, C, Hi // p, p, Wi // p, p)     # (B, C, rows, p, cols, p)
    x = x.permute(0, 2, 4, 1, 3, 5)                      # (B, rows, cols, C, p, p)
    return x.reshape(B, (Hi // p) * (Wi // p), C * p * p)  # (B, N, C*p*p)


class PatchEmbedding(nn.Module):
    """ViT's input layer: patches -> linear projection to D, a learned [CLS] vector in front, learned positions.

    Args:
        image_size: side of the (square) image.
        patch_size: side p of a patch (must divide ``image_size``).
        d_model: model size D.
        channels: C (1 for grey, 3 for colour).
        cls_token: put a learned [CLS] vector in front (its output summarises the image).
        dropout: dropout after the positions are added.

    Shape:
        images ``(B, C, image_size, image_size)`` -> ``(B, N + 1, D)`` (``(B, N, D)`` without [CLS]),
        N = (image_size / p)^2.
    """

    def __init__(self, image_size: int, patch_size: int, d_model: int, channels: int = 1,
                 cls_token: bool = True, dropout: float = 0.0):
        super().__init__()
        check_positive_int("image_size", image_size)
        self.patch_size = check_positive_int("patch_size", patch_size)
        check_positive_int("channels", channels)
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} must be divisible by patch_size={patch_size}")
        self.num_patches = (image_size // patch_size) ** 2
        self.image_size, self.channels = image_size, channels
        self.proj = nn.Linear(channels * patch_size ** 2, d_model)
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02) if cls_token else None
        self.pos = LearnedPositionalEmbedding(d_model, self.num_patches + (1 if cls_token else 0), dropout)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_tensor("images", images, ndim=4, floating=True)
        expected = (self.channels, self.image_size, self.image_size)
        if tuple(images.shape[1:]) != expected:
            raise ValueError(f"images must be (B, C, Hi, Wi) = (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(images.shape)}")
        x = self.proj(image_to_patches(images, self.patch_size))   # (B, N, C*p*p) -> (B, N, D)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)   # (B, 1 + N, D)
        return self.pos(x)                                          # (B, 1 + N, D) + (1 + N, D)
