"""Digit scenes against the fixed spec, their patch tokens, and the caption grammar with its scenes."""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources

import numpy as np
import pytest
import torch

from softcfg.data import captions, scenes
from softcfg.data.captions import TASKS, draw_examples, parse_caption
from softcfg.data.scenes import Scene, SceneObject
from softcfg.options import UserError


def test_spec_constants():
    assert (scenes.CELL, scenes.GRID, scenes.IMAGE_SIZE) == (8, 2, 16)
    names = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    assert names == scenes.DIGIT_NAMES
    assert scenes.PALETTE == {
        "white": (1.0, 1.0, 1.0),
        "red": (1.0, 0.0, 0.0),
        "green": (0.0, 1.0, 0.0),
        "blue": (0.0, 0.0, 1.0),
        "yellow": (1.0, 1.0, 0.0),
    }


def _fake_digits() -> np.ndarray:
    images = np.zeros((2, 8, 8), dtype=np.int64)
    images[0, 0, 0], images[0, 7, 7], images[0, 3, 4] = 8, 16, 1
    images[1, 2, 5] = 12
    return images


def test_render_hand_computed_pixels():
    scene = Scene((SceneObject(3, "red", 1, 0, 0), SceneObject(5, "yellow", 0, 1, 1)))
    image = scenes.render_scene(scene, _fake_digits())
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    # cell (1, 0) holds image 0 in red: rows 8..15, columns 0..7; 8*255/16 = 127.5 -> 128, 1 -> 15.94 -> 16
    assert image[8, 0].tolist() == [128, 0, 0]
    assert image[15, 7].tolist() == [255, 0, 0]
    assert image[11, 4].tolist() == [16, 0, 0]
    # cell (0, 1) holds image 1 in yellow: 12*255/16 = 191.25 -> 191 at row 2, column 8 + 5
    assert image[2, 13].tolist() == [191, 191, 0]
    assert np.count_nonzero(image.any(axis=-1)) == 4
    assert not image[:8, :8].any() and not image[8:, 8:].any()  # empty cells


def test_render_real_digit_matches_formula():
    images, labels = scenes.load_digit_images()
    row = int(np.flatnonzero(labels == 7)[0])
    image = scenes.render_scene(Scene((SceneObject(7, "green", 0, 0, row),)), images)
    expected = np.round(images[row] * 255 / 16)  # no .5 ties but 127.5, where both roundings give 128
    assert np.array_equal(image[:8, :8, 1], expected)
    assert not image[:8, :8, [0, 2]].any() and not image[:, 8:].any() and not image[8:].any()


def test_tokens_round_trip_with_an_exact_codebook():
    digits = _fake_digits()
    codebook = np.zeros((scenes.CODEBOOK_SIZE, 4), dtype=np.int64)
    codebook[1] = [8, 0, 0, 0]  # image 0's patch at (0, 0)
    codebook[2] = [0, 0, 0, 16]  # its patch at (3, 3)
    codebook[3] = [0, 0, 1, 0]  # its patch at (1, 2): pixel (3, 4) is the patch's bottom-left
    codebook[4] = [0, 12, 0, 0]  # image 1's patch at (1, 2): pixel (2, 5) is top-right
    scene = Scene((SceneObject(3, "blue", 1, 1, 0), SceneObject(5, "white", 0, 0, 1)))
    tokens = scenes.scene_tokens(scene, scenes.image_codes(digits, codebook))
    assert tokens.shape == (68,)
    # 17 tokens per cell, cells row-major: a header (64 empty, 65 + palette index), then 16 patch codes
    expected = np.zeros(68, dtype=np.int64)
    expected[[0, 17, 34, 51]] = [65 + 0, 64, 64, 65 + 3]  # white digit, two empty cells, blue digit
    expected[0 + 1 + 6] = 4  # cell (0, 0), patch (1, 2): code 4
    expected[51 + 1 + 0] = 1  # cell (1, 1), patch (0, 0): code 1
    expected[51 + 1 + 15] = 2  # patch (3, 3): code 2
    expected[51 + 1 + 6] = 3  # patch (1, 2): code 3
    assert tokens.tolist() == expected.tolist()
    decoded = scenes.tokens_to_images(torch.from_numpy(tokens)[None], torch.from_numpy(codebook))[0]
    assert np.array_equal(decoded.numpy(), scenes.render_scene(scene, digits))


