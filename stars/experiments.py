"""What the notebooks call: profiles, datasets, and a cache of trained checkpoints and evaluations.

A profile fixes the data and the sizes of every run:

    smoke  seconds, for the tests: a small synthetic set, a tiny model; writes to a temporary folder
    demo   default: the embedded synthetic dataset and a small model; `make tables` on a 2-core CPU
    real   NW-UCLA and UTD-MHAD from their raw folders (DATA), the tiny model; a 2-core CPU, about an hour
    paper  NTU-60/120 and PKU-MMD npz files from a folder (DATA), the paper's hyperparameters; GPU

Stage-1 and stage-2 checkpoints shared by several tables are trained once: every run lives in
`<cache>/<profile>/<stage>-<method>-<key>/`, where `key` hashes CACHE_VERSION, the resolved config
and the contents (SHA-256) of the dataset file and the initial checkpoint. A changed parameter changes
the key of that run and of the runs that start from it, and of nothing else. A run is complete when its
`final.pt` / `metrics.json` exists (both written atomically, last); an interrupted run resumes from its
last checkpoint. Each run folder is locked while it is checked and trained: a second notebook that
needs the same run waits for it instead of training it twice.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stars.config import ConfigError
from stars.io import content_fingerprint, content_sha256, write_json
from stars.results import RESULTS_ROOT, write_figure, write_table
from stars.rundir import RunLock

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("smoke", "demo", "real", "paper")


@dataclass(frozen=True)
class Profile:
    """Sizes and data of one profile. Overrides are `--set` strings applied to the presets."""

    name: str
    preset: str  # model/schedule preset for pretrain, tune and eval
    datasets: dict[str, str]  # role -> npz path (xsub, xview, fewshot, transfer_source, transfer_target)
    pretrain: tuple[str, ...] = ()
    tune: tuple[str, ...] = ()
    evaluation: dict[str, tuple[str, ...]] = field(default_factory=dict)
    semi_runs: int = 5
    description: str = ""
    prepare: Any = field(default=None, compare=False, repr=False)  # makes the dataset files on first use
    env: dict[str, tuple[str, ...]] = field(default_factory=dict)  # STARS_OVERRIDES, applied last per scope
    benchmarks: tuple[str, ...] = ("xsub", "xview")  # dataset roles of the headline comparison
    notebooks: tuple[str, ...] = ()  # the notebooks `make tables` runs; empty: every one but PROFILE_ONLY's
    budgets: tuple[int, ...] = (25, 50, 100)  # MAMP pretraining epochs of the learning curve
    titles: dict[str, str] = field(default_factory=dict)  # role -> title in tables (default: stars.tables)


def _synthetic_profile(name: str, root: Path) -> Profile:
    from stars.data.synthetic import prepare_synthetic

    small = name == "smoke"
    # smoke: 600 sequences of at most 120 frames, stored at T = 120 (a 43 MB file instead of 108 MB at T = 300,
    # read by every run); demo: the generator's default, 40 subjects x 20 classes x 3 views (2400 sequences,
    # 1200 per XSub side)
    options = {"num_subjects": 10, "num_classes": 20, "max_frames": 120, "max_length": 120} if small else {}
    folder = root / ("synthetic-smoke" if small else "synthetic-demo")
    xsub, xview = folder / "SYN_XSub.npz", folder / "SYN_XView.npz"
    xsub_val = folder / "SYN_XSub_validation.npz"

    def make() -> None:
        from stars.data.splits import write_validation_dataset

        prepare_synthetic(folder, seed=0, **options)
        write_validation_dataset(xsub, xsub_val, by="subject")

    def prepare() -> None:
        prepare_once(folder, {"generator": "synthetic", "seed": 0, "options": options, "validation": "subject"},
                     [xsub, xview, xsub_val], make)

    # transfer: the synthetic profiles have one dataset, so its cross-view split stands in as the target
    datasets = {"xsub": str(xsub), "xview": str(xview), "fewshot": str(xsub), "xsub_validation": str(xsub_val),
                "transfer_source": str(xsub), "transfer_target": str(xview)}
    if small:
        return Profile(
            name=name, preset="tiny", datasets=datasets,
            pretrain=("run.epochs=1", "run.batch_size=32"),
            tune=("run.epochs=1", "run.batch_size=32", "queue_size=128"),
            evaluation={
                "linear": ("epochs=1",), "finetune": ("epochs=1",), "semi": ("finetune.epochs=1",),
            },
            semi_runs=2, budgets=(1, 2),
            description="seconds-long runs on a small synthetic set (tests only)",
            prepare=prepare,
        )
    # The tiny model (32 frames, 32-d, 2 blocks) with longer schedules. MAMP needs on the order of 100
    # epochs here for features good enough to tune (KNN k=1 on XSub: 41% after 50 epochs, 47% after 80,
    # 53% after 100); 80 keeps `make tables` at about 25 minutes on 2 cores.
    # Stage 2 takes about 190 steps instead of the paper's 3,130, so its learning rate is 3e-3, not 1e-3
    # (from that MAMP start, 10 epochs at 1e-3 add about 1 KNN point, at 3e-3 about 3).
    return Profile(
        name=name, preset="tiny", datasets=datasets, semi_runs=3,
        pretrain=("run.epochs=80", "run.batch_size=32", "optim.warmup_epochs=5", "run.checkpoint_every=20"),
        tune=("run.epochs=10", "run.batch_size=64", "queue_size=1024", "head_epochs=5", "optim.lr=3e-3",
              "optim.min_lr=3e-3"),
        # Probes sized for `make tables` in under half an hour on 2 cores: 10 linear / 10 finetuning epochs
        # (the linear probe's test accuracy moves by under a point after its 10th epoch here)
        evaluation={
            "linear": ("epochs=10", "batch_size=64"),
            "finetune": ("epochs=10", "warmup_epochs=2", "batch_size=32"),
            "semi": ("finetune.epochs=10", "finetune.warmup_epochs=2"),
            "transfer": ("finetune.epochs=10", "linear.epochs=10"),
            "fewshot": ("episodes=20",),
        },
        description="embedded synthetic dataset (40 subjects, NTU-25 layout), tiny model, CPU", prepare=prepare,
    )


def get_profile(name: str, data: str | os.PathLike | None = None, cache_root: Path | None = None) -> Profile:
    """Resolve a profile; `data` is the folder holding the npz files (real, paper). `STARS_OVERRIDES`
    (see `env_overrides`) adds overrides to its runs."""
    return _with_env_overrides(_profile(name, data, cache_root))


def _profile(name: str, data: str | os.PathLike | None = None, cache_root: Path | None = None) -> Profile:
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    cache_root = cache_root or default_cache_root()
    if name in ("smoke", "demo"):
        if data:
            raise ConfigError(f"profile {name!r} runs on the embedded synthetic dataset and does not read "
                              f"data={str(data)!r}; drop it, or use profile real or paper for your own data")
        return _synthetic_profile(name, cache_root / "data")
    if not data:
        raise ConfigError(f"profile {name!r} needs DATA: the folder with the dataset files")
    folder = Path(data)
    if name == "paper":
        return _paper_profile(folder)
    return _real_profile(folder, cache_root / "data" / "real")


# The real profile's pretraining budget, chosen on the training splits only: the learning_curve notebook
# pretrains on each training split less one held-out subject (UTD-MHAD) or view (NW-UCLA) for every budget
# of REAL_BUDGETS and scores KNN on the held-out part; this is the budget with the best mean validation KNN
# of STARS over both datasets (results/real/learning_curve.md shows the choice and says if it changed).
REAL_PRETRAIN_EPOCHS = 200
REAL_BUDGETS = (25, 50, 100, 200)
REAL_NOTEBOOKS = ("learning_curve", "headline", "tuning_strategies", "table04_mamp_plus_nnclr",
                  "table07_mae_vs_mamp_knn", "table10_layer_decay", "transfer_ntu60_to_pku", "figure2_tsne")


def _real_profile(folder: Path, out: Path) -> Profile:
    """UTD-MHAD (cross-subject) and NW-UCLA (cross-view) prepared from their raw folders once, in the layout
    both share (Kinect v1 order), plus a validation file of each made from its training split alone. The tiny
    model, sized for a 2-core CPU (about an hour for `make tables PROFILE=real`), with small-data schedules:
    batch 16, so UTD-MHAD's 431 training sequences still give 26 updates per epoch."""
    from stars.data.real import prepare_nw_ucla, prepare_utd_mhad
    from stars.data.splits import write_validation_dataset

    missing = [str(folder / name) for name in ("utd_mhad", "nw_ucla/all_sqe") if not (folder / name).is_dir()]
    if missing:
        raise ConfigError(f"profile real: no raw dataset folder {' or '.join(missing)} (DATA must hold utd_mhad/ "
                          "and nw_ucla/all_sqe/, as ../shared/datasets does)")

    utd, ucla = out / "UTD_MHAD_XSub.npz", out / "NW_UCLA_XView.npz"
    utd_val, ucla_val = out / "UTD_MHAD_XSub_validation.npz", out / "NW_UCLA_XView_validation.npz"

    def make() -> None:
        prepare_utd_mhad(folder / "utd_mhad", out, layout="kinect_v1_20")
        prepare_nw_ucla(folder / "nw_ucla" / "all_sqe", out)
        write_validation_dataset(utd, utd_val, by="subject")
        write_validation_dataset(ucla, ucla_val, by="view")

    def prepare() -> None:
        prepare_once(out, {"raw": str(folder.resolve()), "layout": "kinect_v1_20", "validation": ["subject", "view"]},
                     [utd, ucla, utd_val, ucla_val], make)

    datasets = {"xsub": str(utd), "xview": str(ucla), "xsub_validation": str(utd_val),
                "xview_validation": str(ucla_val), "fewshot": str(utd),
                "transfer_source": str(ucla), "transfer_target": str(utd)}
    return Profile(
        name="real", preset="tiny", datasets=datasets, prepare=prepare, semi_runs=3,
        pretrain=(f"run.epochs={REAL_PRETRAIN_EPOCHS}", "run.batch_size=16", "optim.warmup_epochs=5",
                  "run.checkpoint_every=25"),
        tune=("run.epochs=10", "run.batch_size=16", "queue_size=1024", "head_epochs=5"),
        evaluation={
            "linear": ("epochs=30", "batch_size=32"),
            "finetune": ("epochs=15", "warmup_epochs=2", "batch_size=16"),
            "semi": ("finetune.epochs=15", "finetune.warmup_epochs=2"),
            "transfer": ("finetune.epochs=15", "linear.epochs=30"),
            "fewshot": ("episodes=20",),
        },
        notebooks=REAL_NOTEBOOKS, budgets=REAL_BUDGETS,
        titles={"xsub": "UTD-MHAD XSub", "xview": "NW-UCLA XView", "xsub_validation": "UTD-MHAD validation",
                "xview_validation": "NW-UCLA validation", "transfer_source": "NW-UCLA", "transfer_target": "UTD-MHAD"},
        description="UTD-MHAD (XSub: cross-subject) and NW-UCLA (XView: cross-view), tiny model, CPU",
    )


