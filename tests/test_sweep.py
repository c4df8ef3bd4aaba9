"""The sweep: expansion, run ids, and refusal of bad configs with the key named."""

import copy
import re

import numpy as np
import pytest
import yaml

from softcfg.config import ConfigError
from softcfg.sweep import RUN_ID_PATTERN, load_sweep, run_id

BASE = {
    "models": {"digits": {"family": "digits", "train": True}},
    "methods": {
        "none": {"name": "none"},
        "cfg": {"name": "cfg"},
        "soft": {"name": "softcfg", "step_norm": False},
        "soft_sn": {"name": "softcfg"},
        "soft_kv": {"name": "softcfg", "target": "kv", "gamma": [3.0], "k": [1.0]},
    },
    "grid": {"gamma": [1.5, 3.0, 5.0], "k": [0.0, 1.0]},
    "seeds": [0, 1],
    "sampling": {"samples_per_run": 100, "shard_size": 50, "batch_size": 25},
}


def test_none_is_not_multiplied_by_gamma_and_k():
    sweep = load_sweep(copy.deepcopy(BASE))
    per_method = {}
    for run in sweep.runs.values():
        per_method[run.method] = per_method.get(run.method, 0) + 1
    assert per_method == {"none": 2, "cfg": 12, "soft": 12, "soft_sn": 12, "soft_kv": 2}
    assert all(run.num_shards == 2 for run in sweep.runs.values())
    assert "digits-none-s1" in sweep.runs and "digits-cfg-g1.5-k0-s0" in sweep.runs
    run = sweep.runs["digits-soft_kv-g3-k1-s1"].config
    assert (run.method.gamma, run.method.k, run.method.target, run.sampling.seed) == (3.0, 1.0, "kv", 1)
    assert run.model.checkpoint == "results/models/digits/generator.pt"


def test_run_ids_are_stable_and_hashed_when_long():
    assert run_id("digits", "cfg", {"gamma": 3.0, "k": 1.0}, 0) == "digits-cfg-g3-k1-s0"
    axes = {"gamma": 2.25, "k": 0.5}
    long = run_id("m" * 40, "method_with_a_long_name", axes, 7)
    assert len(long) == 64 and long == run_id("m" * 40, "method_with_a_long_name", axes, 7)
    assert long != run_id("m" * 40, "method_with_a_long_name", axes, 8)


def test_schedules_that_ignore_k_are_not_multiplied_by_the_k_axis():
    config = copy.deepcopy(BASE)
    config["methods"] = {"llamagen": {"name": "cfg", "schedule": "constant"}}
    ids = sorted(r for r in load_sweep(config).runs if r.endswith("-s0"))
    assert ids == ["digits-llamagen-g1.5-s0", "digits-llamagen-g3-s0", "digits-llamagen-g5-s0"]
    config["methods"]["llamagen"]["k"] = [0.0, 1.0]
    with pytest.raises(ConfigError, match=r"methods\.llamagen\.k: method 'cfg' with these options does not"):
        load_sweep(config)


