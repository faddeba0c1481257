"""Fault injection: kills, full and read-only disks, concurrent runs, edited inputs, hostile input files.

Kills are real (`SIGKILL` of a subprocess at a chosen point: mid-epoch, mid-checkpoint write, mid-cache
write); disk faults are injected (`os.replace` raising ENOSPC / EROFS). After each fault the run resumes
and must end with the weights, records and files of an uninterrupted run.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import stars.data.ntu as ntu
from stars.cli import main
from stars.data.ntu import prepare_ntu
from stars.data.synthetic import make_config, prepare_synthetic, write_skeleton_files
from stars.models.checkpoint import CheckpointError, load_checkpoint_file
from stars.rundir import LOCK_NAME, RunLock, RunLockedError

SMALL_DATA = {"num_subjects": 10, "num_classes": 10, "max_frames": 120}
# 3 tiny MAMP epochs of 4 steps each; checkpoint_every does not change the weights
TRAIN = ["--preset", "tiny", "--device", "cpu", "--set", "run.epochs=3", "--set", "run.batch_size=32"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "STARS_DEBUG": ""}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return str(prepare_synthetic(tmp_path_factory.mktemp("syn"), seed=1, **SMALL_DATA)["xsub"])


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """Final weights and metrics epochs of an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(["pretrain", "mamp", "--data", data, "--out", str(out), *TRAIN]) == 0
    return torch.load(out / "final.pt", weights_only=True)["model"]


def pretrain_args(data, out, *extra):
    return ["pretrain", "mamp", "--data", data, "--out", str(out), *TRAIN, *extra]


def assert_same_weights(path, reference):
    state = torch.load(path, weights_only=True)["model"]
    assert state.keys() == reference.keys()
    for key in reference:
        assert torch.equal(state[key], reference[key]), key


def metric_epochs(out):
    return [line.split(",")[0] for line in (Path(out) / "metrics.csv").read_text().splitlines()[1:]]


def orphans(folder):
    return sorted(p.name for p in Path(folder).rglob("*.tmp"))


def run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=ENV, capture_output=True, text=True,
                          timeout=120, **kwargs)


# a subprocess that SIGKILLs itself when `os.fsync` is called for the n-th time on a file named like `pattern`
KILL_IN_FSYNC = """
import os, signal, sys
seen = []
original = os.fsync
def fsync(fd):
    if {pattern!r} in os.readlink(f"/proc/self/fd/{{fd}}"):
        seen.append(fd)
        if len(seen) == {n}:
            os.kill(os.getpid(), signal.SIGKILL)
    return original(fd)
os.fsync = fsync
"""

# a subprocess that SIGKILLs itself at the n-th training step of MAMP pretraining
KILL_AT_STEP = """
import os, signal, sys
from stars.train import pretrain
calls = []
original = pretrain._mamp_step
def step(model, batch):
    calls.append(1)
    if len(calls) == {n}:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(model, batch)
pretrain._mamp_step = step
"""


# --- kills, then resume --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("checkpoint_every, rows_left", [(1, ["0"]), (2, ["0"])])
def test_kill_mid_epoch_then_resume_equals_uninterrupted(data, reference, tmp_path, checkpoint_every, rows_left):
    """Killed in the middle of epoch 1 (step 6 of 4-step epochs), with a checkpoint after epoch 0 or none yet:
    the records hold epoch 0 only, and the resumed run ends as the uninterrupted one, no epoch twice."""
    out = tmp_path / "run"
    args = pretrain_args(data, out, "--set", f"run.checkpoint_every={checkpoint_every}")
    done = run_python(KILL_AT_STEP.format(n=6) + f"from stars.cli import main\nsys.exit(main({args!r}))")
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert metric_epochs(out) == rows_left and not (out / "final.pt").exists()
    assert (out / "checkpoint-last.pt").exists() == (checkpoint_every == 1)
    assert main(pretrain_args(data, out)) == 2  # a run is there: --resume or --overwrite
    assert main(pretrain_args(data, out, "--resume")) == 0
    assert_same_weights(out / "final.pt", reference)
    assert metric_epochs(out) == ["0", "1", "2"]
    assert orphans(out) == []


