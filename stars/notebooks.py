"""Run the notebooks (jupytext py:percent sources) with papermill.

    python -m stars.notebooks run-all --profile smoke          # every notebook (make tables)
    python -m stars.notebooks run table09_batch_size --set batch_sizes=[8,48] --set seed=1   # make notebook

Each notebook is converted to .ipynb with the `python3` kernel (the Python running this module), its
`--set` values are checked against the notebook's parameters cell before a kernel starts, and it is
executed and saved under results/<profile>/notebooks/ as NAME.ipynb and NAME.html (nbconvert, images
embedded). A failing notebook is reported by name and the others still run; the exit status is 1 when
any failed, 2 for bad input (unknown notebook, parameter or value).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from stars.config import ConfigError, parse_assignments

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
KERNEL = "python3"

# OpenMP / BLAS threads of the kernels per profile, unless the caller set OMP_NUM_THREADS: the smoke and
# demo runs (tiny model) are so small that a second thread only adds synchronisation (measured in README,
# "Profiles"); one thread per kernel also makes their numbers independent of how many jobs run at once.
PROFILE_THREADS = {"smoke": 1, "demo": 1, "real": 1}

# Notebooks that `make tables` runs only in some profiles (any notebook still runs anywhere when named):
# the learning curve trains one MAMP run per budget, which the demo's time budget and the paper's GPU
# budget leave out (the tests run it in smoke on its own); the real profile lists its notebooks itself (`Profile.notebooks`).
PROFILE_ONLY = {"learning_curve": ("real",)}


def profile_notebooks(profile, folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The notebooks `make tables` runs for a `stars.experiments.Profile`."""
    if profile.notebooks:  # in the profile's order (longest first)
        by_name = {p.stem: p for p in list_notebooks(folder, only=list(profile.notebooks))}
        return [by_name[name] for name in profile.notebooks]
    return [p for p in list_notebooks(folder) if profile.name in PROFILE_ONLY.get(p.stem, (profile.name,))]


def list_notebooks(folder: Path = NOTEBOOK_DIR, only: list[str] | None = None) -> list[Path]:
    paths = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
    if only:
        wanted = set(only)
        unknown = wanted - {p.stem for p in paths}
        if unknown:
            raise ConfigError(f"unknown notebook(s): {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(p.stem for p in paths)}")
        paths = [p for p in paths if p.stem in wanted]
    return paths


def to_ipynb(source: Path, target: Path) -> Path:
    """jupytext py:percent -> .ipynb with the python3 kernelspec."""
    import jupytext

    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3 (ipykernel)", "language": "python"}
    notebook.metadata.setdefault("language_info", {"name": "python"})
    jupytext.write(notebook, target, fmt="ipynb")
    return target


