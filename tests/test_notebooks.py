"""The table and figure notebooks: every one runs in the smoke profile through papermill and writes its
table (and figure); shared runs are trained once; bad parameters fail with their name; a failing
notebook is reported by name while the others still run."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from stars.config import ConfigError
from stars.notebooks import NOTEBOOK_DIR, list_notebooks, run_all, run_notebook
from stars.results import consistency_problems

FIGURES = {"figure2_tsne", "figure3_confusion"}
EXPECTED = {
    "headline", "table01_semi_supervised", "table03_dino_local_views", "table04_mamp_plus_nnclr",
    "table05_nnclr_from_scratch", "table07_mae_vs_mamp_knn", "table08_mae_vs_mamp_fewshot",
    "table09_batch_size", "table10_layer_decay", "table11_params_macs", "appendix_a_three_stage",
    "tuning_strategies", "figure2_tsne", "figure3_confusion", "transfer_ntu60_to_pku", "learning_curve",
}
SMOKE = EXPECTED - {"learning_curve"}  # what `make tables PROFILE=smoke` runs (stars.notebooks.PROFILE_ONLY)


@pytest.fixture(scope="session")
def stars_cache(tmp_path_factory):
    """STARS_CACHE (shared by every notebook of the session) and JUPYTER_PLATFORM_DIRS for the kernels.

    The kernels run one OpenMP thread: the smoke runs are tiny, and on a busy 2-core machine two
    spinning threads per kernel made them up to 8x slower (pretraining 17.7 s vs 2.2 s)."""
    cache = tmp_path_factory.mktemp("stars-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STARS_CACHE", str(cache))
        patch.setenv("JUPYTER_PLATFORM_DIRS", "1")
        patch.setenv("MPLBACKEND", "Agg")
        patch.setenv("OMP_NUM_THREADS", "1")
        yield cache


@pytest.fixture(scope="module")
def smoke_run(stars_cache, tmp_path_factory):
    """Every notebook in the smoke profile, once, two at a time (as `make tables PROFILE=smoke JOBS=2`):
    (exit status, log, results folder, cache)."""
    out = tmp_path_factory.mktemp("smoke-results")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        status = run_all(profile="smoke", data=None, out_dir=str(out), jobs=2)  # two kernels, one thread each
    (out / "run_all.log").write_text(buffer.getvalue())
    return status, buffer.getvalue(), out, stars_cache


def test_notebook_set_is_complete():
    assert {p.stem for p in list_notebooks()} == EXPECTED


@pytest.mark.slow
def test_every_notebook_runs_in_smoke(smoke_run):
    status, log, _, _ = smoke_run
    assert status == 0, log
    assert f"{len(SMOKE)}/{len(SMOKE)} notebooks ran" in log


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMOKE))
def test_notebook_writes_its_results(smoke_run, name):
    _, log, out, _ = smoke_run
    assert (out / "notebooks" / f"{name}.ipynb").exists(), log
    table = pd.read_csv(out / f"{name}.csv")
    assert len(table) >= 1
    markdown = (out / f"{name}.md").read_text()
    assert markdown.startswith("# ") and "|---|" in markdown
    assert (out / f"{name}.config.yaml").exists()
    if name != "table11_params_macs":  # data-dependent results carry the demonstration label
        assert "Profile `smoke`: demonstration numbers" in markdown
    for column in table.columns:  # every accuracy of ours and of the paper is a percentage
        if name != "table11_params_macs" and ("KNN" in column or "paper" in column or "shot" in column or column in ("linear", "finetune")) \
                and table[column].dtype.kind == "f":
            values = table[column].dropna()
            assert ((values >= 0) & (values <= 100)).all(), (name, column, values.tolist())
    if name in FIGURES:
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 5000


@pytest.mark.slow
def test_paper_numbers_stand_next_to_ours(smoke_run):
    _, _, out, _ = smoke_run
    batch = pd.read_csv(out / "table09_batch_size.csv")
    assert batch["batch size"].tolist() == [16, 32, 64, 128]
    assert batch["paper"].tolist() == [76.7, 78.9, 78.3, 79.9]
    knn = pd.read_csv(out / "table07_mae_vs_mamp_knn.csv").set_index("method")
    assert knn.loc[["MAMP", "STARS", "MAE", "STARS-MAE"], "XSub paper"].tolist() == [63.1, 79.9, 44.1, 53.5]
    assert knn.loc[["MAMP", "STARS", "MAE", "STARS-MAE"], "XView paper"].tolist() == [80.3, 88.6, 43.7, 55.2]
    semi = pd.read_csv(out / "table01_semi_supervised.csv")
    stars_xsub = semi[(semi["method"] == "STARS") & (semi["dataset"] == "XSub")].iloc[0]
    assert (stars_xsub["1% paper"], stars_xsub["10% paper"]) == (69.1, 88.0)
    alpha = pd.read_csv(out / "table10_layer_decay.csv")
    assert alpha["paper"].tolist()[:2] == [74.3, 83.7] and math.isnan(alpha["paper"].tolist()[2])


@pytest.mark.slow
def test_shared_runs_are_trained_once_and_agree_across_notebooks(smoke_run):
    _, _, out, cache = smoke_run
    runs = sorted(p.name.rsplit("-", 1)[0] for p in (cache / "smoke").iterdir())
    # stage 1: MAMP and MAE on xsub and xview, each trained once for all notebooks
    assert runs.count("pretrain-mamp") == 2
    assert runs.count("pretrain-mae") == 2
    # STARS: default on xsub + xview, batch 16 / 64 / 128 (32 is the smoke default), alpha 1.0 / 0.2
    # (0.45 is the default), STARS-MAE on xsub + xview
    assert runs.count("tune-stars") == 2 + 3 + 2 + 2
    assert runs.count("tune-stars-3stage") == 2
    assert runs.count("tune-dino") == 2  # without / with local views
    assert runs.count("tune-nnclr") == 4  # with / without augmentation, xsub / xview
    # finished evaluations keep their metrics, not the checkpoints of the heads they trained
    assert not list((cache / "smoke").glob("eval-*/**/*.pt"))
    assert list((cache / "smoke").glob("eval-linear-*/metrics.json"))
    # the STARS XSub KNN number is the same cached evaluation wherever it appears
    headline = pd.read_csv(out / "headline.csv").set_index(["method", "dataset"])
    value = headline.loc[("STARS", "XSub"), "KNN k=1"]
    table04 = pd.read_csv(out / "table04_mamp_plus_nnclr.csv").set_index("method")
    table07 = pd.read_csv(out / "table07_mae_vs_mamp_knn.csv").set_index("method")
    batch = pd.read_csv(out / "table09_batch_size.csv").set_index("batch size")
    strategies = pd.read_csv(out / "tuning_strategies.csv").set_index("tuning")
    assert table04.loc["STARS", "XSub"] == value
    assert table07.loc["STARS", "XSub"] == value
    assert batch.loc[32, "KNN k=1"] == value
    assert strategies.loc["NNCLR (STARS)", "KNN k=1"] == value


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMOKE))
def test_executed_notebook_shows_rounded_tables_and_inline_figures_and_has_an_html_report(smoke_run, name):
    _, log, out, cache = smoke_run
    notebook = json.loads((out / "notebooks" / f"{name}.ipynb").read_text())
    outputs = [o for cell in notebook["cells"] for o in cell.get("outputs", [])]
    assert "<Figure size" not in json.dumps(outputs)
    tables = [o for o in outputs if "text/html" in o.get("data", {}) and "<table" in "".join(o["data"]["text/html"])]
    assert len(tables) == 1, log
    assert re.search(r"\d\.\d{3,}", "".join(tables[0]["data"]["text/html"])) is None  # rounded to 2 decimals
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == (1 if name in FIGURES else 0)
    assert notebook["metadata"]["papermill"]["input_path"] == f"notebooks/{name}.py"
    html = (out / "notebooks" / f"{name}.html").read_text()
    embedded = re.findall(r'<img[^>]*src="data:image/png;base64,', html)
    assert len(embedded) == len(images), embedded
    # no absolute or temporary paths: only the results folder this test chose appears
    text = (html + json.dumps(notebook)).replace(str(out), "<results>")
    for path in (str(cache), tempfile.gettempdir() + "/", str(Path.home()) + "/", str(NOTEBOOK_DIR.parent)):
        assert path not in text, (name, path)


@pytest.mark.slow
def test_tables_and_figures_record_where_their_numbers_come_from(smoke_run):
    from PIL import Image

    _, _, out, cache = smoke_run
    fingerprints = set()
    for name in sorted(SMOKE):
        meta = json.loads((out / f"{name}.json").read_text())
        assert meta["seed"] == 0 and meta["parameters"]["seed"] == 0
        assert meta["commit"] and "command" not in meta and "ipykernel" not in json.dumps(meta)
        assert str(cache) not in json.dumps(meta), name  # runs are named, not the folders of this machine
        if name == "table11_params_macs":
            assert meta["datasets"] == {} and meta["runs"] == {}
            continue
        for info in meta["datasets"].values():
            assert len(info["sha256"]) == 64 and info["bytes"] > 0
            fingerprints.add((info["file"], info["sha256"]))
        assert meta["runs"], name
        for run, spec in meta["runs"].items():
            assert (cache / "smoke" / run).is_dir() and spec["config"], (name, run)
        assert f"sha256 {next(iter(meta['datasets'].values()))['sha256'][:12]}" in (out / f"{name}.md").read_text()
    assert len(fingerprints) == 2  # SYN_XSub and SYN_XView, the same files for every table
    assert [p for p in consistency_problems(out) if "commits" not in p] == []  # the checkout may be dirty here
    for name in FIGURES:
        caption = Image.open(out / f"{name}.png").text["Description"]
        assert "Profile smoke" in caption and "SYN_XSub.npz (sha256" in caption
    caption = Image.open(out / "figure2_tsne.png").text["Description"]
    assert "Silhouette (cosine): MAMP output" in caption and "STARS output separates the classes" in caption


def test_unknown_parameter_fails_naming_it_before_a_kernel_starts(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown notebook parameter\(s\) \['bogus'\]"):
        run_notebook(NOTEBOOK_DIR / "table09_batch_size.py", tmp_path / "out.ipynb", {"profile": "smoke", "bogus": 1})
    assert not (tmp_path / "out.ipynb").exists()


def test_mistyped_list_parameter_fails_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="batch_sizes: 'abc' is not an integer"):
        run_notebook(NOTEBOOK_DIR / "table09_batch_size.py", tmp_path / "out.ipynb",
                     {"profile": "smoke", "batch_sizes": "abc"})


NOTEBOOK_HEADER = """# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
# ---

