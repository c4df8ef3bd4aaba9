"""Digit scenes: the embedded text-to-image model's images, and the ground truth that scores them.

THE SCENE SPEC (fixed; a GenEval scene backend reads images against it): a scene is a 16 x 16 RGB uint8
image, a ``GRID`` x ``GRID`` grid of ``CELL`` x ``CELL`` cells; cell (r, c) occupies pixels
``[CELL*r : CELL*r + CELL, CELL*c : CELL*c + CELL]``. An empty cell is all zeros; a digit cell is one of
scikit-learn's digits (intensities 0..16, gray = round(v * 255 / 16)) multiplied by its tint's RGB.
Untinted digits are white. Captions name digits by ``DIGIT_NAMES`` and tints by ``PALETTE``'s keys.

Tokens (the model's, not part of the spec): a scene is 68 tokens, 17 per cell, cells in row-major order.
A cell's first token is its header, ``EMPTY`` or ``TINT_TOKENS[tint]``; then come its 16 2 x 2 patches,
row-major, each the code of the nearest entry of a codebook (k-means over the digits' patches, entry 0
the blank patch, as a VQ tokenizer would learn). So what a scene holds where, and in which tint, is
decided in four header tokens and a digit's shape follows in tint-free codes; on decoding, a misplaced
token (a header among the codes or a code as a header) draws nothing. Per-pixel tokens (256 per
scene) made training several times slower than the demo allows, and tinted patch codes (5 x 63 of
them) learned more slowly than headers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: a sweep reads the captions' words without it
    from torch import Tensor

CELL = 8
GRID = 2
IMAGE_SIZE = CELL * GRID
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PALETTE = {
    "white": (1.0, 1.0, 1.0),
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
}
UNTINTED = "white"

LEVELS = 16  # the largest intensity of scikit-learn's digits
TINTS = tuple(PALETTE)
PATCH = 2
CODEBOOK_SIZE = 64
PATCHES_PER_CELL = (CELL // PATCH) ** 2
CELL_TOKENS = 1 + PATCHES_PER_CELL
NUM_TOKENS = GRID * GRID * CELL_TOKENS
EMPTY = CODEBOOK_SIZE  # header of an empty cell; codes are 0 .. CODEBOOK_SIZE - 1
TINT_TOKENS = {tint: EMPTY + 1 + i for i, tint in enumerate(TINTS)}
VOCAB_SIZE = EMPTY + 1 + len(TINTS)


@dataclass(frozen=True)
class SceneObject:
    """One digit: its class, tint name, cell and which scikit-learn image (row of ``load_digit_images``)."""

    digit: int
    tint: str
    row: int
    col: int
    image: int


@dataclass(frozen=True)
class Scene:
    """The digits of one image (at most one per cell)."""

    objects: tuple[SceneObject, ...]


@functools.cache
def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 digits as intensities int64 [N, 8, 8] (0..16) and labels int64 [N], read once
    per process (parsing the bundled file takes seconds) and read-only."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images, labels = data.images.astype(np.int64), data.target.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def gray_levels(intensities: np.ndarray) -> np.ndarray:
    """round(v * 255 / 16) in integers (half up; no tie is a float rounding question then)."""
    return (intensities * 255 + 8) // 16


def render_scene(scene: Scene, digit_images: np.ndarray) -> np.ndarray:
    """The scene as the spec draws it: uint8 [16, 16, 3]."""
    image = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for obj in scene.objects:
        gray = gray_levels(digit_images[obj.image]).astype(np.float64)
        cell = np.rint(gray[:, :, None] * np.asarray(PALETTE[obj.tint]))
        image[CELL * obj.row : CELL * obj.row + CELL, CELL * obj.col : CELL * obj.col + CELL] = cell
    return image


def cell_patches(images: np.ndarray) -> np.ndarray:
    """Intensities [N, 8, 8] to patches [N, 16, 4]: patches row-major, each patch's pixels row-major."""
    n, side = images.shape[0], CELL // PATCH
    return images.reshape(n, side, PATCH, side, PATCH).transpose(0, 1, 3, 2, 4).reshape(n, -1, PATCH * PATCH)