def check_parameters(source: Path, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """`parameters` parsed to the types the notebook's parameters cell declares; an undeclared name or a
    value that does not parse is a ConfigError naming the notebook and the parameter."""
    from stars.parameters import check_values, declared_parameters, parameters_cell

    return check_values(declared_parameters(parameters_cell(source)), parameters, where=f"{source.stem}: ")


def _relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return Path(path).name


def run_notebook(source: Path, output: Path, parameters: dict, timeout: int | None = None,
                 html: bool = True) -> None:
    """Execute `source` with `parameters` into `output` (.ipynb) and, with `html`, output.with_suffix(".html").

    The saved notebook records its input as the repository-relative source path, not the temporary
    .ipynb it was executed from.
    """
    import nbformat
    import papermill

    parameters = check_parameters(source, parameters)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ipynb = to_ipynb(source, Path(tmp) / (source.stem + ".ipynb"))
        try:
            papermill.execute_notebook(
                str(ipynb), str(output), parameters=parameters, kernel_name=KERNEL,
                cwd=str(source.parent), progress_bar=False, execution_timeout=timeout,
            )
        finally:
            if output.exists():
                notebook = nbformat.read(output, as_version=4)
                meta = notebook.metadata.get("papermill", {})
                meta["input_path"] = _relative(source)
                meta["output_path"] = _relative(output)
                nbformat.write(notebook, output)
                if html:
                    write_html(notebook, output.with_suffix(".html"))


def write_html(notebook, path: Path) -> Path:
    """An HTML report of an executed notebook (nbconvert, images embedded as data URIs)."""
    from nbconvert import HTMLExporter

    from stars.io import atomic_write_bytes

    exporter = HTMLExporter(embed_images=True)
    body, _ = exporter.from_notebook_node(notebook)
    return atomic_write_bytes(path, body.encode())


@contextlib.contextmanager
def kernel_environment(profile: str, jobs: int = 1) -> Iterator[None]:
    """Environment of the kernels: JUPYTER_PLATFORM_DIRS, and unless OMP_NUM_THREADS is set, the profile's
    thread count, or with `jobs` kernels at once the cores shared between them."""
    saved = dict(os.environ)
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    threads = PROFILE_THREADS.get(profile) or (max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None)
    if threads and "OMP_NUM_THREADS" not in os.environ:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = str(threads)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_all(profile: str, data: str | None, only: list[str] | None = None, out_dir: str | None = None,
            device: str | None = None, folder: Path = NOTEBOOK_DIR, parameters: Mapping[str, Any] | None = None,
            update_readme: bool | None = None, plan: bool = True, jobs: int = 1, prefetch: bool = True) -> int:
    """Run every notebook of `folder` (or those named in `only`); -> 0, or 1 when any failed.

    `jobs` notebooks run at once (each in its own kernel; a run that two of them need is trained by the first
    and waited for by the second, see `stars.experiments`), in the profile's order (`profile_notebooks`).
    With `prefetch` and more than one job, the runs the notebooks ask for are first trained `jobs` at a time
    in the order their dependencies allow (`stars.plan.train_planned`), so no core waits for another's run.

    `parameters` (name -> value) are given to every notebook; each is checked against every notebook's
    parameters cell before the first one runs. The paper profile first prints what it will train and the
    estimated time (`plan=False` skips that).
    """
    from stars.experiments import check_device, get_profile
    from stars.results import RESULTS_ROOT, update_index
    from stars.results import update_readme as write_readme_block

    resolved = get_profile(profile, data)  # data given to a profile that ignores it, a missing DATA: fail first
    check_device(device)
    if plan and profile == "paper":  # hours of GPU time: say what will be trained first
        from stars.plan import print_plan

        print_plan(profile, data, only, device)
    results = Path(out_dir) if out_dir else RESULTS_ROOT / profile
    sources = list_notebooks(Path(folder), only=only) if only else profile_notebooks(resolved, Path(folder))
    # the kernels run in the notebooks' folder: a relative DATA (given from where make runs) is made relative
    # to that folder, so it finds the same files and no absolute path enters the saved notebooks
    kernel_data = data
    if data and not Path(data).is_absolute():
        kernel_data = os.path.relpath(Path(data).resolve(), Path(folder).resolve())
    common = {"profile": profile, "data": kernel_data or ""}
    if out_dir:
        common["results_dir"] = str(results)
    if device:
        common["device"] = device
    common.update(parameters or {})
    checked = {source: check_parameters(source, common) for source in sources}
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    failures, times = [], {}
    prefetch_s = None

    def run_one(source: Path) -> None:
        start = time.perf_counter()
        print(f"[tables] {source.stem} ...", flush=True)
        try:
            run_notebook(source, results / "notebooks" / f"{source.stem}.ipynb", checked[source])
            status = "ok"
        except Exception as err:  # noqa: BLE001 - report and keep going
            failures.append(source.stem)
            status = f"FAILED: {type(err).__name__}: {_last_line(err)}"
        times[source.stem] = time.perf_counter() - start
        print(f"[tables] {source.stem}: {status} ({times[source.stem]:.0f} s)", flush=True)

    wall = time.perf_counter()
    with kernel_environment(profile, jobs):
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if prefetch and jobs > 1:  # train the notebooks' runs first, `jobs` at a time, in dependency order
            from stars.plan import plan_profile, train_planned

            start = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="stars-prefetch-") as scratch:
                own = {source.stem: {k: v for k, v in checked[source].items() if k not in ("data", "results_dir")}
                       for source in sources}  # each notebook's parameters (seed, ...), as its kernel gets them
                runs = plan_profile(profile, data, sources, scratch, own)
                done = train_planned(runs, profile, data, jobs, device, scratch)
            prefetch_s = time.perf_counter() - start
            print(f"[tables] prefetch: {len(done)}/{len(runs)} planned runs trained or found in the cache "
                  f"({prefetch_s:.0f} s)", flush=True)
        if jobs == 1:
            for source in sources:
                run_one(source)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(jobs) as pool:
                list(pool.map(run_one, sources))
    wall = time.perf_counter() - wall
    times = {source.stem: times[source.stem] for source in sources}
    if not only or len(sources) > 1:
        write_timings(results / "notebooks" / "timings.json", profile, times, failures, threads, jobs, wall, prefetch_s)
    if not out_dir and profile != "smoke":
        update_index()
        if update_readme if update_readme is not None else (profile == "demo" and not only):
            write_readme_block()
    print(f"[tables] {len(sources) - len(failures)}/{len(sources)} notebooks ran in {wall:.0f} s")
    if failures:
        print(f"[tables] failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def write_timings(path: Path, profile: str, times: Mapping[str, float], failures: list[str],
                  threads: str = "", jobs: int = 1, wall: float | None = None, prefetch_s: float | None = None) -> Path:
    """How long each notebook of a run took, on which machine: the source of the times in the README.
    `prefetch_s`: the time spent training the planned runs before the notebooks (then mostly cache reads)."""
    import platform

    from stars.io import device_description, write_json

    return write_json(path, {
        "profile": profile, "machine": device_description(), "platform": platform.platform(terse=True),
        "omp_num_threads": threads or "default", "jobs": jobs,
        "total_s": round(sum(times.values()) if wall is None else wall, 1),
        "notebooks_s": {name: round(t, 1) for name, t in times.items()}, "failed": failures,
    } | ({"prefetch_s": round(prefetch_s, 1)} if prefetch_s is not None else {}))


