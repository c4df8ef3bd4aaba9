"""Snakemake executor ``submitit``: ready jobs go to SLURM as job arrays through submitit.

Snakemake hands over every job that is ready at one moment; jobs asking for the same SLURM parameters
(rule resources mapped below) are submitted together, one ``sbatch`` per array. Inside each array task
submitit runs the job's Snakemake command; a task that reaches its time limit is requeued by submitit,
one that SLURM requeues itself (preemption, ``scontrol requeue``) restarts the same way. A stopped
attempt reports no result, so the restart is the job's one next run (the package's commands resume from
what they completed); the rule's log keeps every attempt under a header (attempts.py). States are read
through submitit (``sacct``); a failed job is reported with its log file; interrupting Snakemake cancels
every job it submitted (job names carry a per-run tag, ``smk-<rule>-<tag>``).

Resources per rule: ``threads`` -> cpus per task, ``gpu`` -> gpus per node, ``mem_mb``, ``runtime``
(minutes), ``slurm_partition``, ``slurm_account``, ``constraint``, ``qos``, and ``slurm_extra``
(``"--key=value --flag"``, passed to sbatch). Partition, account, qos and constraint default to the
executor settings, i.e. ``--submitit-partition`` or ``$SNAKEMAKE_SUBMITIT_PARTITION`` (and so on), then
to the user file ``~/.config/softcfg/slurm.yaml`` (keys partition, account, qos, constraint).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface
from snakemake_interface_executor_plugins.settings import CommonSettings, ExecutorSettingsBase

from snakemake_executor_plugin_submitit.attempts import Attempts

if TYPE_CHECKING:
    import submitit

    from snakemake_executor_plugin_submitit.command import ShellCommand

USER_FILE = Path("~/.config/softcfg/slurm.yaml")
SITE_KEYS = ("partition", "account", "qos", "constraint")


def _help(text: str, kind: type = str) -> dict[str, Any]:
    return {"help": text, "env_var": True, "required": False, "type": kind}


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    partition: str | None = field(default=None, metadata=_help("default SLURM partition"))
    account: str | None = field(default=None, metadata=_help("default SLURM account"))
    qos: str | None = field(default=None, metadata=_help("default quality of service"))
    constraint: str | None = field(default=None, metadata=_help("default node constraint (e.g. a GPU type)"))
    runtime: int = field(default=60, metadata=_help("minutes for a job without a runtime resource", int))
    array_parallelism: int = field(
        default=256, metadata=_help("tasks of one array that may run at once", int)
    )
    max_array_size: int = field(
        default=1000, metadata=_help("tasks per array (stay below SLURM's MaxArraySize)", int)
    )
    signal_delay_s: int = field(
        default=90, metadata=_help("seconds before the time limit at which a task is requeued", int)
    )
    log_dir: str = field(default=".snakemake/submitit", metadata=_help("where submitit keeps its files"))


common_settings = CommonSettings(
    non_local_exec=True,
    implies_no_shared_fs=False,
    job_deploy_sources=False,
    pass_default_storage_provider_args=True,
    pass_default_resources_args=True,
    pass_envvar_declarations_to_cmd=True,
    auto_deploy_default_storage_provider=False,
    init_seconds_before_status_checks=1,
)


def _extra(text: str) -> dict[str, Any]:
    """``"--key=value --flag"`` -> submitit's ``additional_parameters`` (sbatch options)."""
    out: dict[str, Any] = {}
    for token in shlex.split(text):
        if not token.startswith("--"):
            raise WorkflowError(f"slurm_extra: expected --key=value options, got {token!r}")
        key, _, value = token[2:].partition("=")
        out[key.replace("-", "_")] = value if value else True
    return out


