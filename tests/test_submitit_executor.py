"""The submitit executor's mapping from rule resources to SLURM parameters and what its array tasks do
when SLURM stops or restarts them (no cluster needed; the end-to-end runs on a real SLURM are in
test_slurm.py)."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from types import SimpleNamespace

import pytest
from snakemake_interface_common.exceptions import WorkflowError

import snakemake_executor_plugin_submitit as plugin
from snakemake_executor_plugin_submitit import command as command_module
from snakemake_executor_plugin_submitit.attempts import Attempts
from snakemake_executor_plugin_submitit.command import ShellCommand
from softcfg.io.shards import manifest_path, shard_verified

pytestmark = pytest.mark.cluster


def executor(tmp_path, monkeypatch, user_file: str | None = None, **settings):
    monkeypatch.setattr(plugin, "USER_FILE", tmp_path / "slurm.yaml")
    if user_file is not None:
        (tmp_path / "slurm.yaml").write_text(user_file)
    fake = SimpleNamespace(settings=plugin.ExecutorSettings(**settings), tag="t1")
    fake.site = plugin.Executor._site_defaults(fake)
    return fake


def job(threads=1, **resources):
    return SimpleNamespace(name="sample", threads=threads, resources=resources)


def test_rule_resources_become_sbatch_parameters(tmp_path, monkeypatch):
    ex = executor(tmp_path, monkeypatch, partition="gpu")
    params = plugin.Executor.slurm_parameters(
        ex,
        job(
            threads=4,
            gpu=1,
            mem_mb=16000,
            runtime=120,
            constraint="a100",
            slurm_extra="--qos=high --exclusive",
        ),
    )
    assert params == {
        "job_name": "smk-sample-t1",
        "cpus_per_task": 4,
        "time": 120,
        "signal_delay_s": 90,
        "array_parallelism": 256,
        "partition": "gpu",
        "constraint": "a100",
        "gpus_per_node": 1,
        "mem": "16000M",
        "additional_parameters": {"qos": "high", "exclusive": True},
    }
    cpu_only = plugin.Executor.slurm_parameters(ex, job(gpu=0, slurm_partition="cpu"))
    assert "gpus_per_node" not in cpu_only and cpu_only["partition"] == "cpu" and cpu_only["time"] == 60


def test_site_defaults_from_settings_then_user_file(tmp_path, monkeypatch):
    ex = executor(tmp_path, monkeypatch, "partition: short\naccount: proj\n", partition="long")
    assert ex.site == {"partition": "long", "account": "proj"}  # settings (CLI, environment) win
    with pytest.raises(WorkflowError, match="keys among partition, account"):
        executor(tmp_path, monkeypatch, "queue: x\n")
    with pytest.raises(WorkflowError, match="expected --key=value"):
        plugin._extra("qos=high")


def test_settings_are_read_from_the_environment(monkeypatch):
    """Snakemake discovers the plugin by its module name; SNAKEMAKE_SUBMITIT_* fill its settings."""
    import configargparse
    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

    registered = ExecutorPluginRegistry().get_plugin("submitit")
    monkeypatch.setenv("SNAKEMAKE_SUBMITIT_PARTITION", "gpu")
    monkeypatch.setenv("SNAKEMAKE_SUBMITIT_ACCOUNT", "proj")
    parser = configargparse.ArgumentParser()
    registered.register_cli_args(parser, "executor")
    settings = registered.get_settings(parser.parse_args([]))
    assert (settings.partition, settings.account, settings.runtime) == ("gpu", "proj", 60)


def test_snakemake_runs_without_submitit_and_the_executor_says_what_it_needs(tmp_path):
    """Snakemake imports every installed executor plugin at start: without submitit (``[workflow]``
    without ``[cluster]``) a dry run still plans, and only choosing this executor names what is missing."""
    import subprocess

    from workflow_kit import REPO, env

    blocker = tmp_path / "no_submitit"
    blocker.mkdir()
    (blocker / "submitit.py").write_text("raise ImportError('No module named submitit (blocked)')\n")
    environment = env()
    environment["PYTHONPATH"] = os.pathsep.join([str(blocker), environment.get("PYTHONPATH", "")])
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    (tmp_path / "src").symlink_to(REPO / "src")  # the default's prompt set, src/softcfg/data/...
    base = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
            str(tmp_path)]  # fmt: skip
    planned = subprocess.run(
        [*base, "--cores", "1", "--dry-run"], env=environment, capture_output=True, text=True, timeout=300
    )
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert "submitit" not in planned.stdout + planned.stderr
    chosen = subprocess.run(
        [*base, "--executor", "submitit", "--jobs", "1"], env=environment, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert chosen.returncode != 0 and not (tmp_path / "results").exists()
    assert (
        "the submitit executor needs submitit: pip install 'softcfg[cluster]'"
        in chosen.stdout + chosen.stderr
    )


def test_each_job_keeps_its_attempts_per_run_of_the_executor(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ex = executor(tmp_path, monkeypatch, log_dir=".snakemake/submitit")
    ex.format_job_exec = lambda job: "snakemake --target-jobs sample:shard=0000"
    sample = SimpleNamespace(jobid=7, attempt=2, log=["logs/s.log"], output=["s/shard_0000.npz"])
    task = plugin.Executor.shell_command(ex, sample)
    assert (task.command, task.snakemake_attempt) == ("snakemake --target-jobs sample:shard=0000", 2)
    assert task.attempts.folder == tmp_path / ".snakemake" / "submitit" / "attempts" / "t1" / "7"
    assert task.attempts.logs == [tmp_path / "logs" / "s.log"]


@pytest.fixture
def task(tmp_path, monkeypatch):
    """A job as an array task sees it: SLURM's variables, a rule log written with ``> {log}``, a shard and
    its manifest as outputs; SIGTERM's handler is restored afterwards."""
    for key, value in {"SLURM_JOB_ID": "42", "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    monkeypatch.setattr(command_module, "STOP_GRACE_S", 0.0)
    previous = signal.getsignal(signal.SIGTERM)
    shard = tmp_path / "samples" / "shard_0000.npz"
    log = tmp_path / "logs" / "shard_0000.log"
    attempts = Attempts(tmp_path / "attempts" / "5", logs=[log], outputs=[shard, manifest_path(shard)])
    yield attempts
    signal.signal(signal.SIGTERM, previous)


WRITE_SHARD = """import hashlib, json, sys
import numpy as np
path = sys.argv[1]
np.savez(path, arr_0=np.zeros((2, 4, 4, 3), np.uint8))
digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
open(path[: -len(".npz")] + ".json", "w").write(json.dumps({"npz_sha256": digest}))
"""


def command(attempts: Attempts, word: str, then: str = "") -> str:
    """What a rule's shell does: ``> {log}``, then a shard and its manifest."""
    shard, log = attempts.outputs[0], attempts.logs[0]
    script = attempts.folder.parent / "write_shard.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(WRITE_SHARD)
    write = shlex.join([sys.executable, str(script), str(shard)])
    return f"mkdir -p {shard.parent} {log.parent} && echo 'sampled {word}' > {log} && {write}{then}"


def test_a_restart_after_success_keeps_the_verified_outputs_and_every_attempt_log(task, monkeypatch):
    ShellCommand(command(task, "first"), task)()
    shard = task.outputs[0]
    stamp = shard.stat().st_mtime_ns
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # SLURM started the finished task again
    ShellCommand(command(task, "second", "; exit 3"), task)()  # returns at once, runs nothing
    assert shard.stat().st_mtime_ns == stamp
    log = task.logs[0].read_text()
    assert log.count("=== attempt ") == 4  # two headers, two outcomes
    assert "attempt 1: SLURM job 40_2 (id 42), array index 2, restart 0, snakemake attempt 1" in log
    assert "attempt 2: SLURM job 40_2 (id 42), array index 2, restart 1" in log
    assert log.index("sampled first") < log.index("attempt 2 found the outputs complete and verified")
    assert "sampled second" not in log

    with shard.open("r+b") as f:  # same size and mtime, other bytes: the manifest's checksum catches it
        f.seek(-1, 2)
        f.write(b"\x01")
    os.utime(shard, ns=(stamp, stamp))
    ShellCommand(command(task, "third"), task)()
    assert "sampled third" in task.logs[0].read_text() and shard_verified(shard)


def test_an_attempt_stopped_by_slurm_leaves_no_result_and_its_log_survives_the_next(task):
    stop = command(task, "first") + "; kill -TERM $PPID; exit 1"  # SLURM signals the whole step
    with pytest.raises(SystemExit):  # submitit writes no result for it: the requeued start follows
        ShellCommand(stop, task)()
    with pytest.raises(RuntimeError, match="status 3"):  # a genuine failure is the job's result
        ShellCommand(command(task, "second", "; exit 3"), task)()
    ShellCommand(command(task, "third"), task)()
    log = task.logs[0].read_text()
    assert "attempt 1 was stopped by SLURM" in log and "attempt 2 failed with exit status 3" in log
    assert log.index("sampled first") < log.index("sampled second") < log.index("sampled third")


def test_an_attempt_killed_before_it_closed_its_log_is_closed_by_the_next(task):
    assert task.begin(snakemake_attempt=1) == 1
    task.logs[0].parent.mkdir(parents=True)
    task.logs[0].write_text("batch 1 of 60\n")  # then SIGKILL: no end
    assert task.begin(snakemake_attempt=1) == 2
    task.logs[0].write_text("resumed\n")
    task.end(2, "succeeded")
    log = task.logs[0].read_text()
    assert "batch 1 of 60\n=== attempt 1 was killed before it could close its log" in log
    assert log.endswith("resumed\n=== attempt 2 succeeded ===\n")


class FakeJob:
    """What ``_outcome`` reads of a submitit job; ``result()`` only works once the result file exists."""

    def __init__(self, tmp_path, state: str, done: bool = True, result: bool = False) -> None:
        self.job_id, self.state, self._done = "7_1", state, done
        self.paths = SimpleNamespace(result_pickle=tmp_path / "7_1_result.pkl")
        if result:
            self.paths.result_pickle.write_bytes(b"")

    def done(self) -> bool:
        return self._done

    def result(self) -> None:
        assert self.paths.result_pickle.exists(), "submitit would wait 15 s here"
        if self.state != "COMPLETED":
            raise RuntimeError("the command failed")


def test_a_job_that_ended_without_a_result_fails_at_once_without_waiting(tmp_path):
    assert plugin._outcome(FakeJob(tmp_path, "RUNNING", done=False), {}, 5) is None
    assert plugin._outcome(FakeJob(tmp_path, "CANCELLED by 0"), {}, 5) == (
        "SLURM job 7_1 (CANCELLED by 0) left no result"
    )
    assert plugin._outcome(FakeJob(tmp_path, "COMPLETED", result=True), {}, 5) == ""
    assert "the command failed" in plugin._outcome(FakeJob(tmp_path, "FAILED", result=True), {}, 5)


def test_a_completed_job_gets_the_latency_wait_for_its_result_file(tmp_path, monkeypatch):
    clock = iter([100.0, 103.0, 106.0])
    monkeypatch.setattr(plugin.time, "monotonic", lambda: next(clock))
    aux: dict = {}
    lagging = FakeJob(tmp_path, "COMPLETED")
    assert plugin._outcome(lagging, aux, 5) is None  # t = 0
    assert plugin._outcome(lagging, aux, 5) is None  # t = 3 < 5
    assert plugin._outcome(lagging, aux, 5) == "SLURM job 7_1 (COMPLETED) left no result"  # t = 6
