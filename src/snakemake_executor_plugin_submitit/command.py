"""What an array task runs (``ShellCommand``): imported where jobs are submitted, so that Snakemake, which
imports every installed executor plugin at start, runs without submitit installed."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import submitit

from snakemake_executor_plugin_submitit.attempts import Attempts

STOP_GRACE_S = 1.0  # how long a failed command waits for a SIGTERM that SLURM sent the step with it


class ShellCommand(submitit.helpers.Checkpointable):
    """What an array task runs: one Snakemake job command. Checkpointable, so submitit requeues it at the
    time limit instead of letting it fail.

    When SLURM stops a task (requeue, preemption, cancel, time limit) it sends SIGTERM to every process of
    the step and the Snakemake command dies of it. Reported as the job's result, that failure made
    Snakemake submit a retry while SLURM started the requeued task as well, which then rewrote the outputs
    and truncated the log after Snakemake had its result. So a stopped attempt leaves no result: the
    requeued start is the one Snakemake waits for, and a cancelled or timed-out job is read as failed from
    sacct. Every start is recorded in ``attempts`` (attempts.py); a start that finds the outputs of an
    earlier successful start unchanged and verified returns at once."""

    def __init__(self, command: str, attempts: Attempts | None = None, snakemake_attempt: int = 1) -> None:
        self.command = command
        self.attempts = attempts
        self.snakemake_attempt = snakemake_attempt

    def __call__(self) -> None:
        stopped: list[int] = []
        signal.signal(signal.SIGTERM, lambda signum, frame: stopped.append(signum))
        attempts, number = self.attempts, 0
        if attempts is not None:
            number = attempts.begin(self.snakemake_attempt)
            if attempts.complete():
                attempts.end(number, "found the outputs complete and verified: not run again")
                return
        print(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}", flush=True)
        outcome = "ended by an exception (e.g. submitit's requeue at the time limit)"
        try:
            status = subprocess.run(
                self.command, shell=True, executable="/bin/bash", preexec_fn=_ignore_requeue_signal
            ).returncode
            if status != 0 and not stopped:  # SLURM signals the whole step at once; allow for delivery
                deadline = time.monotonic() + STOP_GRACE_S
                while not stopped and time.monotonic() < deadline:
                    time.sleep(0.05)
            if status == 0:
                outcome = "succeeded"
                if attempts is not None:
                    attempts.record_complete()
            elif stopped:
                outcome = f"was stopped by SLURM (exit status {status}); the requeued start, if any, follows"
            else:
                outcome = f"failed with exit status {status}"
        finally:
            if attempts is not None:
                attempts.end(number, outcome)
        if status != 0 and stopped:
            raise SystemExit(f"stopped by SLURM during attempt {number}: no result")  # not caught by submitit
        if status != 0:
            raise RuntimeError(f"the Snakemake job exited with status {status}")


def _ignore_requeue_signal() -> None:
    """SLURM signals every process of the step before the time limit; only submitit's handler (in the
    task's Python process) acts on it, requeueing the task; the job itself runs on until stopped."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
