"""How the workflow scores a text-to-image run: which benchmark, backend, options and question table.

- GenEval: runs of a GenEval-format prompt set (``.jsonl``), from their GenEval export, with the family's
  detector: the embedded text-to-scene model's is ``scenes`` with the workflow's digits classifier, every
  other family's is ``metrics.geneval`` (backend and options, e.g. local weights).
- DPG-Bench: the embedded model's runs with at least four images per prompt, against a question table
  generated from their prompt set (``softcfg dpg-questions``); other families' runs of the DPG-Bench
  prompt folder, against the official ``dpg_bench.csv`` named by ``metrics.dpg.questions`` (checked by
  its git blob now); both in ``metrics.dpg.mode``.

Everything is checked when the config is read (``ConfigError`` naming the key); nothing here imports torch.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from softcfg.config import MetricsEntry, ModelEntry
from softcfg.data.prompts import prompt_format
from softcfg.options import ConfigError, UserError

EMBEDDED = {"digits_text"}  # families whose scenes the ``scenes`` backends read
SCENE_BACKEND = "scenes"
DPG_IMAGES = 4  # a DPG grid is 2 x 2 images of one prompt


@dataclass(frozen=True)
class Scoring:
    """One benchmark's scoring of one run, as ``softcfg geneval`` / ``softcfg dpg`` arguments."""

    benchmark: str  # geneval | dpg
    backend: str
    options: tuple[tuple[str, str], ...]
    questions: Path | None = None  # dpg: the table; None for the embedded model's generated one
    mode: str = "compatible"

    def option_args(self) -> str:
        """``--option key=value`` words of a command line, each quoted for the shell."""
        return " ".join(f"--option {shlex.quote(f'{key}={value}')}" for key, value in self.options)


def scorings(model: ModelEntry, metrics: MetricsEntry, classifier: Path, where: str) -> list[Scoring]:
    """The benchmarks a text model's runs are scored on (none for a class-conditional model)."""
    if model.prompts is None:
        return []
    fmt = prompt_format(Path(model.prompts))
    if model.family in EMBEDDED:
        options = (("classifier", str(classifier)),)
        found = [Scoring("geneval", SCENE_BACKEND, options)] if fmt == "geneval" else []
        if fmt == "geneval" and model.per_prompt >= DPG_IMAGES:
            found.append(Scoring("dpg", SCENE_BACKEND, options, mode=metrics.dpg.mode))
        return found
    found = []
    if fmt == "geneval":
        if metrics.geneval.backend is None:
            raise ConfigError(
                f"metrics.geneval.backend: {where} (family {model.family}) samples GenEval prompts; name its "
                "detector (e.g. hf, with local weights in metrics.geneval.options)"
            )
        found.append(
            Scoring("geneval", metrics.geneval.backend, tuple(sorted(metrics.geneval.options.items())))
        )
    if fmt == "dpg" and model.per_prompt >= DPG_IMAGES:
        found.append(_official_dpg(metrics, where, model.family))
    return found


def _official_dpg(metrics: MetricsEntry, where: str, family: str) -> Scoring:
    from softcfg.metrics.dpg import BLOB, git_blob_sha1

    entry = metrics.dpg
    if entry.backend is None or entry.questions is None:
        key = "backend" if entry.backend is None else "questions"
        raise ConfigError(
            f"metrics.dpg.{key}: {where} (family {family}) samples DPG-Bench prompts; give the VQA backend "
            "and the official dpg_bench.csv"
        )
    questions = Path(entry.questions)
    if not questions.is_file():
        raise ConfigError(f"metrics.dpg.questions: file not found: {questions}")
    if git_blob_sha1(questions) != BLOB:
        raise ConfigError(f"metrics.dpg.questions: {questions} is not the official dpg_bench.csv (git blob)")
    return Scoring("dpg", entry.backend, tuple(sorted(entry.options.items())), questions, entry.mode)


def t2i_record(run: dict, rows: list[dict]) -> dict:
    """A text-to-image run's metrics record in the shape ``softcfg aggregate`` joins: the scorers' rows
    (``softcfg geneval/dpg --out``) as ``metrics``, with each metric's ``backends`` and ``modes``."""
    names = [row["metric"] for row in rows]
    if len(set(names)) != len(names):
        raise UserError(f"t2i-record: a metric appears twice in the rows: {sorted(names)}")
    return {
        "run": run,
        "metrics": {row["metric"]: float(row["value"]) for row in rows},
        "counts": {row["metric"]: int(row["count"]) for row in rows},
        "backends": {row["metric"]: row["backend"] for row in rows},
        "modes": {row["metric"]: row["mode"] for row in rows},
        "intervals": {},
        "extractor": "t2i",
        "reference": run["model"]["prompts"],
    }
