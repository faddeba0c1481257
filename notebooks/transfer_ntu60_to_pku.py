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
# # Transfer — NTU-60 → PKU-MMD II, linear probe and finetuning of MAMP and STARS
#
# The main paper's transfer result: MAMP and STARS encoders trained on the source dataset (NTU-60 XSub in
# the `paper` profile) are evaluated on the target (PKU-MMD II XSub) by a linear probe on the frozen pooled
# features and by end-to-end finetuning, with the protocols of docs/protocols.md (`stars eval transfer`).
# The demo and real profiles run it on the datasets they have (their `transfer_source` and
# `transfer_target` roles). The paper's numbers (`stars/paper_numbers.yaml`, section `transfer`) stand
# beside ours where the paper reports them; like the headline, ours are the last epoch, with the maximum
# over epochs on the test split in its own column.

# %% tags=["parameters"]
profile: str = "demo"  # smoke | demo | real | paper (README, "Profiles")
data: str = ""  # folder with the dataset files: profiles real and paper only
device: str = ""  # cpu, cuda or cuda:N; empty: CUDA when available, else the CPU
results_dir: str = ""  # empty: results/<profile>/
seed: int = 0  # seed of every training and evaluation run
protocols: list[str] = ["linear", "finetune"]  # any of linear, finetune

# %%
import pandas as pd

from stars.experiments import start_notebook
from stars.parameters import require
from stars.tables import encoder_checkpoint, evaluation, metric, paper_source, paper_value

params, exp = start_notebook("transfer_ntu60_to_pku", globals())
unknown = sorted(set(params.protocols) - {"linear", "finetune"})
require(bool(params.protocols) and not unknown,
        f"protocols: {unknown or 'none given'}; choose from linear, finetune")

# %%
rows = []
for name in ("MAMP", "STARS"):
    ckpt = encoder_checkpoint(exp, name, "transfer_source")
    row = {"method": name, "source": exp.dataset_label("transfer_source"),
           "target": exp.dataset_label("transfer_target")}
    for protocol in params.protocols:
        result = evaluation(exp, "transfer", ckpt, "transfer_source", target="transfer_target", protocol=protocol)
        row[protocol] = metric(result, "test_top1")
        row[f"{protocol} (max over epochs)"] = metric(result, "test_max_over_epochs")
        row[f"{protocol} paper"] = paper_value("transfer", name, protocol)
    rows.append(row)
table = pd.DataFrame(rows)

# %%
exp.table(
    table, "Transfer — linear probe and finetuning on the target dataset",
    roles=["transfer_source", "transfer_target"],
    dataset=f"{exp.dataset_label('transfer_source')} → {exp.dataset_label('transfer_target')}",
    notes=("Top-1 % on the target's test split. Ours: the last epoch, with the maximum over epochs in its own "
           f"column. {paper_source('transfer')}"),
)
