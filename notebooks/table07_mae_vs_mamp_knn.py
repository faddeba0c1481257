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
# # Table 7 (supplementary) — naive MAE instead of MAMP in the first stage (KNN)
#
# Four encoders: MAMP and naive MAE (random masking, coordinate targets) after stage 1, and each of
# them after STARS tuning (STARS = MAMP + tuning, STARS-MAE = MAE + the same tuning). Evaluation:
# cosine KNN, k = 1, uniform vote, on pooled encoder features. The paper's numbers
# (`stars/paper_numbers.yaml`, section `knn_k1`) stand beside ours.

# %% tags=["parameters"]
profile: str = "demo"  # smoke | demo | real | paper (README, "Profiles")
data: str = ""  # folder with the dataset files: profiles real and paper only
device: str = ""  # cpu, cuda or cuda:N; empty: CUDA when available, else the CPU
results_dir: str = ""  # empty: results/<profile>/
seed: int = 0  # seed of every training and evaluation run
datasets: list[str] = ["xsub", "xview"]  # dataset roles of the profile

# %%
import pandas as pd

from stars.experiments import start_notebook
from stars.parameters import require
from stars.tables import (
    NAN,
    below_baseline_note,
    encoder_checkpoint,
    evaluation,
    knn_baselines,
    metric,
    paper_source,
    paper_value,
    role_title,
)

params, exp = start_notebook("table07_mae_vs_mamp_knn", globals())
require(bool(params.datasets), "datasets: give at least one dataset role (xsub, xview)")

# %%
rows = []
for name in ("MAMP", "STARS", "MAE", "STARS-MAE"):
    row = {"method": name}
    for role in params.datasets:
        ckpt = encoder_checkpoint(exp, name, role)
        row[role_title(role)] = metric(evaluation(exp, "knn", ckpt, role), "majority_k1")
        row[f"{role_title(role)} paper"] = paper_value("knn_k1", name, role)
    rows.append(row)
# the baselines every encoder must beat: a random-init encoder of the same size, and the same KNN on the
# raw centred coordinates (the encoder's input)
baselines = {role_title(role): knn_baselines(exp, role) for role in params.datasets}
for name in ("random init", "raw coordinates"):
    rows.append({"method": name, **{column: value for role in params.datasets
                                    for column, value in ((role_title(role), baselines[role_title(role)][name]),
                                                          (f"{role_title(role)} paper", NAN))}})
table = pd.DataFrame(rows)
long = table.melt(id_vars="method", value_vars=[role_title(r) for r in params.datasets], var_name="dataset",
                  value_name="KNN k=1")
below = below_baseline_note(long, "KNN k=1", baselines)
print(below or "Every encoder is above the raw-coordinate baseline.")

# %%
exp.table(
    table, "Table 7 — MAE vs MAMP as the first stage (KNN, k=1)", roles=params.datasets,
    notes=("Top-1 %, cosine KNN with k = 1 on pooled features. STARS-MAE: STARS tuning started from MAE. "
           "Baselines: a random-init encoder of the same size, and the same KNN on the raw centred coordinates. "
           f"{below} {paper_source('knn_k1')}"),
)
