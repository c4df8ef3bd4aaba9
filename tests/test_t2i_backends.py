"""The GenEval / DPG backends end to end: scene backends on scenes rendered here from the scene spec, and
tiny random-weight transformers models (Mask2Former, CLIP, BLIP) built from configs, offline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hf_scorers import build_hf_scorers
from softcfg.cli import main
from softcfg.metrics import geneval as g
from softcfg.metrics.t2i_backends import load_detector, load_vqa
from softcfg.metrics.t2i_backends.scenes import SceneDetector, SceneVQA, parse_question
from softcfg.options import UserError

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TINTS = {"white": (1, 1, 1), "red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0)}


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images.astype(np.int64), data.target.astype(np.int64)


def render(cells: dict[tuple[int, int], tuple[int, str]], images: np.ndarray) -> np.ndarray:
    """The spec: 16 x 16, cell (r, c) at [8r:8r+8, 8c:8c+8], gray round(v * 255 / 16) times the tint."""
    scene = np.zeros((16, 16, 3), np.uint8)
    for (r, c), (index, tint) in cells.items():
        gray = np.floor(images[index] * 255 / 16 + 0.5)
        scene[8 * r : 8 * r + 8, 8 * c : 8 * c + 8] = (gray[:, :, None] * np.array(TINTS[tint])).astype(
            np.uint8
        )
    return scene


@pytest.fixture(scope="module")
def oracle(digits):
    """A classifier that looks each white digit up among scikit-learn's: probability 1 on its label."""
    images, labels = digits
    table = {
        np.floor(im * 255 / 16 + 0.5).astype(np.uint8).tobytes(): lab
        for im, lab in zip(images, labels, strict=True)
    }

    def classify(cells: np.ndarray) -> np.ndarray:
        probs = np.full((len(cells), 10), 0.1)
        for i, cell in enumerate(cells):
            label = table.get(np.ascontiguousarray(cell[:, :, 0]).tobytes())
            if label is not None:
                probs[i] = np.eye(10)[label]
        return probs

    return classify


def first(labels: np.ndarray, digit: int, k: int = 0) -> int:
    return int(np.flatnonzero(labels == digit)[k])


def test_scene_detections_boxes_tints_and_empty_cells(digits, oracle):
    images, labels = digits
    scene = render({(0, 1): (first(labels, 7), "red"), (1, 0): (first(labels, 3), "yellow")}, images)
    scene[0, 0] = (40, 40, 40)  # a stray pixel: too little ink for a digit
    detector = SceneDetector({}, classify=oracle)
    found = detector.detect([scene, np.zeros_like(scene)])
    assert found[1] == []
    assert {(d.label, d.box, d.score) for d in found[0]} == {
        ("seven", (8, 0, 16, 8), 1.0),
        ("three", (0, 8, 8, 16), 1.0),
    }
    by_label = {d.label: d for d in found[0]}
    assert detector.colours(scene, [by_label["seven"], by_label["three"]], "x") == ["red", "yellow"]


PROMPTS = {
    "single": {"tag": "single_object", "include": [{"class": "five", "count": 1}]},
    "counting": {
        "tag": "counting",
        "include": [{"class": "seven", "count": 2}],
        "exclude": [{"class": "seven", "count": 3}],
    },
    "colors": {"tag": "colors", "include": [{"class": "three", "count": 1, "color": "red"}]},
    "position": {
        "tag": "position",
        "include": [{"class": "one", "count": 1}, {"class": "four", "count": 1, "position": ["right of", 0]}],
    },
}


