"""The paper's tables beside ours: a published row is matched only by a run of that model at exactly its
setting; rows without a match are kept and marked; the numbers are the published CSVs'."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from softcfg.config import parse_run_config
from softcfg.report.aggregate import aggregate
from softcfg.report.paper import beside_paper, paper_cells, published
from softcfg.report.tables import RENDERERS, latex, markdown

ALITOK_XL = {"family": "alitok", "size": "XL", "checkpoint": "g.pt", "tokenizer": "t.pt"}
LLAMAGEN_L = {"family": "llamagen", "size": "L", "image_size": 384, "eval_size": 256, "checkpoint": "l.pt",
              "tokenizer": "vq.pt"}  # fmt: skip
SOFT = {"name": "softcfg", "gamma": 13.0, "k": 1.4}


def metrics_table(*runs: tuple[str, dict, dict, float]) -> pd.DataFrame:
    """The metrics table ``aggregate`` writes for runs given as (name, model entry, method, FID)."""
    entries = []
    for name, model, method, fid in runs:
        run = parse_run_config(
            {"model": model, "method": method, "run": {"id": name, "model": model["family"], "method": name}},
            check_files=False,
        )
        record = {"metrics": {"fid": fid, "is": 300.0}, "extractor": "inception", "reference": "ref"}
        summary = {"num_samples": 50000, "batch_seeds": [], "config_hash": name, "git_commit": "x",
                   "versions": {}, "diagnostics": None}  # fmt: skip
        entries.append((run, record, summary))
    return aggregate(entries)[0]


def row(table: pd.DataFrame, **key) -> pd.Series:
    rows = table[(table[list(key)] == pd.Series(key)).all(axis=1)]
    assert len(rows) == 1, key
    return rows.iloc[0]


def test_a_row_matches_only_the_exact_setting():
    metrics = metrics_table(
        ("none", ALITOK_XL, {"name": "none"}, 1.8),
        ("cfg", ALITOK_XL, {"name": "cfg", "gamma": 13.0, "k": 1.4}, 1.34),
        ("cfg_other_k", ALITOK_XL, {"name": "cfg", "gamma": 13.0, "k": 1.5}, 1.2),
        ("soft", ALITOK_XL, {**SOFT, "step_norm": False}, 1.31),
        ("soft_sn", ALITOK_XL, SOFT, 1.30),
        ("soft_sn_k", ALITOK_XL, {**SOFT, "target": "k"}, 1.45),
        ("soft_sn_hot", ALITOK_XL, {**SOFT, "temperature": 1.1}, 1.25),
    )
    ablation = beside_paper("paper_ablation", metrics)
    assert len(ablation) == len(published("softcfg_table2_ablation"))
    assert row(ablation, method="baseline")["ours"] == "alitok/none"
    cfg = row(ablation, method="cfg+opt")  # CFG at the published gamma 13, k 1.4 only
    assert cfg["ours"] == "alitok/cfg" and cfg["fid_ours"] == 1.34
    assert cfg["fid_diff"] == pytest.approx(1.34 - 1.35)
    assert row(ablation, method="softcfg")["ours"] == "alitok/soft"
    # both step-norm runs at 13 / 1.4 on values qualify (temperature is not a Table 2 setting): averaged
    sn = row(ablation, method="softcfg+stepnorm")
    assert sn["ours"] == "alitok/soft_sn, alitok/soft_sn_hot" and sn["fid_ours"] == pytest.approx(1.275)
    opt = row(ablation, method="softcfg+stepnorm+opt")  # no published setting: our best over the grid
    assert opt["ours"] == "alitok/soft_sn_hot"

    target = beside_paper("paper_target", metrics)
    assert row(target, target="k")["ours"] == "alitok/soft_sn_k" and row(target, target="kv")["ours"] == ""

    systems = beside_paper("paper_systems", metrics).set_index("generator")
    # Table 1 needs the alitok-XL preset exactly: gamma 13, k 1.4, temperature 1.0
    assert systems.loc["AliTok-XL*", "ours"] == "alitok/cfg"
    assert systems.loc["AliTok-XL*+SoftCFG", "ours"] == "alitok/soft_sn"
    assert systems.loc["AliTok-XL*+SoftCFG", "fid_diff"] == pytest.approx(1.30 - 1.27)
    assert (systems.drop(index=["AliTok-XL*", "AliTok-XL*+SoftCFG"])["ours"] == "").all()
    assert systems.loc["AliTok-L", "fid_paper"] == 1.42 and math.isnan(systems.loc["AliTok-L", "fid_ours"])


def test_llamagen_matches_table_1_at_its_384_px_preset_only():
    llamagen_256 = {**LLAMAGEN_L, "image_size": 256, "eval_size": None}
    metrics = metrics_table(
        ("l384", LLAMAGEN_L, {"name": "cfg", "preset": "llamagen-L-384"}, 3.1),
        ("l256", llamagen_256, {"name": "cfg", "gamma": 2.0, "k": 0.0}, 3.5),
        ("l384_g3", LLAMAGEN_L, {"name": "cfg", "gamma": 3.0, "k": 0.0}, 3.6),
    )
    systems = beside_paper("paper_systems", metrics).set_index("generator")
    assert systems.loc["LlamaGen-L", "ours"] == "llamagen/l384"
    assert systems.loc["LlamaGen-L", "fid_diff"] == pytest.approx(3.1 - 3.07)
    assert systems.loc["LlamaGen-3B", "ours"] == ""


def test_the_embedded_model_matches_nothing_and_every_published_row_is_shown():
    digits = {"family": "digits", "checkpoint": "d.pt"}
    metrics = metrics_table(("cfg", digits, {"name": "cfg", "gamma": 13.0, "k": 1.4}, 5.0))
    for name in ("paper_systems", "paper_ablation", "paper_target"):
        header, rows, lead = RENDERERS[name](metrics, 13.0, 1.4)
        assert all(r[-1] == "no run of ours" for r in rows)
        assert len(rows) == len(beside_paper(name, metrics))
        assert markdown(header, rows).count("\n") == len(rows) + 2
        assert latex(header, rows, lead).count(r"\\") == len(rows) + 1
    header, rows, _ = paper_cells(beside_paper("paper_systems", metrics), "paper_systems")
    first = published("softcfg_table1_imagenet256").iloc[0]
    assert rows[0][:3] == [first["generator"], f"{first['fid']:.2f}", "–"]
    assert header[:4] == ["generator", "FID paper", "FID ours", "FID Δ"]


VAR_D16 = {"family": "var", "size": "d16", "checkpoint": "v.pt", "tokenizer": "vae.pt"}
VAR_CFG = {"name": "cfg", "gamma": 2.5, "schedule": "ramp", "top_k": 900, "top_p": 0.96}


def test_the_ssg_table_matches_var_at_its_preset_with_the_dse_prior():
    metrics = metrics_table(
        ("cfg", VAR_D16, VAR_CFG, 3.5),
        ("cfg_no_topk", VAR_D16, {**VAR_CFG, "top_k": 0}, 3.1),  # not VAR's FID setting
        ("ssg_dse", VAR_D16, {**VAR_CFG, "ssg": {"beta": 0.5}}, 3.3),
        ("ssg_dse_b1", VAR_D16, {**VAR_CFG, "ssg": {"beta": 1.0}}, 3.2),
        ("ssg_near", VAR_D16, {**VAR_CFG, "ssg": {"beta": 1.0, "prior": "nearest"}}, 2.0),
    )
    ssg = beside_paper("paper_ssg", metrics)
    assert len(ssg) == len(published("ssg_imagenet256"))
    assert row(ssg, model="VAR-d16", method="baseline")["ours"] == "var/cfg"
    best = row(ssg, model="VAR-d16", method="ssg")  # DSE only, best beta: nearest's 2.0 is not SSG's row
    assert best["ours"] == "var/ssg_dse_b1" and best["fid_diff"] == pytest.approx(3.2 - 3.27)
    assert row(ssg, model="VAR-d20", method="ssg")["ours"] == ""

    header, rows, lead = RENDERERS["ssg_prior"](metrics, 3.0, 1.0)
    assert header[:4] == ["model", "method", "prior", "β"]
    labels = [(r[1], r[2], r[3]) for r in rows]
    assert labels == [
        ("cfg", "none", "–"), ("cfg_no_topk", "none", "–"), ("ssg_near", "nearest", "1"),
        ("ssg_dse", "dse", "0.5"), ("ssg_dse_b1", "dse", "1"),
    ]  # fmt: skip
    header, rows, lead = RENDERERS["ssg"](metrics, 3.0, 1.0)
    assert [(r[1], r[2], r[3]) for r in rows] == [
        ("cfg", "none", "–"), ("cfg_no_topk", "none", "–"), ("ssg_dse_b1 +opt", "dse", "1"),
    ]  # fmt: skip
    assert "\\beta" in latex(header, rows, lead)


def test_ssg_tables_are_empty_without_a_next_scale_model():
    metrics = metrics_table(("cfg", ALITOK_XL, {"name": "cfg", "gamma": 13.0, "k": 1.4}, 1.34))
    for name in ("ssg", "ssg_prior"):
        header, rows, _ = RENDERERS[name](metrics, 13.0, 1.4)
        assert rows == [] and header[:4] == ["model", "method", "prior", "β"]
    assert (beside_paper("paper_ssg", metrics)["ours"] == "").all()


def test_tables_refuse_a_focus_no_guided_run_has(tmp_path, capsys):
    import pandas as pd

    from softcfg.cli import main

    rows = [{"guided": True, "gamma": 3.0, "k": 1.0}, {"guided": False, "gamma": None, "k": None}]
    pd.DataFrame(rows).to_parquet(tmp_path / "metrics.parquet")
    args = ["tables", "--metrics", str(tmp_path / "metrics.parquet"), "--k", "1", "--out-dir", str(tmp_path)]
    assert main([*args, "--gamma", "7", "ablation"]) == 2
    assert "no guided run at gamma 7, k 1" in capsys.readouterr().err and not list(tmp_path.glob("*.md"))


def test_a_swept_method_option_gives_one_row_per_setting_and_mixed_runs_are_refused(tmp_path, capsys):
    """Temperature listed in a method entry is an axis: the ablation table has a row per temperature, its
    FID the mean over that setting's seeds only; two runs of one method entry that differ in temperature
    without it being an axis are refused in one line, not averaged."""
    from softcfg.cli import main

    def cfg(temperature, seed, fid, axes=("temperature",)):
        name = f"cfg-t{temperature}-s{seed}"
        method = {"name": "cfg", "gamma": 3.0, "k": 1.0, "temperature": temperature}
        run = parse_run_config(
            {"model": ALITOK_XL, "method": method, "sampling": {"seed": seed},
             "run": {"id": name, "model": "alitok", "method": "cfg", "axes": list(axes)}},
            check_files=False,
        )  # fmt: skip
        record = {"metrics": {"fid": fid, "is": 300.0}, "extractor": "inception", "reference": "ref"}
        summary = {"num_samples": 50000, "batch_seeds": [], "config_hash": name, "git_commit": "x",
                   "versions": {}, "diagnostics": None}  # fmt: skip
        return run, record, summary

    swept = aggregate([cfg(0.9, 0, 2.0), cfg(0.9, 1, 3.0), cfg(1.1, 0, 5.0), cfg(1.1, 1, 6.0)])[0]
    swept.to_parquet(tmp_path / "metrics.parquet")
    args = ["tables", "--metrics", str(tmp_path / "metrics.parquet"), "--gamma", "3", "--k", "1"]
    assert main([*args, "--out-dir", str(tmp_path / "swept"), "ablation"]) == 0
    header, rows, lead = RENDERERS["ablation"](swept, 3.0, 1.0)
    assert header[:lead] == ["model", "method", "temperature"] and header[lead + 2] == "FID ↓"
    cells = [(row[1], row[2], row[lead + 2], row[-1]) for row in rows]
    assert cells == [
        ("cfg", "0.9", "2.500", "2"),
        ("cfg", "1.1", "5.500", "2"),
        ("cfg +opt", "0.9", "2.500", "2"),
    ]
    from softcfg.report.settings import label_swept  # figures draw a line per method label

    assert sorted(label_swept(swept)["method"].unique()) == ["cfg temperature=0.9", "cfg temperature=1.1"]
    mixed = aggregate([cfg(0.9, 0, 2.0, axes=()), cfg(1.1, 0, 5.0, axes=())])[0]
    mixed.to_parquet(tmp_path / "mixed.parquet")
    capsys.readouterr()
    mixed_args = ["tables", "--metrics", str(tmp_path / "mixed.parquet"), "--gamma", "3", "--k", "1"]
    assert main([*mixed_args, "--out-dir", str(tmp_path / "mixed"), "ablation"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "softcfg: error: runs cfg-t0.9-s0 and cfg-t1.1-s0 differ in temperature but would share a table row: "
        "sweep it as an axis (a list in the method entry) or give the settings different method names"
    )
    assert not (tmp_path / "mixed").exists() or not list((tmp_path / "mixed").iterdir())