def _last_line(err: BaseException) -> str:
    """The line of an exception worth printing: papermill's errors end with the notebook's own error."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(err, PapermillExecutionError):
        return f"{err.ename}: {err.evalue}"
    text = str(err).strip()
    return text.splitlines()[-1] if text else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stars.notebooks", allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run-all", "execute every notebook with papermill"),
                       ("run", "execute one notebook with papermill")):
        p = sub.add_parser(name, allow_abbrev=False, help=text)
        if name == "run":
            p.add_argument("notebook", help="notebook name, e.g. table09_batch_size (see `list`)")
        p.add_argument("--profile", default="demo", choices=("smoke", "demo", "real", "paper"))
        p.add_argument("--data", default=None, help="dataset folder (profiles real and paper)")
        if name == "run-all":
            p.add_argument("--only", nargs="*", default=None, help="notebook names (default: all)")
        p.add_argument("--out", default=None, help="results folder (default: results/<profile>)")
        p.add_argument("--device", default=None)
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="a notebook parameter (repeatable), e.g. --set seed=1 --set batch_sizes=[8,48]")
        p.add_argument("--no-plan", action="store_true", help="paper profile: skip the plan and time estimate")
        p.add_argument("--no-prefetch", action="store_true",
                       help="do not train the planned runs first (with --jobs > 1); each notebook trains its own")
        if name == "run-all":
            p.add_argument("--jobs", type=int, default=1, help="notebooks run at once (default 1)")
    sub.add_parser("list", help="list the notebooks")
    args = parser.parse_args(argv)
    if args.command == "list":
        for path in list_notebooks():
            print(path.stem)
        return 0
    try:
        overrides = parse_assignments(args.overrides)
        only = [args.notebook] if args.command == "run" else args.only
        return run_all(args.profile, args.data, only, args.out, args.device, parameters=overrides,
                       plan=not args.no_plan, jobs=getattr(args, "jobs", 1),
                       prefetch=not args.no_prefetch)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
