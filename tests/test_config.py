import pytest

from conftest import write_run_config
from softcfg.config import ConfigError, load_run_config, parse_method


@pytest.mark.parametrize(
    ("method", "sampling", "message"),
    [
        ({"name": "pag"}, None, "method.name: unknown method 'pag'"),
        ({"name": "cfg", "gamma": -1.0}, None, "method.gamma must be >= 0"),
        ({"name": "cfg"}, {"shard_size": 0}, "sampling.shard_size must be >= 1"),
        ({"name": "cfg", "gama": 2.0}, None, "unknown key method.gama"),
        ({"name": "cfg", "confidence": "cond_max"}, None, "method.confidence: only method 'softcfg'"),
        ({"name": "none", "gamma": 2.0}, None, "method.gamma: method 'none' runs no guidance"),
        ({"name": "softcfg", "target": "q"}, None, "method.target: unknown 'q'"),
        ({"name": "softcfg", "strength": "high"}, None, "method.strength must be of type float"),
        ({"name": "cfg", "interval": [0.5, 0.2]}, None, "method.interval must satisfy"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, checkpoint, method, sampling, message):
    path = write_run_config(tmp_path / "run.yaml", checkpoint, method, sampling)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_run_config(path)


def test_missing_checkpoint(tmp_path):
    path = write_run_config(tmp_path / "run.yaml", tmp_path / "nope.pt", {"name": "cfg"})
    with pytest.raises(ConfigError, match=r"model\.checkpoint: file not found"):
        load_run_config(path)


def test_defaults_and_coercion(tmp_path, checkpoint):
    run = load_run_config(write_run_config(tmp_path / "r.yaml", checkpoint, {"name": "softcfg", "gamma": 3}))
    m = run.method
    assert (m.gamma, m.confidence, m.target, m.step_norm, m.strength, m.floor, m.eps) == (
        3.0,
        "cond_max",
        "v",
        True,
        1.0,
        0.05,
        1e-5,
    )
    assert isinstance(m.gamma, float) and run.sampling.shard_size == 100


def test_method_properties():
    assert not parse_method({"name": "none"}).uses_uncond
    cfg = parse_method({"name": "cfg", "gamma": 2.0})
    assert cfg.uses_uncond and not cfg.perturbs_cache
    assert parse_method({"name": "softcfg"}).perturbs_cache


def test_presets_fill_the_upstream_defaults():
    m = parse_method({"name": "softcfg", "preset": "alitok-XL"})
    assert (m.gamma, m.k, m.temperature) == (13.0, 1.4, 1.0)
    m = parse_method({"name": "cfg", "preset": "rar-L", "gamma": 3.0})
    assert (m.gamma, m.k, m.temperature) == (3.0, 2.5, 1.02)
    with pytest.raises(ConfigError, match=r"method\.preset: unknown 'alitok-S'"):
        parse_method({"name": "cfg", "preset": "alitok-S"})
