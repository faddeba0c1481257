"""Notebook parameters: declared once in the parameters cell, parsed to their declared types, checked
before a kernel starts (runner) and inside the kernel (papermill); the paper's numbers in one file."""

from __future__ import annotations

import math
import re

import pytest
import yaml

from stars.config import ConfigError
from stars.experiments import Experiment, check_device, get_profile
from stars.notebooks import NOTEBOOK_DIR, check_parameters, list_notebooks, main
from stars.parameters import check_values, declared_parameters, notebook_parameters, parameters_cell
from stars.tables import PAPER_NUMBERS, paper_section, paper_value

CELL = '''profile: str = "demo"  # smoke | demo
seed: int = 0  # seed of every run
batch_sizes: list[int] = [16, 32]  # global batches
alphas: list[float] = [1.0, 0.2]
linear: bool = True
'''

COMMON = ["profile", "data", "device", "results_dir", "seed"]


def test_parameters_cell_declares_name_type_default_and_help():
    declared = declared_parameters(CELL)
    assert list(declared) == ["profile", "seed", "batch_sizes", "alphas", "linear"]
    assert declared["batch_sizes"].type == tuple[int, ...]
    assert declared["batch_sizes"].default == (16, 32)
    assert declared["alphas"].default == (1.0, 0.2)
    assert declared["seed"].help == "seed of every run"
    assert declared["linear"].help == ""


@pytest.mark.parametrize("cell, message", [
    ("profile = 'demo'\n", "line 1: declare each parameter as `name: type = value"),
    ("x: dict = {}\n", "annotation 'dict' is not str"),
    ("x: int = 1 + y\n", "the default must be a literal"),
    ("x: int = 'a'\n", "x: 'a' is not an integer"),
])
def test_a_parameters_cell_that_is_not_a_declaration_is_an_error(cell, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        declared_parameters(cell)


def test_values_from_the_command_line_get_the_declared_types():
    declared = declared_parameters(CELL)
    values = check_values(declared, {"batch_sizes": "[8,48]", "seed": "1", "alphas": "0.5", "linear": "false"})
    assert values == {"batch_sizes": [8, 48], "seed": 1, "alphas": [0.5], "linear": False}
    with pytest.raises(ConfigError, match=r"unknown notebook parameter\(s\) \['bogus'\]"):
        check_values(declared, {"bogus": 1})
    with pytest.raises(ConfigError, match="batch_sizes: 'abc' is not an integer"):
        check_values(declared, {"batch_sizes": "abc"})


def _kernel_namespace(cell: str, injected: str = "") -> dict:
    """What a kernel's globals hold after the parameters cell and papermill's injected cell."""
    namespace: dict = {}
    exec(compile(cell, "<parameters>", "exec"), namespace)
    history = ["", cell]
    if injected:
        source = "# Parameters\n" + injected
        exec(compile(source, "<injected>", "exec"), namespace)
        history.append(source)
    namespace["In"] = history
    return namespace


def test_in_the_kernel_injected_strings_are_parsed_and_unknown_names_refused():
    params = notebook_parameters(_kernel_namespace(CELL, 'batch_sizes = "[8, 48]"\nseed = "3"\n'))
    assert (params.batch_sizes, params.seed, params.profile) == ((8, 48), 3, "demo")
    with pytest.raises(ConfigError, match=r"unknown notebook parameter\(s\) \['bogus'\]"):
        notebook_parameters(_kernel_namespace(CELL, "bogus = 1\n"))
    with pytest.raises(ConfigError, match="alphas: 'x' is not a number"):
        notebook_parameters(_kernel_namespace(CELL, 'alphas = ["x"]\n'))


def test_every_notebook_declares_the_common_parameters_with_the_same_defaults():
    import nbformat
    from papermill.translators import PythonTranslator

    for source in list_notebooks():
        cell = parameters_cell(source)
        declared = declared_parameters(cell)
        # papermill reads the same declarations (plain `papermill -p` knows every parameter)
        assert [p.name for p in PythonTranslator.inspect(nbformat.v4.new_code_cell(cell))] == list(declared)
        assert list(declared)[:5] == COMMON, source.stem
        assert [declared[n].default for n in COMMON] == ["demo", "", "", "", 0], source.stem
        assert all(d.help for d in declared.values()), source.stem


def test_the_runner_checks_parameters_before_a_kernel_starts(capsys):
    source = NOTEBOOK_DIR / "table09_batch_size.py"
    assert check_parameters(source, {"batch_sizes": "[8,48]", "seed": "1"}) == {"batch_sizes": [8, 48], "seed": 1}
    assert main(["run", "table09_batch_size", "--profile", "smoke", "--set", "bogus=1"]) == 2
    assert "table09_batch_size: unknown notebook parameter(s) ['bogus']" in capsys.readouterr().err
    assert main(["run", "table09_batch_size", "--profile", "smoke", "--set", "batch_sizes=abc"]) == 2
    assert "batch_sizes: 'abc' is not an integer" in capsys.readouterr().err
    assert main(["run", "no_such_notebook", "--profile", "smoke"]) == 2
    assert "unknown notebook(s): no_such_notebook" in capsys.readouterr().err


def test_data_for_a_profile_that_ignores_it_and_cuda_without_cuda_are_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STARS_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match="profile 'demo' runs on the embedded synthetic dataset and does not read"):
        get_profile("demo", "/data/ntu")
    assert main(["run-all", "--profile", "smoke", "--data", "/data/ntu"]) == 2
    assert "does not read data='/data/ntu'" in capsys.readouterr().err
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device='cuda' but CUDA is not available"):
        check_device("cuda")
    with pytest.raises(ConfigError, match="device='gpu' is not a device"):
        check_device("gpu")
    assert check_device("") is None and check_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="CUDA is not available"):
        Experiment("x", "smoke", device="cuda:0", results_dir=str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="seed must be >= 0"):
        Experiment("x", "smoke", seed=-1, results_dir=str(tmp_path / "out"))


