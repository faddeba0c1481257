"""What `make tables` will train, before it trains it: the runs of every notebook and their estimated time.

`plan_profile(profile, data)` executes each notebook's code in this process with the experiment's
training calls replaced by recorders (`Experiment.pretrain`, `.tune`, `.evaluate` note the run and return
a placeholder; tables and figures are not written), so the plan is the notebooks' own list of runs, with
the runs shared by several notebooks counted once. A cell that needs a real result (a figure reading the
features of a run) fails quietly in the plan; the runs asked for before it are recorded.

`estimate_seconds(run, speeds)` turns a planned run into time from the sequences per second that
`stars bench` measures on this machine (pretraining steps, tuning steps, evaluation forwards): samples of
the split x epochs / speed, per protocol. It is an estimate: finetuning is costed as a tuning step per
sequence, data loading and checkpoints are ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import types
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class PlannedRun:
    """One run a notebook asks for. config: the resolved config (dict) of the run."""

    kind: str  # pretrain | tune | eval
    method: str  # pretraining / tuning method, or the evaluation protocol
    data: str  # dataset file (for transfer: the target)
    config: dict[str, Any]
    notebooks: list[str] = field(default_factory=list)
    name: str = ""  # placeholder name handed to the notebook instead of a checkpoint path
    call: tuple = ()  # (items, data, init, target) of `Experiment.run`; init may be another run's placeholder

    def depends_on(self) -> list[str]:
        """The names of the planned runs whose checkpoints (or folders) this one reads: its `init`, or a path in
        one of its items (e.g. the t-SNE's `compare_ckpt`)."""
        if not self.call:
            return []
        items, _, init, _ = self.call
        found = []
        for text in [init or "", *items]:
            found += re.findall(re.escape(PLACEHOLDER_START) + r"([^>]+)>", text)
        return list(dict.fromkeys(found))


def _substitute(text: str | None, done: dict[str, Any]) -> str | None:
    """`text` with every planned run's placeholder replaced by the finished run: `<planned X>/final.pt` by the
    checkpoint it returned (best.pt where tuning selected one), any other `<planned X>/...` by its folder."""
    if not text or PLACEHOLDER_START not in text:
        return text
    for name, result in done.items():
        start = f"{PLACEHOLDER_START}{name}>"
        folder = str(Path(result)) if not str(result).endswith(".pt") else str(Path(result).parent)
        text = text.replace(start + "/final.pt", str(result)) if text.endswith(start + "/final.pt") else text
        text = text.replace(start, folder)
    return text


PLACEHOLDER_START = "<planned "


class _NaNMetrics(dict):
    """Every metric of a planned (not computed) evaluation reads as NaN."""

    def __contains__(self, key) -> bool:
        return True

    def __getitem__(self, key):
        return float("nan")

    def get(self, key, default=None):
        return float("nan")


def split_sizes(path: str | os.PathLike) -> tuple[int, int]:
    """(training, test) sample counts of a dataset npz, read from the array headers only."""
    sizes = []
    with zipfile.ZipFile(path) as archive:
        for key in ("x_train", "x_test"):
            with archive.open(key + ".npy") as handle:
                major, _ = np.lib.format.read_magic(handle)
                read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, _ = read(handle)
            sizes.append(int(shape[0]))
    return sizes[0], sizes[1]


@contextlib.contextmanager
def _recording(runs: dict[tuple, PlannedRun], notebook: list[str]) -> Iterator[None]:
    """Replace the Experiment's training and output calls by recorders while a notebook's code runs."""
    from stars import tables
    from stars.experiments import Experiment, _resolved

    def run(exp, kind: str, method: str, items: list[str], data: str, init: str | None = None,
            target: str | None = None):
        evaluated = target if (kind == "eval" and method == "transfer") else data
        config = _resolved(kind, method, exp.profile.preset, items, has_ckpt=init is not None, data=evaluated)
        key = (kind, method, data, target, init, json.dumps(config, sort_keys=True, default=str))
        if key not in runs:
            runs[key] = PlannedRun(kind, method, evaluated, config, name=f"{kind}-{method}-{len(runs)}",
                                   call=(list(items), data, init, target))
        if notebook[0] not in runs[key].notebooks:
            runs[key].notebooks.append(notebook[0])
        placeholder = f"{PLACEHOLDER_START}{runs[key].name}>"
        if kind == "eval":
            return {"protocol": method, "metrics": _NaNMetrics(), "_dir": placeholder}
        return placeholder + "/final.pt"

    def nothing(self, *args, **kwargs):
        return None

    saved = {name: getattr(Experiment, name) for name in ("run", "table", "figure")}
    patches = {"run": run, "table": nothing, "figure": nothing}
    # readers of a finished run's files that notebooks call between runs: a planned run has none
    readers = {"training_seconds": lambda ckpt: float("nan")}
    saved_readers = {name: getattr(tables, name) for name in readers}
    try:
        for name, function in patches.items():
            setattr(Experiment, name, function)
        for name, function in readers.items():
            setattr(tables, name, function)
        yield
    finally:
        for name, function in saved.items():
            setattr(Experiment, name, function)
        for name, function in saved_readers.items():
            setattr(tables, name, function)


def plan_profile(profile: str, data: str | None, notebooks: list[Path] | None = None,
                 results_dir: str | None = None, parameters: dict[str, dict[str, Any]] | None = None,
                 ) -> list[PlannedRun]:
    """The distinct runs the notebooks ask for in `profile`, in the order first asked (see module docstring).
    `parameters`: notebook name -> parameter values it runs with (besides profile, data and results_dir)."""
    import jupytext

    from stars.experiments import get_profile
    from stars.notebooks import profile_notebooks

    runs: dict[tuple, PlannedRun] = {}
    current = [""]
    scratch = results_dir or tempfile.mkdtemp(prefix="stars-plan-")
    for source in notebooks or profile_notebooks(get_profile(profile, data)):
        current[0] = source.stem
        cells = [c for c in jupytext.read(source).cells if c.cell_type == "code"]
        module = types.ModuleType(f"stars_plan_{source.stem}")  # a real module: dataclasses look it up
        sys.modules[module.__name__] = module
        namespace = module.__dict__
        try:
            with _recording(runs, current), open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                for cell in cells:
                    lines = [line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))]
                    try:
                        exec(compile("\n".join(lines), str(source), "exec"), namespace)  # noqa: S102 - our notebooks
                    except Exception:  # noqa: BLE001 - a cell needing real results; keep recording the rest
                        pass
                    if "parameters" in cell.metadata.get("tags", []):
                        namespace.update((parameters or {}).get(source.stem, {}))
                        namespace.update({"profile": profile, "data": data or "", "results_dir": scratch})
        finally:
            sys.modules.pop(module.__name__, None)
    return list(runs.values())


