"""Config entries: defaults, refusal of bad input with the key named, numbers as users write them."""

import re
import sys

import pytest

from conftest import write_run_config
from softcfg.config import ConfigError, load_run_config, parse_run_config
from softcfg.methods import CFG, NoGuidance, SoftCFG, method_names, parse_method
from softcfg.models.registry import get_family, presets


@pytest.mark.parametrize(
    ("method", "sampling", "message"),
    [
        ({"name": "pag"}, None, "method.name: unknown method 'pag'"),
        ({"name": "cfg", "gamma": -1.0}, None, "method.gamma: Input should be greater than or equal to 0"),
        ({"name": "cfg"}, {"shard_size": 0}, "sampling.shard_size: Input should be greater than 0"),
        ({"name": "cfg", "gama": 2.0}, None, "unknown key method.gama"),
        ({"name": "cfg", "confidence": "cond_max"}, None, "unknown key method.confidence"),
        ({"name": "none", "gamma": 2.0}, None, "unknown key method.gamma"),
        ({"name": "softcfg", "target": "q"}, None, "method.target: Input should be 'v', 'k' or 'kv'"),
        ({"name": "softcfg", "strength": "high"}, None, "method.strength: Input should be a valid number"),
        ({"name": "softcfg", "step_norm": 1}, None, "method.step_norm: Input should be a valid boolean"),
        ({"name": "cfg", "top_k": 2.0}, None, "method.top_k: Input should be a valid integer"),
        ({"name": "cfg", "interval": [0.5, 0.2]}, None, "method.interval: must satisfy 0 <= lo < hi <= 1"),
        ({"name": "cfg", "interval": [0.1]}, None, "method.interval[1]: missing"),
        ({"name": "cfg"}, {"seed": -1}, "sampling.seed: Input should be greater than or equal to 0"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, checkpoint, method, sampling, message):
    path = write_run_config(tmp_path / "run.yaml", checkpoint, method, sampling)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_run_config(path)
    assert str(info.value).startswith(f"{path}: ")


def test_missing_checkpoint_and_unknown_family(tmp_path):
    path = write_run_config(tmp_path / "run.yaml", tmp_path / "nope.pt", {"name": "cfg"})
    with pytest.raises(ConfigError, match=r"model\.checkpoint: file not found"):
        load_run_config(path)
    with pytest.raises(ConfigError, match=r"model\.family: unknown 'llama' \(expected one of \["):
        parse_run_config({"model": {"family": "llama", "checkpoint": "x"}, "method": {"name": "cfg"}})
    with pytest.raises(ConfigError, match=r"model\.size: expected one of \['B', 'L', 'XL'\]"):
        parse_run_config(
            {"model": {"family": "alitok", "checkpoint": "x", "size": "S"}, "method": {"name": "cfg"}}
        )


def test_defaults_and_coercion(tmp_path, checkpoint):
    run = load_run_config(write_run_config(tmp_path / "r.yaml", checkpoint, {"name": "softcfg", "gamma": 3}))
    m = run.method
    assert isinstance(m, SoftCFG)
    assert (m.gamma, m.confidence, m.target, m.step_norm, m.strength, m.floor, m.eps) == (
        3.0,
        "cond_max",
        "v",
        True,
        1.0,
        0.05,
        1e-5,
    )
    assert isinstance(m.gamma, float) and (run.sampling.shard_size, run.sampling.batch_size) == (500, 100)


def test_numbers_are_read_as_users_write_them(tmp_path, checkpoint):
    """YAML 1.1 (PyYAML, Snakemake) reads 1e-5 as a string; the config reads it as the number."""
    path = tmp_path / "run.yaml"
    path.write_text(
        f"model: {{family: digits, checkpoint: {checkpoint}}}\n"
        "method: {name: softcfg, eps: 1e-5, floor: .5, gamma: 2, k: 1.5E+0}\n"
    )
    m = load_run_config(path).method
    assert (m.eps, m.floor, m.gamma, m.k) == (1e-5, 0.5, 2.0, 1.5)
    path.write_text(
        f"model: {{family: digits, checkpoint: {checkpoint}}}\nmethod: {{name: cfg, gamma: 1e-x}}\n"
    )
    with pytest.raises(ConfigError, match=r"method\.gamma: Input should be a valid number, got '1e-x'"):
        load_run_config(path)


def test_method_behaviour_flags_come_from_the_registry():
    assert method_names()[:3] == ["cfg", "none", "softcfg"]  # every module of softcfg.methods
    assert isinstance(parse_method({"name": "none"}), NoGuidance)
    assert not NoGuidance.uses_uncond and CFG.uses_uncond and not CFG.perturbs_cache
    assert SoftCFG.uses_uncond and SoftCFG.perturbs_cache
    assert parse_method({"name": "cfg", "gamma": 2.0, "k": 1.0}).axes() == {"gamma": 2.0, "k": 1.0}
    assert parse_method({"name": "cfg", "schedule": "constant"}).axes() == {"gamma": 1.0}  # k unused
    assert parse_method({"name": "none"}).axes() == {}


def test_round_trip_through_the_run_dict(checkpoint):
    data = {
        "model": {"family": "digits", "checkpoint": str(checkpoint)},
        "method": {"name": "softcfg", "gamma": 3.0, "k": 1.0, "interval": [0.1, 0.9], "target": "kv"},
        "sampling": {"seed": 3},
    }
    run = parse_run_config(data)
    again = parse_run_config(run.to_dict())
    assert again == run and again.config_hash() == run.config_hash()
    assert run.to_dict()["method"]["interval"] == [0.1, 0.9]


def test_presets_fill_the_upstream_defaults():
    m = parse_method({"name": "softcfg", "preset": "alitok-XL"})
    assert (m.gamma, m.k, m.temperature) == (13.0, 1.4, 1.0)
    m = parse_method({"name": "cfg", "preset": "rar-L", "gamma": 3.0})
    assert (m.gamma, m.k, m.temperature) == (3.0, 2.5, 1.02)
    with pytest.raises(ConfigError, match=r"method\.preset: unknown 'alitok-S'"):
        parse_method({"name": "cfg", "preset": "alitok-S"})
    with pytest.raises(ConfigError, match=r"method\.preset: method 'none' runs no guidance"):
        parse_method({"name": "none", "preset": "rar-B"})


def test_family_records_match_the_adapters():
    """The torch-free registry names the sizes the adapters define."""
    from softcfg.models import alitok, llamagen, lumina, rar, simplear

    assert get_family("alitok").sizes == tuple(alitok.SIZES)
    assert get_family("rar").sizes == tuple(rar.SIZES)
    assert get_family("llamagen").sizes == tuple(llamagen.SIZES)
    assert get_family("llamagen").image_sizes == llamagen.IMAGE_SIZES
    released = {"B-256", "B-384", "L-256", "L-384", "XL-384", "XXL-384", "3B-384"}  # the c2i_*.pt files
    assert set(presets()) == (
        {f"alitok-{s}" for s in alitok.SIZES}
        | {f"rar-{s}" for s in rar.SIZES}
        | {f"llamagen-{r}" for r in released}
        | {f"var-{s}" for s in ("d16", "d20", "d24", "d30")}
        | {"janus-1B", "janus-7B"}
        | {"lumina-7B-768"}
        | {"simplear-0.5B-1024", "simplear-1.5B-1024"}
    )
    assert get_family("simplear").sizes == tuple(simplear.SIZES)
    assert get_family("lumina").sizes == tuple(lumina.SIZES)
    assert get_family("lumina").image_sizes == (lumina.DEFAULT_IMAGE_SIZE,)


def test_parsing_configs_tables_and_figures_do_not_import_torch(tmp_path):
    import subprocess

    code = (
        "import sys, yaml; from softcfg.sweep import load_sweep; from softcfg.config import parse_run_config;"
        "load_sweep(yaml.safe_load(open('config.yaml')));"
        "parse_run_config({'model': {'family': 'alitok', 'size': 'B', 'checkpoint': 'x'},"
        " 'method': {'name': 'softcfg', 'preset': 'alitok-B'}}, check_files=False);"
        "import softcfg.cli, softcfg.report.tables, softcfg.report.figures, softcfg.report.aggregate;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1])
    )


def test_a_low_precision_softcfg_run_must_choose_its_unconditional_precision():
    model = {"family": "alitok", "size": "B", "checkpoint": "x", "dtype": "bf16"}
    with pytest.raises(ConfigError, match=r"model\.uncond_fp32: a bf16 softcfg run must choose"):
        parse_run_config({"model": model, "method": {"name": "softcfg"}}, check_files=False)
    for choice in (True, False):
        run = parse_run_config(
            {"model": {**model, "uncond_fp32": choice}, "method": {"name": "softcfg"}}, check_files=False
        )
        assert run.model.uncond_fp32 is choice
    assert (
        parse_run_config({"model": model, "method": {"name": "cfg"}}, check_files=False).model.dtype == "bf16"
    )
    fp32 = {**model, "dtype": "fp32", "uncond_fp32": True}
    with pytest.raises(ConfigError, match=r"model\.uncond_fp32: only for dtype bf16 or fp16"):
        parse_run_config({"model": fp32, "method": {"name": "cfg"}}, check_files=False)


def test_extractor_records_name_what_their_files_record():
    from softcfg.metrics import EXTRACTORS
    from softcfg.metrics.digits_extractor import EXTRACTOR as DIGITS
    from softcfg.metrics.inception import EXTRACTOR as INCEPTION

    assert {e.file_tag for e in EXTRACTORS.values()} == {DIGITS, INCEPTION}
    assert {get_family(f).extractor for f in ("digits", "alitok", "rar")} <= set(EXTRACTORS)


def test_what_was_valid_stays_valid_every_preset_and_the_readmes_yaml_examples():
    """The bounds on numbers and names refuse none of the shipped settings."""
    import yaml

    from softcfg.config import WorkflowConfig
    from softcfg.options import validate

    for preset in presets():
        for method in ("cfg", "softcfg"):
            assert parse_method({"name": method, "preset": preset}).gamma == presets()[preset]["gamma"]
    repo = __import__("pathlib").Path(__file__).parents[1]
    blocks = re.findall(r"^```yaml\n(.*?)^```", (repo / "README.md").read_text(), re.S | re.M)
    examples = [yaml.safe_load(block) for block in blocks]
    assert len(examples) >= 2
    default = yaml.safe_load((repo / "config.yaml").read_text())
    for example in examples:
        if "method" in example:  # a RUN.yaml
            parse_run_config(example, check_files=False)
        else:  # config.yaml's sections, replacing the default's
            validate(WorkflowConfig, default | example, "config")
