"""The embedded next-scale digits model: scale maps, cached replay, training, checkpoints, and (slow) the
trained model's class-faithful samples."""

import json
import math
import re
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from softcfg.cli import main
from softcfg.conditioning import ClassLabels
from softcfg.config import ModelEntry
from softcfg.data.digits import split_digits, tokens_to_uint8_images
from softcfg.methods import parse_method
from softcfg.models.digits import DigitsAR, DigitsARConfig, save_digits_ar
from softcfg.models.digits_classifier import load_digits_classifier
from softcfg.models.digits_scales import (
    DigitsScales,
    DigitsScalesConfig,
    load_digits_scales,
    save_digits_scales,
    scale_maps,
)
from softcfg.models.registry import get_family
from softcfg.options import UserError
from softcfg.sampling.loop import generate
from softcfg.training.digits import ARTraining
from softcfg.training.digits_scales import train_digits_scales

TINY = DigitsScalesConfig(dim=32, depth=2, heads=4, dropout=0.0)


def hand_image() -> torch.Tensor:
    """An 8x8 digit whose block means include the rounding ties 0.5 and 1.5 (rounded up)."""
    image = torch.zeros(8, 8, dtype=torch.long)
    image[0, 0] = image[1, 1] = 1  # 2x2 block (0, 0): mean 2/4 = 0.5 -> 1
    image[0:2, 2:4] = torch.tensor([[3, 2], [2, 2]])  # block (0, 1): 9/4 = 2.25 -> 2
    image[2:4, 2:4] = torch.tensor([[3, 3], [3, 2]])  # block (1, 1): 11/4 = 2.75 -> 3
    image[3, 0] = 2  # block (1, 0): 2/4 = 0.5 -> 1
    image[6:8, 6:8] = 16  # block (3, 3): 16
    return image


def test_scale_maps_match_a_hand_computation():
    image = hand_image()
    maps = scale_maps(image.reshape(1, 64))
    scale4 = [1, 2, 0, 0, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16]
    scale2 = [2, 0, 0, 4]  # quadrant sums 24 (mean 1.5 -> 2), 0, 0, 64 (mean 4)
    scale1 = [1]  # 88 / 64 = 1.375
    assert maps.shape == (1, 85) and maps.dtype == torch.long
    assert maps[0].tolist() == scale1 + scale2 + scale4 + image.reshape(-1).tolist()
    # the last scale is the digit, decoded as the next-token model decodes its tokens
    assert torch.equal(DigitsScales(TINY).decode_images(maps), tokens_to_uint8_images(image.reshape(1, 64)))


def random_model(seed: int = 0) -> DigitsScales:
    torch.manual_seed(seed)
    model = DigitsScales(TINY)
    with torch.no_grad():
        model.head.weight.mul_(10.0)  # far from uniform logits, so a wrong slot would show
    return model.eval()


def test_cached_replay_scale_by_scale_equals_one_uncached_forward():
    model = random_model()
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 17, (5, 85), generator=gen)
    conditions = ClassLabels(torch.tensor([0, 4, 9, 10, 10]))  # null class rows too
    with torch.no_grad():
        full = model(conditions, tokens)
        cache = model.new_cache(5)
        steps = [model.prefill(conditions, cache)]
        for step in range(1, 4):
            start, end = model.step_span(step - 1)
            steps.append(model.feed(tokens[:, start:end], step, cache, None))
    assert [s.shape[1] for s in steps] == [1, 4, 16, 64]
    assert full.shape == (5, 85, 17) and cache.length == 85
    assert (torch.cat(steps, dim=1) - full).abs().max().item() < 1e-4


def test_forward_is_block_causal():
    """Changing scale k's tokens changes no prediction of scales 0..k (they are predicted before it is
    fed), and changes scale k+1's."""
    model = random_model()
    conditions = ClassLabels(torch.tensor([3, 10]))
    tokens = torch.randint(0, 17, (2, 85), generator=torch.Generator().manual_seed(2))
    bounds = [0, 1, 5, 21, 85]
    with torch.no_grad():
        base = model(conditions, tokens)
        for k in range(3):
            changed = tokens.clone()
            changed[:, bounds[k] : bounds[k + 1]] = (changed[:, bounds[k] : bounds[k + 1]] + 5) % 17
            out = model(conditions, changed)
            assert torch.equal(out[:, : bounds[k + 1]], base[:, : bounds[k + 1]])
            assert not torch.allclose(
                out[:, bounds[k + 1] : bounds[k + 2]], base[:, bounds[k + 1] : bounds[k + 2]]
            )


def test_feed_refuses_a_cache_out_of_step():
    model = random_model()
    cache = model.new_cache(1)
    model.prefill(ClassLabels(torch.tensor([1])), cache)
    with pytest.raises(ValueError, match="cache filled to slot 5"):
        model.feed(torch.zeros(1, 4, dtype=torch.long), 2, cache)  # skips scale 1