# Relative throughputs (sequences / s) of the three workloads on a CPU, from `stars bench` at the tiny preset;
# prefetch only needs the order of the runs' costs, not their seconds.
NOMINAL_SPEEDS = {"pretrain": 500.0, "tune": 800.0, "eval": 1500.0}


def critical_path_seconds(runs: list[PlannedRun], speeds: dict[str, float] | None = None) -> dict[str, float]:
    """{run name: estimated seconds of the run plus the longest chain of planned runs that read it}: the
    time that must still pass after the run starts. Runs with the longest remaining chain go first."""
    speeds = speeds or NOMINAL_SPEEDS
    cost = {run.name: estimate_seconds(run, speeds) for run in runs}
    children: dict[str, list[str]] = {run.name: [] for run in runs}
    for run in runs:
        for parent in run.depends_on():
            if parent in children:
                children[parent].append(run.name)
    remaining: dict[str, float] = {}

    def chain(name: str) -> float:
        if name not in remaining:
            remaining[name] = cost[name] + max((chain(child) for child in children[name]), default=0.0)
        return remaining[name]

    for run in runs:
        chain(run.name)
    return remaining


def _train_one(profile: str, data: str | None, device: str | None, results_dir: str, kind: str, method: str,
               items: list[str], run_data: str, init: str | None, target: str | None) -> Any:
    """One planned run in a worker process (`Experiment.run`, so the same cache folder and lock)."""
    from stars.experiments import Experiment

    exp = Experiment("prefetch", profile, data, device, results_dir)
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        result = exp.run(kind, method, items, run_data, init, target)
    return result if kind != "eval" else result["_dir"]