def _bad(path: str, value):
    config = copy.deepcopy(BASE)
    node = config
    *parents, leaf = path.split(".")
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[leaf]
    else:
        node[leaf] = value
    return config


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("methods.cfg.name", "pag", "methods.cfg.name: unknown method 'pag'"),
        ("grid.gamma", [1.0, -2.0], "grid.gamma[1]: Input should be greater than or equal to 0"),
        ("sampling.shard_size", 0, "sampling.shard_size: Input should be greater than 0"),
        (
            "models.ext",
            {"family": "digits", "checkpoint": "missing/model.pt"},
            "models.ext.checkpoint: file not found",
        ),
        (
            "sampling.samples_per_run",
            75,
            "config.sampling.samples_per_run: 75 is not a multiple of shard_size (50)",
        ),
        ("sampling.seed", 3, "config.sampling.seed: give seeds as the top-level list config.seeds"),
        ("methods.cfg.gama", 2.0, "unknown key methods.cfg.gama"),
        ("methods.none.gamma", [2.0], "unknown key methods.none.gamma"),
        ("grid.gamma", KeyError, "missing key config.grid.gamma"),
        (
            "models.digits",
            {"family": "alitok", "size": "B", "train": True},
            "config.models.digits.train: the workflow cannot train family 'alitok'",
        ),
        ("models.digits", {"family": "digits"}, "config.models.digits.checkpoint: give the weights file"),
        (
            "models.ext",
            {"family": "vqgan", "checkpoint": "config.yaml"},
            "models.ext.family: unknown 'vqgan'",
        ),
        (
            "metrics",
            {"names": ["fid", "lpips"]},
            "config.metrics.names: unknown metric 'lpips' (expected one of ['fid', 'sfid', 'is', 'kid'",
        ),
        ("focus", {"gamma": 4.0, "k": 1.0}, "config.focus: no run has gamma 4 and k 1"),
        ("resources", {"sample": {"gpu": -1}}, "config.resources.sample.gpu: Input should be greater than"),
        ("resources", {"gpu": {"gpu": 1}}, "unknown key config.resources.gpu"),
        (
            "sampling.shards_per_job",
            0,
            "config.sampling.shards_per_job: expected a positive integer or 'all'",
        ),
        ("sampling.shards_per_job", "half", "config.sampling.shards_per_job: expected a positive integer or"),
        ("grid.gamma", [float("inf")], "config.grid.gamma[0]: Input should be a finite number"),
        ("methods.cfg.temperature", float("inf"), "methods.cfg.temperature: Input should be a finite number"),
        (
            "methods.cfg.top_p",
            float("nan"),
            "methods.cfg.top_p: Input should be less than or equal to 1, got nan",
        ),
        ("grid.gamma", [1e300], "config.grid.gamma[0]: Input should be less than or equal to 10000"),
        (
            "methods.cfg.temperature",
            1e-300,
            "methods.cfg.temperature: Input should be greater than or equal to 0.0001",
        ),
        ("seeds", [2**70], "config.seeds[0]: Input should be less than or equal to 9223372036854775807"),
        ("models.digits.device", "tpu", "config.models.digits.device: String should match pattern"),
        ("models.digits.device", "cuda:banana", "config.models.digits.device: String should match pattern"),
    ],
)
def test_bad_configs_name_the_key(path, value, message):
    with pytest.raises(ConfigError) as err:
        load_sweep(_bad(path, value))
    assert message in str(err.value)


def test_default_config_and_the_generated_schema_agree():
    """The committed schema is what the config models generate, and it accepts config.yaml."""
    import json

    import jsonschema

    from softcfg.config import workflow_schema

    with open("config.yaml") as f:
        config = yaml.safe_load(f)
    with open("workflow/schemas/config.schema.json") as f:
        schema = json.load(f)
    assert schema == json.loads(json.dumps(workflow_schema())), "run: softcfg schema"
    jsonschema.validate(config, schema)
    sweep = load_sweep(config)
    methods = {run.method for run in sweep.runs.values()}
    assert {"none", "cfg", "softcfg", "softcfg_stepnorm"} <= methods
    bad_configs = (
        _bad("grid.gamma", [-1.0]),
        _bad("sampling.shard_size", 0),
        _bad("methods.cfg.name", "pag"),
        _bad("methods.none.gamma", 2.0),
        _bad("resources", {"sample": {"cpus": 0}}),
        _bad("sampling.shards_per_job", 0),
        _bad("sampling.shards_per_job", "some"),
    )
    for bad in bad_configs:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


@pytest.mark.parametrize(
    ("per_job", "groups"),
    [
        (1, [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)]),
        (2, [(0, 1), (2, 3), (4, 4)]),
        (5, [(0, 4)]),
        (7, [(0, 4)]),
        ("all", [(0, 4)]),
    ],
)
def test_a_job_samples_a_contiguous_group_of_shards_and_the_groups_cover_the_run(per_job, groups):
    config = copy.deepcopy(BASE)
    config["sampling"] = {
        "samples_per_run": 250,
        "shard_size": 50,
        "batch_size": 25,
        "shards_per_job": per_job,
    }
    sweep = load_sweep(config)
    assert {run.groups for run in sweep.runs.values()} == {tuple(groups)}
    ungrouped = load_sweep({**config, "sampling": {**config["sampling"], "shards_per_job": 1}})
    assert sweep.runs.keys() == ungrouped.runs.keys()  # run ids (and configs) do not depend on grouping
    assert all(sweep.runs[r].config == ungrouped.runs[r].config for r in sweep.runs)


def test_resources_override_only_the_keys_given():
    config = copy.deepcopy(BASE)
    config["resources"] = {"sample": {"runtime": 240, "partition": "gpu"}}
    resources = load_sweep(config).resources
    assert (resources.sample.gpu, resources.sample.runtime, resources.sample.partition) == (1, 240, "gpu")
    assert (resources.metrics.gpu, resources.metrics.mem_mb) == (0, 16000)


def test_a_preset_method_is_one_run_at_the_preset_setting():
    config = copy.deepcopy(BASE)
    config["methods"] = {"xl": {"name": "softcfg", "preset": "alitok-XL"}}
    (run,) = [r for r in load_sweep(config).runs.values() if r.config.sampling.seed == 0]
    assert run.id == "digits-xl-g13-k1.4-s0" and run.config.method.temperature == 1.0