# %% tags=["parameters"]
profile: str = "demo"  # profile
data: str = ""  # dataset folder
device: str = ""  # device
results_dir: str = ""  # results folder
seed: int = 0  # seed

"""


@pytest.mark.parametrize("jobs", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_failing_notebook_is_named_and_the_others_still_run(stars_cache, tmp_path, capsys, jobs):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "a_fails.py").write_text(NOTEBOOK_HEADER + '# %%\nraise RuntimeError("deliberate failure")\n')
    (folder / "b_runs.py").write_text(
        NOTEBOOK_HEADER + "# %%\nfrom pathlib import Path\n\nPath(results_dir, 'b_runs.txt').write_text(profile)\n"
    )
    out = tmp_path / "out"
    status = run_all(profile="smoke", data=None, out_dir=str(out), folder=folder, jobs=jobs)
    captured = capsys.readouterr()
    assert status == 1
    assert "a_fails: FAILED: PapermillExecutionError: RuntimeError: deliberate failure" in captured.out
    timings = json.loads((out / "notebooks" / "timings.json").read_text())
    assert (timings["jobs"], timings["failed"], list(timings["notebooks_s"])) == (jobs, ["a_fails"], ["a_fails", "b_runs"])
    assert "failed: a_fails" in captured.err and "b_runs" not in captured.err
    assert (out / "b_runs.txt").read_text() == "smoke"
    assert os.environ["STARS_CACHE"] == str(stars_cache)


class RecordingExperiment:
    """Stands in for stars.experiments.Experiment: records the runs asked for, returns fake paths."""

    def __init__(self):
        self.calls = []

    def pretrain(self, method, dataset, **overrides):
        self.calls.append(("pretrain", method, None, dataset, overrides))
        return f"pretrain-{method}-{dataset}.pt"

    def tune(self, method, init, dataset, **overrides):
        self.calls.append(("tune", method, init, dataset, overrides))
        return f"tune-{method}-{dataset}.pt"

    def evaluate(self, protocol, ckpt, dataset, **overrides):
        self.calls.append(("eval", protocol, ckpt, dataset, overrides))
        return {"protocol": protocol, "metrics": {"test_top1": 12.5}, "_dir": "run"}


def test_encoder_recipes_chain_stages_and_apply_overrides_to_the_last_only():
    from stars.tables import encoder_checkpoint

    exp = RecordingExperiment()
    assert encoder_checkpoint(exp, "STARS-MAE", "xview", alpha=1.0) == "tune-stars-xview.pt"
    shared = {"report_test_max": True}  # TUNE_DEFAULTS: the tuning runs record their test KNN per epoch
    assert exp.calls == [("pretrain", "mae", None, "xview", {}),
                         ("tune", "stars", "pretrain-mae-xview.pt", "xview", {**shared, "alpha": 1.0})]
    exp.calls.clear()
    encoder_checkpoint(exp, "NNCLR (scratch)", "xsub")
    assert exp.calls == [("tune", "nnclr", None, "xsub", shared)]
    with pytest.raises(ValueError, match="unknown encoder 'BYOL'"):
        encoder_checkpoint(exp, "BYOL")


def test_evaluation_adds_the_shared_defaults_and_metric_names_missing_keys():
    from stars.tables import evaluation, metric

    exp = RecordingExperiment()
    result = evaluation(exp, "linear", "a.pt", "xsub")
    assert exp.calls[-1] == ("eval", "linear", "a.pt", "xsub", {"report_test_max": True})
    evaluation(exp, "linear", "a.pt", "xsub", report_test_max=False)
    assert exp.calls[-1][-1] == {"report_test_max": False}
    evaluation(exp, "knn", "a.pt", "xview")
    assert exp.calls[-1][-1] == {}
    assert metric(result, "test_top1") == 12.5
    with pytest.raises(KeyError, match=r"no metric 'majority_k1'; it has \['test_top1'\]"):
        metric(result, "majority_k1")


def test_paper_value_semi_key_and_training_seconds(tmp_path):
    from stars.tables import paper_value, semi_key, training_seconds

    assert paper_value("headline", "STARS", "knn_k1", "xview") == 88.6
    assert math.isnan(paper_value("headline", "STARS-3stage", "knn_k1", "xsub"))
    assert (semi_key(0.01, "mean"), semi_key(0.1, "std")) == ("fraction_0.01_mean", "fraction_0.1_std")
    (tmp_path / "head").mkdir()
    (tmp_path / "metrics.csv").write_text("epoch,loss,epoch_time_s\n0,1.0,2.5\n1,0.9,3.0\n")
    (tmp_path / "head" / "metrics.csv").write_text("epoch,loss,epoch_time_s\n0,1.2,1.25\n")
    assert training_seconds(tmp_path / "final.pt") == 6.75
    with pytest.raises(ValueError, match="no metrics.csv"):
        training_seconds(tmp_path / "head" / "x" / "final.pt")


@pytest.mark.slow
def test_make_notebook_and_plain_papermill_run_one_notebook_with_new_parameters(stars_cache, tmp_path):
    import subprocess
    import sys

    repo = NOTEBOOK_DIR.parent
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    make = subprocess.run(
        ["make", "notebook", "NB=table11_params_macs", "PROFILE=smoke", f"OUT={tmp_path / 'make'}", "P=seed=3",
         f"BIN={Path(sys.executable).parent}"], cwd=repo, env=env, capture_output=True, text=True, timeout=300,
    )
    assert make.returncode == 0, make.stdout + make.stderr
    assert json.loads((tmp_path / "make" / "table11_params_macs.json").read_text())["seed"] == 3
    assert (tmp_path / "make" / "notebooks" / "table11_params_macs.html").exists()
    bad = subprocess.run(["make", "notebook", "NB=table11_params_macs", "PROFILE=smoke", "P=sed=3",
                          f"BIN={Path(sys.executable).parent}"], cwd=repo, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown notebook parameter(s) ['sed']" in bad.stderr
    # the README's papermill command: jupytext to stdin, no kernel or language option needed
    output = tmp_path / "plain" / "table11.ipynb"
    output.parent.mkdir()
    pipe = subprocess.run(
        f"jupytext --to ipynb -o - notebooks/table11_params_macs.py | papermill - {output} -p profile smoke "
        f"-p seed 2 -p results_dir {tmp_path / 'plain'}", shell=True, cwd=repo, env=env, capture_output=True,
        text=True, timeout=300,
    )
    assert pipe.returncode == 0, pipe.stderr[-2000:]
    assert json.loads((tmp_path / "plain" / "table11_params_macs.json").read_text())["parameters"]["seed"] == 2


PREFETCH_NOTEBOOK = NOTEBOOK_HEADER + """# %%
from stars.experiments import start_notebook

