"""The conda and pip routes name the same packages; the CLI is wired; CI runs the README's command."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from stars.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch", "pytorch-cuda": None, "python": None}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_names = {_name(s) for s in project["dependencies"]}
    pip_names |= {_name(s) for s in project["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            name = CONDA_NAMES.get(_name(dep), _name(dep))
            if name:
                conda_names.add(name)
    assert conda_names == pip_names


def test_required_packages_are_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(s) for s in project["dependencies"]}
    required = {"torch", "numpy", "scikit-learn", "seaborn", "pandas", "jupyterlab", "papermill", "nbconvert",
                "jupytext", "ipykernel", "tqdm", "pyyaml"}
    assert required <= names


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make setup" in readme and "make test" in readme
    assert "make setup" in ci and "make test" in ci


def test_cli_lists_every_subcommand():
    text = build_parser().format_help()
    for command in ("prepare", "pretrain", "tune", "eval", "features", "flops", "bench"):
        assert command in text


def test_cli_rejects_unknown_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", "mamp", "--data", "x.npz", "--out", "o", "--bogus", "1"])
    assert exc.value.code == 2
    assert "--bogus" in capsys.readouterr().err


def test_cli_rejects_mistyped_override(tmp_path, capsys):
    import numpy as np

    from stars.data.npz import save_dataset

    data = save_dataset(tmp_path / "x.npz", np.ones((4, 8, 150)), np.arange(4) % 2, np.ones((2, 8, 150)),
                        np.arange(2), num_classes=2)
    code = main(["pretrain", "mamp", "--data", str(data), "--out", str(tmp_path / "o"),
                 "--set", "optim.lrr=1"])
    assert code == 2
    assert "optim.lrr" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "stars", "--help"], capture_output=True, text=True, check=True)
    assert "pretrain" in out.stdout


def test_provenance_commit_ignores_rewritten_results_but_not_code(tmp_path, monkeypatch):
    import stars.io

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.md").write_text("a\n")
    (tmp_path / "code.py").write_text("a = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "x")
    monkeypatch.setattr(stars.io, "REPO_ROOT", tmp_path)
    clean = stars.io.git_commit()
    assert len(clean) == 12 and not clean.endswith("-dirty")
    (tmp_path / "results" / "table.md").write_text("b\n")  # what `make tables` does while it runs
    assert stars.io.git_commit() == clean
    (tmp_path / "code.py").write_text("a = 2\n")
    assert stars.io.git_commit() == clean + "-dirty"
