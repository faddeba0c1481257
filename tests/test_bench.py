"""`stars bench`: both sides time the same workloads; the official code, when a checkout is at hand, is
imported from outside the repository and builds models of the same size as ours."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from stars.bench import BenchError, format_results, run_bench
from stars.cli import main as cli_main

OFFICIAL = Path(os.environ.get("STARS_OFFICIAL_DIR", Path(__file__).resolve().parents[2] / "official" / "stars"))
needs_official = pytest.mark.skipif(
    not (OFFICIAL / "net" / "nnclr.py").is_file(),
    reason=f"no checkout of the official STARS code at {OFFICIAL} (set STARS_OFFICIAL_DIR)",
)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> str:
    from stars.data.synthetic import prepare_synthetic

    folder = tmp_path_factory.mktemp("bench-data")
    prepare_synthetic(folder, seed=0, num_subjects=4, num_classes=6)
    return str(folder / "SYN_XSub.npz")


def test_bench_against_the_reference_path(tiny_data):
    results = run_bench(tiny_data, preset="tiny", batch_size=16, steps=1, rounds=2, device="cpu")
    assert set(results["workloads"]) == {"feeder", "pretrain", "tune", "eval"}
    assert results["baseline"] == "our reference path"
    for row in results["workloads"].values():
        for side in (row["ours"], row["baseline"]):
            assert len(side["round_seconds"]) == 2 and side["seconds_per_step"] > 0
            assert side["sequences_per_s"] == pytest.approx(16 / side["seconds_per_step"])
        assert row["speedup"] == pytest.approx(row["baseline"]["seconds_per_step"] / row["ours"]["seconds_per_step"])
    assert "pretrain" in format_results(results)


def test_bench_arguments_are_checked(tiny_data):
    with pytest.raises(BenchError, match="workload"):
        run_bench(tiny_data, preset="tiny", workloads=("train",))
    with pytest.raises(BenchError, match="steps"):
        run_bench(tiny_data, preset="tiny", steps=0)
    with pytest.raises(BenchError, match="fewer than"):
        run_bench(tiny_data, preset="tiny", batch_size=10_000)


def test_bench_cli_rejects_a_folder_without_official_code(tmp_path, capsys, tiny_data):
    status = cli_main(["bench", "--data", tiny_data, "--preset", "tiny", "--against-official", str(tmp_path)])
    assert status == 2
    assert "model_mamp" in capsys.readouterr().err


@needs_official
def test_official_models_have_our_sizes_and_time_on_the_same_batch(tiny_data):
    from stars.models.encoder import EncoderConfig
    from stars.models.mamp import MAMPConfig, MaskedMotionModel
    from stars.official import load_official, official_mamp_model, official_stars_model

    code = load_official(OFFICIAL)
    assert code.kind == "STARS"
    encoder, mamp = EncoderConfig(), MAMPConfig()
    theirs = official_mamp_model(code, encoder, mamp)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(theirs) == count(MaskedMotionModel(encoder, mamp))
    stars_model = official_stars_model(code, encoder, queue_size=256, hidden=64)
    assert stars_model.queue.shape == (256, 256)
    results = run_bench(tiny_data, preset="tiny", batch_size=16, steps=1, rounds=1, device="cpu",
                        against_official=str(OFFICIAL), workloads=("pretrain", "tune", "eval"))
    assert results["baseline"].startswith("official STARS code")
    assert all(row["baseline"]["implementation"].startswith("official") for row in results["workloads"].values())
    assert not torch.distributed.is_initialized()  # the one-process group their NNCLR needed is closed again
