"""Checkpoint identity: the same weights give the same checksum whatever file they were saved to."""

import torch

from softcfg.models.base import weights_sha256
from softcfg.models.digits_classifier import DigitsClassifier, load_digits_classifier, save_digits_classifier


def test_weights_checksum_ignores_file_bytes_and_sees_any_change(tmp_path):
    torch.manual_seed(0)
    model = DigitsClassifier()
    save_digits_classifier(model, tmp_path / "a.pt")
    save_digits_classifier(model, tmp_path / "b.pt")
    a, b = load_digits_classifier(tmp_path / "a.pt"), load_digits_classifier(tmp_path / "b.pt")
    assert (
        weights_sha256(a.state_dict()) == weights_sha256(b.state_dict()) == weights_sha256(model.state_dict())
    )
    with torch.no_grad():
        b.head.bias[3] += 1e-6
    assert weights_sha256(a.state_dict()) != weights_sha256(b.state_dict())
