"""`stars` command line: prepare, pretrain, tune, eval, features, flops, bench.

Every subcommand is a thin wrapper over a function of the package; `--set key=value` overrides
are checked against the subcommand's config (an unknown or mistyped key fails, naming the key).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from stars.config import ConfigError

PREPARE_TARGETS = ("ntu60", "ntu120", "pku1", "pku2", "nw-ucla", "utd-mhad", "synthetic")
PRETRAIN_METHODS = ("mamp", "mae")
TUNE_METHODS = ("stars", "stars-3stage", "moco", "dino", "mamp-nnclr", "nnclr")
EVAL_PROTOCOLS = ("knn", "linear", "finetune", "semi", "fewshot", "transfer", "tsne", "confusion")


def _common_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (repeatable), e.g. --set run.epochs=10")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stars", allow_abbrev=False,
        description="STARS / MAMP skeleton self-supervised learning: data, pretraining, tuning, evaluation.",
    )
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

    p = sub.add_parser("pretrain", allow_abbrev=False, help="stage 1: MAMP or MAE pretraining")
    p.add_argument("method", choices=PRETRAIN_METHODS)
    p.add_argument("--data", required=True, help="dataset npz (training split is used)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--preset", default="paper", help="paper | small | tiny (model and schedule size)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint-last.pt")
    _common_run(p)

    p = sub.add_parser("tune", allow_abbrev=False, help="stage 2: self-supervised tuning (STARS and alternatives)")
    p.add_argument("method", choices=TUNE_METHODS)
    p.add_argument("--init", default=None, help="stage-1 checkpoint (ours or official); none for nnclr from scratch")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="paper")
    p.add_argument("--resume", action="store_true")
    _common_run(p)

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
    p.add_argument("--device", default=None)

    p = sub.add_parser("flops", allow_abbrev=False, help="parameters and MACs with the paper's convention")
    p.add_argument("model", choices=("mamp", "stars", "all"))

    p = sub.add_parser("bench", allow_abbrev=False, help="throughput of the feeder, pretraining and tuning")
    p.add_argument("--data", default=None, help="dataset npz (default: a generated synthetic one)")
    p.add_argument("--preset", default="paper")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="write the measurements as JSON here")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module_name, func_name = HANDLERS[args.command].split(":")
    handler = getattr(importlib.import_module(module_name), func_name)
    try:
        result = handler(args)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"stars {args.command}: error: {err}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
