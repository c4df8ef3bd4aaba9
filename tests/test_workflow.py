"""The Snakemake workflow run for real on a small sweep (random-weight generator, trained classifier)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import seed_classifier
from softcfg.config import ConfigError
from softcfg.report import FIGURES
from softcfg.sweep import load_sweep
from workflow_kit import REPO, shared_config, small_config, snakemake, time_limit

pytestmark = pytest.mark.workflow


def make_workdir(root: Path, checkpoint: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(small_config(checkpoint)))
    return root


RUNS = {
    "tiny-none-s0", "tiny-cfg-g2-k1-s0", "tiny-softcfg-g2-k1-s0", "tiny-softcfg_stepnorm-g2-k1-s0",
    "tiny-softcfg_stepnorm_kv-g2-k1-s0", "tiny-sharp-g2-k1-s0",
}  # fmt: skip


def test_products_are_where_the_readme_says(finished):
    results = finished / "results"
    products = ["metrics.parquet", "steps.parquet", "confidence.parquet", "tables/ablation.md"]
    products += ["tables/ablation.tex"]
    products += ["tables/target.md", "timing.parquet"]
    products += [f"figures/{name}.{ext}" for name in FIGURES for ext in ("png", "pdf")]
    for name in products:
        assert (results / name).is_file(), name
    assert len(list((results / "samples").glob("*/shard_*.npz"))) == 2 * len(RUNS)


def test_timing_table_sums_each_runs_sample_job_benchmarks(finished):
    results = finished / "results"
    timing = pd.read_parquet(results / "timing.parquet").set_index("run_id")
    assert set(timing.index) == RUNS and timing["jobs"].eq(2).all()  # one job per shard in this sweep
    for run, row in timing.iterrows():
        files = sorted((results / "benchmarks" / "sample" / run).glob("shards_*.tsv"))
        seconds = sum(float(f.read_text().splitlines()[1].split("\t")[0]) for f in files)
        assert row["seconds"] == pytest.approx(seconds) and row["seconds_per_image"] == pytest.approx(
            seconds / 40
        )


def test_metrics_table_is_tidy_and_complete(finished):
    table = pd.read_parquet(finished / "results" / "metrics.parquet")
    assert set(table["run_id"]) == RUNS
    assert set(table["metric"]) == {
        "fid",
        "is",
        "kid",
        "kid_std",
        "precision",
        "recall",
        "density",
        "coverage",
        "accuracy",
    }
    assert table.groupby("run_id").size().eq(9).all()
    assert (table["num_samples"] == 40).all() and table["value"].notna().all()
    none = table[table["method"] == "none"]
    assert none["gamma"].isna().all() and none["target"].isna().all()
    assert set(table[table["method"] == "softcfg_stepnorm_kv"]["target"]) == {"kv"}
    assert {"config_hash", "git_commit", "versions", "batch_seeds", "seed"} <= set(table.columns)
    with_interval = table["metric"].isin(["fid", "is", "precision", "recall"])
    ranged = table[with_interval]
    assert (ranged["ci_low"] < ranged["ci_high"]).all() and (ranged["ci_level"] == 0.95).all()
    assert set(ranged["ci_resamples"]) == {200, 40}  # bootstrap draws; recall: 40 one-sample blocks left out
    assert ranged["ci_method"].str.endswith("reference fixed").all()
    assert table[~with_interval][["ci_low", "ci_high", "ci_level"]].isna().all().all()
    pr = table["metric"].isin(["precision", "recall"])  # the distance blocks' precision (metrics.pr_mode)
    assert table[pr]["mode"].eq("float32").all() and table[~pr]["mode"].isna().all()


def test_the_workflow_sweeps_the_installed_plugins_method(finished):
    """The plugin's method (``tests/plugin``, found through its entry point) over the grid, its own option
    recorded in the Parquet rows."""
    metrics = pd.read_parquet(finished / "results" / "metrics.parquet")
    fid = metrics[(metrics["metric"] == "fid") & (metrics["method"] == "sharp")]
    assert fid["run_id"].tolist() == ["tiny-sharp-g2-k1-s0"] and fid["gamma"].tolist() == [2.0]
    assert fid["sharpen"].tolist() == [2.0] and fid["method_name"].eq("sharpened_cfg").all()
    assert fid["value"].notna().all()
    assert "| sharp" in (finished / "results" / "tables" / "ablation.md").read_text()


def test_compare_prints_the_paired_difference_of_two_runs(finished, capsys, monkeypatch):
    from softcfg.cli import main

    monkeypatch.chdir(finished)
    assert main(["compare", "--bootstrap-resamples", "50", "tiny-cfg-g2-k1-s0", "tiny-softcfg-g2-k1-s0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("40 samples each, paired by seed and label")
    table = pd.read_parquet(finished / "results" / "metrics.parquet").set_index(["run_id", "metric"])["value"]
    for line, metric in zip(lines[2:], ["fid", "is", "precision", "recall"], strict=True):
        name, a, b, delta = line.split()[:4]
        assert name == metric
        assert float(a) == pytest.approx(table["tiny-cfg-g2-k1-s0", metric], rel=1e-4, abs=1e-9)
        assert float(b) == pytest.approx(table["tiny-softcfg-g2-k1-s0", metric], rel=1e-4, abs=1e-9)
        assert float(delta) == pytest.approx(float(b) - float(a), rel=1e-3, abs=1e-4)


def test_metrics_match_an_independent_computation(finished):
    """FID, precision/recall and density/coverage recomputed here from the stored features with numpy."""
    from scipy import linalg

    results = finished / "results"
    run = "tiny-cfg-g2-k1-s0"
    with (
        np.load(results / "features" / f"{run}.npz") as f,
        np.load(results / "reference" / "features.npz") as r,
    ):
        x, y = f["features"].astype(np.float64), r["features"].astype(np.float64)
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    fid = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2).real)

    def radii(a):
        d = ((a[:, None] - a[None]) ** 2).sum(-1)
        return np.sort(d, axis=1)[:, 3]  # third neighbour, self at index 0

    def inside(points, manifold):
        d = ((points[:, None] - manifold[None]) ** 2).sum(-1)
        return (d <= radii(manifold)[None]).any(1).mean()

    table = pd.read_parquet(results / "metrics.parquet").query("run_id == @run").set_index("metric")["value"]
    assert table["fid"] == pytest.approx(fid, rel=1e-3)
    assert table["precision"] == pytest.approx(inside(x, y), abs=1 / len(x))
    assert table["recall"] == pytest.approx(inside(y, x), abs=1 / len(y))
    d = ((y[:, None] - y[None]) ** 2).sum(-1)
    balls = ((y[:, None] - x[None]) ** 2).sum(-1) <= np.sort(d, axis=1)[:, 5][:, None]  # k = 5 (Naeem)
    assert table["density"] == pytest.approx(balls.sum() / (5 * len(x)), abs=1 / len(x))
    assert table["coverage"] == pytest.approx(balls.any(axis=1).mean(), abs=1 / len(y))


def test_steps_table_has_every_decode_step(finished):
    steps = pd.read_parquet(finished / "results" / "steps.parquet")
    assert steps.groupby("run_id")["step"].apply(list).map(lambda s: s == list(range(64))).all()
    soft = steps[steps["run_id"] == "tiny-softcfg_stepnorm-g2-k1-s0"]
    assert soft["weight_min"].iloc[:2].isna().all() and (soft["weight_min"].iloc[2:] <= 1).all()
    assert steps[steps["method"] == "none"][["entropy_uncond", "entropy_signal"]].isna().all().all()
    assert steps[steps["guided"]]["entropy_signal"].between(0, 1).all()


def test_rerun_is_a_no_op(finished, plugin_site):
    proc = snakemake(finished, "--dry-run", site=plugin_site)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr


BAD_CONFIGS = [
    (lambda c: c["methods"]["cfg"].update(name="pag"), "methods.cfg.name: unknown method 'pag'"),
    (
        lambda c: c["grid"].update(gamma=[-1.0]),
        "config.grid.gamma[0]: Input should be greater than or equal to 0",
    ),
    (lambda c: c["models"]["tiny"].update(checkpoint="nowhere.pt"), "models.tiny.checkpoint: file not found"),
    (
        lambda c: c["sampling"].update(shard_size=0),
        "config.sampling.shard_size: Input should be greater than 0",
    ),
]


@pytest.mark.parametrize(("edit", "message"), BAD_CONFIGS)
def test_bad_config_is_refused_by_the_sweep_loader(tmp_path, sweep_checkpoint, edit, message, monkeypatch):
    """What the Snakefile runs first (``rules/common.smk``), in this process."""
    config = small_config(sweep_checkpoint)
    edit(config)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_sweep(config)
    assert message in str(caught.value)
    assert not (tmp_path / "results").exists()


def test_a_configfile_replaces_config_yaml_instead_of_merging_into_it(tmp_path, sweep_checkpoint):
    """``snakemake --configfile other.yaml`` plans other.yaml's runs only, none of config.yaml's."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(small_config(sweep_checkpoint)))
    other = small_config(sweep_checkpoint)
    other["methods"] = {"none": {"name": "none"}, "cfg": {"name": "cfg"}}
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    for args, runs in (
        ((), {f"tiny-{m}-g2-k1-s0" for m in ("cfg", "softcfg", "softcfg_stepnorm", "softcfg_stepnorm_kv")}),
        (("--configfile", str(tmp_path / "other.yaml")), {"tiny-cfg-g2-k1-s0"}),
    ):
        proc = snakemake(tmp_path, "--dry-run", *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        planned = set(re.findall(r"^    wildcards: run=([^,\s]+)$", proc.stdout + proc.stderr, re.MULTILINE))
        assert planned == runs | {"tiny-none-s0"}


def test_a_results_folder_with_spaces_and_quotes_stays_one_word_in_every_command(tmp_path, sweep_checkpoint):
    """Every path reaches the rules' command lines quoted: the shell sees each as one argument."""
    config = small_config(sweep_checkpoint)
    config["results"] = "my results/it's here"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "--dry-run", "--printshellcmds")
    assert proc.returncode == 0, proc.stderr[-3000:]
    commands = re.findall(r"^Shell command: (softcfg .*)$", proc.stdout + proc.stderr, re.MULTILINE)
    assert len(commands) > 20
    for command in commands:
        words = shlex.split(command)  # a broken quote would raise, an unquoted path split into pieces
        assert any("my results/it's here" in w for w in words), command
        assert not any(w == "my" or w.startswith(("results/it", "here")) for w in words), command