def test_sampling_gives_valid_scale_maps():
    tokens = generate(
        random_model(), ClassLabels(torch.arange(4)), parse_method({"name": "cfg", "gamma": 3.0})
    )
    assert tokens.shape == (4, 85) and tokens.min() >= 0 and tokens.max() < 17


def heldout_loss(model: DigitsScales, tokens: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model.eval()(ClassLabels(labels), tokens)
    return F.cross_entropy(logits.reshape(-1, 17), tokens.reshape(-1)).item()


def test_a_checkpoint_with_nan_weights_or_a_non_tensor_value_is_refused_by_name(tmp_path):
    model = random_model()
    state = model.state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point())
    for value, message in (
        (state[key].clone().fill_(float("nan")), "holds NaN or infinite"),
        ([1, 2], "a list"),
    ):
        path = tmp_path / "bad.pt"
        torch.save({"config": asdict(model.digits_config), "state_dict": {**state, key: value}}, path)
        with pytest.raises(UserError, match=rf"bad\.pt: {re.escape(key)} (is )?{message}"):
            get_family("digits_scales").load(ModelEntry(family="digits_scales", checkpoint=str(path)))


def test_a_few_training_steps_lower_the_loss():
    split = split_digits(0)
    config = DigitsScalesConfig(dim=16, depth=1, heads=2)
    tokens, labels = scale_maps(split.heldout_tokens), split.heldout_labels
    torch.manual_seed(0)  # the initialisation training starts from
    before = heldout_loss(DigitsScales(config), tokens, labels)
    model, report = train_digits_scales(split, config, ARTraining(steps=30, eval_every=30), seed=0)
    after = heldout_loss(model, tokens, labels)
    assert abs(before - math.log(17)) < 0.3  # near uniform over the 17 levels at initialisation
    assert after < before - 0.5, (before, after)
    assert report["heldout_loss"] == pytest.approx(after, abs=1e-5)


def test_checkpoint_round_trip_and_bad_checkpoints(tmp_path):
    model = random_model()
    path = tmp_path / "scales.pt"
    save_digits_scales(model, path, {"seed": 0})
    entry = ModelEntry(family="digits_scales", checkpoint=str(path))
    loaded = get_family("digits_scales").load(entry)
    assert isinstance(loaded, DigitsScales) and not loaded.training
    assert loaded.digits_config == TINY
    state, again = model.state_dict(), loaded.state_dict()
    assert state.keys() == again.keys() and all(torch.equal(state[k], again[k]) for k in state)

    digits_ar = tmp_path / "digits_ar.pt"  # the next-token model's checkpoint: same config keys
    save_digits_ar(DigitsAR(DigitsARConfig(dim=32, depth=2, heads=4)), digits_ar)
    with pytest.raises(
        UserError, match=r"digits_ar\.pt does not match the model: missing keys.*level_embedding"
    ):
        load_digits_scales(digits_ar)
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    with pytest.raises(UserError, match=r"bare\.pt is not a digits_scales checkpoint"):
        load_digits_scales(bare)
    bad_config = tmp_path / "bad_config.pt"
    torch.save({"config": {"width": 3}, "state_dict": {}}, bad_config)
    with pytest.raises(UserError, match=r"bad_config\.pt: bad 'config' entry"):
        load_digits_scales(bad_config)
    with pytest.raises(UserError, match="checkpoint not found"):
        load_digits_scales(tmp_path / "absent.pt")


def test_family_record():
    family = get_family("digits_scales")
    assert family.trainable and family.next_scale and family.extractor == "digits"


@pytest.mark.slow
def test_trained_model_draws_digits_of_their_class(tmp_path):
    """The real model (seed 0: held-out 1.331 nats per token; none 0.40, CFG 0.55 of 300 samples of their
    class when written): its samples are of their class well above chance, and CFG raises that."""
    args = ["train", "--family", "digits_scales", "--generator", str(tmp_path / "g.pt")]
    assert main([*args, "--classifier", str(tmp_path / "c.pt")]) == 0
    report = json.loads((tmp_path / "g.json").read_text())
    assert report["heldout_loss"] < 1.4  # nats per token over the 85 tokens; uniform is log 17 = 2.83
    model = load_digits_scales(tmp_path / "g.pt")
    classifier = load_digits_classifier(tmp_path / "c.pt")
    labels = ClassLabels(torch.arange(300) % 10)

    def accuracy(method: dict) -> float:
        tokens = generate(model, labels, parse_method(method), torch.Generator().manual_seed(0))
        _, logits = classifier.features_and_logits(model.decode_images(tokens))
        return (logits.argmax(-1) == labels.labels).float().mean().item()

    none, cfg = accuracy({"name": "none"}), accuracy({"name": "cfg", "gamma": 3.0})
    assert none > 0.3, none  # chance is 0.1
    assert cfg > none + 0.05, (none, cfg)