PREPARED_STAMP = ".stars-prepared.json"


def prepare_once(folder: Path, stamp: dict[str, Any], outputs: list[Path], make) -> None:
    """Run `make()` to write `outputs` into `folder` unless they exist and were made from `stamp` (the raw
    folder and options): data made from another raw folder or with other options is made again. Holds the
    folder's lock, so one notebook prepares and the others wait for it."""
    marker = folder / PREPARED_STAMP
    with RunLock(folder, wait=True):
        try:
            made_from = json.loads(marker.read_text())
        except (OSError, ValueError):
            made_from = None
        if made_from == json.loads(json.dumps(stamp)) and all(path.exists() for path in outputs):
            return
        make()
        write_json(marker, stamp)


def _paper_profile(folder: Path) -> Profile:
    """NTU-60 XSub / XView, NTU-120 XSub and PKU-MMD II XSub under their official names in `folder`, the
    paper's hyperparameters with each dataset's released recipe (chosen from the file names, stars.recipes),
    and the released code's behaviour wherever it differs from our defaults (`PAPER_SWITCHES`,
    docs/reproduction.md)."""
    from stars.recipes import PAPER_SWITCHES

    files = {"xsub": "NTU60_XSub.npz", "xview": "NTU60_XView.npz", "ntu120": "NTU120_XSub.npz",
             "pku": "PKUv2_XSub.npz", "fewshot": "NTU120_XSub.npz", "transfer_source": "NTU60_XSub.npz",
             "transfer_target": "PKUv2_XSub.npz"}
    datasets = {role: folder / file for role, file in files.items()}
    missing = sorted({str(path) for path in datasets.values() if not path.exists()})
    if missing:
        raise ConfigError(f"profile paper: missing {', '.join(missing)} (make them with `stars prepare ntu60`, "
                          "`ntu120` and `pku2`)")
    evaluation = {scope: items for scope, items in PAPER_SWITCHES.items() if scope not in ("pretrain", "tune")}
    return Profile(name="paper", preset="paper", datasets={k: str(v) for k, v in datasets.items()},
                   pretrain=PAPER_SWITCHES["pretrain"], tune=PAPER_SWITCHES["tune"], evaluation=evaluation,
                   benchmarks=("xsub", "xview", "ntu120", "pku"),
                   description="NTU RGB+D 60/120 and PKU-MMD II, the released recipes (docs/reproduction.md)")