def test_bad_config_is_refused_at_dag_construction(tmp_path, sweep_checkpoint):
    """The Snakemake error path: the loader's message, before any job or results folder."""
    edit, message = BAD_CONFIGS[0]
    config = small_config(sweep_checkpoint)
    edit(config)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "--dry-run")
    assert proc.returncode != 0 and f"invalid config: {message}" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_sweep_killed_inside_grouped_jobs_resumes_and_matches_one_job_per_shard(
    tmp_path, sweep_checkpoint, digits_classifier, plugin_site, finished
):
    """Three runs of the shared sweep with both shards of a run in one job (``all``), killed while a job
    has written its first shard but not its second; the rerun keeps that shard (its log says so, its
    manifest is not rewritten), and its shards equal, byte for byte, and its Parquet rows equal those of
    one job per shard (``finished``)."""
    workdir = tmp_path / "b"
    workdir.mkdir()
    config = shared_config(sweep_checkpoint)
    config["methods"] = {
        k: v for k, v in config["methods"].items() if k in ("none", "cfg", "softcfg_stepnorm")
    }
    config["sampling"]["shards_per_job"] = "all"
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    seed_classifier(workdir / "results", digits_classifier)
    proc = snakemake(
        workdir,
        site=plugin_site,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    samples = workdir / "results" / "samples"

    def inside_a_group() -> list[Path]:
        """Runs whose first shard is complete and whose job has not finished."""
        return [m.parent for m in samples.glob("*/shard_0000.json") if not (m.parent / GROUP).exists()]

    deadline = time.time() + time_limit(600)
    while time.time() < deadline and not inside_a_group():
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and every job it started
    proc.wait()
    caught = [run for run in inside_a_group() if not (run / "shard_0001.json").exists()]
    assert caught, "the kill must land between the two shards of a job"
    first = {run: (run / "shard_0000.json").read_bytes() for run in caught}
    for npz in samples.glob("*/shard_*.npz"):  # whatever has its final name is a complete file
        with np.load(npz) as data:
            assert data["arr_0"].shape == (20, 8, 8, 3)
    assert snakemake(workdir, "--unlock", site=plugin_site).returncode == 0
    rerun = snakemake(workdir, site=plugin_site)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for run, manifest in first.items():
        log = (workdir / "results" / "logs" / "sample" / run.name / GROUP).with_suffix(".log").read_text()
        assert log.startswith("shard 0: kept") and "shard 1: " in log
        assert (run / "shard_0000.json").read_bytes() == manifest
    finished_samples = finished / "results" / "samples"
    npz = sorted(p.relative_to(samples) for p in samples.glob("*/shard_*.npz"))
    runs = {"tiny-none-s0", "tiny-cfg-g2-k1-s0", "tiny-softcfg_stepnorm-g2-k1-s0"}
    assert {p.parts[0] for p in npz} == runs and len(npz) == 2 * len(runs)
    for path in npz:
        assert (samples / path).read_bytes() == (finished_samples / path).read_bytes(), path
    for name in ("metrics.parquet", "steps.parquet", "confidence.parquet"):
        ours, theirs = (pd.read_parquet(root / "results" / name) for root in (workdir, finished))
        theirs = theirs[theirs["run_id"].isin(runs)]
        # the plugin method's own column (null on these runs) is typed by the other runs it holds
        ours, theirs = (t.dropna(axis=1, how="all").reset_index(drop=True) for t in (ours, theirs))
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True, obj=name)