def fit_codebook(images: np.ndarray, seed: int, iterations: int = 30) -> np.ndarray:
    """k-means (Lloyd) over the nonblank patches of ``images``, from distinct patches drawn by ``seed``;
    centroids rounded to intensities. Returns int64 [CODEBOOK_SIZE, 4], entry 0 the blank patch."""
    import torch

    patches = cell_patches(images).reshape(-1, PATCH * PATCH)
    x = torch.from_numpy(np.unique(patches[patches.any(axis=1)], axis=0)).double()
    rng = np.random.default_rng(seed)
    centroids = x[torch.from_numpy(rng.choice(x.shape[0], CODEBOOK_SIZE - 1, replace=False))]
    for _ in range(iterations):
        nearest = torch.cdist(x, centroids).argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, nearest, x)
        counts = torch.bincount(nearest, minlength=centroids.shape[0]).double()[:, None]
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)  # an empty one stays
    codes = centroids.round().clamp(0, LEVELS).long().numpy()
    return np.concatenate([np.zeros((1, PATCH * PATCH), dtype=np.int64), codes])


def patch_codes(patches: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """The nearest codebook entry (squared distance, lowest index on ties) of each patch [..., 4]."""
    d = ((patches[..., None, :] - codebook) ** 2).sum(axis=-1)
    return d.argmin(axis=-1)


def image_codes(digit_images: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Codes int64 [N, 16] of every digit image's patches, computed once for many scenes."""
    return patch_codes(cell_patches(digit_images), codebook)


def scene_tokens(scene: Scene, codes: np.ndarray) -> np.ndarray:
    """The scene's tokens int64 [68] (per cell, row-major: header, then its patches' codes), from the
    ``image_codes`` of the digit images."""
    cells = np.zeros((GRID, GRID, CELL_TOKENS), dtype=np.int64)
    cells[:, :, 0] = EMPTY
    for obj in scene.objects:
        cells[obj.row, obj.col, 0] = TINT_TOKENS[obj.tint]
        cells[obj.row, obj.col, 1:] = codes[obj.image]
    return cells.reshape(-1)


def tokens_to_images(tokens: Tensor, codebook: Tensor) -> Tensor:
    """Tokens [N, 68] to uint8 [N, 16, 16, 3], each patch its code's intensities drawn as the spec draws
    a digit (the palette's tints are 0 or 1 per channel, so the products are exact integers)."""
    import torch

    n, side = tokens.shape[0], CELL // PATCH
    cells = tokens.long().view(n, GRID * GRID, CELL_TOKENS)
    header, code = cells[:, :, 0], cells[:, :, 1:]
    rgb = torch.tensor([(0.0, 0.0, 0.0), *(PALETTE[t] for t in TINTS)], device=tokens.device).round().long()
    tint = torch.where(header > EMPTY, header - EMPTY, 0)  # 0 (an empty or misplaced header): nothing
    code = torch.where(code < CODEBOOK_SIZE, code, 0)
    gray = (codebook.to(tokens.device)[code] * 255 + 8) // 16  # [N, 4 cells, 16 patches, 4 pixels]
    pixels = gray[..., None] * rgb[tint][:, :, None, None, :]  # [N, 4, 16, 4, 3]
    # [N, grid row, grid col, patch row, patch col, pixel row, pixel col, 3] -> image rows and columns
    grid = pixels.view(n, GRID, GRID, side, side, PATCH, PATCH, 3).permute(0, 1, 3, 5, 2, 4, 6, 7)
    return grid.reshape(n, IMAGE_SIZE, IMAGE_SIZE, 3).to(torch.uint8).contiguous()
