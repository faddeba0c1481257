"""Every class of user error through the real command line: one line on stderr naming the file, key or
value and what to do, exit status 2, and the traceback only with --debug or STARS_DEBUG=1."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stars.cli import main
from stars.data.synthetic import prepare_synthetic
from stars.models.checkpoint import CheckpointError

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "STARS_DEBUG": ""}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return str(prepare_synthetic(tmp_path_factory.mktemp("syn"), seed=1, num_subjects=10, num_classes=10,
                                 max_frames=120)["xsub"])


def npz_file(path: Path, x_train=None, y_train=None, **extra) -> str:
    """A dataset file with 8 train and 4 test sequences of 10 frames (NTU-25 layout, 2 persons)."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.normal(size=(8, 10, 150)).astype(np.float32) if x_train is None else x_train,
        "y_train": np.arange(8) % 2 if y_train is None else y_train,
        "x_test": rng.normal(size=(4, 10, 150)).astype(np.float32),
        "y_test": np.arange(4) % 2,
        **extra,
    }
    np.savez(path, **arrays)
    return str(path)


def pretrain(data, out, *extra):
    return ["pretrain", "mamp", "--data", str(data), "--out", str(out), "--preset", "tiny", "--device", "cpu",
            "--set", "run.epochs=1", "--set", "run.batch_size=4", *extra]


def case_unknown_device(tmp_path, data):
    return pretrain(data, tmp_path / "o", "--device", "gpu"), "unknown device 'gpu'"


def case_missing_gpu_index(tmp_path, data, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    return pretrain(data, tmp_path / "o", "--device", "cuda:3"), "'cuda:3' asked for but this machine has 1 CUDA"


def case_infinite_lr(tmp_path, data):
    return pretrain(data, tmp_path / "o", "--set", "optim.lr=inf"), "optim.lr must be a finite number >= 0, got inf"


def case_non_finite_loss(tmp_path, data):
    return (pretrain(data, tmp_path / "o", "--set", "optim.lr=1e30", "--set", "run.batch_size=32"),
            "the loss became non-finite in epoch 0; no checkpoint was written")


def case_string_labels(tmp_path, data):
    path = npz_file(tmp_path / "s.npz", y_train=np.array(["walk", "run"] * 4))
    return pretrain(path, tmp_path / "o"), "y_train holds <U4 values; labels must be integers"


def case_label_above_declared_classes(tmp_path, data):
    path = npz_file(tmp_path / "l.npz", y_train=np.array([0, 1, 0, 1, 0, 1, 0, 5]), num_classes=np.array(2))
    return pretrain(path, tmp_path / "o"), "y_train[7] = 5 is outside [0, 2)"


def case_npy_as_data(tmp_path, data):
    np.save(tmp_path / "x.npy", np.zeros((3, 4)))
    return pretrain(tmp_path / "x.npy", tmp_path / "o"), "x.npy: a single array"


def case_zero_length_sequences(tmp_path, data):
    x = np.random.default_rng(0).normal(size=(8, 10, 150)).astype(np.float32)
    x[[2, 5]] = 0
    return pretrain(npz_file(tmp_path / "z.npz", x_train=x), tmp_path / "o"), "2 samples have no non-zero frame"


def case_bench_no_steps(tmp_path, data):
    return ["bench", "--steps", "0", "--preset", "tiny", "--device", "cpu"], "need --steps >= 1"


def case_unreadable_init_in_three_stage(tmp_path, data):
    init = tmp_path / "init.pt"
    init.write_bytes(b"PK\x03\x04 not really a checkpoint")
    return (["tune", "stars-3stage", "--init", str(init), "--data", data, "--out", str(tmp_path / "o"),
             "--preset", "tiny", "--device", "cpu"], f"{init}: not a readable torch checkpoint")


def case_read_only_output(tmp_path, data, monkeypatch):
    out = tmp_path / "o"
    original = os.open

    def refuse(path, *args, **kwargs):
        if str(path).startswith(str(out)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    return pretrain(data, out), "the file system is read-only; choose a writable output folder"


def case_full_output_disk(tmp_path, data, monkeypatch):
    out = tmp_path / "o"
    original = os.replace

    def full(src, dst, *args, **kwargs):
        if Path(dst).parent == out:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        return original(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full)
    return pretrain(data, out, "--set", "run.batch_size=32"), "no space left on the device"


CASES = [case_unknown_device, case_missing_gpu_index, case_infinite_lr, case_non_finite_loss, case_string_labels,
         case_label_above_declared_classes, case_npy_as_data, case_zero_length_sequences, case_bench_no_steps,
         case_unreadable_init_in_three_stage, case_read_only_output, case_full_output_disk]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_user_errors_are_one_line_and_exit_status_2(case, data, tmp_path, monkeypatch, capsys):
    args = (tmp_path, data, monkeypatch) if "monkeypatch" in case.__code__.co_varnames else (tmp_path, data)
    argv, message = case(*args)
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, err


def test_debug_shows_the_traceback(tmp_path, data, monkeypatch):
    argv, _ = case_unreadable_init_in_three_stage(tmp_path, data)
    with pytest.raises(CheckpointError):
        main([*argv, "--debug"])
    monkeypatch.setenv("STARS_DEBUG", "1")
    with pytest.raises(CheckpointError):
        main(argv)


@pytest.mark.slow
def test_file_size_limit_in_a_real_process(tmp_path, data):
    """`ulimit -f` below a checkpoint's size: the write fails with EFBIG, reported in one line, exit 2,
    and no partial file is left behind."""
    out = tmp_path / "o"
    limit = 64 * 1024

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run([sys.executable, "-m", "stars", *pretrain(data, out, "--set", "run.batch_size=32")],
                          env=ENV, capture_output=True, text=True, timeout=120, preexec_fn=small_files)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "checkpoint-last.pt: the file size limit was reached" in lines[0], lines
    assert sorted(p.name for p in out.glob("*.tmp")) == []


def test_edge_inputs_are_explicit(tmp_path):
    """One-frame sequences warn; k above the training set size is reported as the k used."""
    from stars.data.feeder import DeviceSplit
    from stars.data.npz import load_split
    from stars.eval.knn import knn_majority

    x = np.zeros((8, 10, 150), dtype=np.float32)
    x[:, :4] = np.random.default_rng(0).normal(size=(8, 4, 150))
    x[3, 1:] = 0
    split = load_split(npz_file(tmp_path / "one.npz", x_train=x), "train")
    with pytest.warns(UserWarning, match=r"1 samples have a single frame, so no motion to learn from, e.g. \[3\]"):
        DeviceSplit.from_split(split, "cpu")
    features = torch.eye(3)
    with pytest.warns(UserWarning, match="k=5 exceeds the 3 training samples"):
        outcome = knn_majority(features, torch.tensor([0, 1, 2]), features, torch.tensor([0, 1, 2]), ks=(1, 5))
    assert outcome.k_used == {1: 1, 5: 3} and outcome.top1[1] == 100.0