@pytest.mark.slow
def test_kill_mid_checkpoint_write_keeps_the_previous_checkpoint(data, reference, tmp_path):
    """Killed after writing, before renaming, the second checkpoint: the first stays valid, the half-done
    file is an orphan that the resumed run deletes, and the result equals the uninterrupted run."""
    out = tmp_path / "run"
    args = pretrain_args(data, out, "--set", "run.checkpoint_every=1")
    done = run_python(KILL_IN_FSYNC.format(pattern=".checkpoint-last.pt.", n=2)
                      + f"from stars.cli import main\nsys.exit(main({args!r}))")
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert len(orphans(out)) == 1
    assert load_checkpoint_file(out / "checkpoint-last.pt")["epoch"] == 1
    (out / "head").mkdir()  # a part of a run (two-step head phase) killed while writing: also cleaned
    (out / "head" / ".checkpoint-last.pt.1-abcd.tmp").write_bytes(b"half")
    assert main(pretrain_args(data, out, "--resume")) == 0
    assert orphans(out) == []
    assert_same_weights(out / "final.pt", reference)
    assert metric_epochs(out) == ["0", "1", "2"]
    resumes = json.loads((out / "run.json").read_text())["resumes"]
    assert [r["epoch"] for r in resumes] == [1] and resumes[0]["changes"] == {}


@pytest.fixture
def raw(tmp_path):
    folder = tmp_path / "raw"
    write_skeleton_files(folder, n=8, seed=0, cfg=make_config(0, max_frames=40))
    return folder


def arrays(path):
    with np.load(path) as npz:
        return {key: npz[key] for key in npz.files}


def assert_same_npz(a, b):
    a, b = arrays(a), arrays(b)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.slow
def test_kill_mid_cache_write_then_prepare_reuses_only_finished_shards(raw, tmp_path):
    clean = prepare_ntu(raw, tmp_path / "clean", workers=1, progress=False)
    out = tmp_path / "out"
    code = KILL_IN_FSYNC.format(pattern=".shard_", n=2) + textwrap.dedent(f"""
        from stars.data.ntu import prepare_ntu
        prepare_ntu({str(raw)!r}, {str(out)!r}, workers=1, progress=False, shard_size=3)
    """)
    done = run_python(code)
    assert done.returncode == -signal.SIGKILL, done.stderr
    cache = next((out / "cache").iterdir())
    assert [p.name for p in cache.glob("shard_*")] == ["shard_000000.npz"] and len(orphans(cache)) == 1
    report = prepare_ntu(raw, out, workers=1, progress=False, shard_size=3)
    assert (report.num_cached, report.num_parsed) == (3, clean.num_files - 3)
    assert orphans(out) == []
    for name in clean.outputs:
        assert_same_npz(clean.outputs[name], report.outputs[name])