def inception_config(tmp_path, **metrics) -> dict:
    (tmp_path / "a.bin").write_bytes(b"")
    config = copy.deepcopy(BASE)
    config["models"] = {"big": {"family": "alitok", "size": "XL", "checkpoint": str(tmp_path / "a.bin")}}
    config["metrics"] = metrics
    return config


def test_inception_scored_models_need_a_valid_reference_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no torch-fidelity weights with the IS head
    with pytest.raises(ConfigError, match=r"metrics\.reference: model 'big' is scored with Inception"):
        load_sweep(inception_config(tmp_path))
    np.savez(tmp_path / "bad.npz", arr_0=np.zeros((10, 32, 32, 3), np.float32))
    with pytest.raises(ConfigError, match=r"metrics\.reference: .*bad\.npz: arr_0 must be uint8"):
        load_sweep(inception_config(tmp_path, reference=str(tmp_path / "bad.npz")))
    np.savez(tmp_path / "ref.npz", arr_0=np.zeros((10, 32, 48, 3), np.uint8))
    sweep = load_sweep(inception_config(tmp_path, reference=str(tmp_path / "ref.npz")))
    assert sweep.metrics == (
        "fid",
        "sfid",
        "kid",
        "precision",
        "recall",
        "density",
        "coverage",
    )  # IS needs the softmax head
    assert sweep.reference_size == (32, 48) and next(iter(sweep.runs.values())).extractor == "inception"
    with pytest.raises(ConfigError, match=r"metrics\.names: 'is' needs Inception's softmax head"):
        load_sweep(inception_config(tmp_path, reference=str(tmp_path / "ref.npz"), names=["fid", "is"]))
    weights = tmp_path / "full.pth"
    weights.write_bytes(b"")
    full = load_sweep(
        inception_config(tmp_path, reference=str(tmp_path / "ref.npz"), inception_weights=str(weights))
    )
    assert "is" in full.metrics and full.inception_weights == weights


def test_metrics_the_digits_classifier_cannot_give_are_refused():
    config = copy.deepcopy(BASE)
    assert load_sweep(copy.deepcopy(config)).metrics == (
        "fid",
        "is",
        "kid",
        "precision",
        "recall",
        "density",
        "coverage",
    )
    config["metrics"] = {"names": ["fid", "sfid"]}
    with pytest.raises(
        ConfigError, match=r"metrics\.names: 'sfid' is not given by the embedded digits classif"
    ):
        load_sweep(config)
    config["metrics"] = {"reference": "ref.npz"}
    with pytest.raises(ConfigError, match=r"metrics\.reference / inception_weights: no model here"):
        load_sweep(config)


def test_run_id_constraint_matches_exactly_the_sweeps_ids():
    from softcfg.sweep import alternatives_pattern

    ids = list(load_sweep(copy.deepcopy(BASE)).runs)
    pattern = re.compile(alternatives_pattern(ids))
    assert all(pattern.fullmatch(i) for i in ids)
    near = [i[:-1] for i in ids] + [i + "0" for i in ids] + ["digits", "", "other-cfg-g3-k1-s0"]
    assert not any(pattern.fullmatch(n) for n in near if n not in ids)
    assert not re.fullmatch(alternatives_pattern([]), "")


@pytest.mark.parametrize("section", ["models", "methods"])
@pytest.mark.parametrize("name", ["../../x", "a;touch INJECTED;b", "my model", ".hidden", "-n", "a/b", ""])
def test_names_that_would_leave_results_or_split_a_command_are_refused(section, name):
    config = copy.deepcopy(BASE)
    config[section] = {name: next(iter(config[section].values())), **config[section]}
    with pytest.raises(ConfigError, match=rf"config\.{section}: .*name {re.escape(repr(name))}: use letters"):
        load_sweep(config)


def test_every_run_id_matches_the_fixed_wildcard_constraint():
    """The rules constrain ``{run}`` with RUN_ID_PATTERN, a pattern of fixed size, not a list of ids."""
    config = copy.deepcopy(BASE)
    config["grid"] = {"gamma": [1e-7, 0.5], "k": [0.0, 2.75]}
    ids = list(load_sweep(config).runs)
    assert any("1e-07" in i for i in ids)
    assert all(re.fullmatch(RUN_ID_PATTERN, i) for i in ids)
    assert not any(re.fullmatch(RUN_ID_PATTERN, i) for i in ("a/b", "a b", "", "-x", "../x"))


