"""What the table and figure notebooks share: the encoders they compare, the evaluations they read, and
and the paper's numbers (read from stars/paper_numbers.yaml).

Every encoder of the paper's comparisons has exactly one recipe here (stage, method, the encoder it
starts from), so two notebooks asking for "STARS on xsub" reach the same `Experiment` cache entry and
it is trained once:

    MAMP             stage 1, masked motion prediction
    MAE              stage 1, naive MAE (random masking, coordinate targets; Tables 7, 8)
    STARS            MAMP -> NNCLR partial tuning (the paper's method)
    STARS-3stage     MAMP -> head-only NNCLR phase -> partial tuning (Appendix A, Table 1)
    STARS-MAE        MAE -> NNCLR partial tuning (Tables 7, 8)
    MAMP+NNCLR       MAMP -> NNCLR with the MAMP loss kept (Table 4)
    MoCo, DINO       MAMP -> MoCo / DINO partial tuning (tuning strategies; Tables 2, 3, 6)
    NNCLR (scratch)  NNCLR on a randomly initialised encoder, every parameter trained (Table 5)

Overrides given to `encoder_checkpoint` apply to the last stage only (e.g. `alpha=1.0` changes the
STARS tuning run, not the MAMP run it starts from). The evaluations use the protocol defaults plus
`EVAL_DEFAULTS`, the same in every notebook.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from stars.config import ConfigError

NAN = float("nan")  # a number the paper does not report; rendered as "—" in the Markdown tables


@dataclass(frozen=True)
class EncoderRecipe:
    """How one compared encoder is trained: `stage` pretrain | tune, the method, and the recipe name of
    the encoder it starts from (None: stage 1, or a tuning method that starts from random weights)."""

    stage: str
    method: str
    init: str | None = None


ENCODERS: dict[str, EncoderRecipe] = {
    "MAMP": EncoderRecipe("pretrain", "mamp"),
    "MAE": EncoderRecipe("pretrain", "mae"),
    "STARS": EncoderRecipe("tune", "stars", "MAMP"),
    "STARS-3stage": EncoderRecipe("tune", "stars-3stage", "MAMP"),
    "STARS-MAE": EncoderRecipe("tune", "stars", "MAE"),
    "MAMP+NNCLR": EncoderRecipe("tune", "mamp-nnclr", "MAMP"),
    "MoCo": EncoderRecipe("tune", "moco", "MAMP"),
    "DINO": EncoderRecipe("tune", "dino", "MAMP"),
    "NNCLR (scratch)": EncoderRecipe("tune", "nnclr", None),
}

# Evaluation overrides shared by every notebook. The paper (official scripts) reports the maximum test
# accuracy over epochs for the linear probe and finetuning; we report the last epoch and, in its own
# column, that maximum.
EVAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "linear": {"report_test_max": True},
    "finetune": {"report_test_max": True},
    "transfer": {"finetune.report_test_max": True, "linear.report_test_max": True},
}

# Tuning overrides shared by every notebook: the official selection signal (weighted KNN of the test
# split after every epoch) is recorded as its own "max over epochs on test" column, like linear and finetune.
TUNE_DEFAULTS: dict[str, Any] = {"report_test_max": True}

ROLE_TITLES = {"xsub": "XSub", "xview": "XView", "ntu120": "NTU-120 XSub", "pku": "PKU-MMD II XSub",
               "fewshot": "few-shot", "xsub_validation": "XSub validation", "xview_validation": "XView validation",
               "transfer_source": "transfer source", "transfer_target": "transfer target"}

PAPER_NUMBERS = Path(__file__).resolve().parent / "paper_numbers.yaml"


@functools.cache
def paper_numbers() -> dict[str, Any]:
    """Every number of the paper that a table compares with: stars/paper_numbers.yaml, section -> {source,
    metric, values}. Read once per process; the only place the numbers are written."""
    with open(PAPER_NUMBERS) as handle:
        return yaml.safe_load(handle)


def paper_section(name: str) -> dict[str, Any]:
    """One section of paper_numbers.yaml ({"source", "metric", "values" or "pairs"}); unknown names fail."""
    numbers = paper_numbers()
    if name not in numbers:
        raise ConfigError(f"{PAPER_NUMBERS.name} has no section {name!r}; it has {sorted(numbers)}")
    return numbers[name]


def paper_value(section: str, *keys: Any) -> float:
    """paper_numbers.yaml[section]["values"][k1][k2]...: a paper number, or NaN when the paper does not
    report it (`paper_value("table09_batch_size", 64)` -> 78.3)."""
    value: Any = paper_section(section)["values"]
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            return NAN
        value = value[key]
    return float(value)


def paper_source(section: str) -> str:
    """Where the numbers of a section are printed, for a table's notes: "Paper: <source>."."""
    return f"Paper: {paper_section(section)['source']}."


