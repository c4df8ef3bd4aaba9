"""What every start of one Snakemake job on SLURM wrote, kept across SLURM restarts and Snakemake retries.

Snakemake deletes a job's log files before each run and rules write them with ``> {log}``, so without
this a task that SLURM requeues (preemption, time limit, ``scontrol requeue``) would erase the log of the
attempt that mattered. Each attempt's output is copied into this job's folder under a header naming the
SLURM job, array index, restart count and Snakemake attempt, and the rule's log is rewritten as all
attempts in order. A completion record lets a task that SLURM starts again after it finished keep its
outputs instead of running, and rewriting them, once more.

Layout of the folder (one per Snakemake job and workflow run): ``NNN.header`` when attempt NNN starts,
``NNN.<i>.log`` (header, output, outcome) for rule log ``i`` and ``NNN.done`` when it ends, and
``complete.json`` (size and mtime of every output) after the job's command succeeded.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path


def slurm_header(number: int, snakemake_attempt: int) -> str:
    """One line that tells the attempts apart: the job as squeue and sacct name it (``<array>_<index>`` for
    an array task), its restart count (0 before the first requeue) and Snakemake's attempt."""
    env = os.environ
    job = env.get("SLURM_JOB_ID", "-")
    index = env.get("SLURM_ARRAY_TASK_ID", "-")
    if "SLURM_ARRAY_JOB_ID" in env:
        job = f"{env['SLURM_ARRAY_JOB_ID']}_{index} (id {job})"
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    return (
        f"=== attempt {number}: SLURM job {job}, array index {index}, "
        f"restart {env.get('SLURM_RESTART_COUNT', '0')}, snakemake attempt {snakemake_attempt}, "
        f"host {socket.gethostname()}, started {started} ===\n"
    )


def _write(path: Path, text: str) -> None:
    """Atomically, so a reader (or the next attempt) never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


@dataclass
class Attempts:
    folder: Path
    logs: list[Path]  # the rule's log files
    outputs: list[Path]

    def _numbers(self) -> list[int]:
        return sorted(int(p.stem) for p in self.folder.glob("*.header"))

    def _gathered(self, i: int) -> str:
        """Log ``i`` as all closed attempts wrote it."""
        return "".join(_read(self.folder / f"{n:03d}.{i}.log") for n in self._numbers())

    def begin(self, snakemake_attempt: int) -> int:
        """Close an attempt killed before it could (its output is still in the rule's log), then open the
        next one; returns its number."""
        self.folder.mkdir(parents=True, exist_ok=True)
        numbers = self._numbers()
        for n in numbers:
            if not (self.folder / f"{n:03d}.done").exists():
                self.end(n, "was killed before it could close its log (output as the next attempt found it)")
        number = (numbers[-1] if numbers else 0) + 1
        header = slurm_header(number, snakemake_attempt)
        _write(self.folder / f"{number:03d}.header", header)
        print(header, end="", flush=True)  # also in submitit's log of the task
        return number

    def end(self, number: int, outcome: str) -> None:
        """Copy this attempt's output out of the rule's logs, then rewrite them as every attempt so far. A
        log still holding the earlier attempts' text was not run into by this attempt."""
        header = _read(self.folder / f"{number:03d}.header")
        for i, log in enumerate(self.logs):
            own = self.folder / f"{number:03d}.{i}.log"
            if own.exists():
                continue
            earlier = self._gathered(i)
            output = _read(log)
            if output == earlier:
                output = ""
            if output and not output.endswith("\n"):
                output += "\n"
            _write(own, f"{header}{output}=== attempt {number} {outcome} ===\n")
            log.parent.mkdir(parents=True, exist_ok=True)
            _write(log, self._gathered(i))
        (self.folder / f"{number:03d}.done").touch()

    def record_complete(self) -> None:
        """After the command succeeded: which outputs it left, to recognise them unchanged later."""
        stats = {str(p): [p.stat().st_size, p.stat().st_mtime_ns] for p in self.outputs if p.is_file()}
        if len(stats) == len(self.outputs):
            _write(self.folder / "complete.json", json.dumps(stats, indent=1) + "\n")

    def complete(self) -> bool:
        """An earlier attempt of this job succeeded and its outputs are unchanged since; shards must still
        match the checksums in their manifests."""
        try:
            stats = json.loads((self.folder / "complete.json").read_text())
            if any([p.stat().st_size, p.stat().st_mtime_ns] != stats[str(p)] for p in self.outputs):
                return False
        except (OSError, ValueError, KeyError):
            return False
        # imported here, not at the top: Snakemake imports every plugin when it starts
        from softcfg.io.shards import outputs_verified

        return outputs_verified(self.outputs)
