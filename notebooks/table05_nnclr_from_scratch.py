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
# # Table 5 (supplementary) — NNCLR from scratch, with and without augmentation
#
# The encoder starts from random weights and every parameter (embeddings included) is trained with
# NNCLR alone (300 epochs in the paper). Two variants: the `nnclr` defaults (mirroring, main-axis
# rotation, random temporal crops of 50-100 %), and no augmentation at all (full-length, identical
# views). Without a pretrained encoder the nearest neighbours in the queue are not yet samples of the
# same action, which is why STARS starts from MAMP. Evaluation: cosine KNN, uniform vote. The paper
# reports one configuration (its text discusses the run without augmentation); its numbers
# (`stars/paper_numbers.yaml`) stand beside ours.

# %% tags=["parameters"]
profile: str = "demo"  # smoke | demo | real | paper (README, "Profiles")
data: str = ""  # folder with the dataset files: profiles real and paper only
device: str = ""  # cpu, cuda or cuda:N; empty: CUDA when available, else the CPU
results_dir: str = ""  # empty: results/<profile>/
seed: int = 0  # seed of every training and evaluation run
datasets: list[str] = ["xsub", "xview"]  # dataset roles of the profile
ks: list[int] = [1, 2, 5, 10]  # uniform-vote KNN k values

# %%
import pandas as pd

from stars.experiments import start_notebook
from stars.parameters import require
from stars.tables import encoder_checkpoint, evaluation, metric, paper_source, paper_value, role_title

params, exp = start_notebook("table05_nnclr_from_scratch", globals())
require(bool(params.datasets), "datasets: give at least one dataset role (xsub, xview)")
require(bool(params.ks) and min(params.ks) >= 1, f"ks must be positive, got {list(params.ks)}")

# %%
NO_AUGMENTATION = {"augment.mirror": False, "augment.main_axis_rotation": False, "crop_interval": [1.0, 1.0]}

results = {}
for role in params.datasets:
    with_aug = encoder_checkpoint(exp, "NNCLR (scratch)", role)
    without_aug = encoder_checkpoint(exp, "NNCLR (scratch)", role, **NO_AUGMENTATION)
    for variant, ckpt in (("w/ aug", with_aug), ("w/o aug", without_aug)):
        results[variant, role] = evaluation(exp, "knn", ckpt, role, ks_majority=list(params.ks))
rows = []
for k in params.ks:
    row = {"K": k}
    for role in params.datasets:
        for variant in ("w/ aug", "w/o aug"):
            row[f"{role_title(role)} {variant}"] = metric(results[variant, role], f"majority_k{k}")
        row[f"{role_title(role)} paper"] = paper_value("table05_nnclr_from_scratch", role, k)
    rows.append(row)
table = pd.DataFrame(rows)

# %%
exp.table(
    table, "Table 5 — NNCLR from scratch, with and without augmentation (KNN)", roles=params.datasets,
    notes=("Top-1 %, cosine KNN (uniform vote). w/ aug: mirroring, main-axis rotation, crops of 50-100 %; "
           f"w/o aug: none of them, full-length views. {paper_source('table05_nnclr_from_scratch')}"),
)
