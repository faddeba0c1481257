"""`stars bench --profile`: the time of a step by kind of work, the GEMM / attention rates and the ceiling."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from stars.analysis.step_profile import CATEGORIES, Breakdown, event_category, own_category, time_by_category
from stars.bench import BenchError, run_bench
from stars.gpu_check import _kernel_lines
from stars.models.blocks import Block


@pytest.mark.parametrize("name, category", [
    ("aten::mm", "gemm"),
    ("aten::addmm", "gemm"),
    ("autograd::engine::evaluate_function: AddmmBackward0", "gemm"),
    ("ConvolutionBackward0", "gemm"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu_backward", "attention"),
    ("aten::_cudnn_attention_backward", "attention"),
    ("ScaledDotProductEfficientAttentionBackward0", "attention"),
    ("aten::native_layer_norm_backward", "normalisation"),
    ("NativeLayerNormBackward0", "normalisation"),
    ("aten::copy_", "movement"),
    ("aten::cat", "movement"),
    ("aten::sum", "reduction"),
    ("aten::gelu_backward", "elementwise"),
    ("aten::_foreach_addcdiv_", "optimiser"),
    ("Optimizer.step#AdamW.step", "optimiser"),
    ("triton_per_fused_add_native_layer_norm_0", "fused"),
    ("## Call CompiledFxGraph fabc123 ##", "fused"),
    ("aten::view", None),
    ("ViewBackward0", None),
    ("cudaLaunchKernel", None),
])
def test_operator_names_map_to_kinds_of_work(name, category):
    assert own_category(name) == category


def test_an_operator_without_a_rule_takes_its_enclosing_operators_kind():
    assert event_category(["aten::t", "AddmmBackward0", "autograd::engine::evaluate_function: AddmmBackward0"]) == "gemm"
    assert event_category(["aten::mm", "aten::_scaled_dot_product_attention_math"]) == "attention"
    assert event_category(["aten::mul_", "Optimizer.step#AdamW.step"]) == "optimiser"
    assert event_category(["aten::sum", "AddmmBackward0"]) == "reduction"  # a bias gradient is a reduction
    assert event_category(["aten::as_strided", "aten::permute"]) == "other"


def test_a_real_profile_is_split_without_losing_or_double_counting_time():
    torch.manual_seed(0)
    block = Block(32, 4)
    x = torch.randn(4, 50, 32, requires_grad=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        block(x).square().mean().backward()
    events = prof.events()
    seconds = time_by_category(events, device=False)
    assert set(seconds) == set(CATEGORIES)
    total = sum(e.self_cpu_time_total for e in events) * 1e-6
    assert sum(seconds.values()) == pytest.approx(total, rel=1e-9)
    for kind in ("gemm", "attention", "normalisation", "elementwise"):
        assert seconds[kind] > 0, kind


def test_device_time_is_taken_from_the_operators_not_again_from_their_kernel_rows():
    cpu, cuda = SimpleNamespace(name="CPU"), SimpleNamespace(name="CUDA")
    addmm = SimpleNamespace(name="aten::addmm", device_type=cpu, cpu_parent=None,
                            self_device_time_total=300.0, self_cpu_time_total=20.0)
    launch = SimpleNamespace(name="cudaLaunchKernel", device_type=cpu, cpu_parent=addmm,
                             self_device_time_total=50.0, self_cpu_time_total=5.0)
    kernel = SimpleNamespace(name="sm90_xmma_gemm_bf16", device_type=cuda, cpu_parent=None,
                             self_device_time_total=350.0, self_cpu_time_total=0.0)
    norm = SimpleNamespace(name="aten::native_layer_norm", device_type=cpu, cpu_parent=None,
                           self_device_time_total=100.0, self_cpu_time_total=10.0)
    seconds = time_by_category([addmm, launch, kernel, norm], device=True)
    assert seconds["gemm"] == pytest.approx(350e-6)
    assert seconds["normalisation"] == pytest.approx(100e-6)
    assert sum(seconds.values()) == pytest.approx(450e-6)
    assert time_by_category([addmm, launch, kernel, norm], device=False)["gemm"] == pytest.approx(25e-6)


def test_the_ceiling_counts_only_gemm_and_attention_time():
    seconds = dict.fromkeys(CATEGORIES, 0.0) | {"gemm": 0.002, "attention": 0.006, "movement": 0.008}
    breakdown = Breakdown(seconds, gemm_flops=6e12, attention_flops=3e12, total_flops=9.5e12)
    assert breakdown.rate("gemm") == pytest.approx(3e15)
    assert breakdown.rate("attention") == pytest.approx(5e14)
    assert breakdown.ceiling_speedup == pytest.approx(2.0)
    # 9.5 TFLOP in the 8 ms of GEMM and attention = 1,187.5 TFLOP/s, against a 2,000 TFLOP/s peak
    assert breakdown.ceiling_mfu(2e15) == pytest.approx(0.59375)
    assert breakdown.ceiling_mfu(None) is None
    text = breakdown.summary(2e15)
    assert "movement 50.0 %" in text and "MFU ceiling 59.4 %" in text and "gemm 3000.0 TFLOP/s" in text
    assert "profiled CPU time / timed step: 50 %" in breakdown.summary(step_seconds=0.032)
    on_device = Breakdown(seconds, 6e12, 3e12, 9.5e12, on_device=True).summary(step_seconds=0.032)
    assert "profiled device time / timed step: 50 % (the device waits for the host" in on_device


def test_bench_profile_reports_the_breakdown(tmp_path):
    from stars.data.synthetic import prepare_synthetic

    prepare_synthetic(tmp_path, seed=0, num_subjects=4, num_classes=6)
    data = str(tmp_path / "SYN_XSub.npz")
    results = run_bench(data, preset="tiny", batch_size=16, steps=1, rounds=1, device="cpu",
                        workloads=("pretrain", "eval"), profile=True, sdpa="math")
    assert results["sdpa"] == "math"
    for name in ("pretrain", "eval"):
        parts = results["breakdowns"][name]
        assert parts["gemm_tflops"] > 0 and parts["attention_tflops"] > 0
        assert sum(parts["seconds"].values()) == pytest.approx(parts["profiled_seconds"], rel=1e-4)
        assert parts["ceiling_speedup"] >= 1.0
        assert "time by kind" in parts["summary"]
    with pytest.raises(BenchError, match="--sdpa cudnn"):
        run_bench(data, preset="tiny", batch_size=16, steps=1, rounds=1, device="cpu", workloads=("eval",),
                  sdpa="cudnn")
    with pytest.raises(BenchError, match="--sdpa must be"):
        run_bench(data, preset="tiny", device="cpu", sdpa="fast")
    with pytest.raises(BenchError, match="--compile must be"):
        run_bench(data, preset="tiny", device="cpu", compile="everything")


@pytest.mark.slow
def test_a_compiled_bench_shows_it_compiled_and_refuses_eager_fallbacks(tmp_path, monkeypatch):
    import stars.train.engine as engine
    from stars.bench import format_results
    from stars.data.synthetic import prepare_synthetic

    prepare_synthetic(tmp_path, seed=0, num_subjects=4, num_classes=6)
    data = str(tmp_path / "SYN_XSub.npz")
    torch._dynamo.reset()
    results = run_bench(data, preset="tiny", batch_size=8, steps=1, rounds=1, device="cpu", workloads=("pretrain",),
                        compile="blocks")
    stats = results["workloads"]["pretrain"]["compile"]
    assert stats["graphs"] >= 2 and stats["graph_breaks"] == 0 and stats["fallbacks"] == 0  # encoder + decoder
    assert f"compiled (blocks): pretrain {stats['graphs']} graphs, 0 graph breaks; no eager fallback" in format_results(results)
    again = run_bench(data, preset="tiny", batch_size=8, steps=1, rounds=1, device="cpu", workloads=("pretrain",),
                      compile="blocks")  # the same variants, already compiled in this process: reused, not refused
    assert again["workloads"]["pretrain"]["compile"] == {"graphs": 0, "graph_breaks": 0, "fallbacks": 0}

    off = subprocess.run([sys.executable, "-m", "stars", "bench", "--data", data, "--preset", "tiny", "--batch-size", "8",
                          "--steps", "1", "--rounds", "1", "--workloads", "pretrain", "--device", "cpu", "--compile"],
                         capture_output=True, text=True, env={**os.environ, "TORCH_COMPILE_DISABLE": "1"})
    assert off.returncode == 2 and "--compile blocks: our pretrain step did not run compiled (0 graphs" in off.stderr

    torch._dynamo.reset()  # the decoder's length is a second variant; with room for one, it would run eager
    monkeypatch.setattr(engine, "RECOMPILE_LIMIT", 1)
    with torch._dynamo.config.patch(recompile_limit=1), \
            pytest.raises(BenchError, match="--compile blocks: our pretrain step did not run compiled .*1 eager fallback"):
        run_bench(data, preset="tiny", batch_size=8, steps=1, rounds=1, device="cpu", workloads=("pretrain",),
                  compile="blocks")


def test_gpu_check_kernel_table_lists_speed_ceiling_and_unavailable_kernels():
    bench = {"workloads": {"pretrain": {"ours": {"sequences_per_s": 3000.0, "mfu": 0.117}}},
             "breakdowns": {"pretrain": {"gemm_tflops": 555.2, "attention_tflops": 133.1, "ceiling_mfu": 0.297,
                                         "summary": "time by kind (40 ms profiled): attention 26 %\nachieved: x"}}}
    lines = "\n".join(_kernel_lines({"auto": bench, "flash": {"unavailable": "stars bench: error: ..."}, "ok": True}))
    assert "| auto | pretrain | 3000 | 11.7 % | 555.2 | 133.1 | 29.7 % |" in lines
    assert "| flash | — | no kernel for these inputs |" in lines
    assert "- auto, pretrain: time by kind (40 ms profiled): attention 26 %; achieved: x" in lines
    compiled = {"workloads": {"tune": {"ours": {"sequences_per_s": 2400.0, "mfu": 0.2},
                                       "compile": {"graphs": 4, "graph_breaks": 0, "fallbacks": 0}}}}
    lines = "\n".join(_kernel_lines({"auto, blocks compiled": compiled}))
    assert "| auto, blocks compiled (4 graphs, 0 graph breaks) | tune | 2400 | 20.0 % |" in lines
    failed = {"returncode": 2, "tail": "...\nstars bench: error: --compile model: our pretrain step did not run compiled"}
    lines = "\n".join(_kernel_lines({"auto, model compiled": failed, "flash": {"skipped": "out of time"}}))
    assert "| auto, model compiled | — | failed: stars bench: error: --compile model: our pretrain step did not run " \
           "compiled |" in lines
    assert "| flash | — | out of time |" in lines
