"""Scene backends: GenEval detections and DPG answers for the embedded text-to-image model's digit scenes.

A scene (``softcfg.data.scenes``) is a GRID x GRID grid of CELL x CELL cells, each empty or one tinted
scikit-learn digit. Each cell is read on its own: a cell whose mean ink (brightest channel / 255) is
below ``EMPTY_INK`` is empty (real digits have at least 0.18); otherwise its brightest channel is the
untinted digit, which the embedded digits classifier names (score = its softmax probability), and the
tint is the palette colour nearest to the inked pixels' colour divided by their brightness. Detections
have the cell as box, so GenEval's rules (thresholds, counts, colours, positions) apply unchanged.

Question grammar of the scene VQA (case-insensitive, a trailing "?" optional; DIGIT is a name of
``DIGIT_NAMES``, TINT a key of ``PALETTE``, N one of one..four, DIGITS a plural: name + "s", "six" +
"es"; relations compare cell columns and rows, as GenEval's margins do for cell boxes):

    is there a(n) DIGIT                       some cell shows DIGIT
    is there a(n) TINT DIGIT                  some cell shows DIGIT in TINT
    is the DIGIT TINT                         at least one cell shows DIGIT and every such cell is TINT
    are there N DIGITS                        exactly N cells show DIGIT
    is the DIGIT RELATION the DIGIT           some pair of cells holds it; RELATION: left of, right of,
                                              above, below

Answers are "yes" or "no"; a question outside the grammar is refused by name before any image is read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from softcfg.data.scenes import CELL, DIGIT_NAMES, GRID, PALETTE
from softcfg.metrics.geneval import Detection
from softcfg.metrics.t2i_backends import take_options
from softcfg.options import UserError

EMPTY_INK = 0.05
COUNTS = ("one", "two", "three", "four")
Classify = Callable[[np.ndarray], np.ndarray]
"""uint8 white digits [N, 8, 8, 3] -> class probabilities [N, 10]."""


@dataclass(frozen=True)
class Cell:
    row: int
    col: int
    digit: str
    tint: str
    probability: float


def _tint(cell: np.ndarray, ink: np.ndarray) -> str:
    """The palette name nearest to the mean colour of the inked pixels, each divided by its brightness."""
    inked = ink > 0
    colour = (cell[inked].astype(np.float64) / ink[inked, None]).mean(axis=0)
    names = list(PALETTE)
    distances = [np.sum((colour - np.asarray(PALETTE[n])) ** 2) for n in names]
    return names[int(np.argmin(distances))]


def read_cells(images: Sequence[np.ndarray], classify: Classify) -> list[list[Cell]]:
    """The non-empty cells of each scene, all cells classified in one batch."""
    found: list[tuple[int, int, int, str]] = []
    digits = []
    for i, image in enumerate(images):
        side = CELL * GRID
        if image.shape != (side, side, 3) or image.dtype != np.uint8:
            raise UserError(
                f"scene {i}: expected uint8 [{side}, {side}, 3], got {image.dtype} {list(image.shape)}"
            )
        for r in range(GRID):
            for c in range(GRID):
                cell = image[CELL * r : CELL * r + CELL, CELL * c : CELL * c + CELL]
                ink = cell.max(axis=-1)
                if ink.mean() / 255 < EMPTY_INK:
                    continue
                found.append((i, r, c, _tint(cell, ink)))
                digits.append(np.repeat(ink[:, :, None], 3, axis=-1))
    cells: list[list[Cell]] = [[] for _ in images]
    if digits:
        probs = classify(np.stack(digits))
        for (i, r, c, tint), p in zip(found, probs, strict=True):
            best = int(np.argmax(p))
            cells[i].append(Cell(r, c, DIGIT_NAMES[best], tint, float(p[best])))
    return cells


def classifier_from_checkpoint(path: str) -> Classify:
    """The embedded digits classifier (``softcfg train --classifier``) as a probability function."""
    import torch

    from softcfg.models.digits_classifier import load_digits_classifier

    model = load_digits_classifier(path)

    def classify(digits: np.ndarray) -> np.ndarray:
        _, logits = model.features_and_logits(torch.from_numpy(digits))
        return torch.softmax(logits.double(), dim=-1).numpy()

    return classify


def cell_box(row: int, col: int) -> tuple[float, float, float, float]:
    return (float(CELL * col), float(CELL * row), float(CELL * col + CELL), float(CELL * row + CELL))


class SceneDetector:
    """GenEval detector for scenes: one detection per non-empty cell."""

    classes = DIGIT_NAMES
    colour_names = tuple(PALETTE)

    def __init__(self, options: Mapping[str, str], classify: Classify | None = None) -> None:
        opts = take_options(options, "scenes", [] if classify else ["classifier"], {})
        self.classify = classify or classifier_from_checkpoint(opts["classifier"])
        self.name = "scenes"

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        return [
            [Detection(c.digit, cell_box(c.row, c.col), c.probability) for c in cells]
            for cells in read_cells(images, self.classify)
        ]

    def colours(self, image: np.ndarray, objects: Sequence[Detection], label: str) -> list[str]:
        names = []
        for obj in objects:
            x1, y1, x2, y2 = (int(v) for v in obj.box)
            cell = image[y1:y2, x1:x2]
            names.append(_tint(cell, cell.max(axis=-1)))
        return names


_NAME = "|".join(DIGIT_NAMES)
_TINT = "|".join(PALETTE)
_PLURALS = {name + ("es" if name.endswith("x") else "s"): name for name in DIGIT_NAMES}
_FORMS = (
    ("exists", re.compile(rf"is there an? (?P<a>{_NAME})")),
    ("exists_tint", re.compile(rf"is there an? (?P<tint>{_TINT}) (?P<a>{_NAME})")),
    ("tint", re.compile(rf"is the (?P<a>{_NAME}) (?P<tint>{_TINT})")),
    ("count", re.compile(rf"are there (?P<n>{'|'.join(COUNTS)}) (?P<a>{'|'.join(_PLURALS)})")),
    (
        "relation",
        re.compile(rf"is the (?P<a>{_NAME}) (?P<rel>left of|right of|above|below) the (?P<b>{_NAME})"),
    ),
)


def parse_question(question: str) -> tuple[str, dict[str, str]]:
    """The question's form and slots; outside the grammar it is refused by name."""
    text = " ".join(question.lower().strip().rstrip("?").split())
    for form, pattern in _FORMS:
        match = pattern.fullmatch(text)
        if match:
            slots = match.groupdict()
            slots["a"] = _PLURALS.get(slots["a"], slots["a"])
            return form, slots
    raise UserError(
        f"scene VQA: question outside the grammar (see softcfg.metrics.t2i_backends.scenes): {question!r}"
    )


