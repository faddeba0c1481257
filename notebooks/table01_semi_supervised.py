# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Table 1 (supplementary) — semi-supervised evaluation
#
# Each encoder is finetuned end to end, with a new classifier, on a small labelled part of the
# training split (1 % and 10 % of every class) and tested on the whole test split. The subsets are
# drawn at random, so every fraction is run with several seeds (the profile's `semi_runs`, 5 in the
# paper) and we report the mean and the sample standard deviation over the runs. The paper's numbers
# (`stars/paper_numbers.yaml`, mean of five runs) stand beside ours.

# %% tags=["parameters"]
profile: str = "demo"  # smoke | demo | real | paper (README, "Profiles")
data: str = ""  # folder with the dataset files: profiles real and paper only
device: str = ""  # cpu, cuda or cuda:N; empty: CUDA when available, else the CPU
results_dir: str = ""  # empty: results/<profile>/
seed: int = 0  # seed of every training and evaluation run
datasets: list[str] = ["xsub", "xview"]  # dataset roles of the profile
methods: list[str] = ["MAMP", "STARS-3stage", "STARS"]  # encoders of stars.tables.ENCODERS
fractions: list[float] = [0.01, 0.1]  # labelled fraction of every class
runs: int = 0  # seeds per fraction; 0: semi_runs of the profile

# %%
import numpy as np
import pandas as pd

from stars.experiments import start_notebook
from stars.parameters import require
from stars.tables import (
    encoder_checkpoint,
    evaluation,
    metric,
    paper_source,
    paper_value,
    role_title,
    semi_key,
)

params, exp = start_notebook("table01_semi_supervised", globals())
require(bool(params.datasets) and bool(params.methods), "datasets and methods must not be empty")
require(bool(params.fractions) and all(0 < f <= 1 for f in params.fractions),
        f"fractions must be in (0, 1], got {list(params.fractions)}")
require(params.runs >= 0, f"runs must be >= 0, got {params.runs}")
semi_runs = params.runs or exp.profile.semi_runs
print(f"{semi_runs} runs per fraction, seeds {params.seed}..{params.seed + semi_runs - 1}")

# %%
rows = []
for role in params.datasets:
    for name in params.methods:
        ckpt = encoder_checkpoint(exp, name, role)
        result = evaluation(exp, "semi", ckpt, role, fractions=list(params.fractions), runs=semi_runs,
                            seeds=list(range(params.seed, params.seed + semi_runs)))
        row = {"method": name, "dataset": role_title(role)}
        for fraction in params.fractions:
            label = f"{100 * fraction:g}%"
            row[f"{label} mean"] = metric(result, semi_key(fraction, "mean"))
            row[f"{label} std"] = metric(result, semi_key(fraction, "std"))
            row[f"{label} labels seen"] = float(np.mean(result["metrics"][semi_key(fraction, "labelled")]))
            row[f"{label} paper"] = paper_value("table01_semi_supervised", name, role, fraction)
        rows.append(row)
table = pd.DataFrame(rows)

# %%
exp.table(
    table, "Table 1 — semi-supervised finetuning (1 % / 10 % labels)", roles=params.datasets,
    notes=(f"Top-1 %, mean and sample standard deviation over {semi_runs} runs (seeds {params.seed}.."
           f"{params.seed + semi_runs - 1}); each run draws max(1, round(fraction x n_c)) labelled samples "
           "of every class c, or, where the profile sets sampling=released (paper), the official per-process "
           "global subsets; 'labels seen': labelled training samples per run. "
           f"{paper_source('table01_semi_supervised')}"),
)
