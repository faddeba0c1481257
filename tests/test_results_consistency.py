"""The committed results of a profile are one consistent set, and the README block is generated from them."""

from __future__ import annotations

import json

import pytest

from stars.results import (
    COMMITTED_PROFILES,
    RESULTS_ROOT,
    consistency_problems,
    readme_block,
    readme_results,
    update_readme,
)

README = RESULTS_ROOT.parent / "README.md"


def _table(folder, name, commit="abc", **hashes):
    meta = {"title": name, "commit": commit,
            "datasets": {role: {"file": f"{role}.npz", "bytes": 10, "sha256": h} for role, h in hashes.items()}}
    (folder / f"{name}.json").write_text(json.dumps(meta))


def test_tables_from_different_dataset_files_or_commits_are_reported(tmp_path):
    _table(tmp_path, "a", xsub="1" * 64, xview="2" * 64)
    _table(tmp_path, "b", xsub="1" * 64)
    (tmp_path / "notes.json").write_text("{}")  # not a table
    assert consistency_problems(tmp_path) == []
    _table(tmp_path, "c", xsub="3" * 64)
    _table(tmp_path, "d", commit="def")
    problems = consistency_problems(tmp_path)
    assert problems[0].startswith("dataset role 'xsub' comes from 2 different files (111111111111: a, b; 333333333333: c)")
    assert problems[1] == "tables come from 2 commits (abc: a, b, c; def: d)"
    (tmp_path / "e.json").write_text(json.dumps({"title": "e", "commit": "abc"}))
    assert "e.json: no dataset fingerprints" in consistency_problems(tmp_path)[0]


def test_readme_block_is_rendered_from_the_tables(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "headline.md").write_text("# Headline\n\n| a |\n|---|\n| 1 |\n")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\noutro\n")
    block = readme_block("demo", ("headline", "missing"), root=tmp_path)
    assert block == "#### Headline\n\n| a |\n|---|\n| 1 |\n\n[demo/headline.md](results/demo/headline.md)"
    assert readme_results(readme) == "old"


def test_committed_readme_block_is_the_committed_tables():
    assert readme_results(README) == readme_block("demo"), (
        "README results block differs from results/demo/*.md: regenerate it with "
        "`python -c 'from stars.results import update_readme; update_readme()'`")


@pytest.mark.parametrize("profile", [p for p in COMMITTED_PROFILES if (RESULTS_ROOT / p).is_dir()])
def test_committed_results_of_a_profile_are_one_consistent_set(profile):
    metas = [json.loads(p.read_text()) for p in (RESULTS_ROOT / profile).glob("*.json")]
    tables = [m for m in metas if "title" in m]
    if tables and not any("datasets" in m for m in tables):
        pytest.skip(f"results/{profile} predates dataset fingerprints; `make tables` regenerates it")
    assert consistency_problems(RESULTS_ROOT / profile) == []


def test_update_readme_writes_the_block_atomically(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- results:start -->\n<!-- results:end -->\ny\n")
    assert update_readme(readme) is True
    assert readme_results(readme) == readme_block("demo")
    assert readme.read_text().startswith("x\n<!-- results:start -->\n") and readme.read_text().endswith("y\n")


def test_compare_results_reports_the_cells_that_differ(tmp_path, capsys):
    from stars.results import compare_results, main

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "t.csv").write_text("method,KNN\nMAMP,52.83\nSTARS,55.08\n")
    (b / "t.csv").write_text("method,KNN\nMAMP,52.83\nSTARS,54.83\n")
    (a / "u.csv").write_text("x,tuning time (s)\n1.0,3.5\n")
    (b / "u.csv").write_text("x,tuning time (s)\n1.0,4.5\n")
    table = compare_results(a, b).set_index("table")
    assert table.loc["t", "differing"] == 1 and table.loc["t", "max_abs_diff"] == pytest.approx(0.25)
    assert table.loc["t", "example"] == "row 1 / KNN: 55.08 vs 54.83"
    assert table.loc["u", "differing"] == 0 and table.loc["u", "cells"] == 1  # wall times are not compared
    assert main(["compare", str(a), str(b)]) == 1
    (b / "t.csv").write_text("method,KNN\nMAMP,52.83\nSTARS,55.08\n")
    assert main(["compare", str(a), str(b)]) == 0
    assert "| t | 2 | 0 | 0 |" in capsys.readouterr().out


def test_the_index_lists_committed_profiles_only(tmp_path):
    from stars.results import update_index

    for profile in ("demo", "smoke"):
        (tmp_path / profile).mkdir()
        (tmp_path / profile / "t.json").write_text(json.dumps({"title": f"T {profile}", "commit": "abc"}))
    (tmp_path / "demo" / "notebooks").mkdir()
    text = update_index(tmp_path).read_text()
    assert "| demo | T demo |" in text and "smoke" not in text.split("|---|")[-1]
