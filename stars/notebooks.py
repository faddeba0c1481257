"""Run the notebooks (jupytext py:percent sources) with papermill: `python -m stars.notebooks run-all`.

Each notebook is converted to .ipynb with the `python3` kernel, executed with the profile's
parameters, and saved executed under results/<profile>/notebooks/. A failing notebook is reported
by name and the others still run; the exit status is non-zero when any failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def list_notebooks(folder: Path = NOTEBOOK_DIR, only: list[str] | None = None) -> list[Path]:
    paths = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
    if only:
        wanted = set(only)
        unknown = wanted - {p.stem for p in paths}
        if unknown:
            raise SystemExit(f"unknown notebook(s): {', '.join(sorted(unknown))}")
        paths = [p for p in paths if p.stem in wanted]
    return paths


def to_ipynb(source: Path, target: Path) -> Path:
    """jupytext py:percent -> .ipynb with a python3 kernelspec (jupytext leaves none)."""
    import jupytext

    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata.setdefault("language_info", {"name": "python"})
    jupytext.write(notebook, target, fmt="ipynb")
    return target


def run_notebook(source: Path, output: Path, parameters: dict, timeout: int | None = None) -> None:
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ipynb = to_ipynb(source, Path(tmp) / (source.stem + ".ipynb"))
        papermill.execute_notebook(
            str(ipynb), str(output), parameters=parameters, kernel_name="python3",
            cwd=str(source.parent), progress_bar=False, execution_timeout=timeout,
        )


def run_all(profile: str, data: str | None, only: list[str] | None = None, out_dir: str | None = None,
            device: str | None = None, folder: Path = NOTEBOOK_DIR, plan: bool = True) -> int:
    """Run every notebook of `folder` (or those named in `only`); -> 0, or 1 when any failed."""
    from stars.results import RESULTS_ROOT, update_index, update_readme

    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    if plan and profile == "paper":  # hours of GPU time: say what will be trained first
        from stars.plan import print_plan

        print_plan(profile, data, only, device)
    results = Path(out_dir) if out_dir else RESULTS_ROOT / profile
    failures, times = [], {}
    for source in list_notebooks(Path(folder), only=only):
        parameters = {"profile": profile, "data": data or ""}
        if out_dir:
            parameters["results_dir"] = str(results)
        if device:
            parameters["device"] = device
        start = time.perf_counter()
        print(f"[tables] {source.stem} ...", flush=True)
        try:
            run_notebook(source, results / "notebooks" / f"{source.stem}.ipynb", parameters)
            status = "ok"
        except Exception as err:  # noqa: BLE001 - report and keep going
            failures.append(source.stem)
            status = f"FAILED: {type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
        times[source.stem] = time.perf_counter() - start
        print(f"[tables] {source.stem}: {status} ({times[source.stem]:.0f} s)", flush=True)
    if profile != "smoke" and not out_dir:
        update_index()
        if profile == "demo":
            update_readme()
    total = sum(times.values())
    print(f"[tables] {len(times) - len(failures)}/{len(times)} notebooks ran in {total:.0f} s")
    if failures:
        print(f"[tables] failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stars.notebooks", allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run-all", allow_abbrev=False, help="execute every notebook with papermill")
    p.add_argument("--profile", default="demo", choices=("smoke", "demo", "real", "paper"))
    p.add_argument("--data", default=None, help="dataset folder (profiles real and paper)")
    p.add_argument("--only", nargs="*", default=None, help="notebook names (default: all)")
    p.add_argument("--out", default=None, help="results folder (default: results/<profile>)")
    p.add_argument("--device", default=None)
    p.add_argument("--no-plan", action="store_true", help="paper profile: skip the plan and time estimate")
    p = sub.add_parser("list", help="list the notebooks")
    args = parser.parse_args(argv)
    if args.command == "list":
        for path in list_notebooks():
            print(path.stem)
        return 0
    return run_all(args.profile, args.data, args.only, args.out, args.device, plan=not args.no_plan)


if __name__ == "__main__":
    sys.exit(main())
