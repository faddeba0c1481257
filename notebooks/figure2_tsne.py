# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
# ---

# %% [markdown]
# # Figure 2 (supplementary) — t-SNE of MAMP features, through a random projector, and after STARS
#
# Three panels over the same test samples (the first samples in file order of 15 classes, as the
# official script): the pooled MAMP encoder output; the same features through a freshly initialised
# STARS projector (BatchNorm with random affine weights, in training mode: the map the NNCLR loss sees
# when tuning starts); and the pooled output of the STARS-tuned encoder. The paper's point: the random
# head keeps MAMP's cluster structure (so a separate head-only stage is not needed, Appendix A), and
# STARS tuning separates the clusters further.
#
# Paper: a qualitative figure on NTU-60 (no number). As a number we give the cosine silhouette score of
# each panel's features (before t-SNE; higher = better-separated classes).

# %%
_before = set(globals())

# %% tags=["parameters"]
profile = "demo"
data = ""
device = ""
results_dir = ""
dataset = "xsub"
per_class = 0

# %%
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import silhouette_score

from stars.experiments import Experiment, notebook_params


@dataclass(frozen=True)
class Params:
    profile: str = "demo"
    data: str = ""
    device: str = ""
    results_dir: str = ""
    dataset: str = "xsub"
    per_class: int = 0  # samples per class shown; 0 = the t-SNE protocol's default for the profile

    def __post_init__(self) -> None:
        if self.per_class < 0:
            raise ValueError(f"per_class must be >= 0, got {self.per_class}")


params = notebook_params(Params, globals(), _before)
exp = Experiment("figure2_tsne", params.profile, params.data or None, params.device or None,
                 params.results_dir or None)
exp.save_params(params)

# %%
from stars.analysis.tsne import tsne_figure
from stars.tables import class_names, encoder_checkpoint, evaluation, tsne_panels

mamp = encoder_checkpoint(exp, "MAMP", params.dataset)
stars_ckpt = encoder_checkpoint(exp, "STARS", params.dataset)
options = {"per_class": params.per_class} if params.per_class else {}
result = evaluation(exp, "tsne", mamp, params.dataset, label="MAMP output", random_projector=True,
                    compare_ckpt=stars_ckpt, compare_label="STARS output", **options)
panels = tsne_panels(result)
names = class_names(exp, params.dataset)

# %%
rows = []
for title, (features, labels) in panels.items():
    rows.append({"panel": title, "samples": len(labels), "classes": len(np.unique(labels)),
                 "silhouette (cosine)": float(silhouette_score(features, labels, metric="cosine"))})
table = pd.DataFrame(rows)
table

# %%
first_labels = next(iter(panels.values()))[1]
shown = sorted(int(c) for c in np.unique(first_labels))
fig = tsne_figure(panels, shown, per_class=len(first_labels), num_classes=len(names), class_names=names)
fig

# %%
exp.table(
    table, "Figure 2 — class separation of MAMP, MAMP + random projector and STARS features",
    dataset=exp.dataset_label(params.dataset),
    notes=("Silhouette score of the pooled features (cosine distance, before t-SNE) of the plotted test "
           "samples. Paper: qualitative figure on NTU-60; the random projector keeps MAMP's clusters and "
           "STARS separates them further."),
)
exp.figure(fig)