def test_codebook_quantises_real_digits_closely():
    images, _ = scenes.load_digit_images()
    codebook = scenes.fit_codebook(images, seed=0)
    assert codebook.shape == (scenes.CODEBOOK_SIZE, 4) and not codebook[0].any()
    assert codebook.min() >= 0 and codebook.max() <= 16
    assert np.array_equal(codebook, scenes.fit_codebook(images, seed=0))
    # brute-force nearest entry per pixel block, written here independently of cell_patches
    blocks = np.stack(
        [images[:, r : r + 2, c : c + 2].reshape(-1, 4) for r in (0, 2, 4, 6) for c in (0, 2, 4, 6)]
    )
    nearest = np.argmin(((blocks[..., None, :] - codebook) ** 2).sum(-1), axis=-1)
    error = np.abs(codebook[nearest] - blocks).mean()
    assert error < 1.0  # of 16 levels (0.73 measured)
    scene = Scene((SceneObject(0, "red", 0, 1, 5),))
    tokens = torch.from_numpy(scenes.scene_tokens(scene, scenes.image_codes(images, codebook)))[None]
    misplaced = tokens.repeat(2, 1)
    misplaced[0, 17] = 7  # a code as the digit cell's header: the cell draws nothing
    misplaced[1, 17 + 1 + 5] = 66  # a header among the codes, at patch (1, 1): that patch draws nothing
    headless, misplaced_image = scenes.tokens_to_images(misplaced, torch.from_numpy(codebook)).numpy()
    decoded = scenes.tokens_to_images(tokens, torch.from_numpy(codebook))[0].numpy()
    rendered = scenes.render_scene(scene, images)
    assert np.abs(decoded.astype(int) - rendered.astype(int)).mean() < 16  # a few intensity levels
    assert not decoded[:, :8].any() and not decoded[8:].any() and not decoded[..., 1:].any()
    assert not headless.any()
    patch = (slice(2, 4), slice(8 + 2, 8 + 4))  # cell (0, 1), patch (1, 1)
    assert decoded[patch].any() and not misplaced_image[patch].any()
    misplaced_image[patch] = decoded[patch]
    assert np.array_equal(misplaced_image, decoded)


# ---- grammar ------------------------------------------------------------------------------------------

HAND_PARSED = {
    "a photo of a seven": {"tag": "single_object", "include": [{"class": "seven", "count": 1}]},
    "a photo of a seven and an eight": {
        "tag": "two_object",
        "include": [{"class": "seven", "count": 1}, {"class": "eight", "count": 1}],
    },
    "a photo of three sixes": {
        "tag": "counting",
        "include": [{"class": "six", "count": 3}],
        "exclude": [{"class": "six", "count": 4}],
    },
    "a photo of one one": {
        "tag": "counting",
        "include": [{"class": "one", "count": 1}],
        "exclude": [{"class": "one", "count": 2}],
    },
    "a photo of a red seven": {"tag": "colors", "include": [{"class": "seven", "count": 1, "color": "red"}]},
    "a photo of a two right of a seven": {
        "tag": "position",
        "include": [
            {"class": "seven", "count": 1},
            {"class": "two", "count": 1, "position": ["right of", 0]},
        ],
    },
    "a photo of a yellow zero and a blue nine": {
        "tag": "color_attr",
        "include": [
            {"class": "zero", "count": 1, "color": "yellow"},
            {"class": "nine", "count": 1, "color": "blue"},
        ],
    },
}


@pytest.mark.parametrize("caption", sorted(HAND_PARSED))
def test_parse_hand_written_captions(caption):
    assert parse_caption(caption) == {**HAND_PARSED[caption], "prompt": caption}


