"""GenEval (djghosh13/geneval) scoring: the official scorer's rules as pure functions of detections.

A detector backend (``softcfg.metrics.t2i_backends``) turns an image into ``Detection``s and names the
colour of objects; everything after that is here and follows ``evaluation/evaluate_images.py`` and
``summary_scores.py``: keep detections above 0.3 (0.9 for counting prompts), at most 16 per class, sorted
by score; every ``include`` clause must pass on the top ``count`` objects of its class (count, then colour
among those, then position against the objects an earlier clause matched); any ``exclude`` clause with at
least ``count`` detections fails the image. Scores: accuracy per task over images, their mean (the
overall score), the share of correct images and of prompts with at least one correct image.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from softcfg.metrics.introsort import argsort
from softcfg.options import UserError

THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16
MAX_OVERLAP = 1.0  # 1 = the overlap filter is off (the official default)
POSITION_MARGIN = 0.1
COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
RELATIONS = ("left of", "right of", "above", "below")
BENCHMARK_DATA = "data/benchmarks"  # package data: the upstream prompt files with their licences
MODE = "compatible"  # GenEval has one behaviour, the official scorer's; recorded like DPG's modes
_SAMPLE = re.compile(r"\d+\.png")


@dataclass(frozen=True)
class Detection:
    """One detected object: class name, box (x1, y1, x2, y2 in pixels, y down), score, optional mask."""

    label: str
    box: tuple[float, float, float, float]
    score: float
    mask: np.ndarray | None = field(default=None, compare=False)


@runtime_checkable
class Detector(Protocol):
    """Object detection for GenEval."""

    name: str  # recorded in every result row
    classes: tuple[str, ...]  # the class names it can report
    colour_names: tuple[str, ...]  # the colours ``colours`` can name

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """All detections of each uint8 [H, W, 3] image (unthresholded; GenEval's rules select)."""
        ...

    def colours(self, image: np.ndarray, objects: Sequence[Detection], label: str) -> list[str]:
        """One colour name per object of class ``label`` in ``image``."""
        ...


@dataclass(frozen=True)
class Clause:
    """One ``include``/``exclude`` item: a class, a count, and optionally a colour or a relation."""

    label: str
    count: int
    color: str | None = None
    position: tuple[str, int] | None = None  # (relation, index of the include clause it refers to)


@dataclass(frozen=True)
class GenEvalPrompt:
    tag: str
    prompt: str
    include: tuple[Clause, ...]
    exclude: tuple[Clause, ...]
    metadata: dict[str, Any] = field(compare=False)  # as read, for matching folders against the set

    @classmethod
    def parse(cls, data: Any, where: str) -> GenEvalPrompt:
        """Checked metadata: a malformed prompt names ``where`` before any image is scored."""
        if not isinstance(data, dict) or not isinstance(data.get("tag"), str) or "include" not in data:
            raise UserError(f"{where}: a GenEval prompt needs 'tag' and 'include', got {data!r}")
        include = tuple(_clause(item, f"{where}: include[{i}]") for i, item in enumerate(data["include"]))
        exclude = tuple(
            _clause(item, f"{where}: exclude[{i}]") for i, item in enumerate(data.get("exclude", []))
        )
        for i, clause in enumerate(include):
            if clause.position is not None and not 0 <= clause.position[1] < i:
                raise UserError(
                    f"{where}: include[{i}] refers to clause {clause.position[1]}, not an earlier one"
                )
        return cls(data["tag"], str(data.get("prompt", "")), include, exclude, data)

    def classes(self) -> set[str]:
        return {c.label for c in (*self.include, *self.exclude)}

    def colors(self) -> set[str]:
        return {c.color for c in self.include if c.color is not None}


def _clause(item: Any, where: str) -> Clause:
    if not isinstance(item, dict) or not isinstance(item.get("class"), str):
        raise UserError(f"{where}: needs a 'class', got {item!r}")
    count = item.get("count", 1)
    if not isinstance(count, int) or count < 1:
        raise UserError(f"{where}: 'count' must be a positive integer, got {count!r}")
    position = item.get("position")
    if position is not None:
        if not (isinstance(position, list) and len(position) == 2 and position[0] in RELATIONS):
            raise UserError(f"{where}: 'position' must be [relation, clause index], got {position!r}")
        position = (position[0], int(position[1]))
    return Clause(item["class"], count, item.get("color"), position)


@dataclass(frozen=True)
class Settings:
    """The official scorer's options (its ``--options`` keys), with its defaults."""

    threshold: float = THRESHOLD
    counting_threshold: float = COUNTING_THRESHOLD
    max_objects: int = MAX_OBJECTS
    max_overlap: float = MAX_OVERLAP
    position_margin: float = POSITION_MARGIN


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU with the scorer's inclusive pixel convention (width = x2 - x1 + 1)."""

    def area(box: Sequence[float]) -> float:
        return max(box[2] - box[0] + 1, 0) * max(box[3] - box[1] + 1, 0)

    inter = area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = area(a) + area(b) - inter
    return inter / union if union else 0.0


def select_objects(
    detections: Iterable[Detection], tag: str, settings: Settings = Settings()
) -> dict[str, list[Detection]]:
    """Per class: detections above the threshold (the counting one for ``counting`` prompts), best first,
    at most ``max_objects``, then greedily without overlaps above ``max_overlap`` (off at 1).

    As the official script on its float32 detector rows: scores compared with the threshold in float32
    (float32(0.3) is not above 0.3), equal scores in ``np.argsort(scores)[::-1]``'s order (numpy 1.23's)."""
    threshold = np.float32(settings.counting_threshold if tag == "counting" else settings.threshold)
    by_class: dict[str, list[Detection]] = {}
    for det in detections:
        by_class.setdefault(det.label, []).append(det)
    kept = {}
    for label, dets in by_class.items():
        scores = np.asarray([d.score for d in dets], dtype=np.float32)  # the detector's dtype
        ranked = argsort(scores)[::-1]  # np.argsort(scores)[::-1] under numpy 1.23: the later tie first
        order = [dets[i] for i in ranked if scores[i] > threshold][: settings.max_objects]
        chosen: list[Detection] = []
        while order:
            best = order.pop(0)
            chosen.append(best)
            if settings.max_overlap != 1:
                order = [d for d in order if box_iou(best.box, d.box) < settings.max_overlap]
        if chosen:
            kept[label] = chosen
    return kept


def relative_position(a: Sequence[float], b: Sequence[float], margin: float = POSITION_MARGIN) -> set[str]:
    """Relations of box ``a`` to box ``b``: each axis' centre offset shrunk by ``margin`` times the two
    sizes; none when both shrunk offsets are below 1e-3, else those whose normalised component passes 0.5.

    In float32, as the official script computes on the detector's box rows (a relation exactly on the
    0.5 or 1e-3 edge can flip in float64)."""
    boxes = np.asarray([a[:4], b[:4]], dtype=np.float32).reshape(2, 2, 2)
    center_a, center_b = boxes.mean(axis=1)
    size_a, size_b = np.abs(boxes[:, 1] - boxes[:, 0])
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - margin * (size_a + size_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    found = set()
    if dx < -0.5:
        found.add("left of")
    if dx > 0.5:
        found.add("right of")
    if dy < -0.5:
        found.add("above")
    if dy > 0.5:
        found.add("below")
    return found


ColourFn = Callable[[Sequence[Detection], str], list[str]]
"""(the top objects of a class, the class name) -> one colour name per object."""


@dataclass(frozen=True)
class Judgement:
    correct: bool
    reasons: tuple[str, ...]


def judge(
    objects: dict[str, list[Detection]],
    prompt: GenEvalPrompt,
    colours: ColourFn,
    margin: float = POSITION_MARGIN,
) -> Judgement:
    """One image against its prompt, from ``select_objects``' output; ``colours`` is asked only for the
    top ``count`` objects of a colour clause whose count passed."""
    reasons: list[str] = []
    matched: list[list[Detection] | None] = []
    for clause in prompt.include:
        found = objects.get(clause.label, [])[: clause.count]
        ok = len(found) >= clause.count
        if not ok:
            reasons.append(f"expected {clause.label}>={clause.count}, found {len(found)}")
        if ok and clause.color is not None:
            named = colours(found, clause.label).count(clause.color)
            ok = named >= clause.count
            if not ok:
                reasons.append(f"expected {clause.color} {clause.label}>={clause.count}, found {named}")
        if ok and clause.position is not None:
            relation, target = clause.position
            if matched[target] is None:
                ok = False
                reasons.append(f"no target for {clause.label} to be {relation}")
            else:
                pairs = ((o, t) for o in found for t in matched[target])
                bad = next(
                    (p for p in pairs if relation not in relative_position(p[0].box, p[1].box, margin)), None
                )
                if bad is not None:
                    ok = False
                    held = (
                        " and ".join(sorted(relative_position(bad[0].box, bad[1].box, margin)))
                        or "no relation"
                    )
                    reasons.append(f"expected {clause.label} {relation} target, found {held}")
        matched.append(found if ok else None)
    for clause in prompt.exclude:
        present = len(objects.get(clause.label, []))
        if present >= clause.count:
            reasons.append(f"expected {clause.label}<{clause.count}, found {present}")
    return Judgement(not reasons, tuple(reasons))


@dataclass(frozen=True)
class ImageResult:
    prompt_index: int
    tag: str
    correct: bool


@dataclass(frozen=True)
class Summary:
    images: int
    prompts: int
    correct_images: float
    correct_prompts: float
    tasks: dict[str, tuple[int, int]]  # tag -> (correct, images), in order of first appearance
    overall: float


def summarize(results: Sequence[ImageResult]) -> Summary:
    """``summary_scores.py``'s numbers: a prompt counts as correct when any of its images is."""
    if not results:
        raise UserError("no GenEval images to summarize")
    tasks: dict[str, list[int]] = {}
    prompts: dict[int, bool] = {}
    for r in results:
        tasks.setdefault(r.tag, [0, 0])
        tasks[r.tag][0] += r.correct
        tasks[r.tag][1] += 1
        prompts[r.prompt_index] = prompts.get(r.prompt_index, False) or r.correct
    overall = float(np.mean([c / n for c, n in tasks.values()]))
    return Summary(
        images=len(results),
        prompts=len(prompts),
        correct_images=sum(r.correct for r in results) / len(results),
        correct_prompts=sum(prompts.values()) / len(prompts),
        tasks={tag: (c, n) for tag, (c, n) in tasks.items()},
        overall=overall,
    )


def summary_lines(summary: Summary) -> list[str]:
    """The lines ``summary_scores.py`` prints."""
    lines = [
        "Summary",
        "=======",
        f"Total images: {summary.images}",
        f"Total prompts: {summary.prompts}",
        f"% correct images: {summary.correct_images:.2%}",
        f"% correct prompts: {summary.correct_prompts:.2%}",
        "",
        "Task breakdown",
        "==============",
    ]
    lines += [f"{tag:<16} = {c / n:.2%} ({c} / {n})" for tag, (c, n) in summary.tasks.items()]
    return [*lines, "", f"Overall score (avg. over tasks): {summary.overall:.5f}"]


def result_rows(summary: Summary, backend: str) -> list[dict[str, Any]]:
    """Rows ``geneval/<task>``, ``geneval/overall``, ``geneval/correct_images``, ``geneval/correct_prompts``;
    values are fractions in [0, 1] as the official scorer computes them, ``count`` the images behind each."""

    def row(metric: str, value: float, count: int) -> dict[str, Any]:
        return {
            "metric": f"geneval/{metric}",
            "value": value,
            "count": count,
            "backend": backend,
            "mode": MODE,
        }

    rows = [row(tag, c / n, n) for tag, (c, n) in summary.tasks.items()]
    rows.append(row("overall", summary.overall, summary.images))
    rows.append(row("correct_images", summary.correct_images, summary.images))
    rows.append(row("correct_prompts", summary.correct_prompts, summary.prompts))
    return rows


def load_prompts(path: str | Path | None = None) -> list[GenEvalPrompt]:
    """The prompt set, one JSON object a line: the packaged 553 official prompts by default."""
    if path is None:
        text = (
            resources.files("softcfg")
            .joinpath(f"{BENCHMARK_DATA}/geneval/evaluation_metadata.jsonl")
            .read_text()
        )
        where = "evaluation_metadata.jsonl"
    else:
        if not Path(path).is_file():
            raise UserError(f"--prompts: file not found: {path}")
        text, where = Path(path).read_text(), str(path)
    prompts = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}:{number}: not JSON: {exc}") from exc
            prompts.append(GenEvalPrompt.parse(data, f"{where}:{number}"))
    if not prompts:
        raise UserError(f"{where}: no prompts")
    return prompts


def object_names() -> tuple[str, ...]:
    """The 80 COCO class names in the official detector's class order."""
    text = resources.files("softcfg").joinpath(f"{BENCHMARK_DATA}/geneval/object_names.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _listing(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def folder_images(
    folder: str | Path, prompts: Sequence[GenEvalPrompt], per_prompt: int | None = None
) -> list[tuple[int, Path]]:
    """(prompt index, image) pairs of a folder in the official layout, ``<00000>/metadata.jsonl`` and
    ``<00000>/samples/<0000>.png``, checked whole first: every prompt of the set present with the same
    metadata and the same number of images; what is missing or foreign is named."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"GenEval folder not found: {root}")
    expected = {f"{i:05d}": i for i in range(len(prompts))}
    foreign = sorted(
        p.name for p in root.iterdir() if p.is_dir() and p.name.isdigit() and p.name not in expected
    )
    if foreign:
        raise UserError(
            f"{root}: prompt folders outside the declared set of {len(prompts)}: {_listing(foreign)}"
        )
    missing, mismatched, pairs, counts = [], [], [], {}
    for name, index in expected.items():
        meta = root / name / "metadata.jsonl"
        samples = (
            sorted((root / name / "samples").glob("*.png")) if (root / name / "samples").is_dir() else []
        )
        samples = [s for s in samples if _SAMPLE.fullmatch(s.name)]
        if not meta.is_file() or not samples:
            missing.append(name)
            continue
        try:
            data = json.loads(meta.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{meta}: not JSON: {exc}") from exc
        if data != prompts[index].metadata:
            mismatched.append(name)
        counts[name] = len(samples)
        pairs += [(index, s) for s in samples]
    if missing:
        raise UserError(
            f"{root}: {len(missing)} of {len(prompts)} lack metadata or images: {_listing(missing)}"
        )
    if mismatched:
        raise UserError(
            f"{root}: metadata.jsonl differs from the declared prompt set in {_listing(mismatched)}"
        )
    want = (
        per_prompt if per_prompt is not None else max(set(counts.values()), key=list(counts.values()).count)
    )
    uneven = [f"{n} ({c})" for n, c in counts.items() if c != want]
    if uneven:
        raise UserError(f"{root}: expected {want} images per prompt; these differ: {_listing(uneven)}")
    return pairs


def read_image(path: str | Path) -> np.ndarray:
    """uint8 [H, W, 3] RGB, EXIF orientation applied (as the official scorer opens images)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            return np.array(ImageOps.exif_transpose(image).convert("RGB"))  # writable, for torch
    except OSError as exc:
        raise UserError(f"{path}: not a readable image: {exc}") from exc


def check_vocabulary(prompts: Sequence[GenEvalPrompt], detector: Detector) -> None:
    """Every class and colour the prompts ask for must be one the detector can name."""
    classes = sorted(set().union(*(p.classes() for p in prompts)) - set(detector.classes))
    if classes:
        raise UserError(
            f"backend {detector.name} cannot detect {_listing(classes)} (asked for by the prompts)"
        )
    colours = sorted(set().union(*(p.colors() for p in prompts)) - set(detector.colour_names))
    if colours:
        raise UserError(f"backend {detector.name} cannot name the colours {_listing(colours)}")


def evaluate_images(
    pairs: Sequence[tuple[int, Path]],
    prompts: Sequence[GenEvalPrompt],
    detector: Detector,
    settings: Settings = Settings(),
    batch_size: int = 16,
) -> list[ImageResult]:
    """Each image judged on its own against its prompt (``folder_images``' pairs), detector in batches."""
    check_vocabulary([prompts[i] for i in {i for i, _ in pairs}], detector)
    results = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        images = [read_image(path) for _, path in chunk]
        for (index, _), image, found in zip(chunk, images, detector.detect(images), strict=True):
            prompt = prompts[index]

            def colours(objects: Sequence[Detection], label: str, image: np.ndarray = image) -> list[str]:
                return detector.colours(image, objects, label)

            verdict = judge(
                select_objects(found, prompt.tag, settings), prompt, colours, settings.position_margin
            )
            results.append(ImageResult(index, prompt.tag, verdict.correct))
    return results
