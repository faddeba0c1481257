# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
# ---

# %% [markdown]
# # Table 1 (supplementary) — semi-supervised evaluation
#
# Each encoder is finetuned end to end, with a new classifier, on a small labelled part of the
# training split (1 % and 10 % of every class) and tested on the whole test split. The subsets are
# drawn at random, so every fraction is run with several seeds (the profile's `semi_runs`, 5 in the
# paper) and we report the mean and the sample standard deviation over the runs.
#
# Paper (NTU-60, top-1 %, mean of five runs):
#
# | method | XSub 1 % | XSub 10 % | XView 1 % | XView 10 % |
# |---|---|---|---|---|
# | MAMP | 66.0 | 88.0 | 68.7 | 91.5 |
# | STARS-3stage | 68.6 | 88.2 | 72.5 | 91.8 |
# | STARS | 69.1 | 88.0 | 72.9 | 91.8 |

# %%
_before = set(globals())

# %% tags=["parameters"]
profile = "demo"
data = ""
device = ""
results_dir = ""
datasets = ["xsub", "xview"]
methods = ["MAMP", "STARS-3stage", "STARS"]
fractions = [0.01, 0.1]
runs = 0

# %%
from dataclasses import dataclass

import pandas as pd

from stars.experiments import Experiment, notebook_params


@dataclass(frozen=True)
class Params:
    profile: str = "demo"
    data: str = ""
    device: str = ""
    results_dir: str = ""
    datasets: tuple[str, ...] = ("xsub", "xview")
    methods: tuple[str, ...] = ("MAMP", "STARS-3stage", "STARS")  # encoders of stars.tables.ENCODERS
    fractions: tuple[float, ...] = (0.01, 0.1)  # labelled fraction of every class
    runs: int = 0  # seeds per fraction; 0 = the profile's semi_runs

    def __post_init__(self) -> None:
        if not self.datasets or not self.methods:
            raise ValueError("datasets and methods must not be empty")
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError(f"fractions must be in (0, 1], got {self.fractions}")
        if self.runs < 0:
            raise ValueError(f"runs must be >= 0, got {self.runs}")


params = notebook_params(Params, globals(), _before)
exp = Experiment("table01_semi_supervised", params.profile, params.data or None, params.device or None,
                 params.results_dir or None)
exp.save_params(params)
semi_runs = params.runs or exp.profile.semi_runs
print(f"{semi_runs} runs per fraction")

# %%
from stars.tables import NAN, encoder_checkpoint, evaluation, metric, role_title, semi_key

PAPER = {  # (method, role) -> {fraction: top-1 %}
    ("MAMP", "xsub"): {0.01: 66.0, 0.1: 88.0}, ("MAMP", "xview"): {0.01: 68.7, 0.1: 91.5},
    ("STARS-3stage", "xsub"): {0.01: 68.6, 0.1: 88.2}, ("STARS-3stage", "xview"): {0.01: 72.5, 0.1: 91.8},
    ("STARS", "xsub"): {0.01: 69.1, 0.1: 88.0}, ("STARS", "xview"): {0.01: 72.9, 0.1: 91.8},
}

rows = []
for role in params.datasets:
    for name in params.methods:
        ckpt = encoder_checkpoint(exp, name, role)
        result = evaluation(exp, "semi", ckpt, role, fractions=list(params.fractions), runs=semi_runs)
        row = {"method": name, "dataset": role_title(role)}
        for fraction in params.fractions:
            label = f"{100 * fraction:g}%"
            row[f"{label} mean"] = metric(result, semi_key(fraction, "mean"))
            row[f"{label} std"] = metric(result, semi_key(fraction, "std"))
            row[f"{label} paper"] = PAPER.get((name, role), {}).get(fraction, NAN)
        rows.append(row)
table = pd.DataFrame(rows)
table

# %%
exp.table(
    table, "Table 1 — semi-supervised finetuning (1 % / 10 % labels)",
    dataset=", ".join(exp.dataset_label(role) for role in params.datasets),
    notes=(f"Top-1 %, mean and sample standard deviation over {semi_runs} runs (seeds 0..{semi_runs - 1}); "
           "each run draws max(1, round(fraction x n_c)) labelled samples of every class c. "
           "Paper: NTU-60, mean of five runs."),
)
