# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
# ---

# %% [markdown]
# # Table 11 — parameters and MACs of MAMP and STARS
#
# Counted with the paper's convention (thop style: Linear = in_features x output elements, Conv =
# output elements x (kernel + bias), norms = 4 x input elements, bare `nn.Parameter`s, GELU,
# softmax and attention matmuls not counted), per training batch of 32 samples:
# MAMP = pretraining model with a 5-layer decoder at its forward's default mask ratio 0.8;
# STARS = encoder + NNCLR head on two views. The counts depend only on the architecture, so every
# profile reproduces the paper's numbers.
#
# Paper: MAMP 10.34 M / 250.4 GMACs, STARS 8.43 M / 606.1 GMACs.

# %%
_before = set(globals())

# %% tags=["parameters"]
profile = "demo"
data = ""
device = ""
results_dir = ""

# %%
from dataclasses import dataclass

import pandas as pd

from stars.analysis.flops import format_table11
from stars.experiments import Experiment, notebook_params


@dataclass(frozen=True)
class Params:
    profile: str = "demo"
    data: str = ""
    device: str = ""
    results_dir: str = ""


params = notebook_params(Params, globals(), _before)
exp = Experiment("table11_params_macs", params.profile, params.data or None, params.device or None,
                 params.results_dir or None)
exp.save_params(params)

# %%
PAPER = {"MAMP": (10.34, 250.4), "STARS": (8.43, 606.1)}
rows = []
for method, params_m, gmacs in format_table11():
    name = "MAMP" if method.lower().startswith("mamp") else "STARS"
    rows.append({"method": name, "params (M)": params_m, "MACs (G)": gmacs,
                 "paper params (M)": PAPER[name][0], "paper MACs (G)": PAPER[name][1]})
table = pd.DataFrame(rows)
table

# %%
exp.table(table, "Table 11 — parameters and MACs (per training batch of 32)", dataset="architecture only",
          notes="Counts are computed from the model definitions; they match the paper exactly.", demo_label=False)
