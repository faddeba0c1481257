"""Run directories: atomic writes, the provenance of every run, metrics as CSV."""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from stars.config import save_config

REPO_ROOT = Path(__file__).resolve().parent.parent


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """torch.save through a temporary file in the same folder + fsync + rename: never half a
    checkpoint, and the previous file survives a failed save."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


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
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }
    info.update(extra)
    return info


def write_run_info(run_dir: str | Path, cfg: Any, device=None, **extra: Any) -> None:
    """config.yaml (the resolved config) and run.json (provenance) in `run_dir`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    write_json(run_dir / "run.json", provenance(device, **extra))


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as handle:
            if fields:
                writer = csv.DictWriter(handle, fieldnames=fields, restval="")
                writer.writeheader()
                writer.writerows(rows)
        os.replace(tmp, self.path)


def _fmt(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


__all__ = [
    "atomic_torch_save", "atomic_write_bytes", "write_json", "git_commit", "provenance", "write_run_info",
    "MetricsCSV",
]
