"""`stars` command line: prepare, pretrain, tune, eval, features, flops, bench.

Every subcommand is a thin wrapper over a function of the package; `--set key=value` overrides
are checked against the subcommand's config (an unknown or mistyped key fails, naming the key).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

import torch

from stars.bench import COMPILE_MODES, SDPA_BACKENDS

PREPARE_TARGETS = ("ntu60", "ntu120", "pku1", "pku2", "nw-ucla", "utd-mhad", "synthetic", "byo")
PRETRAIN_METHODS = ("mamp", "mae")
TUNE_METHODS = ("stars", "stars-3stage", "moco", "dino", "mamp-nnclr", "nnclr")
DEBUG_ENV = "STARS_DEBUG"
EVAL_PROTOCOLS = ("knn", "linear", "finetune", "semi", "fewshot", "transfer", "tsne", "confusion")


def _common_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (repeatable), e.g. --set run.epochs=10")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1")
    p.add_argument("--overwrite", action="store_true", help="delete the run already in OUT and start again")


def _allow_changed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-changed", action="store_true",
                   help="with --resume: continue although the data or config differ (both are recorded)")


def _debug(p: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
    p.add_argument("--debug", action="store_true", default=default,
                   help=f"show the full traceback of an error (or set {DEBUG_ENV}=1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stars", allow_abbrev=False,
        description="STARS / MAMP skeleton self-supervised learning: data, pretraining, tuning, evaluation.",
    )
    _debug(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare", allow_abbrev=False, help="raw skeleton files -> dataset npz files")
    p.add_argument("target", choices=PREPARE_TARGETS)
    p.add_argument("--raw", action="append", default=[], help="raw data folder (repeatable for NTU-120)")
    p.add_argument("--out", required=True, help="output folder for the npz files")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    p.add_argument("--seed", type=int, default=0, help="synthetic: generator seed")
    p.add_argument("--no-resume", action="store_true", help="ignore cached per-file results")
    p.add_argument("--missing-list", default=None,
                   help="NTU: the official samples-with-missing-skeletons file (replaces the built-in list)")
    p.add_argument("--skeleton-files", type=int, default=0,
                   help="synthetic: also write this many NTU .skeleton text files under OUT/skeletons")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preparation option (synthetic generator fields, layout, ...)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of another preparation (other target, raw folders or options) in OUT")

    p = sub.add_parser("pretrain", allow_abbrev=False, help="stage 1: MAMP or MAE pretraining")
    p.add_argument("method", choices=PRETRAIN_METHODS)
    p.add_argument("--data", required=True, help="dataset npz (training split is used)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--preset", default="paper", help="paper | small | tiny (model and schedule size)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint-last.pt")
    _common_run(p)
    _allow_changed(p)

    p = sub.add_parser("tune", allow_abbrev=False, help="stage 2: self-supervised tuning (STARS and alternatives)")
    p.add_argument("method", choices=TUNE_METHODS)
    p.add_argument("--init", default=None, help="stage-1 checkpoint (ours or official); none for nnclr from scratch")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="paper")
    p.add_argument("--resume", action="store_true")
    _common_run(p)
    _allow_changed(p)

    p = sub.add_parser("eval", allow_abbrev=False, help="evaluation protocols and figures")
    p.add_argument("protocol", choices=EVAL_PROTOCOLS)
    p.add_argument("--ckpt", default=None,
                   help="checkpoint to evaluate; 'random' (or none) = a random encoder of --preset for the data's layout")
    p.add_argument("--data", required=True)
    p.add_argument("--target-data", default=None, help="transfer: the dataset to evaluate on")
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="paper")
    p.add_argument("--resume", action="store_true")
    _common_run(p)

    p = sub.add_parser("features", allow_abbrev=False, help="pooled encoder features of a split")
    p.add_argument("--ckpt", default=None)
    p.add_argument("--data", required=True)
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--out", required=True, help="output .npy file (labels go to *_labels.npy)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--preset", default=None, help="encoder preset when --ckpt is omitted")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 autocast on CUDA, fp32 on CPU; fp32: fp32 end to end")
    p.add_argument("--device", default=None)

    p = sub.add_parser("flops", allow_abbrev=False, help="parameters and MACs with the paper's convention")
    p.add_argument("model", choices=("mamp", "stars", "all"))

    p = sub.add_parser("bench", allow_abbrev=False,
                       help="time our feeder, pretraining, tuning and evaluation steps against a baseline")
    p.add_argument("--data", default=None, help="dataset npz (default: a generated synthetic one)")
    p.add_argument("--preset", default="paper")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=3, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per side (alternating; the median is kept)")
    p.add_argument("--workloads", default="feeder,pretrain,tune,eval", help="comma-separated subset")
    p.add_argument("--against-official", default=None, metavar="DIR",
                   help="a checkout of the official MAMP or STARS code to time against (default: our reference path)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="our side's precision (auto: bf16 autocast on CUDA, fp32 on CPU); the baseline runs fp32")
    p.add_argument("--compile", nargs="?", const="blocks", default="off", choices=COMPILE_MODES,
                   help="torch.compile our side: the transformer blocks (the training loop's run.compile; the "
                        "default when given without a value) or each step's whole model forward")
    p.add_argument("--profile", action="store_true",
                   help="per workload: a torch.profiler table of one step of ours, its time by kind of work "
                        "(GEMM, attention, normalisation, copies, ...), the GEMM and attention rates and the "
                        "step's ceiling if only those took time")
    p.add_argument("--sdpa", default="auto", choices=SDPA_BACKENDS,
                   help="the attention kernel family of our side (auto: PyTorch's choice)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="write the measurements as JSON here")
    for command in sub.choices.values():
        _debug(command)
    return parser


HANDLERS = {
    "prepare": "stars.data.prepare:main",
    "pretrain": "stars.train.pretrain:main",
    "tune": "stars.train.tune:main",
    "eval": "stars.eval.cli:main",
    "features": "stars.eval.features:main",
    "flops": "stars.analysis.flops:main",
    "bench": "stars.bench:main",
}


# Errors a user can cause (bad input, a full or read-only disk, a diverging run, a busy folder):
# one line and exit status 2. Anything else is a defect and keeps its traceback.
USER_ERRORS = (ValueError, OSError, FloatingPointError, MemoryError, torch.OutOfMemoryError)

_ERRNO_HINTS = {
    errno.ENOSPC: "no space left on the device; free some space or choose another output folder",
    errno.EDQUOT: "disk quota exceeded; free some space or choose another output folder",
    errno.EROFS: "the file system is read-only; choose a writable output folder",
    errno.EACCES: "permission denied; choose a folder you may write, or fix its permissions",
    errno.EPERM: "operation not permitted; choose a folder you may write, or fix its permissions",
    errno.EFBIG: "the file size limit was reached (see `ulimit -f`); raise it or write less",
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "is a folder, a file was expected",
    errno.ENOTDIR: "a path component is not a folder",
}


def describe_error(err: BaseException) -> str:
    """One line for a user error: the file or value it names and what to do."""
    if isinstance(err, torch.OutOfMemoryError):
        return "out of memory on the device; lower run.batch_size (or batch_size) with --set"
    if isinstance(err, MemoryError):
        return "out of memory; lower the batch size or use a machine with more memory"
    if isinstance(err, OSError) and err.errno in _ERRNO_HINTS:
        where = err.filename or ""
        return f"{where}: {_ERRNO_HINTS[err.errno]}" if where else _ERRNO_HINTS[err.errno]
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    module_name, func_name = HANDLERS[args.command].split(":")
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        result = handler(args)
    except USER_ERRORS as err:
        if debug:
            raise
        print(f"stars {args.command}: error: {describe_error(err)} (--debug shows the traceback)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"stars {args.command}: interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