def test_seed_reaches_every_kind_of_run(tmp_path, monkeypatch):
    monkeypatch.setenv("STARS_CACHE", str(tmp_path))
    exp = Experiment("x", "smoke", seed=3, results_dir=str(tmp_path / "out"))
    assert "run.seed=3" in exp._overrides("pretrain", "mamp", {})
    assert "run.seed=3" in exp._overrides("tune", "stars", {})
    assert "seed=3" in exp._overrides("eval", "knn", {})
    assert "random_state=45" in exp._overrides("eval", "tsne", {})
    assert "seeds=[3,4]" in exp._overrides("eval", "semi", {})  # smoke: 2 semi-supervised runs
    default = Experiment("x", "smoke", results_dir=str(tmp_path / "out"))
    assert not any(item.startswith("seed=") for item in default._overrides("eval", "knn", {}))
    assert "run.seed=0" in default._overrides("pretrain", "mamp", {})


def _paper_leaves(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _paper_leaves(value)
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield float(node)


def test_paper_numbers_live_in_one_file_and_no_notebook_types_them():
    numbers = yaml.safe_load(PAPER_NUMBERS.read_text())
    assert paper_value("headline", "STARS", "knn_k1", "xview") == 88.6
    assert paper_value("table09_batch_size", 64) == 78.3
    assert paper_value("table01_semi_supervised", "STARS", "xsub", 0.01) == 69.1
    assert paper_value("table10_layer_decay", 0.2) == 83.7
    assert math.isnan(paper_value("headline", "STARS-3stage", "knn_k1", "xsub"))
    assert ["clapping", "rub two hands together"] in paper_section("figure3_confusion")["pairs"]
    with pytest.raises(ConfigError, match="no section 'table99'"):
        paper_value("table99", 1)
    values = {v for section in numbers.values() for v in _paper_leaves(section.get("values", {}))}
    assert len(values) > 40
    for source in list_notebooks():
        text = source.read_text()
        typed = [v for v in values if re.search(rf"(?<![\d.]){re.escape(f'{v:g}')}(?![\d])", text)
                 and v != int(v)]
        assert not typed, f"{source.name} types paper numbers {typed}; read them from {PAPER_NUMBERS.name}"
