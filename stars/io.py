"""Run directories: atomic writes, the provenance of every run, metrics as CSV."""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import hashlib
import io
import json
import os
import platform
import secrets
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

from stars.config import save_config

REPO_ROOT = Path(__file__).resolve().parent.parent


TMP_SUFFIX = ".tmp"


def temporary_name(path: Path) -> Path:
    """Where `atomic_write` puts the data before the rename: a hidden `.NAME.<random>.tmp` next to `path`.
    A file of this shape left behind by a killed process is an orphan (`remove_orphan_files`)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """`write(handle)` into a temporary file in the same folder, fsync, rename over `path`.

    Written whole or not at all: a kill leaves at most an orphan temporary file, a full disk or a
    read-only folder raises OSError (naming `path`) and leaves the previous `path` untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno is not None and err.filename != str(path):
            raise type(err)(err.errno, err.strerror, str(path)) from err
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """torch.save through `atomic_write`: never half a checkpoint, and the previous file survives a
    failed save. Serialised in memory first, so a full disk surfaces as an OSError with its errno."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))


def remove_orphan_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files that killed writers left in `folder` (not recursive). Call it only
    while holding the folder's lock (`stars.rundir`), when no writer of this folder can be running."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    orphans = [p for p in folder.glob(f".*{TMP_SUFFIX}") if p.is_file()]
    for orphan in orphans:
        orphan.unlink(missing_ok=True)
    return orphans


def content_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of the whole file. Memoised per (path, size, mtime, inode) within the process."""
    path = Path(path)
    stat = path.stat()
    return _content_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)


def content_fingerprint(path: str | Path) -> str:
    """SHA-256 (first 16 hex digits) of the whole file: what a cache or a resumed run was computed from."""
    return content_sha256(path)[:16]


@functools.lru_cache(maxsize=1024)
def _content_sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    return atomic_write_bytes(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def git_commit() -> str:
    """The commit of the checkout the package runs from (+ '-dirty'), or 'unknown' outside git.

    Changes under `results/` do not count as dirty: `make tables` rewrites those files while it runs.
    STARS_COMMIT, when set, is the label instead (code run from a copy of the tree without its git history)."""
    if os.environ.get("STARS_COMMIT"):
        return os.environ["STARS_COMMIT"]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_description(device: torch.device | str | None = None) -> str:
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{os.cpu_count()}"


def provenance(device=None, **extra: Any) -> dict[str, Any]:
    """What produced a result: commit, device, versions, time, command line, plus `extra`."""
    info = {
        "commit": git_commit(),
        "device": device_description(device),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "threads": torch.get_num_threads(),
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    command = command_line()
    if command:
        info["command"] = command
    info.update(extra)
    return info


def command_line() -> str:
    """The command that started this process, or "" inside a Jupyter kernel (whose command line is the
    kernel launcher and a temporary connection file, which say nothing about the result)."""
    if sys.argv and Path(sys.argv[0]).name in ("ipykernel_launcher.py", "ipykernel_launcher", "-c"):
        return ""
    if "ipykernel" in sys.modules and any(a.endswith(".json") and "kernel" in a for a in sys.argv):
        return ""
    return " ".join(sys.argv)


def write_run_info(run_dir: str | Path, cfg: Any, device=None, **extra: Any) -> None:
    """config.yaml (the resolved config) and run.json (provenance) in `run_dir`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    write_json(run_dir / "run.json", provenance(device, **extra))


def resume_history(run_dir: str | Path, epoch: int, changes: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The `resumes` entry of run.json after one more resume at `epoch`: earlier entries, then this one
    with every changed config/data field as [before, after]."""
    previous: list = []
    try:
        previous = list(json.loads((Path(run_dir) / "run.json").read_text()).get("resumes", []))
    except (OSError, ValueError, AttributeError):
        pass
    when = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return previous + [{"epoch": epoch, "time": when, "changes": dict(changes)}]


class MetricsCSV:
    """Append-only CSV of per-epoch metrics; `truncate(epoch)` drops rows at or after a resume point."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as handle:
            return list(csv.DictReader(handle))

    def truncate(self, epoch: int) -> None:
        if not self.path.exists():
            return
        rows = [r for r in self.rows() if int(r["epoch"]) < epoch]
        self._write(rows, list(rows[0].keys()) if rows else [])

    def append(self, row: Mapping[str, Any]) -> None:
        rows = self.rows()
        fields = list(rows[0].keys()) if rows else []
        for key in row:
            if key not in fields:
                fields.append(key)
        rows.append({k: _fmt(v) for k, v in row.items()})
        self._write(rows, fields)

    def _write(self, rows, fields) -> None:
        text = io.StringIO(newline="")
        if fields:
            writer = csv.DictWriter(text, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(rows)
        atomic_write_bytes(self.path, text.getvalue().encode())


def _fmt(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


__all__ = [
    "atomic_write", "atomic_torch_save", "atomic_write_bytes", "remove_orphan_files", "content_fingerprint", "write_json", "git_commit", "provenance", "write_run_info",
    "MetricsCSV", "resume_history",
]