# titles a profile gives its roles (the real profile: "xsub" -> "UTD-MHAD XSub"); set by start_notebook
_PROFILE_TITLES: dict[str, str] = {}


def set_profile_titles(titles: Mapping[str, str]) -> None:
    """Use a profile's own role titles (`Profile.titles`) from now on, in this process."""
    _PROFILE_TITLES.clear()
    _PROFILE_TITLES.update(titles)


def role_title(role: str) -> str:
    """Column title of a dataset role: "xsub" -> "XSub" (or the profile's title, see set_profile_titles)."""
    return _PROFILE_TITLES.get(role) or ROLE_TITLES.get(role, role)


def encoder_checkpoint(exp, name: str, dataset: str = "xsub", **overrides: Any) -> str:
    """Final checkpoint of the encoder `name` (a key of ENCODERS) trained on the `dataset` role.

    exp: a `stars.experiments.Experiment`; runs are trained now unless cached. `overrides` (dotted config
    keys) apply to the last stage only; the stages it starts from are the shared default runs.
    """
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
    recipe = ENCODERS[name]
    if recipe.stage == "pretrain":
        return exp.pretrain(recipe.method, dataset, **overrides)
    init = encoder_checkpoint(exp, recipe.init, dataset) if recipe.init else None
    return exp.tune(recipe.method, init, dataset, **{**TUNE_DEFAULTS, **overrides})


def tuning_test_max(ckpt: str | Path, key: str = "test_knn_max_over_epochs") -> float:
    """The official tuning signal of the run that wrote `ckpt`: the maximum over its epochs of the weighted
    KNN of the test split (`test_max.json`; `key` e.g. "test_knn_k10_max_over_epochs"); NaN for stage-1
    encoders and runs without it."""
    path = run_folder(ckpt) / "test_max.json"
    if not path.exists():
        return NAN
    return float(json.loads(path.read_text()).get(key, NAN))


def evaluation(exp, protocol: str, /, ckpt: str | None, dataset: str = "xsub", **overrides: Any) -> dict[str, Any]:
    """exp.evaluate with the shared EVAL_DEFAULTS of `protocol` (explicit overrides win).

    -> {"protocol", "metrics": {...}, "_dir": run folder}.
    """
    return exp.evaluate(protocol, ckpt, dataset, **{**EVAL_DEFAULTS.get(protocol, {}), **overrides})


def metric(result: Mapping[str, Any], key: str) -> float:
    """One number of an evaluation result; a missing key is an error listing the available ones."""
    metrics = result.get("metrics", {})
    if key not in metrics:
        raise KeyError(
            f"{result.get('protocol', 'evaluation')} result in {result.get('_dir', '?')} has no metric {key!r}; "
            f"it has {sorted(metrics)}"
        )
    return float(metrics[key])


RAW_BASELINE, RANDOM_BASELINE = "raw coordinates", "random init"


def knn_baselines(exp, dataset: str = "xsub", key: str = "majority_k1") -> dict[str, float]:
    """The two baselines beside every encoder in a KNN table: the same KNN on a random-init encoder of the
    profile's size (`--ckpt random`) and on the raw centred coordinates (the encoder's input, no encoder;
    reported by every KNN evaluation as `raw_<key>`). -> {"random init": %, "raw coordinates": %}."""
    random = evaluation(exp, "knn", None, dataset)
    return {RANDOM_BASELINE: metric(random, key), RAW_BASELINE: metric(random, f"raw_{key}")}


def below_baseline_note(table: pd.DataFrame, column: str, baselines: Mapping[str, Mapping[str, float]],
                        label_columns: tuple[str, ...] = ("method", "dataset")) -> str:
    """A sentence naming every row of `table` whose `column` is below the raw-coordinate baseline of its
    dataset (`baselines`: dataset title -> `knn_baselines(...)`), or "" when none is. Rows of the
    baselines themselves are skipped."""
    below = []
    for _, row in table.iterrows():
        if row.get("method") in (RAW_BASELINE, RANDOM_BASELINE):
            continue
        raw = baselines.get(row.get("dataset"), {}).get(RAW_BASELINE)
        if raw is not None and np.isfinite(row[column]) and row[column] < raw:
            name = " ".join(str(row[c]) for c in label_columns if c in row)
            below.append(f"{name} ({row[column]:.1f} < {raw:.1f})")
    if not below:
        return ""
    return f"Below the raw-coordinate baseline ({column}): {'; '.join(below)}."


