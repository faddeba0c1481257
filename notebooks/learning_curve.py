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
# # Learning curve — KNN of MAMP and of STARS against MAMP's pretraining epochs
#
# Each budget of `epochs` is its own MAMP run (its warm-up and cosine schedule span that budget), and
# STARS tunes each one with the profile's stage-2 settings. Evaluation: cosine KNN, k = 1, beside the
# two baselines every encoder must beat: a random-init encoder of the same size and the same KNN on the
# raw centred coordinates.
#
# Two splits per dataset. **validation**: pretraining, tuning and KNN on the training split alone, its
# last subject (cross-subject) or view (cross-view) held out as the queries (`stars.data.splits.
# write_validation_dataset`); this is where a profile's pretraining budget is chosen, without the test
# split. **test**: the benchmark itself (training split against the test split), reported, not used
# for choosing.

# %% tags=["parameters"]
profile: str = "demo"  # smoke | demo | real | paper (README, "Profiles")
data: str = ""  # folder with the dataset files: profiles real and paper only
device: str = ""  # cpu, cuda or cuda:N; empty: CUDA when available, else the CPU
results_dir: str = ""  # empty: results/<profile>/
seed: int = 0  # seed of every training and evaluation run
datasets: list[str] = []  # dataset roles; empty: the profile's benchmarks
epochs: list[int] = []  # MAMP pretraining budgets; empty: the profile's (demo: 25, 50, 100; real: 25, 50, 100, 200)

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from stars.experiments import start_notebook
from stars.parameters import require
from stars.tables import RANDOM_BASELINE, RAW_BASELINE, knn_baselines, learning_curve, role_title

params, exp = start_notebook("learning_curve", globals())
roles = list(params.datasets) or list(exp.profile.benchmarks)
budgets = sorted(set(params.epochs or exp.profile.budgets))
require(bool(roles), "datasets: give at least one dataset role (xsub, xview)")
require(bool(budgets) and min(budgets) >= 1, f"epochs must be >= 1, got {list(params.epochs)}")

# %% [markdown]
# ## One MAMP run per budget, STARS from each, KNN on validation and test

# %%
frames, used = [], []
for role in roles:
    for split, source in (("validation", f"{role}_validation"), ("test", role)):
        if source not in exp.profile.datasets:
            print(f"{role_title(role)}: profile {exp.profile.name} has no validation file; test split only")
            continue
        curve = learning_curve(exp, source, tuple(budgets))
        baselines = knn_baselines(exp, source)
        curve["random init"] = baselines[RANDOM_BASELINE]
        curve["raw coordinates"] = baselines[RAW_BASELINE]
        curve.insert(0, "split", split)
        curve.insert(0, "dataset", role_title(role))
        frames.append(curve)
        used.append(source)
table = pd.concat(frames, ignore_index=True)

# %% [markdown]
# ## The budget chosen on the validation splits

# %%
configured = exp.pretrain_epochs()
validation = table[table["split"] == "validation"]
if len(validation):
    mean = validation.groupby("pretraining epochs")["STARS"].mean()
    chosen = int(mean.idxmax())
    choice = (f"Chosen on the validation splits (mean STARS KNN over "
              f"{', '.join(validation['dataset'].unique())}): {chosen} epochs ({mean[chosen]:.1f} %); "
              f"the profile pretrains for {configured} epochs"
              + (", the same." if chosen == configured else
                 f": not the validation choice, so the profile's budget should be changed to {chosen}."))
else:
    choice = f"No validation split in profile {exp.profile.name}; it pretrains for {configured} epochs."
last = table[(table["split"] == "test") & (table["pretraining epochs"] == budgets[-1])]
below = [f"{encoder} {row['dataset']} ({row[encoder]:.1f} < {row['raw coordinates']:.1f})"
         for _, row in last.iterrows() for encoder in ("MAMP", "STARS") if row[encoder] < row["raw coordinates"]]
summary = " ".join(filter(None, [
    choice, f"At the longest budget on the test split, below the raw-coordinate baseline: {'; '.join(below)}."
    if below else "",
]))
print(summary)

# %%
exp.table(
    table, "Learning curve — KNN (k=1) of MAMP and STARS against MAMP pretraining epochs", roles=used,
    notes=(f"{summary} Top-1 %, cosine KNN with k = 1. validation: the training split less its held-out "
           "subject (cross-subject) or view (cross-view), which are the queries; test: the benchmark. "
           "Each budget is its own MAMP run; STARS tunes it with the profile's stage-2 settings."),
)

# %%
long = table.melt(id_vars=["dataset", "split", "pretraining epochs"], value_vars=["MAMP", "STARS"],
                  var_name="encoder", value_name="KNN k=1")
grid = sns.relplot(data=long, x="pretraining epochs", y="KNN k=1", hue="encoder", style="split", col="dataset",
                   kind="line", marker="o", height=3.2, aspect=1.2, facet_kws={"sharey": False})
for name, ax in grid.axes_dict.items():
    for split, dash in (("test", "-"), ("validation", ":")):
        rows = table[(table["dataset"] == name) & (table["split"] == split)]
        if len(rows):
            ax.axhline(rows["raw coordinates"].iloc[0], color="grey", linestyle=dash, linewidth=1)
            ax.axhline(rows["random init"].iloc[0], color="black", linestyle=dash, linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_xticks(budgets, [str(b) for b in budgets])
plt.close(grid.figure)
exp.figure(grid.figure, caption=("KNN (k=1) of MAMP and STARS against MAMP pretraining epochs; grey: raw-coordinate "
                                 "baseline, black: random-init encoder (solid: test, dotted: validation). "
                                 + choice), roles=used)