def train_planned(runs: list[PlannedRun], profile: str, data: str | None, jobs: int, device: str | None = None,
                  results_dir: str | None = None, log=print) -> dict[str, Any]:
    """Train the planned runs `jobs` at a time, each in its own process, before the notebooks ask for them.

    A run starts once the run it starts from has finished; among the ready runs the one with the longest
    estimated chain still ahead of it comes first (`critical_path_seconds`: a pretraining that many tunings
    wait for before a short probe), ties in plan order. The notebooks then find every
    run in the cache, so both cores stay busy instead of one kernel waiting for a run another kernel trains.
    The runs are the notebooks' own (same items, same cache keys): the numbers are those of the notebooks
    training them. A failed run is reported and left to its notebook (which reports it as usual); the runs
    that start from it are skipped. -> {run name: checkpoint or run folder}."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    results_dir = results_dir or tempfile.mkdtemp(prefix="stars-prefetch-")
    ahead = critical_path_seconds(runs)
    pending = sorted(runs, key=lambda r: -ahead[r.name])  # stable: plan order among equal chains
    names = {r.name for r in runs}
    done: dict[str, Any] = {}
    failed: set[str] = set()
    with ProcessPoolExecutor(max(1, jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        running: dict[Any, PlannedRun] = {}
        while pending or running:
            for run in list(pending):
                parents = run.depends_on()
                if any(p in failed or p not in names for p in parents):
                    pending.remove(run)  # a run it reads failed, or was not planned: its notebook handles it
                    failed.add(run.name)
                    continue
                if len(running) >= max(1, jobs) or any(p not in done for p in parents):
                    continue
                items, run_data, init, target = run.call
                init = _substitute(init, done)
                items = [_substitute(item, done) for item in items]
                future = pool.submit(_train_one, profile, data, device, results_dir, run.kind, run.method, items,
                                     run_data, init, target)
                running[future] = run
                pending.remove(run)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                run = running.pop(future)
                try:
                    done[run.name] = future.result()
                    log(f"[prefetch] {run.name} ({', '.join(run.notebooks)}) done ({len(done)}/{len(runs)})")
                except Exception as err:  # noqa: BLE001 - the notebook that needs it reports it
                    failed.add(run.name)
                    log(f"[prefetch] {run.name} failed ({type(err).__name__}); its notebook will report it")
    return done


def bench_speeds(device: str | None = None, precision: str = "auto", preset: str = "paper") -> dict[str, float]:
    """Sequences per second of our pretraining step, tuning step and evaluation forward (`stars bench`)."""
    from stars.bench import run_bench

    results = run_bench(None, preset, batch_size=32, steps=2, device=device, workloads=("pretrain", "tune", "eval"),
                        rounds=1, precision=precision)
    return {name: row["ours"]["sequences_per_s"] for name, row in results["workloads"].items()} | {
        "device": results["device"], "precision": precision}


def _epochs_of(config: dict[str, Any]) -> float:
    """Epochs a run trains: its schedule's, or fewer when a stop epoch ends it early (pretraining)."""
    epochs = float(config.get("epochs") or config.get("run", {}).get("epochs", 1))
    stop = config.get("stop_epoch") or 0
    return min(float(stop), epochs) if stop else epochs


