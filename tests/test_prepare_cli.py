"""`stars prepare`: synthetic npz + .skeleton export with the same settings, NTU on those files, option errors."""

from __future__ import annotations

import numpy as np

from stars.cli import main
from stars.data.npz import load_split


def test_synthetic_then_ntu60_through_the_cli(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["prepare", "synthetic", "--out", str(out), "--set", "num_subjects=4", "--set", "num_classes=20",
                 "--set", "max_frames=80", "--skeleton-files", "6"]) == 0
    train = load_split(out / "SYN_XSub.npz", "train")
    assert set(np.unique(train.y)) <= set(range(20)) and len(np.unique(train.meta["subject"])) == 2
    files = sorted((out / "skeletons").glob("*.skeleton"))
    assert len(files) == 6
    # the .skeleton files follow the --set options too: subjects 1..4 only
    actions = {int(f.stem[-3:]) for f in files}
    subjects = {int(f.stem[9:12]) for f in files}
    assert actions <= set(range(1, 21)) and subjects <= set(range(1, 5))
    assert main(["prepare", "ntu60", "--raw", str(out / "skeletons"), "--out", str(tmp_path / "ntu"),
                 "--workers", "1"]) == 0
    assert (tmp_path / "ntu" / "NTU60_XSub.npz").exists() and (tmp_path / "ntu" / "NTU60_XView.npz").exists()


def test_unknown_or_mistyped_prepare_option_names_it(tmp_path, capsys):
    assert main(["prepare", "synthetic", "--out", str(tmp_path), "--set", "num_subjectz=4"]) == 2
    assert "num_subjectz" in capsys.readouterr().err
    assert main(["prepare", "synthetic", "--out", str(tmp_path), "--set", "num_subjects=four"]) == 2
    assert "num_subjects" in capsys.readouterr().err


def test_real_dataset_needs_one_raw_folder(tmp_path, capsys):
    assert main(["prepare", "nw-ucla", "--out", str(tmp_path)]) == 2
    assert "--raw" in capsys.readouterr().err