OVERRIDES_ENV = "STARS_OVERRIDES"


def env_overrides(text: str | None = None) -> tuple[str | None, dict[str, tuple[str, ...]]]:
    """Parse `STARS_OVERRIDES` (or `text`): whitespace-separated `SCOPE:KEY=VALUE` items applied to every run
    of that scope in any profile, after the profile's and the notebook's own values (SCOPE = pretrain, tune
    or an evaluation protocol), and optionally `preset=NAME` to change the profile's size preset.
    -> (preset or None, {scope: items}).

    Example, the paper profile on small files in minutes: `STARS_OVERRIDES="preset=tiny pretrain:run.epochs=1
    tune:run.epochs=1 tune:head_epochs=1 linear:epochs=1 finetune:epochs=1 semi:finetune.epochs=1"`.
    """
    from stars.eval.cli import PROTOCOLS

    text = os.environ.get(OVERRIDES_ENV, "") if text is None else text
    preset, scoped = None, {}
    for item in text.split():
        scope, sep, assignment = item.partition(":")
        if not sep:
            key, eq, value = item.partition("=")
            if key != "preset" or not eq or value not in ("paper", "small", "tiny"):
                raise ConfigError(f"{OVERRIDES_ENV}: {item!r} is neither SCOPE:KEY=VALUE nor preset=paper|small|tiny")
            preset = value
            continue
        if scope not in ("pretrain", "tune", *PROTOCOLS) or "=" not in assignment:
            raise ConfigError(f"{OVERRIDES_ENV}: {item!r} is not SCOPE:KEY=VALUE with SCOPE one of pretrain, tune, "
                              f"{', '.join(sorted(PROTOCOLS))}")
        scoped.setdefault(scope, []).append(assignment)
    return preset, {scope: tuple(items) for scope, items in scoped.items()}


