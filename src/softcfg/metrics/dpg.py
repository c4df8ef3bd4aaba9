"""DPG-Bench (ELLA ``dpg_bench/compute_dpg_bench.py``) scoring, in two modes recorded with every number.

Each prompt's image is a 2 x 2 grid of samples (tiles read top-left, top-right, bottom-left,
bottom-right); a VQA backend answers every question of the prompt on each tile. An answer scores 1 only
when it is exactly "yes"; a question with a non-zero parent that scored 0 is set to 0; tile score = mean
over the prompt's questions, image score = mean over tiles, DPG score = 100 x mean image score; category
scores (the ``tuple`` column's prefix, e.g. "entity - whole", and its first word) are 100 x the mean of
their questions' scores.

``compatible`` reproduces the official numbers with their defects: the table's first data row is
dropped; an item's questions are the last consecutive run of its rows; zeroing walks the questions in
table order against scores already zeroed (so a child listed before its parent misses the parent's own
zeroing); a parent missing from the item, or any other exception, silently skips the image (printed as
"Failed filename"); category scores use only the last tile and the answers before zeroing.
``corrected`` keeps every row, refuses a missing parent, a repeated proposition or a dependency cycle
when the table is read, zeroes a question whenever any ancestor answered no, lets errors stop the run,
and scores categories on the zeroed answers of every tile.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from softcfg.metrics.geneval import BENCHMARK_DATA, read_image
from softcfg.options import UserError

if TYPE_CHECKING:
    from softcfg.metrics.t2i_backends import VQAModel

COLUMNS = (
    "item_id",
    "text",
    "keywords",
    "proposition_id",
    "dependency",
    "category_broad",
    "category_detailed",
    "tuple",
    "question_natural_language",
)
BLOB = "98457fc9901943f51ff9a30367250fc292533bed"  # git hash-object of the official dpg_bench.csv
ITEMS = 1065
MODES = ("compatible", "corrected")
TILES = 4
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class Question:
    item: str
    qid: int
    parents: tuple[int, ...]  # 0 = none
    category: str  # the tuple's prefix, e.g. "entity - whole"
    text: str


def git_blob_sha1(path: str | Path) -> str:
    """``git hash-object``: sha1 of "blob <size>\\0" + the bytes."""
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def prompt_items() -> list[str]:
    """The 1065 official item ids: the packaged prompt files' stems."""
    folder = resources.files("softcfg").joinpath(f"{BENCHMARK_DATA}/dpg_bench/prompts")
    return sorted(p.name.removesuffix(".txt") for p in folder.iterdir() if p.name.endswith(".txt"))


def read_questions(path: str | Path, official: bool = True) -> list[Question]:
    """The question table, every row in file order, checked: its columns, each row's numbers and, when
    ``official``, the upstream blob checksum and the 1065 items of the packaged prompts."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--questions: file not found: {path}")
    if official and (blob := git_blob_sha1(path)) != BLOB:
        raise UserError(
            f"{path}: git blob {blob} is not the official dpg_bench.csv ({BLOB}); "
            "score an own question table with --custom-questions"
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text") from None
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(header)})")
        rows = []
        for number, row in enumerate(reader, 2):
            try:
                qid = int(row["proposition_id"])
                parents = tuple(int(d.strip()) for d in row["dependency"].split(","))
            except (ValueError, AttributeError) as exc:
                raise UserError(
                    f"{path}:{number}: proposition_id/dependency must be integers: {exc}"
                ) from exc
            category = row["tuple"].split("(")[0].strip()
            rows.append(Question(row["item_id"], qid, parents, category, row["question_natural_language"]))
    if not rows:
        raise UserError(f"{path}: no questions")
    if official:
        items, expected = sorted({q.item for q in rows}), prompt_items()
        if items != expected:
            absent = sorted(set(expected) - set(items))[:5]
            extra = sorted(set(items) - set(expected))[:5]
            raise UserError(f"{path}: items differ from the {ITEMS} prompts (absent {absent}, extra {extra})")
    return rows


def item_questions(rows: Sequence[Question], mode: str) -> dict[str, dict[int, Question]]:
    """Each item's questions by proposition id, in table order, as ``mode`` groups them."""
    if mode not in MODES:
        raise UserError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    items: dict[str, dict[int, Question]] = {}
    if mode == "compatible":
        previous = None
        for q in rows[1:]:  # the official script skips the first data row
            if q.item != previous:
                items[q.item] = {}  # a later run of the same item replaces the earlier one
            items[q.item][q.qid] = q
            previous = q.item
        return items
    for q in rows:
        questions = items.setdefault(q.item, {})
        if q.qid in questions:
            raise UserError(f"item {q.item}: proposition {q.qid} appears twice")
        questions[q.qid] = q
    for item, questions in items.items():
        for q in questions.values():
            absent = [p for p in q.parents if p != 0 and p not in questions]
            if absent:
                raise UserError(
                    f"item {item}: proposition {q.qid} depends on {absent[0]}, which it does not have"
                )
        _check_acyclic(item, questions)
    return items


