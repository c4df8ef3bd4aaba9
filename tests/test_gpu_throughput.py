"""benchmarks/gpu_throughput.py at its tiny CPU shape: the whole script runs and its last line has the
documented format; its FLOP count equals torch's own count of the eager generation's matmuls."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from softcfg.conditioning import ClassLabels
from softcfg.methods import parse_method
from softcfg.sampling.loop import generate

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_throughput.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_run_prints_every_measurement_and_the_summary_line(inception_weights, capsys):
    bench = load_script()
    bench.main(
        ["--small", "--shapes", "llamagen-xl", "--batches", "2", "--rounds", "1", "--inception-images", "2"]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"gpu images/s \d+\.\d\d ratio softcfg/cfg \d+\.\d{4}", lines[-1])
    rows = [line for line in lines if re.search(r"batch +2 +(eager|captured) .* images/s$", line)]
    assert len(rows) == 4  # eager and captured, CFG and SoftCFG + step norm
    assert any(re.fullmatch(r"inception: \d+\.\d\d images/s \(batch 2, cpu\)", line) for line in lines)


def test_flop_count_equals_torchs_count_of_a_cfg_generation():
    """CFG on one image: two rows, a one-token prefill and T - 1 decode steps, each attending over the
    visible slots; torch counts every matmul of the eager loop (the sampling adds none), and also the
    masked slots: LlamaGen's unweighted steps attend, as upstream's, over its whole static cache of L
    slots (4 D FLOPs per row, layer and masked slot), which the script leaves out as no useful work.
    torch's counter has no formula for the CPU kernel of ``scaled_dot_product_attention``; it is given
    the one torch uses for the CUDA kernels."""
    from torch.utils.flop_counter import sdpa_flop_count

    def cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query, key, value)

    bench = load_script()
    shape = bench.SMALL_SHAPES["llamagen-xl"]  # AliTok's count differs only in T and V (273 steps: slow)
    torch.manual_seed(0)
    model = shape.build().eval()
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        generate(model, ClassLabels(torch.tensor([3])), parse_method(bench.METHODS["cfg"]))
    tokens, slots = model.num_tokens, model.new_cache(1).max_len
    assert slots == 72  # 1 + 64 rounded up to 8
    masked = 2 * shape.depth * 4 * shape.dim * (tokens * slots - tokens * (tokens + 1) // 2)
    assert counter.get_total_flops() == bench.flops_per_image(model, shape.dim, shape.depth) + masked


def test_auto_batch_sizes_follow_the_documented_memory_rule():
    """Every table entry: the doubled batch's KV cache (bf16 conditional + float32 unconditional rows,
    k and v, every layer and slot) within 45 GB, and twice the batch over 40 GB (the largest such) unless
    the batch is the cap, 512."""
    from softcfg.models import alitok, llamagen, rar
    from softcfg.models.registry import get_family

    def cache_bytes(depth: int, dim: int, slots: int, batch: int) -> int:
        return depth * 2 * slots * dim * (2 + 4) * batch

    shapes = {("alitok", s): (c.depth, c.dim, 1 + 273 - 1) for s, c in alitok.SIZES.items()}
    shapes |= {("rar", s): (c.depth, c.dim, 2 + 256 - 1) for s, c in rar.SIZES.items()}
    for key, c in llamagen.SIZES.items():
        for px in (256, 384):
            shapes[("llamagen", f"{key}-{px}")] = (c.depth, c.dim, (px // 16) ** 2)
    for family in ("alitok", "rar", "llamagen"):
        table = get_family(family).batch_sizes
        assert table, family
        for size, batch in table.items():
            depth, dim, slots = shapes[family, size]
            assert cache_bytes(depth, dim, slots, batch) <= 45e9, (family, size)
            assert batch == 512 or cache_bytes(depth, dim, slots, 2 * batch) > 40e9, (family, size)


def test_auto_batch_size_resolves_per_model_size_and_is_refused_without_a_default(tmp_path):
    from softcfg.config import parse_run_config
    from softcfg.options import ConfigError

    def run(model: dict):
        data = {"model": model, "method": {"name": "cfg", "gamma": 2.0}, "sampling": {"batch_size": "auto"}}
        return parse_run_config(data, check_files=False)

    assert (
        run({"family": "alitok", "checkpoint": "a.bin", "size": "XL"}).sampling.batch_for(
            run({"family": "alitok", "checkpoint": "a.bin", "size": "XL"}).model
        )
        == 256
    )
    llamagen = run({"family": "llamagen", "checkpoint": "c.pt", "size": "XL", "image_size": 384})
    assert llamagen.sampling.batch_for(llamagen.model) == 128
    assert llamagen.to_dict()["sampling"]["batch_size"] == "auto"  # hashed as written
    with pytest.raises(ConfigError, match=r"sampling\.batch_size: auto has no default for family 'digits'"):
        run({"family": "digits", "checkpoint": "d.pt"})


def test_shard_decodes_in_the_background_and_equals_sequential_sampling(tmp_path, model):
    """Batches decoded off the sampling thread; images and diagnostics equal a plain loop's, in order."""
    import threading

    from softcfg.config import parse_run_config
    from softcfg.models.digits import save_digits_ar
    from softcfg.sampling.diagnostics import StepDiagnostics
    from softcfg.sampling.shards import batch_seed, sample_shard, shard_conditions

    save_digits_ar(model, tmp_path / "d.pt")
    data = {
        "model": {"family": "digits", "checkpoint": str(tmp_path / "d.pt")},
        "method": {"name": "softcfg", "gamma": 2.0},
        "sampling": {"shard_size": 7, "batch_size": 3, "seed": 4},
    }
    run = parse_run_config(data)
    decoded_on = []
    decode = model.decode_images
    model.decode_images = lambda tokens: decoded_on.append(threading.get_ident()) or decode(tokens)
    shard = sample_shard(model, run, 2, progress=False, checkpoint_dir=tmp_path / "kept", key="k")
    assert len(decoded_on) == 3 and threading.get_ident() not in decoded_on

    conditions = shard_conditions(model, 2, 7)
    images, sums = [], 0
    for b, start in enumerate(range(0, 7, 3)):
        diag = StepDiagnostics(model.num_tokens)
        gen = torch.Generator().manual_seed(batch_seed(4, 2, b))
        tokens = generate(model, conditions[start : start + 3], run.method, gen, [diag])
        images.append(decode(tokens).numpy())
        sums = sums + diag.sums
    assert np.array_equal(shard.images, np.concatenate(images))
    assert torch.equal(shard.diagnostics.sums, sums)
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [f"batch_{b:04d}.npz" for b in range(3)]