params, exp = start_notebook("chain", globals())
mamp = exp.pretrain("mamp", "xsub", **{"run.epochs": 1})
stars = exp.tune("stars", mamp, "xsub", **{"run.epochs": 1})
knn = exp.evaluate("knn", stars, "xsub")["metrics"]["majority_k1"]
print("trained in the notebook:", len(exp.runs))
"""


@pytest.mark.slow
def test_prefetch_trains_the_planned_runs_first_and_the_notebook_only_reads_them(tmp_path, monkeypatch):
    """With two jobs the notebooks' runs are trained first, in dependency order (tune after its MAMP, KNN after
    its tuning), by the same code and cache keys: the notebook then trains nothing, and its number is the one
    a run without prefetching gets."""
    import nbformat

    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "chain.py").write_text(PREFETCH_NOTEBOOK)
    numbers = {}
    for prefetch in (True, False):
        cache = tmp_path / f"cache-{prefetch}"
        monkeypatch.setenv("STARS_CACHE", str(cache))
        out = tmp_path / f"out-{prefetch}"
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            assert run_all("smoke", None, out_dir=str(out), folder=folder, jobs=2, prefetch=prefetch) == 0
        log = buffer.getvalue()
        executed = nbformat.read(out / "notebooks" / "chain.ipynb", as_version=4)
        text = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
        trained = sorted(p.name for p in (cache / "smoke").iterdir() if p.name.startswith(("pretrain-", "tune-", "eval-")))
        if prefetch:
            order = [line.split()[1].rsplit("-", 1)[0] for line in log.splitlines() if line.startswith("[prefetch]")]
            assert order == ["pretrain-mamp", "tune-stars", "eval-knn"], log
            assert "prefetch: 3/3 planned runs" in log
            assert "ran " not in text  # every run was in the cache when the notebook asked for it
            assert "prefetch_s" in json.loads((out / "notebooks" / "timings.json").read_text())
        else:
            assert "[prefetch]" not in log and text.count("ran ") == 3
        knn = [line for line in text.splitlines() if line.startswith("trained in the notebook")]
        numbers[prefetch] = (trained, knn)
        metrics = sorted((cache / "smoke").glob("eval-knn-*/metrics.json"))
        numbers[prefetch] += (json.loads(metrics[0].read_text())["metrics"],)
    assert numbers[True] == numbers[False]  # same runs (cache keys) and the same KNN metrics


@pytest.mark.slow
def test_learning_curve_chooses_the_budget_on_the_validation_file_and_draws_it(stars_cache, tmp_path):
    """The learning curve (run by the real profile) in smoke: a row per budget on the validation file and on
    the test split of each dataset, the validation choice stated, the figure inline and in the report."""
    out = tmp_path / "results"
    run_notebook(NOTEBOOK_DIR / "learning_curve.py", out / "notebooks" / "learning_curve.ipynb",
                 {"profile": "smoke", "results_dir": str(out)})
    table = pd.read_csv(out / "learning_curve.csv")
    assert sorted(set(zip(table["dataset"], table["split"]))) == [
        ("XSub", "test"), ("XSub", "validation"), ("XView", "test")]
    assert sorted(set(table["pretraining epochs"])) == [1, 2]
    assert table[["MAMP", "STARS", "random init", "raw coordinates"]].notna().all().all()
    notes = (out / "learning_curve.md").read_text()
    assert "Chosen on the validation splits (mean STARS KNN over XSub)" in notes
    assert "the profile pretrains for 1 epochs" in notes
    html = (out / "notebooks" / "learning_curve.html").read_text()
    assert len(re.findall(r'<img[^>]*src="data:image/png;base64,', html)) == 1
