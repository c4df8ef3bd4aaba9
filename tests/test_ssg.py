"""SSG's mathematics against independent computations: scipy's DCT, F.interpolate, hand formulas."""

import math

import numpy as np
import pytest
import scipy.fft
import torch
import torch.nn.functional as F

from softcfg.guidance.ssg import beta_schedule, dct2, dse_prior, idct2, spatial_prior, ssg_update
from softcfg.methods import parse_method
from softcfg.options import ConfigError


@pytest.mark.parametrize("shape", [(3, 5, 5), (2, 4, 1, 1), (1, 2, 13, 16)])
def test_dct2_is_scipys_orthonormal_dct_ii(shape):
    x = np.random.default_rng(0).standard_normal(shape)
    ours = dct2(torch.from_numpy(x)).numpy()
    assert np.allclose(ours, scipy.fft.dctn(x, type=2, norm="ortho", axes=(-2, -1)), atol=1e-12)
    assert np.allclose(idct2(torch.from_numpy(ours)).numpy(), x, atol=1e-12)


@pytest.mark.parametrize("p,size", [(1, 2), (2, 3), (4, 8), (13, 16)])
def test_dse_low_band_is_the_coarse_spectrum(p, size):
    coarse = torch.randn(2, 7, p, p, dtype=torch.float64)
    expected = scipy.fft.dctn(coarse.numpy(), type=2, norm="ortho", axes=(-2, -1))
    copied = dse_prior(coarse, size, band_scale="copy")
    band = scipy.fft.dctn(copied.numpy(), type=2, norm="ortho", axes=(-2, -1))[..., :p, :p]
    assert np.allclose(band, expected, atol=1e-10)
    rescaled = dse_prior(coarse, size, band_scale="rescale")
    band = scipy.fft.dctn(rescaled.numpy(), type=2, norm="ortho", axes=(-2, -1))[..., :p, :p]
    assert np.allclose(band, expected * size / p, atol=1e-10)
    # the high band is the interpolated map's
    high = scipy.fft.dctn(
        F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).numpy(),
        type=2,
        norm="ortho",
        axes=(-2, -1),
    )
    mask = np.ones((size, size), bool)
    mask[:p, :p] = False
    got = scipy.fft.dctn(rescaled.numpy(), type=2, norm="ortho", axes=(-2, -1))
    assert np.allclose(got[..., mask], high[..., mask], atol=1e-10)


def test_dse_rescaled_keeps_a_constant_map_and_copy_shrinks_it():
    coarse = torch.full((1, 1, 2, 2), 3.0, dtype=torch.float64)
    assert torch.allclose(dse_prior(coarse, 4, band_scale="rescale"), torch.full((1, 1, 4, 4), 3.0).double())
    assert torch.allclose(dse_prior(coarse, 4, band_scale="copy"), torch.full((1, 1, 4, 4), 1.5).double())


@pytest.mark.parametrize("prior,mode", [("bilinear", "bilinear"), ("nearest", "nearest")])
def test_interpolation_priors_are_f_interpolate_on_the_token_grid(prior, mode):
    """Logits [B, p^2, V] are row-major p x p grids per vocabulary channel."""
    batch, p, size, vocab = 2, 3, 5, 11
    previous = torch.randn(batch, p * p, vocab)
    grids = torch.stack([previous[:, r * p : (r + 1) * p, :] for r in range(p)], dim=1)  # [B, p, p, V]
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    up = F.interpolate(grids.permute(0, 3, 1, 2), size=(size, size), mode=mode, **kwargs)  # [B, V, s, s]
    expected = up.permute(0, 2, 3, 1).reshape(batch, size * size, vocab)
    got = spatial_prior(previous, size, prior, "bilinear", "rescale")
    assert torch.allclose(got, expected, atol=1e-6)


def test_dse_on_the_token_grid_equals_the_map_computation():
    previous = torch.randn(1, 4, 3)  # p = 2, V = 3
    maps = previous.transpose(1, 2).reshape(1, 3, 2, 2)
    expected = dse_prior(maps, 3).reshape(1, 3, 9).transpose(1, 2)
    assert torch.allclose(spatial_prior(previous, 3, "dse", "bilinear", "rescale"), expected, atol=1e-6)


def test_update_is_l_plus_beta_residual():
    logits, prior = torch.tensor([[2.0, -1.0]]), torch.tensor([[0.5, 0.5]])
    assert torch.equal(ssg_update(logits, prior, 0.5), torch.tensor([[2.75, -1.75]]))


def test_beta_schedules():
    assert beta_schedule("constant", 0.7, 4) == [0.0, 0.7, 0.7, 0.7]
    linear = beta_schedule("linear", 1.0, 5, beta_end=0.25)
    assert linear == pytest.approx([0.0, 1.0, 0.75, 0.5, 0.25])
    assert beta_schedule("list", 0.0, 3, betas=[0.1, 0.2]) == [0.0, 0.1, 0.2]
    with pytest.raises(ValueError, match="betas: 1 values for 2 scales"):
        beta_schedule("list", 0.0, 3, betas=[0.1])
    assert math.isclose(beta_schedule("linear", 2.0, 2)[1], 2.0)


def test_ssg_options_are_checked_with_their_keys():
    with pytest.raises(ConfigError, match=r"method\.ssg\.prior"):
        parse_method({"name": "cfg", "ssg": {"prior": "cubic"}})
    with pytest.raises(ConfigError, match=r"method\.ssg\.betas: give betas exactly when schedule is 'list'"):
        parse_method({"name": "cfg", "ssg": {"betas": [0.1]}})
    method = parse_method({"name": "softcfg", "gamma": 2.0, "ssg": {"beta": 0.5, "prior": "nearest"}})
    assert method.sweep_axes() == {"gamma": 2.0, "k": 0.0, "beta": 0.5, "prior": "nearest"}
    listed = parse_method({"name": "none", "ssg": {"schedule": "list", "betas": [1, 0.5]}})
    assert listed.sweep_axes() == {"beta": "1_0.5", "prior": "dse"}
