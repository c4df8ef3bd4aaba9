"""The DPG-style question table of a GenEval prompt set, and the text-to-image tables on hand-made metrics."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
import pytest

from softcfg.metrics.dpg import item_questions, read_questions
from softcfg.metrics.dpg_questions import questions_csv
from softcfg.metrics.t2i_backends.scenes import parse_question
from softcfg.options import UserError
from softcfg.report.tables import RENDERERS

# dpg_bench.csv's header as published upstream (ELLA, dpg_bench/dpg_bench.csv)
OFFICIAL = "item_id,text,keywords,proposition_id,dependency,category_broad,category_detailed,tuple,"
OFFICIAL += "question_natural_language"

PROMPTS = [  # one prompt of each GenEval task, as in the embedded model's prompt set
    {"tag": "single_object", "include": [{"class": "seven", "count": 1}], "prompt": "a photo of a seven"},
    {"tag": "two_object", "include": [{"class": "eight", "count": 1}, {"class": "five", "count": 1}],
     "prompt": "a photo of an eight and a five"},
    {"tag": "counting", "include": [{"class": "six", "count": 3}], "exclude": [{"class": "six", "count": 4}],
     "prompt": "a photo of three sixes"},
    {"tag": "colors", "include": [{"class": "one", "count": 1, "color": "red"}],
     "prompt": "a photo of a red one"},
    {"tag": "position", "include": [{"class": "six", "count": 1},
                                    {"class": "nine", "count": 1, "position": ["left of", 0]}],
     "prompt": "a photo of a nine left of a six"},
    {"tag": "color_attr", "include": [{"class": "three", "count": 1, "color": "yellow"},
                                      {"class": "zero", "count": 1, "color": "blue"}],
     "prompt": "a photo of a yellow three and a blue zero"},
]  # fmt: skip

# (item, proposition, dependency, tuple, question), written out by hand from the grammar
EXPECTED = [
    ("prompt00000", "1", "0", "entity - whole (seven)", "Is there a seven?"),
    ("prompt00001", "1", "0", "entity - whole (eight)", "Is there an eight?"),
    ("prompt00001", "2", "0", "entity - whole (five)", "Is there a five?"),
    ("prompt00002", "1", "0", "entity - whole (six)", "Is there a six?"),
    ("prompt00002", "2", "1", "other - count (six, ==3)", "Are there three sixes?"),
    ("prompt00003", "1", "0", "entity - whole (one)", "Is there a one?"),
    ("prompt00003", "2", "1", "attribute - color (one, red)", "Is the one red?"),
    ("prompt00004", "1", "0", "entity - whole (six)", "Is there a six?"),
    ("prompt00004", "2", "0", "entity - whole (nine)", "Is there a nine?"),
    ("prompt00004", "3", "2,1", "relation - spatial (nine, six, left of)", "Is the nine left of the six?"),
    ("prompt00005", "1", "0", "entity - whole (three)", "Is there a three?"),
    ("prompt00005", "2", "1", "attribute - color (three, yellow)", "Is the three yellow?"),
    ("prompt00005", "3", "0", "entity - whole (zero)", "Is there a zero?"),
    ("prompt00005", "4", "3", "attribute - color (zero, blue)", "Is the zero blue?"),
]


def write_prompts(path, prompts) -> str:
    path.write_text("".join(json.dumps(p) + "\n" for p in prompts))
    return str(path)


def test_question_table_has_the_official_columns_and_the_grammars_questions(tmp_path):
    text = questions_csv(write_prompts(tmp_path / "p.jsonl", PROMPTS))
    assert text.splitlines()[0] == OFFICIAL
    rows = list(csv.DictReader(io.StringIO(text)))
    got = [
        (r["item_id"], r["proposition_id"], r["dependency"], r["tuple"], r["question_natural_language"])
        for r in rows
    ]
    assert got == EXPECTED
    assert {r["item_id"]: r["text"] for r in rows}["prompt00004"] == "a photo of a nine left of a six"
    assert all(r["category_broad"] == r["tuple"].split(" - ")[0] for r in rows)
    for r in rows:  # every question is one the scene VQA answers
        parse_question(r["question_natural_language"])


def test_item_ids_survive_pandas_as_dpg_benchs_script_reads_the_table(tmp_path):
    """The official script reads the table with ``pd.read_csv`` and looks for ``<item_id>.png``: numeric
    ids such as 00000 would come back as the integer 0; ours come back as the export's names."""
    from softcfg.data.prompts import read_prompts

    path = tmp_path / "p.jsonl"
    csv_path = tmp_path / "q.csv"
    csv_path.write_text(questions_csv(write_prompts(path, PROMPTS)))
    ids = pd.read_csv(csv_path)["item_id"]
    assert ids.map(type).eq(str).all()
    assert sorted(set(ids)) == sorted(e.name for e in read_prompts(path).entries)
    assert not pd.read_csv(io.StringIO("item_id\n00000\n"))["item_id"].map(type).eq(str).any()