@pytest.mark.parametrize(
    "caption",
    [
        "a picture of a seven",
        "a photo of a purple seven",
        "a photo of a seven and",
        "a photo of two seven",
        "a photo of a seven and a seven",
        "a photo of a red seven left of a two",
        "a photo of a red seven and a two",
        "a photo of a seven beside a two",
        "a photo of a eight",
        "a photo of an seven",
    ],
)
def test_parse_refuses_captions_outside_the_grammar(caption):
    with pytest.raises(UserError, match="caption"):
        parse_caption(caption)


def _pools() -> list[np.ndarray]:
    _, labels = scenes.load_digit_images()
    return [np.flatnonzero(labels == d) for d in range(10)]


def _satisfies(scene: Scene, meta: dict, labels: np.ndarray) -> bool:
    """An independent reading of GenEval's include/exclude against the scene's ground truth."""
    found = Counter((scenes.DIGIT_NAMES[o.digit], o.tint) for o in scene.objects)
    if any(scenes.DIGIT_NAMES[int(labels[o.image])] != scenes.DIGIT_NAMES[o.digit] for o in scene.objects):
        return False
    for want in meta["include"]:
        have = sum(
            n
            for (name, tint), n in found.items()
            if name == want["class"] and tint == want.get("color", tint)
        )
        if have < want["count"]:
            return False
    for avoid in meta.get("exclude", []):
        if sum(n for (name, _), n in found.items() if name == avoid["class"]) >= avoid["count"]:
            return False
    if meta["tag"] == "position":
        a = next(o for o in scene.objects if scenes.DIGIT_NAMES[o.digit] == meta["include"][0]["class"])
        b = next(o for o in scene.objects if scenes.DIGIT_NAMES[o.digit] == meta["include"][1]["class"])
        offset = {"left of": (0, -1), "right of": (0, 1), "above": (-1, 0), "below": (1, 0)}
        if (b.row - a.row, b.col - a.col) != offset[meta["include"][1]["position"][0]]:
            return False
    cells = [(o.row, o.col) for o in scene.objects]
    untinted = (
        all(o.tint == "white" for o in scene.objects) if meta["tag"] not in ("colors", "color_attr") else True
    )
    return len(set(cells)) == len(cells) and untinted


def test_examples_cover_every_task_parse_back_and_satisfy_their_metadata():
    _, labels = scenes.load_digit_images()
    examples = draw_examples(240, seed=3, pools=_pools())
    assert Counter(e.metadata["tag"] for e in examples) == {t: 40 for t in TASKS}
    counts = Counter(e.metadata["include"][0]["count"] for e in examples if e.metadata["tag"] == "counting")
    assert set(counts) == {1, 2, 3, 4}
    relations = {e.metadata["include"][1]["position"][0] for e in examples if e.metadata["tag"] == "position"}
    assert relations == {"left of", "right of", "above", "below"}
    for e in examples:
        assert e.caption == e.metadata["prompt"]
        assert json.dumps(parse_caption(e.caption)) == json.dumps(e.metadata)  # key order too
        assert _satisfies(e.scene, e.metadata, labels), e
    again = draw_examples(240, seed=3, pools=_pools())
    assert again == examples
    assert draw_examples(240, seed=4, pools=_pools()) != examples


def test_committed_prompt_file_is_the_grammars_geneval_set():
    text = resources.files("softcfg.data").joinpath(captions.PROMPT_FILE).read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert Counter(m["tag"] for m in lines) == {t: captions.PROMPTS_PER_TASK for t in TASKS}
    assert len({m["prompt"] for m in lines}) == len(lines)
    for meta in lines:
        assert list(meta) == ["tag", "include", *(["exclude"] if meta["tag"] == "counting" else []), "prompt"]
        assert parse_caption(meta["prompt"]) == meta
        assert all(o["class"] in scenes.DIGIT_NAMES for o in meta["include"])
        assert all(o.get("color", "white") in scenes.PALETTE for o in meta["include"])
    assert lines == captions.prompt_metadata(captions.PROMPTS_PER_TASK, captions.PROMPT_SEED)
