"""A DPG-Bench-style question table for a GenEval-format prompt set, in the scene VQA's grammar.

The embedded text-to-scene model has no DPG-Bench prompts of its own, so its DPG scores need a question
table for its GenEval prompt set. Each ``include`` clause of a prompt becomes propositions in the grammar
of ``softcfg.metrics.t2i_backends.scenes`` (the only VQA that reads scenes), numbered per item from 1:

    the object      "Is there a(n) DIGIT?"               entity - whole     no parent
    its count > 1   "Are there N DIGITS?"                other - count      the object
    its colour      "Is the DIGIT TINT?"                 attribute - color  the object
    its relation    "Is the DIGIT RELATION the DIGIT?"   relation - spatial both objects

``exclude`` clauses add nothing (the count question already asks for exactly N). Items are the prompts'
export names (``prompt00000``, ...), the names of the DPG grids ``softcfg export --layout dpg`` writes. The
table has the official ``dpg_bench.csv`` columns, so ``softcfg dpg --custom-questions`` reads it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from softcfg.data.prompts import PromptEntry, read_prompts
from softcfg.metrics.dpg import COLUMNS
from softcfg.metrics.geneval import GenEvalPrompt
from softcfg.options import UserError


@dataclass(frozen=True)
class Proposition:
    qid: int
    parents: tuple[int, ...]  # empty: none (written as 0)
    broad: str
    detailed: str
    subject: str  # inside the tuple's parentheses
    question: str


def _article(word: str) -> str:
    return "an" if word[0] in "aeiu" else "a"


def _plural(word: str) -> str:
    return word + ("es" if word.endswith("x") else "s")


def propositions(prompt: GenEvalPrompt, where: str) -> list[Proposition]:
    """The propositions of one prompt, every question checked against the scene VQA's grammar."""
    from softcfg.metrics.t2i_backends.scenes import COUNTS, parse_question

    out: list[Proposition] = []
    entity: list[int] = []  # include clause -> its entity proposition
    for i, clause in enumerate(prompt.include):
        name = clause.label
        qid = len(out) + 1
        entity.append(qid)
        out.append(Proposition(qid, (), "entity", "whole", name, f"Is there {_article(name)} {name}?"))
        if clause.count > 1:
            if clause.count > len(COUNTS):
                raise UserError(
                    f"{where}: include[{i}] counts {clause.count}; the scene VQA counts to {len(COUNTS)}"
                )
            number = COUNTS[clause.count - 1]
            out.append(
                Proposition(len(out) + 1, (qid,), "other", "count", f"{name}, =={clause.count}",
                            f"Are there {number} {_plural(name)}?")
            )  # fmt: skip
        if clause.color is not None:
            out.append(
                Proposition(len(out) + 1, (qid,), "attribute", "color", f"{name}, {clause.color}",
                            f"Is the {name} {clause.color}?")
            )  # fmt: skip
        if clause.position is not None:
            relation, target = clause.position
            other = prompt.include[target].label
            out.append(
                Proposition(len(out) + 1, (qid, entity[target]), "relation", "spatial",
                            f"{name}, {other}, {relation}", f"Is the {name} {relation} the {other}?")
            )  # fmt: skip
    for p in out:
        parse_question(p.question)  # a digit or tint the grammar lacks is named here, not when scoring
    return out


def question_rows(entries: Sequence[PromptEntry], path: str) -> list[dict[str, str]]:
    """One row per proposition of every prompt, in prompt order, with the official table's columns."""
    rows = []
    for number, entry in enumerate(entries, 1):
        where = f"{path}:{number}"
        prompt = GenEvalPrompt.parse(entry.metadata, where)
        keywords = ", ".join(dict.fromkeys(c.label for c in prompt.include))
        for p in propositions(prompt, where):
            rows.append(
                {
                    "item_id": entry.name,
                    "text": entry.text,
                    "keywords": keywords,
                    "proposition_id": str(p.qid),
                    "dependency": ",".join(map(str, p.parents)) or "0",
                    "category_broad": p.broad,
                    "category_detailed": p.detailed,
                    "tuple": f"{p.broad} - {p.detailed} ({p.subject})",
                    "question_natural_language": p.question,
                }
            )
    return rows


def questions_csv(prompts: str | Path) -> str:
    """The question table of a GenEval-format prompt set (``.jsonl``) as CSV text."""
    prompt_set = read_prompts(prompts)
    if prompt_set.format != "geneval":
        raise UserError(
            f"{prompts}: questions are generated from GenEval metadata (.jsonl), not {prompt_set.format}"
        )
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(question_rows(prompt_set.entries, str(prompts)))
    return text.getvalue()