def _outcome(handle: submitit.Job, aux: dict[str, Any], latency_wait: float) -> str | None:
    """None while the job is not over; "" when it succeeded; else why it failed. A job SLURM reports
    COMPLETED may still lack its result file on a shared filesystem: it gets ``latency_wait`` seconds
    (counted in ``aux``) before it counts as failed; any other end state without a result fails at once."""
    if not handle.done():
        return None
    if not handle.paths.result_pickle.exists():
        state, now = handle.state, time.monotonic()
        if state == "COMPLETED" and now - aux.setdefault("ended", now) < latency_wait:
            return None
        return f"SLURM job {handle.job_id} ({state}) left no result"
    try:
        handle.result()
    except Exception as exc:
        return f"SLURM job {handle.job_id} ({handle.state}): {exc}"
    return ""


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Executor(RemoteExecutor):
    def __post_init__(self) -> None:
        try:
            import submitit  # noqa: F401  (here, not at import: Snakemake imports every installed plugin)
        except ImportError as exc:
            raise WorkflowError(
                f"the submitit executor needs submitit: pip install 'softcfg[cluster]' ({exc})"
            ) from None
        self.settings: ExecutorSettings = self.workflow.executor_settings
        self.site = self._site_defaults()
        self.folder = Path(self.settings.log_dir) / "%j"
        self.sbatch_calls = 0
        self.tag = uuid.uuid4().hex[:8]  # in every job name, so an interrupt can cancel by name
        self.names: set[str] = set()

    def _site_defaults(self) -> dict[str, str]:
        """Partition, account, qos, constraint: executor settings (CLI, environment), then the user file."""
        path = USER_FILE.expanduser()
        user = yaml.safe_load(path.read_text()) if path.is_file() else {}
        if not isinstance(user, dict) or set(user) - set(SITE_KEYS):
            raise WorkflowError(f"{path}: expected a mapping with keys among {', '.join(SITE_KEYS)}")
        out = {}
        for key in SITE_KEYS:
            value = getattr(self.settings, key) or user.get(key)
            if value:
                out[key] = str(value)
        return out

    def slurm_parameters(self, job: JobExecutorInterface) -> dict[str, Any]:
        """submitit's SlurmExecutor parameters for one job, from its rule's resources."""
        res = job.resources
        params: dict[str, Any] = {
            "job_name": f"smk-{job.name}-{self.tag}",
            "cpus_per_task": job.threads,
            "time": int(res.get("runtime") or self.settings.runtime),
            "signal_delay_s": self.settings.signal_delay_s,
            "array_parallelism": self.settings.array_parallelism,
            **self.site,
        }
        for resource, key in (("slurm_partition", "partition"), ("slurm_account", "account")):
            if res.get(resource):
                params[key] = str(res.get(resource))
        for key in ("constraint", "qos"):
            if res.get(key):
                params[key] = str(res.get(key))
        if int(res.get("gpu") or 0) > 0:
            params["gpus_per_node"] = int(res.get("gpu"))
        if res.get("mem_mb"):
            params["mem"] = f"{int(res.get('mem_mb'))}M"
        if res.get("slurm_extra"):
            params["additional_parameters"] = _extra(str(res.get("slurm_extra")))
        return params

    def get_job_exec_prefix(self, job: JobExecutorInterface) -> str:
        """Jobs find the commands of the installation that submitted them (e.g. a virtualenv's bin)."""
        return f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH"

    def run_job(self, job: JobExecutorInterface) -> None:
        self.run_jobs([job])

    def run_jobs(self, jobs: list[JobExecutorInterface]) -> None:
        """One job array per set of equal SLURM parameters (and per ``max_array_size`` tasks)."""
        groups: dict[str, tuple[dict[str, Any], list[JobExecutorInterface]]] = {}
        for job in jobs:
            self.run_job_pre(job)
            params = self.slurm_parameters(job)
            groups.setdefault(repr(sorted(params.items())), (params, []))[1].append(job)
        for params, members in groups.values():
            for chunk in _chunks(members, self.settings.max_array_size):
                self._submit_array(params, chunk)

    def shell_command(self, job: JobExecutorInterface) -> ShellCommand:
        """The task of one job; its attempts are kept per job and per run of this executor."""
        from snakemake_executor_plugin_submitit.command import ShellCommand

        attempts = Attempts(
            Path(self.settings.log_dir).absolute() / "attempts" / self.tag / str(job.jobid),
            logs=[Path(p).absolute() for p in job.log],
            outputs=[Path(p).absolute() for p in job.output],
        )
        return ShellCommand(self.format_job_exec(job), attempts, job.attempt)

    def _submit_array(self, params: dict[str, Any], jobs: list[JobExecutorInterface]) -> None:
        import submitit

        executor = submitit.SlurmExecutor(folder=self.folder)
        executor.update_parameters(**params)
        self.names.add(params["job_name"])
        try:
            with executor.batch():
                handles = [executor.submit(self.shell_command(job)) for job in jobs]
        except Exception as exc:  # sbatch refused the array: every job in it failed to start
            for job in jobs:
                self.report_job_error(SubmittedJobInfo(job), msg=f"sbatch failed: {exc}")
            return
        self.sbatch_calls += 1
        for job, handle in zip(jobs, handles, strict=True):
            self.report_job_submission(
                SubmittedJobInfo(job, external_jobid=handle.job_id, aux={"job": handle})
            )

    async def check_active_jobs(
        self, active_jobs: list[SubmittedJobInfo]
    ) -> AsyncGenerator[SubmittedJobInfo, None]:
        """Never blocks on one job: submitit's ``result()`` sleeps up to 15 s for a missing result file,
        which for every cancelled or failed job would stall the status of all others (and an interrupt's
        shutdown, which waits for this loop)."""
        for info in active_jobs:
            if not self.wait:  # shutting down: the rest is cancelled, not checked
                yield info
                continue
            async with self.status_rate_limiter:
                handle: submitit.Job = info.aux["job"]
                outcome = _outcome(handle, info.aux, self.workflow.execution_settings.latency_wait)
                if outcome is None:
                    yield info
                elif outcome:
                    self.report_job_error(info, msg=outcome, aux_logs=[str(handle.paths.stderr)])
                else:
                    self.report_job_success(info)

    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]) -> None:
        """Cancel by id, then by this run's job names: an interrupt that lands between ``sbatch`` and the
        registration of its jobs must not leave them running."""
        ids = [info.external_jobid for info in active_jobs if info.external_jobid]
        for chunk in _chunks(ids, 500):
            subprocess.run(["scancel", *chunk], check=False, capture_output=True)
        for name in sorted(self.names):
            subprocess.run(["scancel", f"--name={name}"], check=False, capture_output=True)

    def shutdown(self) -> None:
        self.logger.info(f"submitit: {self.sbatch_calls} sbatch calls")
        super().shutdown()