def test_question_table_reads_back_in_both_modes(tmp_path):
    csv_path = tmp_path / "q.csv"
    csv_path.write_text(questions_csv(write_prompts(tmp_path / "p.jsonl", PROMPTS)))
    rows = read_questions(csv_path, official=False)
    corrected = item_questions(rows, "corrected")  # refuses missing parents and cycles
    assert {item: len(q) for item, q in corrected.items()} == {
        "prompt00000": 1, "prompt00001": 2, "prompt00002": 2, "prompt00003": 2, "prompt00004": 3,
        "prompt00005": 4,
    }  # fmt: skip
    assert corrected["prompt00004"][3].parents == (2, 1)
    compatible = item_questions(rows, "compatible")  # upstream drops the table's first data row
    assert "prompt00000" not in compatible and len(compatible["prompt00005"]) == 4


@pytest.mark.parametrize(
    ("clause", "message"),
    [
        ({"class": "six", "count": 5}, "counts to 4"),
        ({"class": "six", "count": 1, "color": "teal"}, "outside the grammar"),
        ({"class": "dog", "count": 1}, "outside the grammar"),
    ],
)
def test_question_table_refuses_what_the_scene_vqa_cannot_ask(tmp_path, clause, message):
    path = write_prompts(tmp_path / "p.jsonl", [{"tag": "single_object", "include": [clause], "prompt": "p"}])
    with pytest.raises(UserError, match=message):
        questions_csv(path)


def test_question_table_needs_geneval_metadata(tmp_path):
    (tmp_path / "p.txt").write_text("a photo of a six\n")
    with pytest.raises(UserError, match="GenEval metadata"):
        questions_csv(tmp_path / "p.txt")


TASKS = ("single_object", "two_object", "position", "colors", "color_attr", "counting")


def run_rows(run, model, family, method, method_name, guided, step_norm, seed, values, size=None):
    """Tidy metric rows of one run (the aggregate's columns the tables read)."""
    base = {
        "run_id": f"{run}-s{seed}", "model": model, "family": family, "size": size, "method": method,
        "method_name": method_name, "guided": guided, "gamma": 2.0 if guided else None,
        "k": 1.0 if guided else None, "target": "v" if method_name == "softcfg" else None,
        "step_norm": step_norm if method_name == "softcfg" else None,
        "schedule": "cosine" if guided else None,
        "ssg_prior": None, "ssg_beta": None, "ssg_betas": None, "seed": seed,
    }  # fmt: skip
    rows = []
    for metric, value in values.items():
        t2i = metric.startswith(("geneval/", "dpg/"))
        mode = ("corrected" if metric.startswith("dpg/") else "compatible") if t2i else None
        rows.append({**base, "metric": metric, "value": value, "backend": "scenes" if t2i else None,
                     "mode": mode, "ci_low": float("nan"), "ci_high": float("nan")})  # fmt: skip
    return rows


