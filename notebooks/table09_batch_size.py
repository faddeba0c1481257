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
# # Table 9 (supplementary) — effect of the global batch size on STARS tuning
#
# STARS tuning contrasts each sample's prediction against the whole global batch, so the batch size is
# the number of negatives. The same MAMP encoder is tuned with each global batch of `batch_sizes`
# (everything else unchanged; the queue size stays a multiple of every batch). Evaluation: cosine KNN,
# k = 1, on the cross-subject split. The paper's numbers (`stars/paper_numbers.yaml`) stand beside ours.

# %% tags=["parameters"]
profile: str = "demo"  # smoke | demo | real | paper (README, "Profiles")
data: str = ""  # folder with the dataset files: profiles real and paper only
device: str = ""  # cpu, cuda or cuda:N; empty: CUDA when available, else the CPU
results_dir: str = ""  # empty: results/<profile>/
seed: int = 0  # seed of every training and evaluation run
dataset: str = "xsub"  # dataset role
batch_sizes: list[int] = [16, 32, 64, 128]  # global batch of the tuning runs

# %%
import pandas as pd

from stars.experiments import start_notebook
from stars.parameters import require
from stars.tables import encoder_checkpoint, evaluation, knn_baseline_note, metric, paper_source, paper_value

params, exp = start_notebook("table09_batch_size", globals())
require(bool(params.batch_sizes) and min(params.batch_sizes) >= 2,
        f"batch_sizes must be >= 2 (NNCLR needs negatives), got {list(params.batch_sizes)}")

# %%
rows = []
for batch in params.batch_sizes:
    ckpt = encoder_checkpoint(exp, "STARS", params.dataset, **{"run.batch_size": batch})
    rows.append({"batch size": batch,
                 "KNN k=1": metric(evaluation(exp, "knn", ckpt, params.dataset), "majority_k1"),
                 "paper": paper_value("table09_batch_size", batch)})
table = pd.DataFrame(rows)
baselines = knn_baseline_note(exp, {params.dataset: {f"batch {b}": v for b, v in zip(table["batch size"],
                                                                                       table["KNN k=1"], strict=True)}})
print(baselines)

# %%
exp.table(
    table, "Table 9 — global batch size of STARS tuning (KNN, k=1)", roles=[params.dataset],
    notes=("Top-1 %, cosine KNN with k = 1. The run whose batch equals the profile's default is the shared "
           f"STARS run. {baselines} {paper_source('table09_batch_size')}"),
)
