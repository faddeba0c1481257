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
# # Table 3 (supplementary) — DINO tuning with and without local views
#
# The MAMP encoder is tuned with DINO (Table 2 hyper-parameters: two global views with mirroring and
# rotation, Sinkhorn-Knopp centring, KoLeo 0.1, student / teacher temperature 0.1 / 0.04) either with
# global views only or with extra local views (a random 40-80 % stretch of the sequence, seen by the
# student only). Evaluation: weighted cosine KNN (vote weight exp(similarity / 0.1)) for each k of `ks`.
# The paper lowered the batch to 16 for the local-view run to fit in memory; here both runs use the
# same batch, so the comparison isolates the local views. The paper's numbers
# (`stars/paper_numbers.yaml`) stand beside ours.

# %% tags=["parameters"]
profile: str = "demo"  # smoke | demo | real | paper (README, "Profiles")
data: str = ""  # folder with the dataset files: profiles real and paper only
device: str = ""  # cpu, cuda or cuda:N; empty: CUDA when available, else the CPU
results_dir: str = ""  # empty: results/<profile>/
seed: int = 0  # seed of every training and evaluation run
dataset: str = "xsub"  # dataset role
local_views: int = 2  # student-only local views of the second run
ks: list[int] = [10, 20, 40]  # weighted-KNN k values

# %%
import pandas as pd

from stars.experiments import start_notebook
from stars.parameters import require
from stars.tables import encoder_checkpoint, evaluation, metric, paper_source, paper_value

params, exp = start_notebook("table03_dino_local_views", globals())
require(params.local_views >= 1,
        f"local_views must be >= 1 (the run without local views is always made), got {params.local_views}")
require(bool(params.ks) and min(params.ks) >= 1, f"ks must be positive, got {list(params.ks)}")

# %%
variants = {
    "w/o local views": encoder_checkpoint(exp, "DINO", params.dataset),
    "w/ local views": encoder_checkpoint(exp, "DINO", params.dataset, local_views=params.local_views),
}
rows = []
for variant, ckpt in variants.items():
    result = evaluation(exp, "knn", ckpt, params.dataset, ks_weighted=list(params.ks))
    row = {"method": variant}
    for k in params.ks:
        row[f"{k}-NN"] = metric(result, f"weighted_k{k}")
        row[f"{k}-NN paper"] = paper_value("table03_dino_local_views", variant, k)
    rows.append(row)
table = pd.DataFrame(rows)

# %%
exp.table(
    table, "Table 3 — DINO tuning with and without local views (weighted KNN)", roles=[params.dataset],
    notes=(f"Top-1 %, weighted cosine KNN (temperature 0.1). Local-view run: {params.local_views} local views. "
           f"{paper_source('table03_dino_local_views')}"),
)
