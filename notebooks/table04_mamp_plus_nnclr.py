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
# # Table 4 (supplementary) — keeping the MAMP loss during the second stage
#
# Three encoders: MAMP (stage 1 only), STARS (MAMP, then NNCLR tuning) and MAMP+NNCLR (MAMP, then
# tuning with the NNCLR loss plus the MAMP masked-motion loss, decoder kept and trained). Evaluation:
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
    encoder_checkpoint,
    evaluation,
    knn_baseline_note,
    metric,
    paper_source,
    paper_value,
    role_title,
)

params, exp = start_notebook("table04_mamp_plus_nnclr", globals())
require(bool(params.datasets), "datasets: give at least one dataset role (xsub, xview)")

# %%
rows = []
for name in ("MAMP", "STARS", "MAMP+NNCLR"):
    row = {"method": name}
    for role in params.datasets:
        ckpt = encoder_checkpoint(exp, name, role)
        row[role_title(role)] = metric(evaluation(exp, "knn", ckpt, role), "majority_k1")
        row[f"{role_title(role)} paper"] = paper_value("knn_k1", name, role)
    rows.append(row)
table = pd.DataFrame(rows)
baselines = knn_baseline_note(exp, {role: dict(zip(table["method"], table[role_title(role)], strict=True))
                                    for role in params.datasets})
print(baselines)

# %%
exp.table(
    table, "Table 4 — MAMP vs STARS vs MAMP + NNCLR (KNN, k=1)", roles=params.datasets,
    notes=f"Top-1 %, cosine KNN with k = 1 on pooled features. {baselines} {paper_source('knn_k1')}",
)
