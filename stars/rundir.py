"""Output folders of runs: one lock per folder, and the rule that nothing already written is lost.

Every command that writes a folder (pretrain, tune, eval, prepare, the notebook experiment cache)
goes through `run_folder`:

* a lock (`OUT/.stars.lock`, `fcntl.flock`): a second process on the same folder fails at once,
  naming the holder. The kernel drops the lock when its process dies, so the lock of a killed run
  is taken over by the next one; the file only records who held it last.
* a folder that already holds a run (run files in it or in its parts, RUN_PARTS) is refused unless
  `--resume` (continue it) or `--overwrite` (delete that run's files and parts first) is given;
* an input (`--init`, `--ckpt`) inside the folder is refused: the run would replace it;
* temporary files left by a killed writer are deleted (`stars.io.remove_orphan_files`), which is
  only safe while the lock is held.

Under torchrun only rank 0 locks and checks (the others write nothing).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import os
import shutil
import socket
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from stars.io import remove_orphan_files

LOCK_NAME = ".stars.lock"
# files whose presence means "this folder holds a run"
RUN_MARKERS = ("config.yaml", "run.json", "metrics.csv", "metrics.json", "checkpoint-last.pt", "final.pt")
# sub-folders a run writes as parts of itself: the head phase of two-step tuning, the semi-supervised runs
RUN_PARTS = ("head", "fraction_*")
# what --overwrite deletes: files of these kinds and the run's parts (other files and folders stay)
RUN_FILE_SUFFIXES = (".pt", ".npy", ".csv", ".json", ".yaml", ".png", ".pdf", ".svg")


class RunFolderError(ValueError):
    """An output folder that cannot be used as asked: it holds a run, it is in use, it holds an input."""


class RunLockedError(RunFolderError):
    """Another live process holds the folder's lock."""


_HELD: dict[str, list[int]] = {}  # resolved folder -> [file descriptor, depth]: re-entrant per process


class RunLock:
    """Exclusive lock of a folder for this process (re-entrant). wait: block until the holder is done
    (the notebook cache waits for a run another notebook is training); otherwise fail at once."""

    def __init__(self, folder: str | os.PathLike, *, wait: bool = False):
        self.folder = Path(folder)
        self.wait = wait
        self._key: str | None = None

    def acquire(self) -> RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        key = str(self.folder.resolve())
        if key in _HELD:
            _HELD[key][1] += 1
            self._key = key
            return self
        path = self.folder / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunLockedError(
                f"{self.folder} is in use by {holder}; wait for it to finish or choose another output folder"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        when = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        holder = f"pid {os.getpid()} on {socket.gethostname()} since {when} ({' '.join(sys.argv)[:200]})"
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode() + b"\n", 0)
        _HELD[key] = [fd, 1]
        self._key = key
        return self

    def release(self) -> None:
        if self._key is None:
            return
        entry = _HELD[self._key]
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[self._key]
            fcntl.flock(entry[0], fcntl.LOCK_UN)
            os.close(entry[0])
        self._key = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _parts(folder: Path) -> list[Path]:
    return [p for pattern in RUN_PARTS for p in folder.glob(pattern) if p.is_dir() and not p.is_symlink()]


def holds_run(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds a run's files, in itself or in its parts (RUN_PARTS)."""
    folder = Path(folder)
    if any((folder / name).exists() for name in RUN_MARKERS):
        return True
    return any(path.name in RUN_MARKERS for part in _parts(folder) for path in part.rglob("*"))


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def delete_run(folder: Path) -> None:
    """What --overwrite deletes: the run's files (by kind) and its parts (RUN_PARTS); other files and
    folders (an evaluation kept inside a training run's folder, say) stay."""
    for part in _parts(folder):
        shutil.rmtree(part)
    for entry in folder.iterdir():
        if entry.is_file() and entry.suffix in RUN_FILE_SUFFIXES:
            entry.unlink()


@dataclass(frozen=True)
class RunFolder:
    """A claimed folder. resume: there is a run in it and --resume was asked for."""

    path: Path
    resume: bool


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def run_folder(
    out: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    inputs: Iterable[tuple[str, str | os.PathLike | None]] = (),
    wait: bool = False,
) -> Iterator[RunFolder]:
    """Lock `out` for the duration of a run and check it may be written (see the module docstring).

    inputs: (option name, path) of files the run reads that must not lie inside `out`, e.g. ("--init", path).
    Raises RunFolderError (a ValueError) naming the folder and the way out.
    """
    out = Path(out)
    if resume and overwrite:
        raise RunFolderError("--resume and --overwrite exclude each other: continue the run or replace it")
    for option, path in inputs:
        if path is not None and str(path) and _inside(Path(path), out):
            raise RunFolderError(
                f"{option} {path} lies inside the output folder {out}, which this run writes; "
                "choose another output folder"
            )
    if not _is_main_process():
        yield RunFolder(out, resume=resume and holds_run(out))
        return
    with RunLock(out, wait=wait):
        existing = holds_run(out)
        if existing and not (resume or overwrite):
            raise RunFolderError(
                f"{out} already holds a run; pass --resume to continue it, --overwrite to replace it, "
                "or choose another output folder"
            )
        if existing and overwrite:
            delete_run(out)
        for folder in [out, *(d for part in _parts(out) for d in [part, *part.rglob("*")] if d.is_dir())]:
            remove_orphan_files(folder)  # the run's own folder and every folder of its parts
        yield RunFolder(out, resume=resume and existing)


__all__ = ["RunFolderError", "RunLockedError", "RunLock", "RunFolder", "run_folder", "holds_run", "delete_run"]
