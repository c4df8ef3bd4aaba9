"""The submitit executor's mapping from rule resources to SLURM parameters (no cluster needed; the
end-to-end runs on a real SLURM are in test_slurm.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from snakemake_interface_common.exceptions import WorkflowError

import snakemake_executor_plugin_submitit as plugin


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
