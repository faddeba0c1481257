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
# # Figure 3 (supplementary) — confusion matrix of KNN (k = 10) for STARS on the cross-subject split
#
# The STARS encoder's pooled features of the test samples are classified by cosine KNN (k = 10,
# uniform vote) against the training samples; the figure is the row-normalised confusion matrix
# (entry (i, j): fraction of class i predicted as j), the table the most frequent confusions.
#
# Paper (NTU-60 XSub, qualitative): errors come from missing context ("playing with phone/tablet"
# taken for "reading" and "writing") and from subtle movements ("clapping" vs "rub two hands
# together"). The column "named in the paper" marks those pairs (`stars/paper_numbers.yaml`) when the
# dataset has them.

# %% tags=["parameters"]
profile: str = "demo"  # smoke | demo | real | paper (README, "Profiles")
data: str = ""  # folder with the dataset files: profiles real and paper only
device: str = ""  # cpu, cuda or cuda:N; empty: CUDA when available, else the CPU
results_dir: str = ""  # empty: results/<profile>/
seed: int = 0  # seed of every training and evaluation run
dataset: str = "xsub"  # dataset role
k: int = 10  # neighbours of the uniform-vote KNN (one of the knn protocol's ks_majority, or run anew)
top: int = 20  # rows of the table of confusions

# %%
from pathlib import Path

import numpy as np

from stars.analysis.confusion import confusion_figure, top_confusions
from stars.experiments import start_notebook
from stars.parameters import require
from stars.tables import class_names, encoder_checkpoint, evaluation, metric, paper_section

params, exp = start_notebook("figure3_confusion", globals())
require(params.k >= 1 and params.top >= 1, f"k and top must be >= 1, got k={params.k}, top={params.top}")

# %%
ckpt = encoder_checkpoint(exp, "STARS", params.dataset)
result = evaluation(exp, "knn", ckpt, params.dataset)
if f"majority_k{params.k}" not in result["metrics"]:  # a k outside the shared run's ks_majority
    result = evaluation(exp, "knn", ckpt, params.dataset, ks_majority=[params.k])
accuracy = metric(result, f"majority_k{params.k}")
predictions = np.load(Path(result["_dir"]) / f"predictions_majority_k{params.k}.npy")
labels = np.load(Path(result["_dir"]) / "labels.npy")
names = class_names(exp, params.dataset)
print(f"KNN k={params.k} top-1: {accuracy:.2f} %")

# %%
paper_pairs = {tuple(pair) for pair in paper_section("figure3_confusion")["pairs"]}
table = top_confusions(labels, predictions, names, params.top, num_classes=len(names))
table["named in the paper"] = [
    "yes" if (t, p) in paper_pairs else "" for t, p in zip(table["true"], table["predicted"])
]
exp.table(
    table, f"Figure 3 — most frequent confusions of KNN (k={params.k}) on STARS features", roles=[params.dataset],
    notes=(f"KNN top-1 {accuracy:.2f} %. rate = count / test samples of the true class. Paper: NTU-60 XSub, "
           "qualitative; pairs it names are marked."),
)

# %%
fig = confusion_figure(labels, predictions, names, num_classes=len(names),
                       title=f"STARS, KNN k={params.k} on {exp.dataset_label(params.dataset)} (top-1 {accuracy:.1f} %)")
worst = table.iloc[0] if len(table) else None
exp.figure(fig, roles=[params.dataset], caption=(
    f"Row-normalised confusion matrix of KNN (k={params.k}) on STARS features, top-1 {accuracy:.1f} %."
    + (f" Most frequent confusion: {worst['true']} taken for {worst['predicted']} ({100 * worst['rate']:.0f} % "
       "of its test samples)." if worst is not None else " No confusions.")))