def _with_env_overrides(profile: Profile) -> Profile:
    """The profile with `STARS_OVERRIDES` recorded: its size preset, and its scoped items, which every run
    of that scope applies after the notebook's own values (`Experiment._overrides`)."""
    preset, scoped = env_overrides()
    if preset is None and not scoped:
        return profile
    return dataclasses.replace(
        profile, preset=preset or profile.preset, env=scoped,
        description=f"{profile.description}; {OVERRIDES_ENV}={os.environ.get(OVERRIDES_ENV, '')}",
    )


def default_cache_root() -> Path:
    return Path(os.environ.get("STARS_CACHE", REPO_ROOT / "cache"))


def file_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 of the whole file (memoised per path, size, mtime and inode): the cache keys change with
    any change of a dataset or checkpoint, wherever in the file."""
    return content_fingerprint(path)


# Raise when a change of the training or evaluation code changes results: every cached run is redone.
CACHE_VERSION = 2


def dataset_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """What a result was computed from: {"file": name, "bytes": size, "sha256": hash of the whole content}."""
    return {"file": Path(path).name, "bytes": Path(path).stat().st_size, "sha256": content_sha256(path)}


def keep_eval_checkpoints() -> bool:
    """Whether finished evaluations keep the checkpoints of the heads / finetuned encoders they trained
    (STARS_KEEP_EVAL_CHECKPOINTS=1). By default they are deleted once metrics.json is written: the
    evaluations of the smoke profile alone would otherwise keep about 0.7 GB of them."""
    return os.environ.get("STARS_KEEP_EVAL_CHECKPOINTS", "0").lower() in ("1", "true", "yes")


def check_device(device: str | None) -> str | None:
    """`device` as given ("" / None = the default), or ConfigError when it names no device or CUDA is
    asked for on a machine without it."""
    if not device:
        return None
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device={device!r} is not a device; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but CUDA is not available on this machine; use device=cpu")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ConfigError(f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str).encode()).hexdigest()[:12]


_VOLATILE = ("run.progress", "run.device", "run.checkpoint_every")


def _cache_relative(value: Any, cache: Path) -> Any:
    """`value` with every path inside the profile's cache written as `<run>/<file>` (a checkpoint another run
    is compared with, e.g.), so provenance names runs, not folders of this machine."""
    if isinstance(value, dict):
        return {k: _cache_relative(v, cache) for k, v in value.items()}
    if isinstance(value, list):
        return [_cache_relative(v, cache) for v in value]
    if isinstance(value, str) and value.startswith(str(cache) + os.sep):
        return value[len(str(cache)) + 1:]
    return value


def _resolved(kind: str, method: str, preset: str, overrides: list[str], has_ckpt: bool = True,
              data: str | None = None) -> dict:
    """The resolved config dict of a run (with the recipe of its dataset `data`), minus fields that do not
    change its result."""
    from stars.config import to_dict

    if kind == "pretrain":
        from stars.train.pretrain import resolve_pretrain_config

        cfg = resolve_pretrain_config(method, preset, data, overrides)
    elif kind == "tune":
        from stars.train.tune import resolve_tune_config

        cfg = resolve_tune_config(method, preset, data, overrides)
    else:
        from stars.eval.cli import resolve_config

        cfg = resolve_config(method, preset, overrides, has_ckpt=has_ckpt, data=data)
    data = to_dict(cfg)
    for key in _VOLATILE:
        head, _, tail = key.partition(".")
        if isinstance(data.get(head), dict):
            data[head].pop(tail, None)
    return data


class Experiment:
    """One notebook's view of a profile: datasets, cached runs, and where its results go.

    `seed` is the seed of every run the notebook asks for: `run.seed` of pretraining and tuning, `seed` of
    the evaluation protocols (head initialisation, subsets, episodes), the semi-supervised runs' seeds
    (seed, seed + 1, ...) and the t-SNE seed (42 + seed, the official 42 by default). Every run used is
    recorded (`runs`) and written into the provenance of the tables.
    """

    def __init__(self, name: str, profile: str = "demo", data: str | None = None, device: str | None = None,
                 results_dir: str | None = None, progress: bool = False, seed: int = 0):
        if seed < 0:
            raise ConfigError(f"seed must be >= 0, got {seed}")
        self.name = name
        self.profile = get_profile(profile, data)
        self.device = check_device(device)
        self.progress = progress
        self.seed = seed
        self.cache = default_cache_root() / self.profile.name
        self.out_dir = Path(results_dir) if results_dir else RESULTS_ROOT / self.profile.name
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.runs: dict[str, dict[str, Any]] = {}  # run folder name -> what it is (for the provenance)
        self.params: dict[str, Any] = {}

    # --- data --------------------------------------------------------------------------------
    def dataset(self, role: str = "xsub") -> str:
        if self.profile.prepare is not None:
            self.profile.prepare()
        try:
            return self.profile.datasets[role]
        except KeyError:
            raise ConfigError(
                f"profile {self.profile.name!r} has no {role!r} dataset; it has {sorted(self.profile.datasets)}"
            ) from None

    def dataset_label(self, role: str = "xsub") -> str:
        try:
            return Path(self.profile.datasets[role]).stem
        except KeyError:
            raise ConfigError(f"profile {self.profile.name!r} has no {role!r} dataset") from None

    def fingerprints(self, roles: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """role -> dataset_fingerprint of that role's file."""
        return {role: dataset_fingerprint(self.dataset(role)) for role in roles}

    # --- cached runs -------------------------------------------------------------------------
    def _seed_overrides(self, kind: str, method: str) -> list[str]:
        if kind in ("pretrain", "tune"):
            return [f"run.seed={self.seed}"]
        if not self.seed:
            return []
        if method == "semi":
            from stars.eval.cli import resolve_config

            runs = resolve_config("semi", self.profile.preset, list(self.profile.evaluation.get("semi", ()))).runs
            return [f"seeds={_fmt(range(self.seed, self.seed + runs))}"]
        if method == "tsne":
            return [f"random_state={42 + self.seed}"]
        return [f"seed={self.seed}"]

    def _overrides(self, kind: str, method: str, extra: dict[str, Any] | None) -> list[str]:
        base = {"pretrain": self.profile.pretrain, "tune": self.profile.tune}.get(kind)
        if base is None:
            base = self.profile.evaluation.get(method, ())
        items = list(base) + self._seed_overrides(kind, method) + [f"{k}={_fmt(v)}" for k, v in (extra or {}).items()]
        items += self.profile.env.get(kind if kind in ("pretrain", "tune") else method, ())  # STARS_OVERRIDES last
        if kind in ("pretrain", "tune"):
            items.append(f"run.progress={self.progress}")
        return items

    def _run_dir(self, kind: str, method: str, overrides: list[str], data: str, init: str | None,
                 target: str | None = None) -> Path:
        evaluated = target if (kind == "eval" and method == "transfer") else data
        resolved = _resolved(kind, method, self.profile.preset, overrides, has_ckpt=init is not None,
                             data=evaluated)
        key = _key(kind, method, resolved, file_fingerprint(data),
                   file_fingerprint(init) if init else None, file_fingerprint(target) if target else None)
        run_dir = self.cache / f"{kind}-{method}-{key}"
        self.runs[run_dir.name] = {
            "kind": kind, "method": method, "dataset": Path(data).name,
            "init": Path(init).parent.name if init else None, "target": Path(target).name if target else None,
            "config": _cache_relative(resolved, self.cache),
        }
        return run_dir

    @contextlib.contextmanager
    def _logged(self, run_dir: Path):
        """Run a cached computation with its console output in `<cache>/logs/<run>.log` (not in the
        notebook, where it would only repeat cache paths), and say in one line what ran and how long."""
        log_path = self.cache / "logs" / f"{run_dir.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with open(log_path, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
        print(f"ran {run_dir.name} in {time.perf_counter() - start:.1f} s")

    def pretrain_epochs(self, method: str = "mamp", dataset: str = "xsub") -> int:
        """The epochs of the profile's shared stage-1 run (`run.epochs` after every override)."""
        items = self._overrides("pretrain", method, None)
        return int(_resolved("pretrain", method, self.profile.preset, items, data=self.dataset(dataset))["run"]["epochs"])

    def pretrain(self, method: str = "mamp", dataset: str = "xsub", **overrides: Any) -> str:
        """Final checkpoint of a stage-1 run (trained now unless cached)."""
        return self.run("pretrain", method, self._overrides("pretrain", method, overrides), self.dataset(dataset))

    def tune(self, method: str, init: str | None, dataset: str = "xsub", **overrides: Any) -> str:
        """Final checkpoint of a stage-2 run from `init` (trained now unless cached)."""
        return self.run("tune", method, self._overrides("tune", method, overrides), self.dataset(dataset), init)

    def evaluate(self, protocol: str, /, ckpt: str | None, dataset: str = "xsub", target: str | None = None,
                 **overrides: Any) -> dict[str, Any]:
        """Metrics of an evaluation protocol (run now unless cached). `protocol` is positional only, so the
        transfer protocol's own `protocol=linear|finetune` can be passed as an override."""
        return self.run("eval", protocol, self._overrides("eval", protocol, overrides), self.dataset(dataset), ckpt,
                        self.dataset(target) if target else None)

    def run(self, kind: str, method: str, items: list[str], data: str, init: str | None = None,
            target: str | None = None) -> Any:
        """One cached run from its complete `--set` items (what `pretrain`, `tune` and `evaluate` resolve, and
        what `stars.plan` records): trained now unless its folder holds the finished run, else waited for
        while another process trains it. -> the checkpoint (pretrain, tune) or the metrics (eval)."""
        run_dir = self._run_dir(kind, method, items, data, init, target)
        done = run_dir / ("metrics.json" if kind == "eval" else "final.pt")
        with RunLock(run_dir, wait=True):  # another notebook training this run: wait, then reuse it
            if not done.exists():
                with self._logged(run_dir):
                    self._train(kind, method, items, data, init, target, run_dir)
                if kind == "eval" and not keep_eval_checkpoints():
                    for checkpoint in run_dir.rglob("*.pt"):  # the trained heads of a finished evaluation
                        checkpoint.unlink()
        if kind == "eval":
            result = json.loads(done.read_text())
            result["_dir"] = str(run_dir)
            return result
        best = run_dir / "best.pt"  # tuning with select=monitor / test: the selected epoch
        return str(best if kind == "tune" and best.exists() else done)

    def _train(self, kind: str, method: str, items: list[str], data: str, init: str | None, target: str | None,
               run_dir: Path) -> None:
        common = {"out": str(run_dir), "preset": self.profile.preset, "resume": True, "overrides": items,
                  "device": self.device}
        if kind == "pretrain":
            from stars.train.pretrain import main

            main(argparse.Namespace(method=method, data=data, **common))
        elif kind == "tune":
            from stars.train.tune import main

            main(argparse.Namespace(method=method, init=init, data=data, **common))
        else:
            from stars.eval.cli import main

            main(argparse.Namespace(protocol=method, ckpt=init, data=data, target_data=target, **common))

    # --- outputs -----------------------------------------------------------------------------
    def provenance(self, roles: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
        """What the notebook's results come from: parameters, seed, dataset fingerprints of `roles`, and
        every cached run used (folder name = cache key, with its resolved config)."""
        return {"parameters": self.params, "seed": self.seed,
                "datasets": self.fingerprints(roles) if roles else {},
                "runs": dict(sorted(self.runs.items()))}

    def table(self, df, title: str, roles: list[str] | tuple[str, ...] | str, notes: str = "",
              name: str | None = None, demo_label: bool = True, dataset: str | None = None):
        """Write the table (csv, md, json) and return it for display, rounded, with its title.

        roles: the dataset roles the numbers come from (their fingerprints go into the provenance);
        `dataset` overrides the label of the table (e.g. "architecture only"). `demo_label` marks
        smoke/demo numbers as not the paper's (off for results that do not depend on data).
        """
        from stars.results import styled_table

        roles = (roles,) if isinstance(roles, str) else tuple(roles)
        label = dataset or ", ".join(self.dataset_label(role) for role in roles)
        write_table(df, self.out_dir, name or self.name, title=title, profile=self.profile.name,
                    dataset=label, notes=notes, demo_label=demo_label, meta=self.provenance(roles))
        return styled_table(df, title)

    def figure(self, fig, caption: str, roles: list[str] | tuple[str, ...] | str, name: str | None = None):
        """Write the figure as PNG with a caption (what it shows, then profile and datasets) drawn under it
        and in the PNG metadata; -> the PNG as an IPython Image, shown inline as a cell's last expression."""
        roles = (roles,) if isinstance(roles, str) else tuple(roles)
        prints = self.fingerprints(roles)
        source = ", ".join(f"{p['file']} (sha256 {p['sha256'][:12]})" for p in prints.values())
        full = f"{caption} Profile {self.profile.name}; data {source}."
        path = write_figure(fig, self.out_dir, name or self.name, caption=full)
        from IPython.display import Image

        return Image(data=path.read_bytes(), format="png")  # the bytes, not the path: shows inline, embeds in HTML

    def save_params(self, params: Any) -> Path:
        """The notebook's validated parameters, next to its results."""
        from stars.config import save_config

        data = dataclasses.asdict(params) if dataclasses.is_dataclass(params) else dict(params)
        self.params = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
        data["profile_description"] = self.profile.description
        return save_config(data, self.out_dir / f"{self.name}.config.yaml")


def start_notebook(name: str, namespace: dict[str, Any]):
    """The first call of every notebook, right after its parameters cell: -> (parameters, Experiment).

    Validates the declared parameters (stars.parameters), opens the experiment of the profile with the
    notebook's `profile`, `data`, `device`, `results_dir` and `seed`, saves the parameters next to the
    results, and sets the display: figures drawn off-screen and shown once as the written PNG.
    """
    import matplotlib

    from stars.parameters import notebook_parameters
    from stars.tables import set_profile_titles

    matplotlib.use("Agg")
    params = notebook_parameters(namespace)
    exp = Experiment(name, params.profile, params.data or None, params.device or None,
                     params.results_dir or None, seed=params.seed)
    set_profile_titles(exp.profile.titles)
    exp.save_params(params)
    return params, exp


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple, range)):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)