# --- full and read-only disks ----------------------------------------------------------------------
def failing_replace(monkeypatch, name: str, code: int, on_call: int = 1):
    """`os.replace` raises OSError(code) from its `on_call`-th call on whose target is named `name`."""
    original, calls = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            calls.append(dst)
            if len(calls) >= on_call:
                raise OSError(code, os.strerror(code), str(src))
        return original(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return calls


@pytest.mark.slow
def test_full_disk_during_a_checkpoint_keeps_the_previous_one(data, reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    failing_replace(monkeypatch, "checkpoint-last.pt", errno.ENOSPC, on_call=2)
    assert main(pretrain_args(data, out, "--set", "run.checkpoint_every=1")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint-last.pt: no space left on the device" in err[0], err
    assert load_checkpoint_file(out / "checkpoint-last.pt")["epoch"] == 1
    assert orphans(out) == []
    monkeypatch.undo()
    assert main(pretrain_args(data, out, "--resume")) == 0
    assert_same_weights(out / "final.pt", reference)
    assert metric_epochs(out) == ["0", "1", "2"]


def test_read_only_disk_during_a_cache_write_keeps_the_finished_shards(raw, tmp_path, monkeypatch):
    clean = prepare_ntu(raw, tmp_path / "clean", workers=1, progress=False)
    out = tmp_path / "out"
    failing_replace(monkeypatch, "shard_000001.npz", errno.EROFS)
    with pytest.raises(OSError) as caught:
        prepare_ntu(raw, out, workers=1, progress=False, shard_size=3)
    assert caught.value.errno == errno.EROFS and caught.value.filename.endswith("shard_000001.npz")
    monkeypatch.undo()
    assert orphans(out) == []
    report = prepare_ntu(raw, out, workers=1, progress=False, shard_size=3)
    assert (report.num_cached, report.num_parsed) == (3, clean.num_files - 3)
    for name in clean.outputs:
        assert_same_npz(clean.outputs[name], report.outputs[name])


def test_full_disk_in_the_notebook_cache_leaves_no_finished_looking_run(tmp_path, monkeypatch):
    from stars.experiments import Experiment

    monkeypatch.setenv("STARS_CACHE", str(tmp_path / "cache"))
    experiment = Experiment("faults", profile="smoke", results_dir=str(tmp_path / "results"), device="cpu")
    failing_replace(monkeypatch, "final.pt", errno.ENOSPC)
    with pytest.raises(OSError, match="No space left"):
        experiment.pretrain("mamp")
    run_dir = next((tmp_path / "cache" / "smoke").glob("pretrain-mamp-*"))
    assert not (run_dir / "final.pt").exists() and orphans(run_dir) == []
    monkeypatch.undo()
    monkeypatch.setenv("STARS_CACHE", str(tmp_path / "cache"))
    final = experiment.pretrain("mamp")  # resumes from the checkpoint, writes final.pt
    assert Path(final).parent == run_dir and load_checkpoint_file(final)["epoch"] == 1


# --- concurrent runs and locks ---------------------------------------------------------------------
@pytest.mark.slow
def test_two_runs_on_one_folder_and_a_dead_holder(data, reference, tmp_path, capsys):
    """A live run holds the folder: a second one fails at once, naming it. Killed, its lock is taken over."""
    out = tmp_path / "run"
    code = textwrap.dedent("""
        import sys, time
        from stars.train import pretrain
        original = pretrain._mamp_step
        def step(model, batch):
            print("training", flush=True)
            time.sleep(60)
        pretrain._mamp_step = step
        from stars.cli import main
        sys.exit(main({args!r}))
    """).format(args=pretrain_args(data, out))
    holder = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert "training" in iter(lambda: holder.stdout.readline().strip(), "")  # the holder is mid-epoch
        assert main(pretrain_args(data, out, "--resume")) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"in use by pid {holder.pid}" in err[0], err
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert main(pretrain_args(data, out, "--resume")) == 0
    assert_same_weights(out / "final.pt", reference)
    assert metric_epochs(out) == ["0", "1", "2"]


def test_lock_is_exclusive_across_processes_reentrant_within_one_and_freed_by_death(data, tmp_path, capsys):
    folder = tmp_path / "f"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from stars.rundir import RunLock; import time; RunLock({str(folder)!r}).acquire(); "
         "print('locked', flush=True); time.sleep(60)"], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            RunLock(folder).acquire()
        import numpy as np

        from stars.data.npz import save_dataset

        data = str(save_dataset(tmp_path / "x.npz", np.ones((4, 8, 150)), np.arange(4) % 2, np.ones((2, 8, 150)),
                                np.arange(2), num_classes=2))  # a valid file: tune checks --data before the lock
        for argv in (["prepare", "ntu60", "--raw", str(tmp_path), "--out", str(folder)],
                     ["eval", "knn", "--data", data, "--out", str(folder), "--resume"],
                     ["tune", "nnclr", "--data", data, "--out", str(folder), "--resume"]):
            assert main(argv) == 2
            assert f"is in use by pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (folder / LOCK_NAME).exists()  # left behind by the dead process, and taken over:
    with RunLock(folder), RunLock(folder):
        assert str(os.getpid()) in (folder / LOCK_NAME).read_text()
    start = time.perf_counter()
    with RunLock(folder, wait=True):
        assert time.perf_counter() - start < 5


# --- run folders: never overwritten, never mixed ---------------------------------------------------
@pytest.fixture(scope="module")
def stage1(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1") / "mamp"
    assert main(["pretrain", "mamp", "--data", data, "--out", str(out), "--preset", "tiny", "--device", "cpu",
                 "--set", "run.epochs=1", "--set", "run.batch_size=32"]) == 0
    return out


def snapshot(folder):
    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file() and p.name != LOCK_NAME}


def test_a_run_folder_is_never_overwritten_and_never_the_folder_of_an_input(data, stage1, tmp_path, capsys):
    before = snapshot(stage1)
    init = str(stage1 / "final.pt")
    attempts = [
        (pretrain_args(data, stage1), "--resume to continue it, --overwrite to replace it"),
        (["tune", "stars", "--init", init, "--data", data, "--out", str(stage1), "--preset", "tiny"],
         f"--init {init} lies inside the output folder"),
        (["tune", "stars", "--init", init, "--data", data, "--out", str(stage1), "--preset", "tiny", "--overwrite"],
         f"--init {init} lies inside the output folder"),
        (["eval", "knn", "--ckpt", init, "--data", data, "--out", str(stage1), "--preset", "tiny"],
         "lies inside the output folder"),
        (["eval", "knn", "--data", data, "--out", str(stage1), "--preset", "tiny"], "already holds a run"),
        (["features", "--ckpt", init, "--data", data, "--out", str(stage1 / "run.npy")],
         "its provenance file run.json would replace a run's records"),
    ]
    for argv, message in attempts:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    assert snapshot(stage1) == before


def test_overwrite_replaces_a_run_and_keeps_other_files(data, tmp_path):
    out = tmp_path / "run"
    args = ["pretrain", "mae", "--data", data, "--out", str(out), "--preset", "tiny", "--device", "cpu",
            "--set", "run.epochs=1", "--set", "run.batch_size=32"]
    assert main(args) == 0
    (out / "notes.md").write_text("mine")
    (out / "knn").mkdir()
    (out / "knn" / "metrics.json").write_text("{}")  # an evaluation kept inside: another run, kept
    (out / "head").mkdir()
    (out / "head" / "metrics.csv").write_text("epoch\n0\n")  # a part of the run (two-step head phase)
    (out / "checkpoint-last.pt").unlink()
    assert main([*args, "--overwrite"]) == 0
    assert (out / "notes.md").read_text() == "mine" and (out / "knn" / "metrics.json").exists()
    assert not (out / "head").exists() and (out / "checkpoint-last.pt").exists()
    assert metric_epochs(out) == ["0"]


def test_a_folder_holds_a_run_when_it_or_its_parts_hold_run_files(tmp_path):
    from stars.rundir import holds_run

    (tmp_path / "other" / "run").mkdir(parents=True)
    (tmp_path / "other" / "run" / "final.pt").write_bytes(b"")
    assert not holds_run(tmp_path / "other")  # a folder of runs is not a run
    semi = tmp_path / "semi" / "fraction_0.1" / "seed_0"
    semi.mkdir(parents=True)
    (semi / "metrics.csv").write_text("epoch\n")
    assert holds_run(tmp_path / "semi")  # a killed semi-supervised evaluation


def test_prepare_refuses_another_preparation_in_its_folder(raw, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["prepare", "ntu60", "--raw", str(raw), "--out", str(out), "--workers", "1"]) == 0
    other = tmp_path / "raw2"
    other.mkdir()
    for path in sorted(raw.iterdir())[:5]:
        (other / path.name).write_bytes(path.read_bytes())
    assert main(["prepare", "ntu60", "--raw", str(other), "--out", str(out), "--workers", "1"]) == 2
    assert "holds the output of another preparation" in capsys.readouterr().err
    assert main(["prepare", "ntu60", "--raw", str(other), "--out", str(out), "--workers", "1", "--overwrite"]) == 0
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["num_files"] == 5 and summary["num_cached"] == 5  # same bytes: the cache is reused


# --- caches keyed by content -----------------------------------------------------------------------
def test_an_edited_raw_file_of_the_same_size_is_parsed_again(raw, tmp_path):
    out = tmp_path / "out"
    first = prepare_ntu(raw, out, workers=1, progress=False)
    target = sorted(raw.iterdir())[0]
    text = target.read_text()
    lines = text.split("\n")
    first_joint = lines[4].split(" ")
    first_joint[0] = first_joint[0][:-1] + ("1" if first_joint[0][-1] != "1" else "2")  # same length
    lines[4] = " ".join(first_joint)
    edited = "\n".join(lines)
    assert len(edited) == len(text) and edited != text
    target.write_text(edited)
    second = prepare_ntu(raw, out, workers=1, progress=False)
    assert (second.num_parsed, second.num_cached) == (1, first.num_files - 1)
    fresh = prepare_ntu(raw, tmp_path / "fresh", workers=1, progress=False)
    for name in fresh.outputs:
        assert_same_npz(fresh.outputs[name], second.outputs[name])


def test_a_stray_temporary_shard_does_not_break_the_cache(raw, tmp_path):
    out = tmp_path / "out"
    first = prepare_ntu(raw, out, workers=1, progress=False)
    cache = next((out / "cache").iterdir())
    (cache / "shard_000001.tmp.npz").write_bytes(b"half a shard")  # the old naming of a killed writer
    (cache / ".shard_000001.npz.123-abcd.tmp").write_bytes(b"half a shard")
    (cache / "shard_000002.npz").write_bytes(b"not an npz")
    second = prepare_ntu(raw, out, workers=1, progress=False)
    assert (second.num_cached, second.num_parsed) == (first.num_files, 0)
    assert not (cache / ".shard_000001.npz.123-abcd.tmp").exists()


# --- one bad raw file never stops a prepare --------------------------------------------------------
def test_hostile_raw_files_are_skipped_and_reported_by_name(raw, tmp_path, monkeypatch, capsys):
    good = sorted(raw.iterdir())
    lines = good[0].read_text().split("\n")
    joint = lines[4].split(" ")
    joint[0] = "1e39"  # finite in float64, overflows float32
    lines[4] = " ".join(joint)
    (raw / "S001C001P009R001A001.skeleton").write_text("\n".join(lines))
    with open(os.fsencode(raw) + b"/S001C001P001R001A\xff01.skeleton", "wb") as handle:  # not UTF-8
        handle.write(good[1].read_bytes())
    (raw / "S001C001P009R001A002.skeleton").symlink_to(raw / "nowhere")
    os.mkfifo(raw / "S001C001P009R001A004.skeleton")  # opening it would block forever
    unreadable = raw / "S001C001P009R001A003.skeleton"
    unreadable.write_bytes(good[2].read_bytes())
    unreadable.chmod(0)
    if os.geteuid() == 0:  # root reads anything: refuse the read as a non-root user would see it
        original = ntu.file_digest

        def digest(path):
            if Path(path) == unreadable:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return original(path)

        monkeypatch.setattr(ntu, "file_digest", digest)
    out = tmp_path / "out"
    assert main(["prepare", "ntu60", "--raw", str(raw), "--out", str(out), "--workers", "1"]) == 0
    summary = json.loads((out / "prepare_summary.json").read_text())
    skipped = {Path(s["file"]).name: (s["reason"], s["detail"]) for s in summary["skipped"]}
    assert skipped["S001C001P009R001A001.skeleton"][0] == "non-finite"
    assert "'1e39' overflows float32" in skipped["S001C001P009R001A001.skeleton"][1]
    assert skipped["S001C001P001R001A\\xff01.skeleton"][0] == "bad-name"
    assert skipped["S001C001P009R001A002.skeleton"] == ("unreadable", "dangling symbolic link")
    assert skipped["S001C001P009R001A004.skeleton"] == ("unreadable", "not a regular file")
    assert skipped["S001C001P009R001A003.skeleton"] == ("unreadable", "cannot read the file (Permission denied)")
    assert summary["num_ok"] == len(good)
    report = (out / "prepare_report.csv").read_text()
    assert "S001C001P001R001A\\xff01.skeleton" in report and "overflows float32" in report


# --- resume: validated before anything is written, records match the weights ----------------------
def test_a_changed_resume_is_refused_before_anything_is_written(data, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["pretrain", "mamp", "--data", data, "--out", str(out), "--preset", "tiny", "--device", "cpu",
            "--set", "run.batch_size=32", "--set", "run.epochs=1"]
    assert main(base) == 0
    before = snapshot(out)
    other = prepare_synthetic(tmp_path / "other", seed=2, **SMALL_DATA)["xsub"]
    attempts = [
        ([*base, "--resume", "--set", "run.batch_size=16"], "run.batch_size: 32 -> 16"),
        ([*base, "--resume", "--set", "optim.lr=0.002"], "optim.lr: 0.001 -> 0.002"),
        ([*base, "--resume", "--set", "encoder.embed_dim=64"], "encoder.embed_dim: 32 -> 64"),
        ([*[a if a != data else str(other) for a in base], "--resume"], "data.dataset_sha256"),
    ]
    for argv, message in attempts:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and "--allow-changed" in err[0], err
        assert snapshot(out) == before
    assert main([*base, "--resume", "--allow-changed", "--set", "run.epochs=2"]) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["resumes"][-1]["epoch"] == 1 and info["resumes"][-1]["changes"] == {"run.epochs": [1, 2]}
    assert metric_epochs(out) == ["0", "1"]


# --- non-finite checkpoints ------------------------------------------------------------------------
def test_a_checkpoint_with_nan_weights_is_refused_naming_the_tensor(stage1, data, tmp_path, capsys):
    state = torch.load(stage1 / "final.pt", weights_only=True)
    state["model"]["blocks.1.mlp.fc2.bias"][3] = float("nan")
    bad = tmp_path / "nan.pt"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match=r"tensor model\.blocks\.1\.mlp\.fc2\.bias holds NaN or inf"):
        load_checkpoint_file(bad)
    assert main(["eval", "knn", "--ckpt", str(bad), "--data", data, "--out", str(tmp_path / "knn")]) == 2
    assert "model.blocks.1.mlp.fc2.bias holds NaN or inf" in capsys.readouterr().err
    assert not (tmp_path / "knn" / "metrics.json").exists()


def test_tune_resume_from_another_init_is_refused(data, stage1, tmp_path, capsys):
    out = tmp_path / "stars"
    base = ["tune", "stars", "--data", data, "--out", str(out), "--preset", "tiny", "--device", "cpu",
            "--set", "run.epochs=1", "--set", "run.batch_size=32", "--set", "queue_size=64"]
    assert main([*base, "--init", str(stage1 / "final.pt")]) == 0
    before = snapshot(out)
    state = torch.load(stage1 / "final.pt", weights_only=True)
    state["model"]["norm.weight"] += 0.01
    other = tmp_path / "other.pt"
    torch.save(state, other)
    assert main([*base, "--init", str(other), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "data.init_sha256" in err and "--allow-changed" in err
    assert snapshot(out) == before


def test_fields_of_another_code_version_are_not_compared_on_resume():
    from stars.train.engine import config_changes

    old = {"optim": {"lr": 1e-3}, "run": {"epochs": 2, "progress": True}}
    new = {"optim": {"lr": 2e-3, "new_field": 1}, "run": {"epochs": 2, "progress": False}}
    assert config_changes(old, new) == {"optim.lr": [1e-3, 2e-3]}


def test_notebook_data_is_made_again_from_another_raw_folder_or_options(tmp_path):
    from stars.experiments import prepare_once

    out, made = tmp_path / "data", []
    target = out / "x.npz"

    def make():
        made.append(1)
        target.write_text("data")

    for stamp, outputs_missing, expected in [({"raw": "A"}, False, 1), ({"raw": "A"}, False, 1),
                                             ({"raw": "B"}, False, 2), ({"raw": "B"}, True, 3)]:
        if outputs_missing:
            target.unlink()
        prepare_once(out, stamp, [target], make)
        assert len(made) == expected, stamp