def _holds(relation: str, a: Cell, b: Cell) -> bool:
    return {
        "left of": a.col < b.col,
        "right of": a.col > b.col,
        "above": a.row < b.row,
        "below": a.row > b.row,
    }[relation]


def answer_question(form: str, slots: dict[str, str], cells: Sequence[Cell]) -> bool:
    shown = [c for c in cells if c.digit == slots["a"]]
    if form == "exists":
        return bool(shown)
    if form == "exists_tint":
        return any(c.tint == slots["tint"] for c in shown)
    if form == "tint":
        return bool(shown) and all(c.tint == slots["tint"] for c in shown)
    if form == "count":
        return len(shown) == COUNTS.index(slots["n"]) + 1
    others = [c for c in cells if c.digit == slots["b"]]
    return any(_holds(slots["rel"], a, b) for a in shown for b in others if a is not b)


class SceneVQA:
    """DPG VQA for scenes: each question answered from the cells the classifier read."""

    def __init__(self, options: Mapping[str, str], classify: Classify | None = None) -> None:
        opts = take_options(options, "scenes", [] if classify else ["classifier"], {})
        self.classify = classify or classifier_from_checkpoint(opts["classifier"])
        self.name = "scenes"

    def answer(self, images: Sequence[np.ndarray], questions: Sequence[str]) -> list[str]:
        parsed = [parse_question(q) for q in questions]
        unique = {id(image): image for image in images}  # each image read once, however many questions
        cells = dict(zip(unique, read_cells(list(unique.values()), self.classify), strict=True))
        return [
            "yes" if answer_question(form, slots, cells[id(image)]) else "no"
            for (form, slots), image in zip(parsed, images, strict=True)
        ]
