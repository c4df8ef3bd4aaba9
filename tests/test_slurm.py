"""The workflow on a real SLURM (scripts/slurm-local.sh: one node, accounting, 4 fake GPUs) through
`--profile slurm` (submitit job arrays) and `--profile slurm-sbatch` (the official plugin): the same
Parquet metric values as a local run, also when a running shard job is cancelled. Needs root (the
script installs Debian packages and starts the daemons); CI runs it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import seed_classifier
from softcfg.io.shards import read_shard
from workflow_kit import REPO, small_config, snakemake, time_limit

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
SCRIPT = REPO / "scripts" / "slurm-local.sh"
FAST_POLLING = ["--seconds-between-status-checks", "2"]
ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "COMPLETING")  # sacct states of a job that is not over


@pytest.fixture(scope="module")
def cluster():
    for command in ("install", "start"):
        proc = subprocess.run(
            ["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=time_limit(900)
        )
        assert proc.returncode == 0, proc.stderr
    yield
    subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, check=True)


@pytest.fixture(scope="module")
def model_path(sweep_checkpoint) -> Path:
    return sweep_checkpoint


def sweep_config(model_path: Path) -> dict:
    """The default embedded sweep reduced: two methods, two shards each, sampling and features on GPUs."""
    config = small_config(model_path)
    config["methods"] = {k: v for k, v in config["methods"].items() if k in ("cfg", "softcfg_stepnorm")}
    config["resources"] = {"sample": {"gpu": 1, "cpus": 1}, "features": {"gpu": 1, "cpus": 1}}
    config["tables"], config["figures"] = ["ablation"], ["fid_vs_gamma"]
    return config


def workdir(root: Path, model_path: Path, classifier: Path, shards_per_job: int | str = 1) -> Path:
    """A work folder of the reduced sweep, with the classifier trained once per test run in place."""
    root.mkdir(parents=True)
    config = sweep_config(model_path)
    config["sampling"]["shards_per_job"] = shards_per_job
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    seed_classifier(root / "results", classifier)
    return root


def metric_values(root: Path) -> pd.DataFrame:
    table = pd.read_parquet(root / "results" / "metrics.parquet")
    return table[["run_id", "metric", "value"]].sort_values(["run_id", "metric"], ignore_index=True)


def sacct(since: str, duplicates: bool = False) -> list[list[str]]:
    """JobID, JobName, State, AllocTRES of the jobs (and steps) since ``since``; with ``duplicates``, one
    row per start of a requeued job, in order."""
    cmd = ["sacct", "-n", "-P", "-S", since, "-o", "JobID,JobName,State,AllocTRES"] + ["-D"] * duplicates
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line]


def job_fields(job: str) -> dict[str, str]:
    """``scontrol show job`` as a mapping (JobState, Reason, Restarts, ...)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def restarted(job: str) -> bool:
    fields = job_fields(job)
    return fields.get("Restarts", "0") != "0" and fields.get("JobState") in ("RUNNING", "COMPLETED")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 300) -> None:
    deadline = time.time() + time_limit(timeout)
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def local(tmp_path_factory, model_path, digits_classifier) -> pd.DataFrame:
    root = workdir(tmp_path_factory.mktemp("slurm") / "local", model_path, digits_classifier)
    proc = snakemake(root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return metric_values(root)


def test_profile_slurm_gives_the_local_results_with_gpu_jobs_in_arrays(
    cluster, local, tmp_path, model_path, digits_classifier
):
    """Both shards of a run in one job here (one job per shard locally): the same metric values. The
    run configs are written first, so both sampling jobs are ready in Snakemake's first scheduling pass
    (else each becomes ready when its local run_config job ends, and may go in an sbatch of its own)."""
    root = workdir(tmp_path / "w", model_path, digits_classifier, shards_per_job="all")
    proc = snakemake(root, "--until", "run_config")
    assert proc.returncode == 0, proc.stderr[-3000:]
    since = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    proc = snakemake(root, "--profile", str(REPO / "slurm"), *FAST_POLLING)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pd.testing.assert_frame_equal(metric_values(root), local)

    jobs = sacct(since)
    samples = [j for j in jobs if j[1].startswith("smk-sample-")]
    assert len(samples) == 2 and all("gres/gpu=1" in j[3] for j in samples)
    assert len({j[0].split("_")[0] for j in samples}) == 1, samples  # one sbatch: an array of two
    logs = "".join(p.read_text() for p in (root / ".snakemake" / "submitit").glob("*/*_log.out"))
    assert any(f"CUDA_VISIBLE_DEVICES={i}" in logs for i in range(4))


def test_a_cancelled_shard_job_is_retried_and_the_results_do_not_change(
    cluster, local, tmp_path, model_path, digits_classifier
):
    root = workdir(tmp_path / "w", model_path, digits_classifier)
    since = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    proc = snakemake(
        root, "--profile", str(REPO / "slurm"), *FAST_POLLING,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    victim, deadline = "", time.time() + 600
    while not victim and time.time() < deadline and proc.poll() is None:
        running = squeue("smk-sample-", "R")
        victim = running[0] if running else ""
        time.sleep(0.2)
    assert victim, "no sampling job was seen running"
    subprocess.run(["scancel", victim], check=True)
    output, _ = proc.communicate(timeout=time_limit(900))
    assert proc.returncode == 0, output[-3000:]
    pd.testing.assert_frame_equal(metric_values(root), local)
    states = {j[0]: j[2] for j in sacct(since)}
    assert states[victim].startswith("CANCELLED")
    for shard in (root / "results" / "samples").glob("*/shard_*.npz"):  # every shard complete and verified
        assert read_shard(shard)[0].shape == (20, 8, 8, 3)


def test_profile_slurm_sbatch_completes_the_same_sweep(
    cluster, local, tmp_path, model_path, digits_classifier
):
    root = workdir(tmp_path / "w", model_path, digits_classifier, shards_per_job="all")
    proc = snakemake(
        root, "--profile", str(REPO / "slurm-sbatch"), *FAST_POLLING,
        "--slurm-init-seconds-before-status-checks", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    pd.testing.assert_frame_equal(metric_values(root), local)


def test_a_requeued_shard_resumes_from_its_last_completed_batch(
    cluster, tmp_path, model_path, digits_classifier
):
    """Preemption as SLURM does it (the running job is killed and queued again): the task runs exactly
    once more, takes the batches it completed, and writes the same bytes as an uninterrupted `softcfg
    sample`; the shard's log keeps both attempts. Every wait is for an event (files, job states)."""
    config = sweep_config(model_path)
    config["methods"] = {"cfg": config["methods"]["cfg"]}
    config["sampling"] = {"samples_per_run": 600, "shard_size": 600, "batch_size": 10}
    config["metrics"] = {"names": ["fid"]}
    root = tmp_path / "w"
    root.mkdir()
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    seed_classifier(root / "results", digits_classifier)
    since = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    proc = snakemake(
        root, "--profile", str(REPO / "slurm"), *FAST_POLLING,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    kept = root / "results" / "samples" / "tiny-cfg-g2-k1-s0" / ".shard_0000.batches"
    deadline = time.time() + time_limit(600)
    while time.time() < deadline and len(list(kept.glob("batch_*.npz"))) < 5:
        time.sleep(0.2)
    running = squeue("smk-sample-", "R")
    assert len(running) == 1, "the shard job must be running"
    job = running[0]
    subprocess.run(["scontrol", "requeue", job], check=True)
    # SLURM holds a requeued job for 120 s (Reason=BeginTime); once it is queued again, release it now
    wait_for(lambda: job_fields(job).get("Reason") == "BeginTime" or restarted(job), "the job queued again")
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=False)
    output, _ = proc.communicate(timeout=time_limit(900))
    assert proc.returncode == 0, output[-3000:]

    # exactly once more: one requeue, then completed; no other shard job (Snakemake did not retry)
    def starts() -> list[tuple[str, str]]:
        return [(j[0], j[2]) for j in sacct(since, duplicates=True) if j[1].startswith("smk-sample-")]

    wait_for(lambda: starts()[-1][1] not in ACTIVE, "the requeued job to end in accounting")
    assert starts() == [(job, "REQUEUED"), (job, "COMPLETED")], starts()
    assert job_fields(job)["Restarts"] == "1" and not squeue("smk-sample-")
    log = (root / "results" / "logs" / "sample" / "tiny-cfg-g2-k1-s0" / "shards_0000-0000.log").read_text()
    headers = [line for line in log.splitlines() if line.startswith("=== attempt ") and "started" in line]
    assert len(headers) == 2, log
    assert re.match(rf"=== attempt 1: SLURM job {job}\b.*, restart 0, snakemake attempt 1,", headers[0])
    assert re.match(rf"=== attempt 2: SLURM job {job}\b.*, restart 1, snakemake attempt 1,", headers[1])
    first, second = log.split(headers[1])
    assert "=== attempt 1 was stopped by SLURM" in first and "resumed: " not in first
    assert "resumed: " in second and " of 60 batches were kept" in second
    assert second.endswith("=== attempt 2 succeeded ===\n")
    run_yaml = root / "results" / "runs" / "tiny-cfg-g2-k1-s0" / "run.yaml"
    direct = tmp_path / "direct" / "shard_0000.npz"
    cmd = [sys.executable, "-m", "softcfg.cli", "sample", "--config", str(run_yaml), "--shards", "0"]
    subprocess.run([*cmd, "--out", str(direct.parent / "g.json"), "--no-progress"], check=True, cwd=root)
    shard = root / "results" / "samples" / "tiny-cfg-g2-k1-s0" / "shard_0000.npz"
    assert shard.read_bytes() == direct.read_bytes() and not kept.exists()


def test_interrupting_snakemake_cancels_its_jobs(cluster, tmp_path, model_path, digits_classifier):
    root = workdir(tmp_path / "w", model_path, digits_classifier)
    since = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    before = set(squeue())  # jobs of earlier tests are not this test's business
    with (tmp_path / "snakemake.log").open("w") as log:
        proc = snakemake(
            root, "--profile", str(REPO / "slurm"), *FAST_POLLING,
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=interruptible,
        )  # fmt: skip
    deadline = time.time() + time_limit(
        600
    )  # interrupt while shard jobs run (Snakemake's own local jobs are done)
    while time.time() < deadline and not set(squeue("smk-sample-", "R")) - before:
        time.sleep(0.2)
    assert set(squeue("smk-sample-", "R")) - before, "no shard job was seen running"
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=time_limit(60))  # it stops rather than finishing the sweep
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError((tmp_path / "snakemake.log").read_text()[-4000:]) from None
    deadline = time.time() + time_limit(60)
    while time.time() < deadline and set(squeue()) - before:
        time.sleep(0.5)
    assert not set(squeue()) - before
    time.sleep(2)  # accounting
    assert any(j[2].startswith("CANCELLED") for j in sacct(since) if j[1].startswith("smk-"))
    assert not (root / "results" / "metrics.parquet").exists()


def interruptible() -> None:
    """A test run in the background inherits an ignored SIGINT; Snakemake must see Ctrl-C here."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def squeue(prefix: str = "", state: str | None = None) -> list[str]:
    """Ids of the queued jobs whose name starts with ``prefix`` (in ``state``, if given)."""
    cmd = ["squeue", "-h", "-o", "%i %j"] + (["-t", state] if state else [])
    lines = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()
    return [line.split()[0] for line in lines if line.split()[1].startswith(prefix)]