def scenes(images: np.ndarray, labels: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(a correct scene, a wrong one) per prompt: wrong count, colour, position, class."""
    seven = [(first(labels, 7, k), "white") for k in range(3)]
    return {
        "single": (
            render({(1, 1): (first(labels, 5), "green")}, images),
            render({(1, 1): (first(labels, 6), "green")}, images),
        ),
        "counting": (
            render({(0, 0): seven[0], (1, 1): seven[1]}, images),
            render({(0, 0): seven[0], (1, 1): seven[1], (0, 1): seven[2]}, images),
        ),
        "colors": (
            render({(0, 0): (first(labels, 3), "red")}, images),
            render({(0, 0): (first(labels, 3), "blue")}, images),
        ),
        "position": (
            render({(0, 0): (first(labels, 1), "white"), (0, 1): (first(labels, 4), "white")}, images),
            render({(0, 1): (first(labels, 1), "white"), (0, 0): (first(labels, 4), "white")}, images),
        ),
    }


def test_scene_detector_through_the_geneval_rules(digits, oracle):
    detector = SceneDetector({}, classify=oracle)
    for key, (right, wrong) in scenes(*digits).items():
        p = g.GenEvalPrompt.parse({**PROMPTS[key], "prompt": key}, key)
        for image, expected in ((right, True), (wrong, False)):
            objects = g.select_objects(detector.detect([image])[0], p.tag)
            verdict = g.judge(objects, p, lambda objs, label, im=image: detector.colours(im, objs, label))
            assert verdict.correct is expected, (key, expected, verdict.reasons)


def test_scene_vqa_grammar(digits, oracle):
    images, labels = digits
    scene = render(
        {
            (0, 0): (first(labels, 6), "blue"),
            (1, 1): (first(labels, 6, 1), "blue"),
            (1, 0): (first(labels, 2), "red"),
        },
        images,
    )
    vqa = SceneVQA({}, classify=oracle)
    expected = {
        "Is there a six?": "yes",
        "is there an eight": "no",
        "Is there a blue six?": "yes",
        "is there a red six?": "no",
        "Is the six blue?": "yes",
        "is the two blue?": "no",
        "Are there two sixes?": "yes",
        "are there three sixes?": "no",
        "are there one twos?": "yes",
        "Is the two below the six?": "yes",
        "is the two left of the six?": "yes",  # the six at (1, 1)
        "is the two right of the six?": "no",
        "is the six above the six?": "yes",  # two different cells
    }
    assert vqa.answer([scene] * len(expected), list(expected)) == list(expected.values())
    assert parse_question("are there four nines?") == ("count", {"n": "four", "a": "nine"})
    with pytest.raises(UserError, match="outside the grammar"):
        vqa.answer([scene], ["how many sixes are there?"])


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, digits) -> tuple[Path, dict[int, list[int]]]:
    """A briefly trained embedded digits classifier and, per digit, images it names with p > 0.9."""
    import torch

    from softcfg.data.digits import split_digits
    from softcfg.metrics.t2i_backends.scenes import classifier_from_checkpoint
    from softcfg.models.digits_classifier import save_digits_classifier
    from softcfg.training.digits import train_digits_classifier

    torch.manual_seed(0)
    model, _ = train_digits_classifier(split_digits(0), 0, epochs=5)
    path = tmp_path_factory.mktemp("classifier") / "classifier.pt"
    save_digits_classifier(model, path)
    images, labels = digits
    white = np.repeat(np.floor(images * 255 / 16 + 0.5).astype(np.uint8)[..., None], 3, axis=-1)
    probs = classifier_from_checkpoint(str(path))(white)
    sure = {
        d: [int(i) for i in np.flatnonzero((labels == d) & (probs[np.arange(len(labels)), labels] > 0.95))]
        for d in range(10)
    }
    return path, sure


def write_geneval(root: Path, metas: list[dict], images: list[list[np.ndarray]]) -> None:
    for i, (meta, ims) in enumerate(zip(metas, images, strict=True)):
        (root / f"{i:05d}" / "samples").mkdir(parents=True)
        (root / f"{i:05d}" / "metadata.jsonl").write_text(json.dumps(meta))
        for j, im in enumerate(ims):
            Image.fromarray(im).save(root / f"{i:05d}" / "samples" / f"{j:04d}.png")


def test_geneval_cli_with_the_scene_backend(tmp_path, digits, classifier, capsys):
    path, sure = classifier
    images, _ = digits
    labels = np.full(len(images), -1)  # only images the classifier is sure of are chosen
    for d, idx in sure.items():
        labels[idx] = d
    metas = [{**p, "prompt": k} for k, p in PROMPTS.items()]
    pairs = scenes(images, labels)
    declared = tmp_path / "prompts.jsonl"
    declared.write_text("".join(json.dumps(m) + "\n" for m in metas))
    write_geneval(tmp_path / "run", metas, [[pairs[k][0], pairs[k][1]] for k in PROMPTS])
    out = tmp_path / "rows.json"
    argv = ["geneval", str(tmp_path / "run"), "--backend", "scenes", "--option", f"classifier={path}"]
    assert main([*argv, "--prompts", str(declared), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Total images: 8" in printed and "% correct prompts: 100.00%" in printed
    rows = {r["metric"]: r for r in json.loads(out.read_text())}
    assert rows["geneval/overall"]["value"] == 0.5  # every right scene correct, every wrong one wrong
    assert rows["geneval/counting"]["value"] == 0.5 and rows["geneval/counting"]["count"] == 2
    assert rows["geneval/correct_images"]["value"] == 0.5
    assert {r["backend"] for r in rows.values()} == {"scenes"} and {r["mode"] for r in rows.values()} == {
        "compatible"
    }
    assert main(argv) == 2  # the official 553 prompts are not all there: refused by name
    assert "549 of 553 lack metadata or images: 00004, 00005" in capsys.readouterr().err


def test_dpg_cli_with_the_scene_backend(tmp_path, digits, classifier, capsys):
    import csv

    import pandas as pd

    from softcfg.metrics.dpg import COLUMNS

    path, sure = classifier
    images, _ = digits
    tile = render({(0, 0): (sure[2][0], "red"), (1, 1): (sure[8][0], "white")}, images)
    other = render({(0, 1): (sure[2][1], "blue")}, images)
    grid = np.concatenate([np.concatenate([tile, tile], 1), np.concatenate([other, tile], 1)], 0)  # 32 x 32
    (tmp_path / "run").mkdir()
    Image.fromarray(grid).save(tmp_path / "run" / "s1.png")
    questions = [
        (1, "0", "entity - whole (two)", "is there a two?"),
        (2, "1", "attribute - color (two, red)", "is the two red?"),
        (3, "1,4", "relation - spatial (two, eight, above)", "is the two above the eight?"),
        (4, "0", "entity - whole (eight)", "is there an eight?"),
    ]
    with open(tmp_path / "q.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerow(["s0", "t", "k", 1, "0", "entity", "whole", "entity - whole (x)", "is there a one?"])
        for qid, dep, tup, q in questions:
            writer.writerow(["s1", "t", "k", qid, dep, "x", "y", tup, q])
    argv = ["dpg", str(tmp_path / "run"), "--questions", str(tmp_path / "q.csv"), "--custom-questions"]
    argv += ["--backend", "scenes", "--option", f"classifier={path}"]
    assert main([*argv, "--mode", "corrected"]) == 2  # item s0's grid is missing
    assert "1 of 2 grids are missing: s0" in capsys.readouterr().err
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "run" / "s0.png")
    # s1: tiles 1, 2, 4 answer every question yes (1.0); tile 3 has a blue two only: q1 yes, q2, q3, q4 no
    # (q3 also zeroed by q4): 1/4. s0 (no "one" anywhere) scores 0 but is skipped in compatible mode, where
    # its only question, the table's first row, is dropped. Spatial: compatible reads the last tile only.
    expected = {"corrected": (100 * 3.25 / 8, 75.0), "compatible": (100 * 3.25 / 4, 100.0)}
    for mode, (overall, spatial) in expected.items():
        out = tmp_path / f"{mode}.parquet"
        assert main([*argv, "--mode", mode, "--out", str(out)]) == 0
        rows = pd.read_parquet(out).set_index("metric")
        assert rows.loc["dpg/overall", "value"] == pytest.approx(overall)
        assert rows.loc["dpg/relation/spatial", "value"] == pytest.approx(spatial)
        assert set(rows["mode"]) == {mode} and set(rows["backend"]) == {"scenes"}
    printed = capsys.readouterr().out
    assert "DPG-Bench score: 81.25" in printed and "Failed filename: s0.png" in printed


# --- tiny random-weight transformers models -------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory) -> Iterator[dict[str, Path]]:
    with pytest.MonkeyPatch.context() as env:  # offline: every model below is built here from a config
        env.setenv("HF_HUB_OFFLINE", "1")
        yield build_hf_scorers(tmp_path_factory.mktemp("hf"))


def test_mask_boxes_are_the_mask_extent():
    import torch

    from softcfg.metrics.t2i_backends.hf import mask_boxes

    masks = torch.zeros(2, 5, 6, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True  # rows 1-2, columns 2-4
    assert mask_boxes(masks).tolist() == [[2, 1, 5, 3], [0, 0, 0, 0]]


def test_mask2former_clip_backend(hf_folders):
    import torch
    import torch.nn.functional as F

    from softcfg.metrics.t2i_backends.hf import instance_postprocess

    detector = load_detector(
        "hf", {"detector": str(hf_folders["m2f"]), "clip": str(hf_folders["clip"]), "batch_size": "2"}
    )
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(2)] + [
        rng.integers(0, 256, (50, 30, 3), dtype=np.uint8)
    ]
    found = detector.detect(images)
    assert [len(f) for f in found] == [100] * 3  # the top 100 of 6 queries x 80 classes
    names = set(g.object_names())
    for image, dets in zip(images, found, strict=True):
        assert {d.label for d in dets} <= names
        assert all(d.mask.shape == image.shape[:2] and 0 <= d.score <= 1 for d in dets)
        assert all(
            0 <= d.box[0] <= d.box[2] <= image.shape[1] and 0 <= d.box[1] <= d.box[3] <= image.shape[0]
            for d in dets
        )
    # one detection recomputed by hand: class probability x mean mask probability inside the mask
    cls = torch.randn(3, 4)
    masks = torch.randn(3, 2, 2)
    labels, scores, boxes, binary = instance_postprocess(cls, masks, (8, 8), (8, 6), (16, 12), top=2)
    probs = cls.softmax(-1)[:, :-1]
    q, c = divmod(int(probs.flatten().argmax()), 3)
    up = F.interpolate(masks[q][None, None], size=(8, 8), mode="bilinear", align_corners=False)[:, :, :8, :6]
    up = F.interpolate(up, size=(16, 12), mode="bilinear", align_corners=False)[0, 0]
    inside = up > 0
    expected = probs[q, c] * (up.sigmoid() * inside).sum() / (inside.sum() + 1e-6)
    assert int(labels[0]) == c and float(scores[0]) == pytest.approx(float(expected), rel=1e-5)  # best first
    assert torch.equal(binary[0], inside)
    assert boxes.shape == (2, 4)
    objects = [d for d in found[0] if d.box[2] > d.box[0] and d.box[3] > d.box[1]][:3]
    colours = detector.colours(images[0], objects, "cat")
    assert len(colours) == 3 and set(colours) <= set(g.COLORS)


def test_geneval_cli_with_the_hf_backend(tmp_path, hf_folders, capsys):
    rng = np.random.default_rng(1)
    metas = [
        {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a red car"},
        {"tag": "single_object", "include": [{"class": "cow", "count": 1}], "prompt": "a cow"},
    ]
    write_geneval(tmp_path / "run", metas, [[rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)] * 2] * 2)
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metas))
    out = tmp_path / "rows.json"
    options = ["--option", f"detector={hf_folders['m2f']}", "--option", f"clip={hf_folders['clip']}"]
    assert (
        main(
            [
                "geneval",
                str(tmp_path / "run"),
                "--prompts",
                str(tmp_path / "p.jsonl"),
                *options,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "Total images: 4" in capsys.readouterr().out
    rows = {r["metric"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {
        "geneval/colors",
        "geneval/single_object",
        "geneval/overall",
        "geneval/correct_images",
        "geneval/correct_prompts",
    }
    assert rows["geneval/colors"]["count"] == 2 and rows["geneval/overall"]["backend"] == "hf(m2f, clip)"
    assert (
        main(
            [
                "geneval",
                str(tmp_path / "run"),
                "--prompts",
                str(tmp_path / "p.jsonl"),
                "--option",
                "detector=x",
            ]
        )
        == 2
    )
    assert "needs --option clip" in capsys.readouterr().err


def test_blip_vqa_backend_and_dpg_cli(tmp_path, hf_folders, capsys):
    import csv

    from softcfg.metrics.dpg import COLUMNS

    vqa = load_vqa("hf", {"model": str(hf_folders["blip"]), "batch_size": "3", "max_new_tokens": "3"})
    images = [np.full((20, 20, 3), i * 40, np.uint8) for i in range(5)]
    answers = vqa.answer(images, ["is there a two?"] * 5)
    assert len(answers) == 5 and all(isinstance(a, str) for a in answers)
    (tmp_path / "run").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "run" / "item.png")
    with open(tmp_path / "q.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerow(
            ["item", "t", "k", 1, "0", "entity", "whole", "entity - whole (two)", "is there a two?"]
        )
        writer.writerow(
            ["item", "t", "k", 2, "1", "other", "count", "other - count (two, ==2)", "is there a two?"]
        )
    out = tmp_path / "rows.json"
    argv = ["dpg", str(tmp_path / "run"), "--questions", str(tmp_path / "q.csv"), "--custom-questions"]
    assert (
        main([*argv, "--mode", "corrected", "--option", f"model={hf_folders['blip']}", "--out", str(out)])
        == 0
    )
    rows = {r["metric"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"dpg/overall", "dpg/entity", "dpg/other", "dpg/entity/whole", "dpg/other/count"}
    assert rows["dpg/overall"]["mode"] == "corrected" and rows["dpg/entity"]["count"] == 1
    assert main([*argv, "--backend", "nowhere:factory"]) == 2
    assert "could not be imported" in capsys.readouterr().err


def test_folders_transformers_refuses_and_bad_devices_are_one_line(tmp_path, hf_folders, capsys):
    import shutil

    from softcfg.metrics.dpg import COLUMNS

    broken = shutil.copytree(hf_folders["m2f"], tmp_path / "m2f")
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"truncated")
    meta = {"tag": "single_object", "include": [{"class": "cow", "count": 1}], "prompt": "a cow"}
    write_geneval(tmp_path / "run", [meta], [[np.zeros((8, 8, 3), np.uint8)]])
    (tmp_path / "p.jsonl").write_text(json.dumps(meta) + "\n")
    geneval = ["geneval", str(tmp_path / "run"), "--prompts", str(tmp_path / "p.jsonl")]
    (tmp_path / "grids").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "grids" / "item.png")
    dpg = ["dpg", str(tmp_path / "grids"), "--questions", str(tmp_path / "q.csv"), "--custom-questions"]
    cases = [
        (
            [*geneval, "--option", f"detector={broken}", "--option", f"clip={hf_folders['clip']}"],
            f"--option detector={broken}: transformers cannot load it as Mask2FormerForUniversalSegmentation",
        ),
        (
            [*geneval, "--option", f"detector={hf_folders['m2f']}", "--option", f"clip={hf_folders['clip']}",
             "--option", "device=cuda:banana"],
            "--option device: expected cpu, cuda, cuda:N or mps, got 'cuda:banana'",
        ),
        (
            [*dpg, "--option", f"model={broken}"],
            f"--option model={broken}: transformers cannot load it as BlipForQuestionAnswering",
        ),
    ]  # fmt: skip
    (tmp_path / "q.csv").write_text(
        ",".join(COLUMNS) + "\nitem,t,k,1,0,entity,whole,entity - whole (cow),is there a cow?\n"
    )
    for argv, message in cases:
        capsys.readouterr()
        assert main([*argv, "--out", str(tmp_path / "rows.json")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"softcfg: error: {message}") and "\n" not in err and "Traceback" not in err, (
            err
        )
        assert not (tmp_path / "rows.json").exists()