def knn_baseline_note(exp, values: Mapping[str, Mapping[str, float]], key: str = "majority_k1") -> str:
    """The baselines as a sentence, for KNN tables whose rows are not methods per dataset.

    values: dataset role -> {row label: the table's KNN accuracy (`key`) of that row}. -> "KNN baselines
    (majority_k1): XSub random init 28.3 %, raw coordinates 61.0 %. Below the raw-coordinate baseline:
    MAMP XSub (30.0 < 61.0)." (the second sentence only when a row is below).
    """
    parts, below = [], []
    for role, rows in values.items():
        baselines = knn_baselines(exp, role, key)
        raw = baselines[RAW_BASELINE]
        parts.append(f"{role_title(role)} random init {baselines[RANDOM_BASELINE]:.1f} %, raw coordinates {raw:.1f} %")
        below += [f"{label} {role_title(role)} ({value:.1f} < {raw:.1f})" for label, value in rows.items()
                  if np.isfinite(value) and value < raw]
    note = f"KNN baselines ({key}): {'; '.join(parts)}."
    return f"{note} Below the raw-coordinate baseline: {'; '.join(below)}." if below else note


def learning_curve(exp, dataset: str = "xsub", epochs: tuple[int, ...] = (25, 50, 100),
                   key: str = "majority_k1") -> pd.DataFrame:
    """KNN (`key`) of MAMP and of STARS (default tuning from that MAMP) against MAMP's pretraining epochs.

    Each epoch budget is its own MAMP run (`run.epochs`, so its learning-rate schedule spans that budget),
    cached like every run; the run of the profile's default budget is the shared MAMP encoder.
    -> columns "pretraining epochs", "MAMP", "STARS".
    """
    rows = []
    for budget in epochs:
        mamp = exp.pretrain("mamp", dataset, **{"run.epochs": int(budget)})
        stars = exp.tune("stars", mamp, dataset)
        rows.append({"pretraining epochs": int(budget),
                     "MAMP": metric(evaluation(exp, "knn", mamp, dataset), key),
                     "STARS": metric(evaluation(exp, "knn", stars, dataset), key)})
    return pd.DataFrame(rows)


def semi_key(fraction: float, statistic: str) -> str:
    """Metric name of the semi-supervised summary: (0.01, "mean") -> "fraction_0.01_mean"."""
    return f"fraction_{fraction:g}_{statistic}"


def run_folder(ckpt: str | Path) -> Path:
    """The run folder of a checkpoint written by pretrain / tune (its parent)."""
    return Path(ckpt).parent


def training_seconds(ckpt: str | Path) -> float:
    """Wall time of the run that wrote `ckpt`: the sum of `epoch_time_s` over every metrics.csv in its
    folder and sub-folders (the head-only phase of STARS-3stage lives in `head/`)."""
    total = 0.0
    found = False
    for path in sorted(run_folder(ckpt).rglob("metrics.csv")):
        frame = pd.read_csv(path)
        if "epoch_time_s" in frame:
            total += float(frame["epoch_time_s"].sum())
            found = True
    if not found:
        raise ValueError(f"{run_folder(ckpt)}: no metrics.csv with epoch_time_s (not a training run folder)")
    return total


def class_names(exp, dataset: str = "xsub") -> list[str]:
    """Names of the classes of a dataset role: the file's, else the NTU names for 60 / 120 classes,
    else "class i"."""
    from stars.data.npz import load_split
    from stars.data.ntu_names import NTU_CLASS_NAMES

    split = load_split(exp.dataset(dataset), "test")
    if split.class_names:
        return list(split.class_names)
    if split.num_classes in (60, 120):
        return list(NTU_CLASS_NAMES[: split.num_classes])
    return [f"class {c}" for c in range(split.num_classes)]


def tsne_panels(result: Mapping[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The feature sets of a `tsne` evaluation, title -> (features (N, D), labels (N,)), in panel order."""
    folder = Path(result["_dir"])
    titles = json.loads((folder / "run.json").read_text())["panels"]
    with np.load(folder / "tsne_features.npz") as stored:
        labels = stored["labels"]
        return {title: (stored[f"panel{i}"], labels) for i, title in enumerate(titles)}


__all__ = [
    "NAN", "EncoderRecipe", "ENCODERS", "EVAL_DEFAULTS", "ROLE_TITLES", "PAPER_NUMBERS", "paper_numbers",
    "paper_section", "paper_value", "paper_source", "role_title", "encoder_checkpoint", "evaluation", "metric", "semi_key", "run_folder",
    "TUNE_DEFAULTS", "tuning_test_max",
    "training_seconds", "class_names", "tsne_panels",
]
