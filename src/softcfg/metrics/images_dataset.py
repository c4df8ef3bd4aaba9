"""uint8 NHWC images in memory as the Dataset torch-fidelity's extraction loop reads (uint8 CHW)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


class ImagesDataset(Dataset):
    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        return torch.from_numpy(self.images[i]).permute(2, 0, 1)
