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
# # Figure 2 (supplementary) — t-SNE of MAMP features, through a random projector, and after STARS
#
# Three panels over the same test samples (the first samples in file order of 15 classes, as the
# official script): the pooled MAMP encoder output; the same features through a freshly initialised
# STARS projector (BatchNorm with random affine weights, in training mode: the map the NNCLR loss sees
# when tuning starts); and the pooled output of the STARS-tuned encoder. The paper's point (a
# qualitative figure on NTU-60, no number): the random head keeps MAMP's cluster structure (so a
# separate head-only stage is not needed, Appendix A), and STARS tuning separates the clusters further.
#
# As a number we give the cosine silhouette score of each panel's features (before t-SNE; higher =
# better-separated classes); the caption under the figure says what the scores show in this run.

# %% tags=["parameters"]
profile: str = "demo"  # smoke | demo | real | paper (README, "Profiles")
data: str = ""  # folder with the dataset files: profiles real and paper only
device: str = ""  # cpu, cuda or cuda:N; empty: CUDA when available, else the CPU
results_dir: str = ""  # empty: results/<profile>/
seed: int = 0  # seed of every training and evaluation run
dataset: str = "xsub"  # dataset role
per_class: int = 0  # samples per class shown; 0: the default of the profile's t-SNE protocol

# %%
import numpy as np
import pandas as pd
from sklearn.metrics import silhouette_score

from stars.analysis.tsne import separation_caption, tsne_figure
from stars.experiments import start_notebook
from stars.parameters import require
from stars.tables import class_names, encoder_checkpoint, evaluation, tsne_panels

params, exp = start_notebook("figure2_tsne", globals())
require(params.per_class >= 0, f"per_class must be >= 0, got {params.per_class}")

# %%
mamp = encoder_checkpoint(exp, "MAMP", params.dataset)
stars_ckpt = encoder_checkpoint(exp, "STARS", params.dataset)
options = {"per_class": params.per_class} if params.per_class else {}
result = evaluation(exp, "tsne", mamp, params.dataset, label="MAMP output", random_projector=True,
                    compare_ckpt=stars_ckpt, compare_label="STARS output", **options)
panels = tsne_panels(result)
names = class_names(exp, params.dataset)

# %%
scores = {title: float(silhouette_score(features, labels, metric="cosine"))
          for title, (features, labels) in panels.items()}
table = pd.DataFrame([{"panel": title, "samples": len(labels), "classes": len(np.unique(labels)),
                       "silhouette (cosine)": scores[title]} for title, (_, labels) in panels.items()])
caption = separation_caption(scores)
print(caption)

# %%
exp.table(
    table, "Figure 2 — class separation of MAMP, MAMP + random projector and STARS features",
    roles=[params.dataset],
    notes=("Silhouette score of the pooled features (cosine distance, before t-SNE) of the plotted test "
           f"samples. {caption} Paper: qualitative figure on NTU-60; the random projector keeps MAMP's "
           "clusters and STARS separates them further."),
)

# %%
first_labels = next(iter(panels.values()))[1]
shown = sorted(int(c) for c in np.unique(first_labels))
fig = tsne_figure(panels, shown, per_class=len(first_labels), num_classes=len(names), class_names=names,
                  random_state=42 + params.seed, scores=scores)
exp.figure(fig, caption=f"t-SNE of the pooled test features, {len(shown)} classes. {caption}",
           roles=[params.dataset])