def t2i_values(tasks: list[float], images: float, prompts: float, dpg: float) -> dict[str, float]:
    values = {f"geneval/{t}": v for t, v in zip(TASKS, tasks, strict=True)}
    values |= {"geneval/overall": sum(tasks) / 6, "geneval/correct_images": images}
    return values | {"geneval/correct_prompts": prompts, "dpg/overall": dpg, "dpg/entity": dpg + 1}


@pytest.fixture
def metrics() -> pd.DataFrame:
    rows = run_rows("d-none", "d", "digits", "none", "none", False, None, 0, {"fid": 30.0, "is": 2.0})
    rows += run_rows("d-cfg", "d", "digits", "cfg", "cfg", True, None, 0, {"fid": 20.0, "is": 3.0})
    rows += run_rows(
        "t-none",
        "t",
        "digits_text",
        "none",
        "none",
        False,
        None,
        0,
        t2i_values([0.5, 0.25, 0.0, 0.5, 0.0, 0.25], 0.25, 0.5, 40.0),
    )
    rows += run_rows(
        "t-cfg",
        "t",
        "digits_text",
        "cfg",
        "cfg",
        True,
        None,
        0,
        t2i_values([1.0, 0.5, 0.25, 0.5, 0.25, 0.5], 0.5, 0.75, 60.0),
    )
    for seed, (task, dpg) in enumerate([(0.5, 70.0), (1.0, 80.0)]):  # two seeds: averaged
        rows += run_rows(
            "t-soft",
            "t",
            "digits_text",
            "softcfg_stepnorm",
            "softcfg",
            True,
            True,
            seed,
            t2i_values([task] * 6, task, 1.0, dpg),
        )
    return pd.DataFrame(rows)  # fmt: skip


def test_t2i_table_shows_our_text_runs_scaled_as_the_paper(metrics):
    header, rows, lead = RENDERERS["t2i"](metrics, 2.0, 1.0)
    assert lead == 2 and header[:5] == ["model", "method", "γ", "k", "Overall ↑"]
    assert header[-3:] == ["DPG ↑", "scorers", "seeds"]
    assert [r[:2] for r in rows] == [["t", "none"], ["t", "cfg"], ["t", "softcfg_stepnorm"]]
    # cfg: overall = mean of the six tasks; images / prompts in %; tasks in the paper's order
    assert rows[1][4:14] == ["0.500", "50.00", "75.00", "100.00", "50.00", "25.00", "50.00", "25.00", "50.00",
                             "60.00"]  # fmt: skip
    # SoftCFG + step norm: two seeds, (0.5 + 1.0) / 2 per task, (70 + 80) / 2 DPG
    assert rows[2][4] == "0.750" and rows[2][5] == "75.00" and rows[2][13] == "75.00" and rows[2][-1] == "2"
    assert rows[0][2:4] == ["–", "–"] and rows[2][-2] == "scenes / scenes (corrected)"


def test_fid_tables_ignore_the_text_runs(metrics):
    header, rows, _ = RENDERERS["ablation"](metrics, 2.0, 1.0)
    assert {r[0] for r in rows} == {"d"} and "FID ↓" in header


def test_paper_t2i_shows_the_published_rows_unmatched(metrics):
    header, rows, lead = RENDERERS["paper_t2i"](metrics, 2.0, 1.0)
    assert lead == 2 and header[2:5] == ["Overall ↑ paper", "Overall ↑ ours", "Overall ↑ Δ"]
    assert [r[:2] for r in rows] == [["SimpleAR", "cfg"], ["SimpleAR", "softcfg"]]
    # the paper's Table 4 as published: SimpleAR + CFG overall 0.61744, % correct images 61.12
    assert rows[0][2:6] == ["0.617", "–", "–", "61.12"] and rows[0][-1] == "no run of ours"
    assert rows[1][-1] == "no run of ours"