def test_a_group_job_asks_for_runtime_plus_runtime_per_shard_times_its_shards(tmp_path):
    config = small_config(tmp_path / "tiny.pt")
    config["models"] = {"tiny": {"family": "digits", "train": True}}
    config["methods"] = {"cfg": {"name": "cfg"}}
    config["sampling"].update(samples_per_run=100, shards_per_job=2)  # 5 shards: groups of 2, 2, 1
    config["resources"] = {"sample": {"runtime": 10, "runtime_per_shard": 2.5}, "features": {"runtime": 7}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = proc.stdout + proc.stderr  # Snakemake's job list
    jobs = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: .*runtime=(\d+)", plan, re.MULTILINE)
    outputs = re.findall(r"^rule sample:\n(?:    .*\n)*?    output: (\S+)", plan, re.MULTILINE)
    assert sorted(Path(o).name for o in outputs) == [
        f"shards_{g}.json" for g in ("0000-0001", "0002-0003", "0004-0004")
    ]
    assert sorted(int(r) for rule, r in jobs if rule == "sample") == [13, 15, 15]  # 10 + ceil(2.5 n)
    assert {int(r) for rule, r in jobs if rule == "features"} == {7}  # per run: no shards to count


GROUP = "shards_0000-0001.json"  # both shards of a run in one job


def test_html_report_holds_the_figures_and_tables(finished, plugin_site):
    proc = snakemake(finished, "--report", "report.html", site=plugin_site)
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (finished / "report.html").read_text(errors="replace")
    for name in [f"{figure}.png" for figure in FIGURES] + ["ablation.md", "target.md"]:
        assert name in html, name


def test_tables_show_whole_seed_counts(finished):
    lines = (finished / "results" / "tables" / "ablation.md").read_text().splitlines()
    assert len(lines) == 2 + 5 + 4  # header, rule, 5 methods at the focus, 4 "+opt" rows
    assert all(line.rstrip(" |").endswith("| 1") for line in lines[2:])


def test_the_snakefile_parses_and_plans_without_importing_torch(tmp_path, checkpoint):
    """Planning a sweep (here a dry run of the default config and of a small one) never loads torch."""
    workdir = make_workdir(tmp_path / "dry", checkpoint)
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch imported while planning the workflow')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from snakemake.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    for directory in (REPO, workdir):
        proc = subprocess.run(
            [sys.executable, "-c", code, "--snakefile", str(REPO / "Snakefile"), "--directory",
             str(directory), "--dry-run", "--quiet", "--cores", "1"],
            capture_output=True, text=True, timeout=time_limit(600),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
