"""SimpleAR on a tiny random model in the official layouts (``tests/simplear_tiny.py``): prompts and
negative prompts follow ``generate.py``'s rule, built here from its text; CFG through the project's loop
equals the official ``CFGLogits`` (log-probability CFG on transformers' own Qwen2 run without the hook,
the unconditional sequence run on its own) restricted to the image tokens; the Cosmos decoder's FSQ codes,
inverse Haar transform and pixel conversion equal independent computations (a mixed-radix expansion, the
Haar butterfly written out, torchvision's ``save_image`` itself); bad folders and files are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simplear_tiny import IMAGE_SIZE, SIDE, TEXTS, save_tiny_simplear_files, tiny_cosmos
from softcfg.config import parse_model
from softcfg.methods import parse_method
from softcfg.models.cosmos import CosmosDecoder, cosmos_images_to_uint8, inverse_haar_3d, load_cosmos_decoder
from softcfg.models.loading import load_model
from softcfg.models.registry import get_family, presets
from softcfg.models.simplear import SimpleAR
from softcfg.options import ConfigError, UserError
from softcfg.sampling.loop import generate
from softcfg.sampling.replay import replay

transformers = pytest.importorskip("transformers")
NEGATIVE = ("An image of aerial view, overexposed, low quality, deformation, a poor composition, bad hands, "
            "bad teeth, bad eyes, bad limbs, distortion")  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    return save_tiny_simplear_files(tmp_path_factory.mktemp("simplear"))


def entry(files: tuple[Path, Path], **extra) -> dict:
    return {"family": "simplear", "checkpoint": str(files[0]), "tokenizer": str(files[1]),
            "image_size": IMAGE_SIZE, **extra}  # fmt: skip


@pytest.fixture(scope="module")
def model(files) -> SimpleAR:
    return load_model(parse_model(entry(files)))


def test_prompts_and_negative_prompts_follow_generate_py(model):
    tok = model.text_tokenizer
    assert model.image_offset == len(tok) and (model.num_tokens, model.vocab_size) == (SIDE**2, 64000)
    prompts = model.prompts(TEXTS)
    rows = prompts.cat(model.unconditional(prompts))
    for row, text in enumerate(TEXTS):
        expected = tok("<|t2i|>" + "A highly realistic image of " + text + "<|soi|>")["input_ids"]
        assert rows.ids[row][rows.mask[row]].tolist() == expected
        negative = tok("<|t2i|>" + NEGATIVE + "<|soi|>")["input_ids"]
        assert rows.ids[2 + row][rows.mask[2 + row]].tolist() == negative
    assert tok.decode(expected) == "<|t2i|>A highly realistic image of dog<|soi|>"


def test_presets_and_sizes_follow_the_official_evaluation_scripts(files):
    expected = {"gamma": 6.0, "k": 0.0, "temperature": 1.0, "top_k": 64000, "top_p": 1.0}
    assert presets()["simplear-0.5B-1024"] == presets()["simplear-1.5B-1024"] == expected
    family = get_family("simplear")
    assert family.paper_name == "SimpleAR" and family.image_sizes == (1024,)
    tiny = load_model(parse_model(entry(files)))
    big = SimpleAR(tiny.hf, tiny.text_tokenizer, tiny.image_offset)
    assert big.image_size == 1024 and big.num_tokens == 64 * 64
    with pytest.raises(ConfigError, match="multiples of 16"):
        parse_model(entry(files, image_size=100))
    with pytest.raises(ConfigError, match=r"model\.size"):
        load_model(parse_model(entry(files, size="0.5B")))


def official_cfg_probabilities(hf, prompt: list[int], negative: list[int], fed: list[int], cfg: float):
    """``CFGLogits`` on transformers' own Qwen2 (SDPA, no hook): log-softmax of the conditional and of the
    separately run unconditional sequence's logits, ``cfg (s - u) + u``; the distribution it samples,
    restricted to the image tokens [T, 64000]."""
    with torch.no_grad():
        cond = hf(torch.tensor([prompt + fed])).logits[0, len(prompt) - 1 :].float()
        uncond = hf(torch.tensor([negative + fed])).logits[0, len(negative) - 1 :].float()
    s, u = F.log_softmax(cond, -1), F.log_softmax(uncond, -1)
    guided = cfg * (s - u) + u
    offset = hf.config.vocab_size - 64000
    return torch.softmax(guided[:, offset:], -1), cond[:, offset:]


def test_cfg_equals_the_official_log_probability_cfg_on_transformers_qwen2(model, files):
    reference = transformers.Qwen2ForCausalLM.from_pretrained(files[0], attn_implementation="sdpa").eval()
    prompts = model.prompts(TEXTS)
    method = parse_method({"name": "cfg", "gamma": 6.0, "k": 0.0})
    with torch.inference_mode():
        tokens = generate(model, prompts, method, torch.Generator().manual_seed(0))
    out = replay(model, method, prompts, tokens)
    tok = model.text_tokenizer
    negative = tok("<|t2i|>" + NEGATIVE + "<|soi|>")["input_ids"]
    for row, text in enumerate(TEXTS):
        prompt = tok("<|t2i|>A highly realistic image of " + text + "<|soi|>")["input_ids"]
        fed = (tokens[row, :-1] + model.image_offset).tolist()
        expected, cond = official_cfg_probabilities(reference, prompt, negative, fed, 6.0)
        ours = torch.softmax(torch.from_numpy(out["guided"][row]), -1)
        np.testing.assert_allclose(ours.numpy(), expected.numpy(), atol=2e-5)
        np.testing.assert_allclose(out["cond"][row], cond.numpy(), rtol=1e-4, atol=1e-4)


def test_fsq_codes_are_the_mixed_radix_digits_centred():
    decoder = CosmosDecoder(tiny_cosmos().config)
    indices = torch.tensor([0, 63999, 1 + 8 * 3 + 64 * 5 + 512 * 2 + 2560 * 0 + 12800 * 4])
    codes = decoder.codes(indices.view(1, 1, 1, 3)).float()[0, :, 0, 0]  # [6, 3]
    assert codes[:, 0].tolist() == [-1.0] * 6
    assert codes[:, 1].tolist() == [0.75, 0.75, 0.75, 1.0, 1.0, 1.0]  # digits 7, 7, 7, 4, 4, 4
    digits = [1, 3, 5, 2, 0, 4]  # least significant first: levels 8, 8, 8, 5, 5, 5
    assert codes[:, 2].tolist() == [(d - h) / h for d, h in zip(digits, (4, 4, 4, 2, 2, 2), strict=True)]


def test_inverse_haar_is_the_butterfly_written_out():
    """Each output voxel (2t + a, 2h + b, 2w + c) is the sum of the 8 sub-bands, the band that is
    high-pass along an axis negated at odd offsets on it (the 1/sqrt 2 filters and the 2 sqrt 2 rescale
    cancel)."""
    x = torch.randn(2, 8 * 3, 2, 3, 4, dtype=torch.float64)
    ours = inverse_haar_3d(x)
    bands = x.view(2, 8, 3, 2, 3, 4)
    expected = torch.zeros(2, 3, 4, 6, 8, dtype=torch.float64)
    for band in range(8):
        high = (band >> 2 & 1, band >> 1 & 1, band & 1)  # time, height, width
        for a in (0, 1):
            for b in (0, 1):
                for c in (0, 1):
                    sign = (-1) ** (high[0] * a + high[1] * b + high[2] * c)
                    expected[:, :, a::2, b::2, c::2] += sign * bands[:, band]
    torch.testing.assert_close(ours, expected, rtol=1e-7, atol=1e-6)  # upstream's 2 sqrt 2 is float32


def test_images_are_the_bytes_torchvisions_save_image_writes(model, tmp_path):
    from PIL import Image
    from torchvision.utils import save_image

    tokens = torch.randint(0, 64000, (2, SIDE**2), generator=torch.Generator().manual_seed(0))
    images = model.decode_images(tokens)
    assert images.shape == (2, IMAGE_SIZE, IMAGE_SIZE, 3) and images.dtype == torch.uint8
    with torch.no_grad():
        pixels = model.tokenizer(tokens.view(2, SIDE, SIDE))
    assert pixels.dtype == torch.bfloat16 and pixels.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)  # as upstream
    for i in range(2):
        save_image(pixels[i], tmp_path / f"{i}.png", normalize=True, value_range=(-1, 1))
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"{i}.png")), images[i].numpy())
    assert torch.equal(images, cosmos_images_to_uint8(pixels))


def test_cosmos_decoder_loads_from_torchscript_or_a_state_dict_strictly(files, tmp_path):
    torch.manual_seed(0)
    indices = torch.randint(0, 64000, (1, SIDE, SIDE))
    jit = load_cosmos_decoder(files[1], torch.float32)
    state = {k: v for k, v in tiny_cosmos().state_dict().items()}
    torch.save(state, tmp_path / "decoder.pt")
    with torch.no_grad():
        assert torch.equal(jit(indices), load_cosmos_decoder(tmp_path / "decoder.pt", torch.float32)(indices))
        assert torch.equal(jit(indices), tiny_cosmos()(indices))
    state.pop("decoder.conv_out.1.conv3d.bias")
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(UserError, match=r"missing keys \['decoder\.conv_out\.1\.conv3d\.bias'\]"):
        load_cosmos_decoder(tmp_path / "broken.pt")
    state = tiny_cosmos().state_dict()
    state["decoder.conv_out.1.conv3d.weight"] = state["decoder.conv_out.1.conv3d.weight"][:48]
    torch.save(state, tmp_path / "di.pt")
    with pytest.raises(UserError, match=r"not a DV8x16x16 decoder .*48 output channels"):
        load_cosmos_decoder(tmp_path / "di.pt")


def test_bad_folders_are_refused_naming_what_is_wrong(tmp_path, files):
    def broken(name: str, edit) -> dict:
        folder = tmp_path / name
        shutil.copytree(files[0], folder)
        edit(folder)
        return parse_model({**entry(files), "checkpoint": str(folder)})

    def config(**changes):
        def edit(folder: Path) -> None:
            data = json.loads((folder / "config.json").read_text())
            (folder / "config.json").write_text(json.dumps({**data, **changes}))

        return edit

    with pytest.raises(UserError, match="model_type is 'llama', not 'qwen2'"):
        load_model(broken("llama", config(model_type="llama")))
    with pytest.raises(UserError, match=r"vocab_size 1000 < \d+ text ids"):
        load_model(broken("small", config(vocab_size=1000)))

    def drop_soi(folder: Path) -> None:
        data = json.loads((folder / "tokenizer.json").read_text())
        data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != "<|soi|>"]
        del data["model"]["vocab"]["<|soi|>"]
        (folder / "tokenizer.json").write_text(json.dumps(data))

    with pytest.raises(UserError, match=r"its tokenizer lacks \['<\|soi\|>'\]"):
        load_model(broken("no_soi", drop_soi))
    with pytest.raises(ConfigError, match=r"model\.tokenizer: simplear needs Cosmos"):
        load_model(parse_model({**entry(files), "tokenizer": None}))