def test_ssg_lists_are_axes_and_models_limit_a_method():
    config = copy.deepcopy(BASE)
    config["models"]["scales"] = {"family": "digits_scales", "train": True}
    config["methods"] = {
        "cfg": {"name": "cfg", "gamma": [3.0], "k": [1.0]},
        "ssg": {
            "name": "cfg",
            "gamma": [3.0],
            "k": [1.0],
            "models": ["scales"],
            "ssg": {"beta": [0.5, 1.0], "prior": ["dse", "nearest"], "band_scale": "copy"},
        },
    }
    config["seeds"] = [0]
    sweep = load_sweep(config)
    ssg_runs = sorted(r for r in sweep.runs if "-ssg-" in r)
    assert ssg_runs == [
        "scales-ssg-g3-k1-b0.5-pdse-s0",
        "scales-ssg-g3-k1-b0.5-pnearest-s0",
        "scales-ssg-g3-k1-b1-pdse-s0",
        "scales-ssg-g3-k1-b1-pnearest-s0",
    ]
    assert {r for r in sweep.runs if "-cfg-" in r} == {"digits-cfg-g3-k1-s0", "scales-cfg-g3-k1-s0"}
    method = sweep.runs["scales-ssg-g3-k1-b1-pnearest-s0"].config.method
    assert (method.ssg.beta, method.ssg.prior, method.ssg.band_scale) == (1.0, "nearest", "copy")

    del config["methods"]["ssg"]["models"]
    with pytest.raises(ConfigError, match=r"methods.ssg.ssg: model digits \(family digits\) generates"):
        load_sweep(copy.deepcopy(config))
    config["methods"]["ssg"]["models"] = ["nope"]
    with pytest.raises(ConfigError, match=r"methods\.ssg\.models: unknown model 'nope'"):
        load_sweep(copy.deepcopy(config))
    config["methods"]["ssg"]["models"] = ["scales"]
    config["methods"]["ssg"]["ssg"]["beta"] = []
    with pytest.raises(ConfigError, match=r"methods\.ssg\.ssg\.beta must be a non-empty list"):
        load_sweep(config)


def test_a_sweep_of_a_thousand_runs_or_more_is_planned_with_a_note_of_its_size():
    config = copy.deepcopy(BASE)
    assert load_sweep(copy.deepcopy(config)).size_note() is None  # 40 runs
    config["grid"] = {"gamma": [round(0.01 * i, 2) for i in range(1, 126)], "k": [0.0, 1.0]}
    config["seeds"] = [0, 1, 2, 3]  # (3 guided methods x 250 points + none + soft_kv) x 4 seeds
    sweep = load_sweep(config)
    assert len(sweep.runs) == 3008
    assert sweep.size_note() == (
        "this sweep plans 3,008 runs of 1 model(s), 6,016 shards in 3,008 sample jobs: check grid, seeds and "
        "methods before submitting it"
    )


def test_any_scalar_option_of_a_method_listed_in_its_entry_is_an_axis():
    config = copy.deepcopy(BASE)
    config["methods"] = {
        "cfg": {"name": "cfg", "gamma": [3.0], "temperature": [0.9, 1.1], "top_k": [0, 5]},
        "soft": {"name": "softcfg", "gamma": [3.0], "k": [1.0], "interval": [0.1, 0.9], "strength": [0.5, 1]},
    }
    config["seeds"] = [0]
    sweep = load_sweep(config)
    assert sorted(sweep.runs) == sorted(
        [f"digits-cfg-g3-k{k}-t{t}-topk{top}-s0" for k in (0, 1) for t in (0.9, 1.1) for top in (0, 5)]
        + ["digits-soft-g3-k1-strength0.5-s0", "digits-soft-g3-k1-strength1-s0"]
    )
    run = sweep.runs["digits-cfg-g3-k1-t1.1-topk5-s0"].config
    assert (run.method.temperature, run.method.top_k, run.run.axes) == (1.1, 5, ["temperature", "top_k"])
    soft = sweep.runs["digits-soft-g3-k1-strength0.5-s0"].config.method
    assert list(soft.interval) == [0.1, 0.9]  # a list-valued option: one value, not an axis
    assert yaml.safe_load(yaml.safe_dump(run.to_dict()))["run"]["axes"] == ["temperature", "top_k"]
    plain = load_sweep(copy.deepcopy(BASE)).runs["digits-cfg-g3-k1-s0"].config
    assert "axes" not in plain.to_dict()["run"]  # RUN.yaml of a run without option axes is as before
    config["methods"]["cfg"]["temperature"] = []
    with pytest.raises(ConfigError, match=r"^methods\.cfg\.temperature must be a non-empty list$"):
        load_sweep(config)