def estimate_seconds(run: PlannedRun, speeds: dict[str, float]) -> float:
    """Rough seconds of one planned run at the measured `speeds` (sequences / s per workload)."""
    train, test = split_sizes(run.data)
    cfg = run.config
    pretrain, tune, forward = speeds["pretrain"], speeds["tune"], speeds["eval"]
    if run.kind == "pretrain":
        return _epochs_of(cfg) * train / pretrain
    if run.kind == "tune":
        epochs = _epochs_of(cfg) + (cfg.get("head_epochs", 0) if cfg.get("workflow") == "two-step" else 0)
        views = 2 if any(cfg.get("augment", {}).values()) or cfg.get("method") == "dino" else 1
        seconds = epochs * train * views / tune
        if cfg.get("report_test_max") or cfg.get("select") == "test":
            seconds += _epochs_of(cfg) * (train + test) / forward
        return seconds

    def supervised(settings: dict[str, Any], labelled: float, linear: bool) -> float:
        epochs = _epochs_of(settings)
        step = (labelled / forward) if linear else (labelled / tune)
        tests = epochs if settings.get("report_test_max") else 1
        return epochs * step + tests * test / forward

    if run.method in ("linear", "finetune"):
        return supervised(cfg, train, run.method == "linear")
    if run.method == "transfer":
        inner = cfg[cfg.get("protocol", "finetune")]
        return supervised(inner, train, cfg.get("protocol") == "linear")
    if run.method == "semi":
        runs = cfg.get("runs", 5)
        factor = cfg.get("released_processes", 2) if cfg.get("sampling") == "released" else 1
        return sum(runs * supervised(cfg["finetune"], train * f * factor, False) for f in cfg.get("fractions", []))
    return (train + test) / forward  # knn, fewshot, tsne, confusion: one pass over the features


def format_plan(runs: list[PlannedRun], speeds: dict[str, Any] | None) -> str:
    """The plan as text: datasets, then one line per run, then the total (when speeds are given)."""
    lines = ["datasets:"]
    for data in sorted({run.data for run in runs}):
        train, test = split_sizes(data)
        lines.append(f"  {data}: {train} training / {test} test sequences")
    total = 0.0
    lines.append(f"runs ({len(runs)}):")
    for run in runs:
        seconds = estimate_seconds(run, speeds) if speeds else None
        total += seconds or 0.0
        epochs = _epochs_of(run.config)
        cost = f"  ~{seconds / 3600:.2f} h" if seconds is not None else ""
        lines.append(f"  {run.kind:8s} {run.method:12s} {Path(run.data).name:18s} {epochs:5.0f} epochs{cost}"
                     f"  ({', '.join(run.notebooks)})")
    if speeds:
        lines.append(f"estimated time: {total / 3600:.1f} h on {speeds['device']} (precision {speeds['precision']}; "
                     f"from `stars bench`: pretrain {speeds['pretrain']:.0f}, tune {speeds['tune']:.0f}, "
                     f"eval {speeds['eval']:.0f} sequences/s)")
    return "\n".join(lines)


def print_plan(profile: str, data: str | None, only: list[str] | None = None, device: str | None = None,
               bench: bool = True) -> list[PlannedRun]:
    """Print the datasets and runs `make tables` will train for `profile` and, with `bench`, their estimated
    time from a short `stars bench` on this machine at the profile's size preset and precision."""
    from stars.experiments import get_profile
    from stars.notebooks import list_notebooks, profile_notebooks

    chosen = get_profile(profile, data)
    runs = plan_profile(profile, data, list_notebooks(only=only) if only else profile_notebooks(chosen))
    speeds = None
    if bench and runs:
        precision = "fp32" if "run.precision=fp32" in chosen.tune else "auto"
        speeds = bench_speeds(device, precision, chosen.preset)
    print(f"[plan] profile {profile}: {chosen.description}")
    print("\n".join(f"[plan] {line}" for line in format_plan(runs, speeds).splitlines()), flush=True)
    return runs


__all__ = ["PlannedRun", "plan_profile", "train_planned", "critical_path_seconds", "split_sizes", "bench_speeds", "estimate_seconds", "format_plan",
           "print_plan"]
