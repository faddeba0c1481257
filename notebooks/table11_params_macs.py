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
# # Table 11 — parameters and MACs of MAMP and STARS
#
# Counted with the paper's convention (thop style: Linear = in_features x output elements, Conv =
# output elements x (kernel + bias), norms = 4 x input elements, bare `nn.Parameter`s, GELU,
# softmax and attention matmuls not counted), per training batch of 32 samples:
# MAMP = pretraining model with a 5-layer decoder at its forward's default mask ratio 0.8;
# STARS = encoder + NNCLR head on two views. The counts depend only on the architecture, so every
# profile reproduces the paper's numbers, which stand beside ours (`stars/paper_numbers.yaml`).

# %% tags=["parameters"]
profile: str = "demo"  # smoke | demo | real | paper (README, "Profiles")
data: str = ""  # folder with the dataset files: profiles real and paper only
device: str = ""  # cpu, cuda or cuda:N; empty: CUDA when available, else the CPU
results_dir: str = ""  # empty: results/<profile>/
seed: int = 0  # seed of every training and evaluation run

# %%
import pandas as pd

from stars.analysis.flops import format_table11
from stars.experiments import start_notebook
from stars.tables import paper_source, paper_value

params, exp = start_notebook("table11_params_macs", globals())

# %%
rows = []
for method, params_m, gmacs in format_table11():
    name = "MAMP" if method.lower().startswith("mamp") else "STARS"
    rows.append({"method": name, "params (M)": params_m, "MACs (G)": gmacs,
                 "paper params (M)": paper_value("table11_params_macs", name, "params_m"),
                 "paper MACs (G)": paper_value("table11_params_macs", name, "gmacs")})
table = pd.DataFrame(rows)
matches = all(round(r["params (M)"], 2) == r["paper params (M)"] and round(r["MACs (G)"], 1) == r["paper MACs (G)"]
              for r in rows)

# %%
exp.table(table, "Table 11 — parameters and MACs (per training batch of 32)", roles=[],
          dataset="architecture only", demo_label=False,
          notes=("Counts are computed from the model definitions; rounded as the paper prints them they "
                 f"{'match' if matches else 'do NOT match'} the paper's. {paper_source('table11_params_macs')}"))