def test_t2i_tables_of_a_sweep_without_text_runs(metrics):
    fid_only = metrics[metrics["family"].eq("digits")]
    assert RENDERERS["t2i"](fid_only, 2.0, 1.0)[1] == []
    _, rows, _ = RENDERERS["paper_t2i"](fid_only, 2.0, 1.0)
    assert [r[-1] for r in rows] == ["no run of ours"] * 2 and rows[1][2] == "0.613"  # published 0.61266


def test_paper_t2i_matches_our_simplear_runs(metrics):
    """The match rule: Table 4 names SimpleAR without a size, so runs of the simplear family of any size
    and the paper's method (CFG; SoftCFG with step normalization) at the focus fill its rows."""
    rows = run_rows(
        "s-cfg",
        "s",
        "simplear",
        "cfg",
        "cfg",
        True,
        None,
        0,
        t2i_values([1.0, 0.5, 0.25, 0.5, 0.25, 0.5], 0.5, 0.75, 60.0),
        size="0.5B",
    )
    rows += run_rows("s-soft", "s", "simplear", "soft", "softcfg", True, True, 0,
                     t2i_values([0.5] * 6, 0.5, 1.0, 70.0), size="0.5B")  # fmt: skip
    _, out, _ = RENDERERS["paper_t2i"](pd.concat([metrics, pd.DataFrame(rows)]), 2.0, 1.0)
    assert out[0][-1] == "s/cfg" and out[1][-1] == "s/soft"
    # ours 0.5 against 0.61744 published; images 50 % against 61.12 %
    assert out[0][3:5] == ["0.500", "-0.117"] and out[0][6:8] == ["50.00", "-11.12"]


def test_text_families_other_than_the_scene_model_need_their_scorers_named(tmp_path):
    from types import SimpleNamespace

    from softcfg.config import MetricsEntry
    from softcfg.metrics.t2i_scoring import scorings
    from softcfg.options import ConfigError

    prompts = write_prompts(tmp_path / "p.jsonl", PROMPTS)
    janus = SimpleNamespace(family="janus", prompts=prompts, per_prompt=4)
    with pytest.raises(ConfigError, match=r"metrics\.geneval\.backend"):
        scorings(janus, MetricsEntry(), tmp_path / "c.pt", "models.janus")
    given = MetricsEntry.model_validate({"geneval": {"backend": "hf", "options": {"detector": "m2f"}}})
    (found,) = scorings(janus, given, tmp_path / "c.pt", "models.janus")  # no DPG for a GenEval prompt set
    assert (found.benchmark, found.backend, found.option_args()) == ("geneval", "hf", "--option detector=m2f")
    folder = tmp_path / "dpg"
    folder.mkdir()
    (folder / "1.txt").write_text("a photo\n")
    dpg = SimpleNamespace(family="janus", prompts=str(folder), per_prompt=4)
    with pytest.raises(ConfigError, match=r"metrics\.dpg\.backend"):
        scorings(dpg, given, tmp_path / "c.pt", "models.janus")
    (tmp_path / "dpg_bench.csv").write_text(OFFICIAL + "\n")
    other = MetricsEntry.model_validate(
        {"dpg": {"backend": "hf", "questions": str(tmp_path / "dpg_bench.csv")}}
    )
    with pytest.raises(ConfigError, match=r"not the official dpg_bench\.csv"):
        scorings(dpg, other, tmp_path / "c.pt", "models.janus")
    scene = SimpleNamespace(family="digits_text", prompts=prompts, per_prompt=4)
    found = scorings(
        scene, MetricsEntry.model_validate({"dpg": {"mode": "corrected"}}), tmp_path / "c.pt", "m"
    )
    assert [(s.benchmark, s.backend, s.mode) for s in found] == [
        ("geneval", "scenes", "compatible"), ("dpg", "scenes", "corrected"),
    ]  # fmt: skip
    assert found[1].option_args() == f"--option classifier={tmp_path / 'c.pt'}"
