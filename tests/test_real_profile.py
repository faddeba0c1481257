"""The real profile: validation files made from training splits alone, its notebooks, its data checks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from stars.config import ConfigError
from stars.data.npz import DatasetError, load_split, save_dataset
from stars.data.real import default_datasets_root
from stars.data.splits import write_validation_dataset
from stars.experiments import REAL_NOTEBOOKS, REAL_PRETRAIN_EPOCHS, Experiment, get_profile
from stars.notebooks import NOTEBOOK_DIR, list_notebooks, profile_notebooks


def _file(path: Path, subjects_train: list[int], meta: bool = True) -> Path:
    rng = np.random.default_rng(0)
    n = len(subjects_train)
    x_train = rng.normal(size=(n, 8, 1, 20, 3)).astype(np.float32)
    x_test = rng.normal(size=(3, 8, 1, 20, 3)).astype(np.float32)
    y_train = np.arange(n) % 3
    extra = {"subject_train": np.array(subjects_train), "subject_test": np.array([2, 4, 6]),
             "view_train": np.arange(n) % 2 + 1, "view_test": np.ones(3, dtype=int)} if meta else None
    return save_dataset(path, x_train, y_train, x_test, np.array([0, 1, 2]), num_classes=3, layout="kinect_v1_20",
                        num_persons=1, class_names=["a", "b", "c"], name="toy", extra=extra)


def test_validation_file_holds_out_the_last_subject_of_the_training_split_and_never_reads_the_test_split(tmp_path):
    subjects = [1, 3, 5, 7, 1, 3, 5, 7, 7]
    source = _file(tmp_path / "toy.npz", subjects)
    out = write_validation_dataset(source, tmp_path / "toy_validation.npz", by="subject")
    train, val = load_split(out, "train"), load_split(out, "test")
    original = load_split(source, "train")
    held = np.array(subjects) == 7
    assert np.array_equal(val.x, original.x[held]) and np.array_equal(val.y, original.y[held])
    assert np.array_equal(train.x, original.x[~held]) and np.array_equal(train.y, original.y[~held])
    assert set(val.meta["subject"]) == {7} and 7 not in set(train.meta["subject"])
    assert np.array_equal(train.meta["view"], original.meta["view"][~held])
    assert train.layout == original.layout and train.class_names == ("a", "b", "c") and train.num_classes == 3
    # the test split of the source never enters the validation file
    test = load_split(source, "test")
    assert not any(np.array_equal(test.x[i], v) for i in range(len(test.x)) for v in np.concatenate([train.x, val.x]))
    by_view = load_split(write_validation_dataset(source, tmp_path / "v.npz", by="view"), "test")
    assert set(by_view.meta["view"]) == {2}


def test_validation_file_refuses_missing_metadata_and_a_single_group(tmp_path):
    with pytest.raises(DatasetError, match="no subject_train metadata"):
        write_validation_dataset(_file(tmp_path / "a.npz", [1, 1, 3], meta=False), tmp_path / "b.npz", by="subject")
    with pytest.raises(DatasetError, match="nothing is left to train on"):
        write_validation_dataset(_file(tmp_path / "c.npz", [5, 5, 5]), tmp_path / "d.npz", by="subject")


def test_make_tables_runs_each_profiles_notebooks(tmp_path, monkeypatch):
    monkeypatch.setenv("STARS_CACHE", str(tmp_path))
    every = [p.stem for p in list_notebooks()]
    assert "learning_curve" in every
    demo = [p.stem for p in profile_notebooks(get_profile("demo"))]
    smoke = [p.stem for p in profile_notebooks(get_profile("smoke"))]
    assert demo == smoke == [name for name in every if name != "learning_curve"]
    raw = tmp_path / "raw"
    (raw / "utd_mhad").mkdir(parents=True)
    (raw / "nw_ucla" / "all_sqe").mkdir(parents=True)
    real = get_profile("real", raw)
    assert [p.stem for p in profile_notebooks(real, NOTEBOOK_DIR)] == list(REAL_NOTEBOOKS)
    assert real.preset == "tiny" and f"run.epochs={REAL_PRETRAIN_EPOCHS}" in real.pretrain
    assert REAL_PRETRAIN_EPOCHS in real.budgets


def test_real_profile_names_a_missing_raw_folder_before_any_kernel_starts(tmp_path, monkeypatch, capsys):
    from stars.notebooks import main

    monkeypatch.setenv("STARS_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match="no raw dataset folder .*utd_mhad"):
        get_profile("real", tmp_path / "nowhere")
    assert main(["run-all", "--profile", "real", "--data", str(tmp_path / "nowhere")]) == 2
    assert "profile real: no raw dataset folder" in capsys.readouterr().err


def test_relative_data_reaches_the_kernels_relative_to_the_notebooks_folder(tmp_path, monkeypatch):
    import stars.notebooks as notebooks

    seen = {}
    monkeypatch.setattr(notebooks, "run_notebook", lambda source, output, parameters: seen.update(parameters))
    monkeypatch.setenv("STARS_CACHE", str(tmp_path / "cache"))
    raw = tmp_path / "raw"
    (raw / "utd_mhad").mkdir(parents=True)
    (raw / "nw_ucla" / "all_sqe").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    notebooks.run_all("real", "raw", only=["headline"], out_dir=str(tmp_path / "out"))
    assert not Path(seen["data"]).is_absolute()
    assert (NOTEBOOK_DIR / seen["data"]).resolve() == raw.resolve()


@pytest.mark.realdata
def test_real_profile_prepares_both_sets_and_their_validation_files(tmp_path, monkeypatch):
    monkeypatch.setenv("STARS_CACHE", str(tmp_path))
    exp = Experiment("test", "real", str(default_datasets_root()), results_dir=str(tmp_path / "out"))
    utd, utd_val = load_split(exp.dataset("xsub"), "train"), load_split(exp.dataset("xsub_validation"), "test")
    ucla, ucla_val = load_split(exp.dataset("xview"), "train"), load_split(exp.dataset("xview_validation"), "test")
    # UTD-MHAD trains on subjects 1, 3, 5, 7: subject 7 is held out; NW-UCLA on views 1 and 2: view 2
    assert sorted(set(utd.meta["subject"])) == [1, 3, 5, 7] and set(utd_val.meta["subject"]) == {7}
    assert sorted(set(ucla.meta["view"])) == [1, 2] and set(ucla_val.meta["view"]) == {2}
    fit = load_split(exp.dataset("xview_validation"), "train")
    assert len(fit) + len(ucla_val) == len(ucla) and set(fit.meta["view"]) == {1}
    assert utd.layout == ucla.layout  # the transfer notebook needs one layout (Kinect v1 order)
    assert exp.pretrain_epochs() == REAL_PRETRAIN_EPOCHS
    assert os.path.basename(exp.dataset("xsub")) == "UTD_MHAD_XSub.npz"
