"""The embedded digits models trained for real (slow): held-out quality, and guidance that helps."""

import json

import pytest
import torch

from softcfg.cli import main
from softcfg.conditioning import ClassLabels
from softcfg.methods import parse_method
from softcfg.models.digits import load_digits_ar
from softcfg.models.digits_classifier import load_digits_classifier
from softcfg.sampling.loop import generate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    assert main(["train", "--generator", str(out / "g.pt"), "--classifier", str(out / "c.pt")]) == 0
    return out


def test_training_reports_held_out_figures(trained):
    gen = json.loads((trained / "g.json").read_text())
    cls = json.loads((trained / "c.json").read_text())
    assert gen["heldout_loss"] < 1.4  # nats per token; uniform over 17 levels is 2.83
    assert gen["train_loss"] < gen["heldout_loss"] + 0.3  # not memorised
    assert cls["heldout_accuracy"] >= 0.95


def test_cfg_raises_class_accuracy_over_no_guidance(trained):
    model = load_digits_ar(trained / "g.pt")
    classifier = load_digits_classifier(trained / "c.pt")
    labels = ClassLabels(torch.arange(300) % 10)

    def accuracy(method: dict) -> float:
        tokens = generate(model, labels, parse_method(method), torch.Generator().manual_seed(0))
        _, logits = classifier.features_and_logits(model.decode_images(tokens))
        return (logits.argmax(-1) == labels.labels).float().mean().item()

    none, cfg = accuracy({"name": "none"}), accuracy({"name": "cfg", "gamma": 3.0})
    assert cfg > none + 0.02, (none, cfg)
