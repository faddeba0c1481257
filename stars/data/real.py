"""Readers for two real Kinect v1 datasets: UTD-MHAD (cross-subject) and NW-UCLA (cross-view).

Both are turned into the project's dataset file (`stars.data.npz`), one person per sample:

    UTD_MHAD_XSub.npz   861 sequences, 27 classes, 20 joints; odd subjects train, even test
    NW_UCLA_XView.npz   1484 sequences, 10 classes, 20 joints; views 1, 2 train, view 3 tests

Preparation, per file: read (T, 20, 3) metres; put the joints in the requested layout; centre as
NTU does (origin = the layout's centre joint, the spine, in the first non-empty frame); sequences
longer than `max_frames` are linearly resampled to it; all are zero-padded to the longest kept
sequence (or to `max_frames`). Files with fewer than `min_frames` frames are skipped and listed
in the returned report and in `prepare_report_<name>.csv` next to the npz file; an unreadable
file, a wrong joint count or a NaN raises `DatasetError` naming the file.

The raw data lives outside the repository: `default_datasets_root()` is `$STARS_DATASETS` or
`../shared/datasets` beside the repository.

References: C. Chen, R. Jafari, N. Kehtarnavaz, "UTD-MHAD", ICIP 2015; J. Wang, X. Nie, Y. Xia,
Y. Wu, S.-C. Zhu, "Cross-view Action Modeling, Learning and Recognition" (NW-UCLA), CVPR 2014.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stars.data.layouts import KINECT_V1_20, UTD_MHAD20, SkeletonLayout, get_layout, joint_mapping
from stars.data.npz import DatasetError, save_dataset
from stars.io import atomic_write_bytes

DEFAULT_MIN_FRAMES = 2  # a single frame has no motion; NW-UCLA has two such files (a02_s09_e04_v02/v03)

UTD_MHAD_CLASSES = (
    "right arm swipe to the left", "right arm swipe to the right", "right hand wave", "two hand front clap",
    "right arm throw", "cross arms in the chest", "basketball shoot", "right hand draw x",
    "right hand draw circle (clockwise)", "right hand draw circle (counter clockwise)", "draw triangle",
    "bowling (right hand)", "front boxing", "baseball swing from right", "tennis right hand forehand swing",
    "arm curl (two arms)", "tennis serve", "two hand push", "right hand knock on door",
    "right hand catch an object", "right hand pick up and throw", "jogging in place", "walking in place",
    "sit to stand", "stand to sit", "forward lunge (left foot forward)", "squat (two arms stretch out)",
)  # fmt: skip
UTD_MHAD_TRAIN_SUBJECTS = (1, 3, 5, 7)

NW_UCLA_ACTION_IDS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)  # a01..a12 -> labels 0..9 in this order
NW_UCLA_CLASSES = (
    "pick up with one hand", "pick up with two hands", "drop trash", "walk around", "sit down",
    "stand up", "donning", "doffing", "throw", "carry",
)  # fmt: skip
NW_UCLA_TRAIN_VIEWS = (1, 2)

_UTD_NAME = re.compile(r"^a(\d+)_s(\d+)_t(\d+)_skeleton\.mat$")
_NW_UCLA_NAME = re.compile(r"^a(\d+)_s(\d+)_e(\d+)_v(\d+)\.json$")


def default_datasets_root() -> Path:
    """`$STARS_DATASETS` if set, else `../shared/datasets` relative to the repository root."""
    env = os.environ.get("STARS_DATASETS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def to_layout(x: np.ndarray, source: str | SkeletonLayout, target: str | SkeletonLayout) -> np.ndarray:
    """Reorder joints: x (..., V_source, C) -> (..., V_target, C), joints matched by role.

    E.g. UTD-MHAD order (head first) -> Kinect v1 SDK order (hip centre first, head fourth).
    """
    source = get_layout(source) if isinstance(source, str) else source
    target = get_layout(target) if isinstance(target, str) else target
    source.check_array(x, f"to_layout input ({source.name})")
    return x[..., joint_mapping(source, target), :]


# --------------------------------------------------------------------------------------------
# Reading single files
# --------------------------------------------------------------------------------------------

def _check_sequence(path, skeleton: np.ndarray, joints: int = 20) -> np.ndarray:
    """skeleton: (T, V, 3) -> float64, after checking the joint count and finite values."""
    if skeleton.ndim != 3 or skeleton.shape[1:] != (joints, 3):
        raise DatasetError(f"{path}: expected (frames, {joints} joints, 3) coordinates, got shape {skeleton.shape}")
    bad = ~np.isfinite(skeleton)
    if bad.any():
        frame = int(np.argwhere(bad)[0][0])
        raise DatasetError(f"{path}: NaN or inf coordinates (first in frame {frame})")
    return skeleton.astype(np.float64)


def read_utd_mhad_file(path: str | os.PathLike) -> np.ndarray:
    """One `aA_sS_tT_skeleton.mat` file -> (T, 20, 3) float64 metres, UTD-MHAD joint order."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as err:  # noqa: BLE001 - scipy raises many types for broken files
        raise DatasetError(f"{path}: not a readable MATLAB file ({type(err).__name__}: {err})") from err
    if "d_skel" not in mat:
        names = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"{path}: no variable 'd_skel' (has {names})")
    data = np.asarray(mat["d_skel"])
    if data.ndim == 2 and data.shape == (20, 3):  # MATLAB drops a trailing singleton: one frame
        data = data[:, :, None]
    if data.ndim != 3 or data.shape[1] != 3:
        raise DatasetError(f"{path}: d_skel must be (20 joints, 3, frames), got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.number):
        raise DatasetError(f"{path}: d_skel holds {data.dtype}, not numbers")
    return _check_sequence(path, np.transpose(data, (2, 0, 1)))


def read_nw_ucla_file(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """One `aAA_sSS_eEE_vVV.json` file -> ((T, 20, 3) float64 metres, Kinect v1 order; label 1..10)."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: not a readable JSON file ({err})") from err
    if not isinstance(record, dict) or "skeletons" not in record:
        raise DatasetError(f"{path}: expected an object with a 'skeletons' list")
    try:
        skeleton = np.asarray(record["skeletons"], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{path}: 'skeletons' is not a (frames, 20, 3) number array ({err})") from err
    if skeleton.size == 0:
        skeleton = skeleton.reshape(0, 20, 3)
    label = record.get("label")
    if isinstance(label, bool) or not isinstance(label, int):
        raise DatasetError(f"{path}: 'label' must be an integer, got {label!r}")
    return _check_sequence(path, skeleton), label


# --------------------------------------------------------------------------------------------
# Preparation
# --------------------------------------------------------------------------------------------

@dataclass
class PrepareReport:
    """What a prepare function did.

    rows: one dict per raw file (file, split, status kept/resampled/skipped, frames, reason).
    """

    output: Path
    report_csv: Path
    num_train: int
    num_test: int
    num_frames: int  # T of the stored arrays
    rows: list[dict] = field(default_factory=list)

    @property
    def skipped(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "skipped"]

    @property
    def resampled(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "resampled"]

    def __str__(self) -> str:
        lines = [
            f"wrote {self.output}: {self.num_train} train / {self.num_test} test sequences, {self.num_frames} frames",
            f"skipped {len(self.skipped)} files, resampled {len(self.resampled)}; per-file report: {self.report_csv}",
        ]
        lines += [f"  skipped {r['file']}: {r['reason']}" for r in self.skipped]
        return "\n".join(lines)


@dataclass
class _Sample:
    file: str
    skeleton: np.ndarray  # (T, V, 3)
    label: int  # 0-based
    subject: int
    view: int
    repetition: int
    train: bool


def _files(raw_dir: Path, pattern: re.Pattern, suffix: str, what: str,
           skipped: list[dict]) -> list[tuple[Path, tuple[int, ...]]]:
    """Files named like `pattern` in raw_dir, sorted by their numeric ids; other *suffix files are
    appended to `skipped` as report rows (a bad file never stops a preparation)."""
    if not raw_dir.is_dir():
        raise DatasetError(f"{raw_dir}: no such folder ({what} raw data)")
    out = []
    for path in sorted(raw_dir.iterdir()):
        if path.suffix != suffix:
            continue
        match = pattern.match(path.name)
        if match is None:
            skipped.append(_skip(path, f"file name does not follow the {what} pattern {pattern.pattern}"))
            continue
        out.append((path, tuple(int(g) for g in match.groups())))
    if not out:
        raise DatasetError(f"{raw_dir}: no {what} files ({suffix}) found")
    return sorted(out, key=lambda item: item[1])


def _skip(path: Path, reason: str) -> dict:
    """The report row of a raw file left out; its name printable whatever its bytes."""
    name = os.fsencode(path.name).decode("utf-8", "backslashreplace")
    return {"file": name, "split": "", "status": "skipped", "frames": "", "reason": reason}


def centre_on_first_frame(skeleton: np.ndarray, centre_joint: int) -> np.ndarray:
    """skeleton (T, V, 3) minus its centre joint in the first non-empty frame (empty frames stay 0)."""
    empty = np.all(skeleton == 0, axis=(1, 2))
    if empty.all():
        return skeleton.copy()
    origin = skeleton[int(np.argmax(~empty)), centre_joint]
    out = skeleton - origin
    out[empty] = 0.0
    return out


def resample_frames(skeleton: np.ndarray, frames: int) -> np.ndarray:
    """Linear interpolation in time: (T, V, C) -> (frames, V, C), first and last frames kept."""
    length = len(skeleton)
    position = np.linspace(0.0, length - 1, frames)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, length - 1)
    weight = (position - low)[:, None, None]
    return skeleton[low] * (1.0 - weight) + skeleton[high] * weight


def _assemble(samples: list[_Sample], layout: SkeletonLayout, out_path: Path, class_names: tuple[str, ...],
              name: str, max_frames: int | None, min_frames: int, skipped: list[dict]) -> PrepareReport:
    """Centre, resample/pad and write the npz file plus the per-file CSV report (with the `skipped` rows)."""
    rows = list(skipped)
    kept = []
    for s in samples:
        frames = len(s.skeleton)
        if frames < min_frames:
            rows.append(_row(s.file, s.train, "skipped", frames, f"{frames} frames < min_frames={min_frames}"))
            continue
        skeleton = centre_on_first_frame(s.skeleton, layout.centre)
        if max_frames is not None and frames > max_frames:
            skeleton = resample_frames(skeleton, max_frames)
            rows.append(_row(s.file, s.train, "resampled", frames, f"resampled {frames} -> {max_frames} frames"))
        else:
            rows.append(_row(s.file, s.train, "kept", frames, ""))
        kept.append((s, skeleton))
    train = [k for k in kept if k[0].train]
    test = [k for k in kept if not k[0].train]
    if not train or not test:
        report_csv = out_path.with_name(f"prepare_report_{out_path.stem}.csv")
        _write_csv(report_csv, rows)
        raise DatasetError(f"{out_path}: {len(train)} train and {len(test)} test sequences left; need both "
                           f"(see {report_csv})")
    length = max_frames if max_frames is not None else max(len(k[1]) for k in kept)

    def stack(part):
        x = np.zeros((len(part), length, 1, layout.num_joints, 3), dtype=np.float32)
        for i, (_, skeleton) in enumerate(part):
            x[i, : len(skeleton), 0] = skeleton
        meta = {
            "subject": np.array([s.subject for s, _ in part], dtype=np.int64),
            "view": np.array([s.view for s, _ in part], dtype=np.int64),
            "repetition": np.array([s.repetition for s, _ in part], dtype=np.int64),
            "length": np.array([len(k) for _, k in part], dtype=np.int64),
        }
        return x, np.array([s.label for s, _ in part], dtype=np.int64), meta

    x_train, y_train, meta_train = stack(train)
    x_test, y_test, meta_test = stack(test)
    extra = {f"{k}_train": v for k, v in meta_train.items()} | {f"{k}_test": v for k, v in meta_test.items()}
    save_dataset(
        out_path, x_train, y_train, x_test, y_test, num_classes=len(class_names), layout=layout.name,
        num_persons=1, one_hot=True, class_names=class_names, name=name, extra=extra,
    )
    report_csv = out_path.with_name(f"prepare_report_{out_path.stem}.csv")
    _write_csv(report_csv, rows)
    return PrepareReport(out_path, report_csv, len(train), len(test), length, rows)


def _row(file: str, train: bool, status: str, frames: int, reason: str) -> dict:
    return {"file": file, "split": "train" if train else "test", "status": status, "frames": frames, "reason": reason}


def _write_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["file", "split", "status", "frames", "reason"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: r["file"]))
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8", "backslashreplace"))


def _check_options(min_frames: int, max_frames: int | None) -> None:
    if isinstance(min_frames, bool) or not isinstance(min_frames, int) or min_frames < 1:
        raise ValueError(f"min_frames must be an integer >= 1, got {min_frames!r}")
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                   or max_frames < max(min_frames, 2)):
        raise ValueError(f"max_frames must be an integer >= max(min_frames, 2), got {max_frames!r}")


def prepare_utd_mhad(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, *, layout: str = "utd_mhad20",
                     max_frames: int | None = None, min_frames: int = DEFAULT_MIN_FRAMES) -> PrepareReport:
    """UTD-MHAD skeletons -> out_dir/UTD_MHAD_XSub.npz (cross-subject: odd subjects train).

    layout: "utd_mhad20" keeps the dataset's own joint order; "kinect_v1_20" reorders the joints
    to the Kinect v1 SDK order of NW-UCLA (and of the first 20 NTU joints) for transfer.
    x_*: (N, T, 20 * 3) float32, T = longest sequence (125) or `max_frames`; one-hot y over 27
    classes; metadata subject/view (always 1)/repetition (trial)/length.
    """
    _check_options(min_frames, max_frames)
    target = get_layout(layout)
    if target.name not in (UTD_MHAD20.name, KINECT_V1_20.name):
        raise ValueError(f"UTD-MHAD layout must be 'utd_mhad20' or 'kinect_v1_20', got {layout!r}")
    samples, skipped = [], []
    for path, (action, subject, trial) in _files(Path(raw_dir), _UTD_NAME, ".mat", "UTD-MHAD", skipped):
        try:
            if not 1 <= action <= len(UTD_MHAD_CLASSES):
                raise DatasetError(f"{path}: action {action} outside 1..{len(UTD_MHAD_CLASSES)}")
            skeleton = to_layout(read_utd_mhad_file(path), UTD_MHAD20, target)
        except DatasetError as err:  # reported, never fatal
            skipped.append(_skip(path, str(err).removeprefix(f"{path}: ")))
            continue
        samples.append(_Sample(path.name, skeleton, action - 1, subject, 1, trial,
                               subject in UTD_MHAD_TRAIN_SUBJECTS))
    return _assemble(samples, target, Path(out_dir) / "UTD_MHAD_XSub.npz", UTD_MHAD_CLASSES,
                     f"UTD-MHAD cross-subject ({target.name})", max_frames, min_frames, skipped)


def prepare_nw_ucla(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, *, max_frames: int | None = None,
                    min_frames: int = DEFAULT_MIN_FRAMES) -> PrepareReport:
    """NW-UCLA skeletons -> out_dir/NW_UCLA_XView.npz (cross-view: views 1, 2 train, 3 tests).

    raw_dir: the folder of JSON files (`all_sqe`) or its parent. x_*: (N, T, 20 * 3) float32 in
    Kinect v1 order, T = longest sequence (201) or `max_frames`; one-hot y over the 10 classes
    a01..a12 (labels 0..9); metadata subject/view/repetition/length.
    """
    _check_options(min_frames, max_frames)
    raw = Path(raw_dir)
    if (raw / "all_sqe").is_dir():
        raw = raw / "all_sqe"
    samples, skipped = [], []
    for path, (action, subject, repetition, view) in _files(raw, _NW_UCLA_NAME, ".json", "NW-UCLA", skipped):
        try:
            if action not in NW_UCLA_ACTION_IDS:
                raise DatasetError(f"{path}: action a{action:02d} is not one of the 10 NW-UCLA classes")
            if view not in (1, 2, 3):
                raise DatasetError(f"{path}: view v{view:02d} outside 1..3")
            skeleton, label = read_nw_ucla_file(path)
            expected = NW_UCLA_ACTION_IDS.index(action) + 1
            if label != expected:
                raise DatasetError(f"{path}: 'label' is {label} but the file name says a{action:02d} "
                                   f"(label {expected})")
        except DatasetError as err:  # reported, never fatal
            skipped.append(_skip(path, str(err).removeprefix(f"{path}: ")))
            continue
        samples.append(_Sample(path.name, skeleton, expected - 1, subject, view, repetition,
                               view in NW_UCLA_TRAIN_VIEWS))
    return _assemble(samples, KINECT_V1_20, Path(out_dir) / "NW_UCLA_XView.npz", NW_UCLA_CLASSES,
                     "NW-UCLA cross-view", max_frames, min_frames, skipped)