def _check_acyclic(item: str, questions: dict[int, Question]) -> None:
    state: dict[int, int] = {}  # 1 = on the current path, 2 = done

    def visit(qid: int) -> None:
        if state.get(qid) == 1:
            raise UserError(f"item {item}: the dependencies of proposition {qid} form a cycle")
        if state.get(qid) != 2:
            state[qid] = 1
            for p in questions[qid].parents:
                if p != 0:
                    visit(p)
            state[qid] = 2

    for qid in questions:
        visit(qid)


def zeroed_scores(questions: dict[int, Question], raw: dict[int, float], mode: str) -> dict[int, float]:
    """Scores after dependency zeroing; ``compatible`` raises KeyError for a parent the item lacks."""
    scores = dict(raw)
    if mode == "compatible":
        for qid, q in questions.items():
            for p in q.parents:
                if p == 0:
                    continue
                if scores[p] == 0:
                    scores[qid] = 0.0
                    break
        return scores
    memo: dict[int, float] = {}

    def effective(qid: int) -> float:
        if qid not in memo:
            parents_ok = all(effective(p) == 1 for p in questions[qid].parents if p != 0)
            memo[qid] = raw[qid] if parents_ok else 0.0
        return memo[qid]

    return {qid: effective(qid) for qid in questions}


@dataclass(frozen=True)
class ItemScore:
    item: str
    tiles: tuple[float, ...]
    score: float
    categories: tuple[tuple[str, float], ...]  # (category, question score) per question
    failure: str | None = None


def score_item(
    item: str, questions: dict[int, Question], tile_answers: Sequence[dict[int, str]], mode: str
) -> ItemScore:
    """One grid's score from each tile's answers (proposition id -> answer text)."""
    tiles, raws, zeroed = [], [], []
    for answers in tile_answers:
        raw = {qid: float(answers[qid] == "yes") for qid in questions}
        scores = zeroed_scores(questions, raw, mode)
        tiles.append(sum(scores.values()) / len(scores))
        raws.append(raw)
        zeroed.append(scores)
    if mode == "compatible":
        categories = tuple((q.category, raws[-1][qid]) for qid, q in questions.items())
    else:
        categories = tuple(
            (q.category, float(np.mean([z[qid] for z in zeroed]))) for qid, q in questions.items()
        )
    return ItemScore(item, tuple(tiles), sum(tiles) / len(tiles), categories)


@dataclass(frozen=True)
class DPGSummary:
    mode: str
    images: int
    failed: tuple[str, ...]
    overall: float
    level1: dict[str, float]
    level2: dict[str, float]
    questions: dict[str, int]  # category (either level) -> question scores behind it


def level1(category: str) -> str:
    return category.split("-")[0].strip()


def summarize(scores: Sequence[ItemScore], mode: str) -> DPGSummary:
    """Means over the scored images (failed ones skipped, as the official script does)."""
    scored = [s for s in scores if s.failure is None]
    if not scored:
        raise UserError("no DPG-Bench image could be scored")
    by_category: dict[str, list[float]] = {}
    by_level1: dict[str, list[float]] = {}
    for s in scored:
        for category, value in s.categories:
            by_category.setdefault(category, []).append(value)
            by_level1.setdefault(level1(category), []).append(value)
    counts = {k: len(v) for k, v in (*by_level1.items(), *by_category.items())}
    return DPGSummary(
        mode=mode,
        images=len(scored),
        failed=tuple(s.item for s in scores if s.failure is not None),
        overall=100 * float(np.mean([s.score for s in scored])),
        level1={k: 100 * float(np.mean(v)) for k, v in sorted(by_level1.items())},
        level2={k: 100 * float(np.mean(v)) for k, v in sorted(by_category.items())},
        questions=counts,
    )


