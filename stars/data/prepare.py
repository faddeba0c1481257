"""`stars prepare TARGET --raw DIR --out DIR`: raw skeleton files -> dataset npz files."""

from __future__ import annotations

import json
from pathlib import Path

from stars.config import ConfigError, parse_assignments, parse_value
from stars.io import remove_orphan_files, write_json
from stars.rundir import RunFolderError, RunLock


def _options(overrides: list[str], allowed: dict[str, type]) -> dict:
    """`--set key=value` for preparation options, typed; unknown keys fail naming the key."""
    out = {}
    for key, value in parse_assignments(overrides).items():
        if key not in allowed:
            raise ConfigError(f"unknown prepare option {key!r}; known: {', '.join(sorted(allowed))}")
        out[key] = parse_value(allowed[key], value, f"prepare option {key}")
    return out


def _one_raw(args) -> str:
    if len(args.raw) != 1:
        raise ValueError(f"prepare {args.target}: give exactly one --raw folder")
    return args.raw[0]


IDENTITY_NAME = ".stars-prepare.json"


def _identity(args) -> dict:
    """What a preparation's outputs are made from: target, raw folders, options."""
    return {
        "target": args.target,
        "raw": [str(Path(r).resolve()) for r in args.raw],
        "options": sorted(args.overrides),
        "seed": args.seed if args.target == "synthetic" else None,
        "missing_list": str(Path(args.missing_list).resolve()) if args.missing_list else None,
    }


def check_output(out: Path, identity: dict, overwrite: bool) -> None:
    """Refuse an output folder that holds another finished preparation's files (another target, raw
    folders or options) unless `overwrite`. Call it holding the folder's lock."""
    marker = out / IDENTITY_NAME
    if marker.exists() and not overwrite:
        try:
            previous = json.loads(marker.read_text())
        except (OSError, ValueError):
            previous = None
        if previous != identity:
            raise RunFolderError(
                f"{out} holds the output of another preparation ({previous}); pass --overwrite to replace it "
                "or choose another --out"
            )


def main(args) -> int:
    """Hold OUT's lock for the whole preparation (see `stars.rundir`)."""
    out = Path(args.out)
    with RunLock(out):
        remove_orphan_files(out)
        identity = _identity(args)
        check_output(out, identity, getattr(args, "overwrite", False))
        code = _prepare(args)
        write_json(out / IDENTITY_NAME, identity)  # this preparation finished
        return code


def _prepare(args) -> int:
    target, out = args.target, Path(args.out)
    if target == "synthetic":
        import dataclasses

        from stars.data.synthetic import SyntheticConfig, make_config, prepare_synthetic, write_skeleton_files

        fields = {f.name: f.type for f in dataclasses.fields(SyntheticConfig) if f.name != "seed"}
        types = {name: {"int": int, "float": float, "bool": bool}.get(str(t), str) for name, t in fields.items()}
        options = _options(args.overrides, types)
        paths = prepare_synthetic(out, seed=args.seed, **options)
        for path in paths.values():
            print(f"wrote {path}")
        if args.skeleton_files:  # the same generator settings as the npz files
            files = write_skeleton_files(out / "skeletons", n=args.skeleton_files, seed=args.seed,
                                         cfg=make_config(args.seed, **options))
            print(f"wrote {len(files)} .skeleton files to {out / 'skeletons'}")
        return 0
    if not args.raw:
        raise ValueError(f"prepare {target}: --raw DIR is required")
    if target == "byo":
        from stars.data.byo import import_sequences, load_layout_file, read_sequence_folder

        opts = _options(args.overrides, {"layout": str, "layout_file": str, "train_subjects": list[int],
                                         "test_subjects": list[int], "scale": float, "max_frames": int,
                                         "min_frames": int, "label_base": int, "name": str})
        raw = Path(_one_raw(args))
        if ("layout" in opts) == ("layout_file" in opts):
            raise ValueError("prepare byo: give the joint layout with exactly one of --set layout=NAME (built in) "
                             "or --set layout_file=FILE.json (a custom layout)")
        layout = load_layout_file(opts.pop("layout_file")) if "layout_file" in opts else opts.pop("layout")
        report = import_sequences(out / f"{raw.resolve().name}.npz", layout=layout, **read_sequence_folder(raw),
                                  **opts)
        print(report)
        return 0
    if target in ("ntu60", "ntu120"):
        from stars.data.ntu import prepare_ntu

        opts = _options(args.overrides, {"missing_list": str, "second_actor": str, "official_keys_only": bool,
                                         "num_frames": int, "limit": int})
        if args.missing_list:
            opts["missing_list"] = args.missing_list
        report = prepare_ntu(args.raw, out, variant=target, workers=args.workers, resume=not args.no_resume,
                             **opts)
        for name, path in report.outputs.items():
            print(f"wrote {path} ({name}: {report.split_sizes.get(name)})")
        print(f"{report.num_ok}/{report.num_files} files used; skipped: {report.skipped_by_reason}")
        return 0
    if target in ("pku1", "pku2"):
        from stars.data.pku import prepare_pku

        opts = _options(args.overrides, {"centre": bool, "resample": bool, "num_frames": int,
                                         "official_keys_only": bool, "skip_bad_files": bool})
        opts.setdefault("skip_bad_files", True)  # a bad file is reported, never fatal (--set skip_bad_files=false)
        report = prepare_pku(_one_raw(args), out, version=int(target[-1]), workers=args.workers, **opts)
        print(report)
        return 0
    if target == "nw-ucla":
        from stars.data.real import prepare_nw_ucla

        report = prepare_nw_ucla(_one_raw(args), out, **_options(args.overrides, {"min_frames": int,
                                                                                   "max_frames": int}))
        print(report)
        return 0
    if target == "utd-mhad":
        from stars.data.real import prepare_utd_mhad

        report = prepare_utd_mhad(_one_raw(args), out, **_options(args.overrides, {"layout": str,
                                                                                    "min_frames": int,
                                                                                    "max_frames": int}))
        print(report)
        return 0
    raise ValueError(f"unknown prepare target {target!r}")