def summary_lines(summary: DPGSummary, model_id: str, image_path: str, out: str | None) -> list[str]:
    """The lines ``compute_dpg_bench.py`` prints (level-1 categories sorted: upstream's order is a set's)."""
    lines = [f"Model: {model_id}", "L1 category scores:"]
    lines += [f"\t{k}: {v}" for k, v in summary.level1.items()]
    lines += ["L2 category scores:", *(f"\t{k}: {v}" for k, v in summary.level2.items())]
    lines += [f"Image path: {image_path}"] + ([f"Save results to: {out}"] if out else [])
    return [*lines, f"DPG-Bench score: {summary.overall}"]


def metric_name(category: str) -> str:
    """``dpg/entity`` for a level-1 name, ``dpg/entity/whole`` for "entity - whole"."""
    head, _, rest = category.partition("-")
    return f"dpg/{head.strip()}/{rest.strip()}" if rest.strip() else f"dpg/{head.strip()}"


def result_rows(summary: DPGSummary, backend: str) -> list[dict[str, Any]]:
    """Rows ``dpg/overall`` (count = images) and one per category of either level (count = question
    scores); values on the official 0-100 scale, the mode in every row."""

    def row(metric: str, value: float, count: int) -> dict[str, Any]:
        return {"metric": metric, "value": value, "count": count, "backend": backend, "mode": summary.mode}

    rows = [row("dpg/overall", summary.overall, summary.images)]
    rows += [row(metric_name(k), v, summary.questions[k]) for k, v in summary.level1.items()]
    rows += [
        row(metric_name(k), v, summary.questions[k])
        for k, v in summary.level2.items()
        if metric_name(k) != metric_name(level1(k))
    ]
    return rows


def folder_grids(folder: str | Path, items: Sequence[str]) -> dict[str, Path]:
    """Each item's grid image (named by item id, any of ``IMAGE_SUFFIXES``), checked whole first."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"DPG-Bench folder not found: {root}")
    found: dict[str, Path] = {}
    for p in sorted(root.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            stem = p.name.split(".")[0]  # the official script's key
            if stem in found:
                raise UserError(f"{root}: two images for item {stem}: {found[stem].name}, {p.name}")
            found[stem] = p
    missing = [i for i in items if i not in found]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise UserError(f"{root}: {len(missing)} of {len(items)} grids are missing: {shown}")
    return {i: found[i] for i in items}


def split_tiles(image: np.ndarray, tiles: int = TILES) -> list[np.ndarray]:
    """The first ``tiles`` of the 2 x 2 grid, read top-left, top-right, bottom-left, bottom-right."""
    h, w = image.shape[0] // 2, image.shape[1] // 2
    corners = [(0, 0), (0, w), (h, 0), (h, w)]
    return [image[y : y + h, x : x + w] for y, x in corners[:tiles]]


def evaluate_grids(
    grids: dict[str, Path],
    items: dict[str, dict[int, Question]],
    vqa: VQAModel,
    mode: str,
    tiles: int = TILES,
) -> list[ItemScore]:
    """Every grid scored; in ``compatible`` mode any exception skips the image, as upstream."""
    if not 1 <= tiles <= TILES:
        raise UserError(f"--tiles must be 1..{TILES}, got {tiles}")
    scores = []
    for item, path in grids.items():
        try:
            questions = items[item]
            image = read_image(path)
            if image.shape[0] % 2 or image.shape[1] % 2:
                raise UserError(
                    f"{path}: a 2 x 2 grid needs even sides, got {image.shape[1]} x {image.shape[0]}"
                )
            crops = split_tiles(image, tiles)
            pairs = [(t, qid) for t in range(len(crops)) for qid in questions]
            answers = vqa.answer([crops[t] for t, _ in pairs], [questions[qid].text for _, qid in pairs])
            if len(answers) != len(pairs):
                raise UserError(f"backend {vqa.name}: {len(answers)} answers to {len(pairs)} questions")
            per_tile: list[dict[int, str]] = [{} for _ in crops]
            for (t, qid), answer in zip(pairs, answers, strict=True):
                per_tile[t][qid] = answer
            scores.append(score_item(item, questions, per_tile, mode))
        except Exception as exc:
            if mode != "compatible":
                raise
            print(f"Failed filename: {path.name} {exc!r}")
            scores.append(ItemScore(item, (), 0.0, (), failure=repr(exc)))
    return scores
