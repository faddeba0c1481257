"""Bring your own skeletons: variable-length sequences + labels + subjects -> a dataset file.

    from stars.data.byo import import_sequences
    report = import_sequences("mine.npz", sequences, labels, subjects, layout="kinect_v1_20",
                              train_subjects=[1, 3, 5, 7])

Each sequence is `(T, V, 3)` (one person) or `(T, M, V, 3)`, in any length, in the layout's joint order.
Per sequence, as the NTU pipeline does (reference §1.2-1.4):

1. frames where every joint of every person is zero (untracked) are dropped, at the start, inside and
   at the end, so the stored frames are the recorded ones, first;
2. the sequence is centred: origin = the layout's centre joint of person 1 in its first frame where
   person 1 is present; persons absent in a frame stay zero;
3. sequences with fewer than `min_frames` frames left are skipped (and listed in the report); longer
   than `max_frames` ones are linearly resampled to it;
4. all are zero-padded at the end to the longest kept sequence (or `max_frames`).

Labels become 0..C-1 and `class_names` records what each index means: string labels map to their
sorted names (or to the order of `class_names`); integer labels without `class_names` map their sorted
distinct values; with `class_names` they are indices, `label_base=1` for 1-based ones. A label that
is not a class, or 1-based labels read as 0-based, is an error that says so, never a new class.

Units: coordinates should be metres (the augmentations and the paper's settings assume it). `scale`
multiplies them first (0.001 for millimetres); a body extent that looks like centimetres or
millimetres gives a `UnitsWarning` naming the factor.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stars.data.layouts import SkeletonLayout, get_layout
from stars.data.npz import DatasetError, save_dataset
from stars.data.real import resample_frames

DEFAULT_MIN_FRAMES = 2
METRES_MAX_EXTENT = 5.0  # median farthest joint from the centre joint; a person is about 1 m from spine to feet


class UnitsWarning(UserWarning):
    """Coordinates look like centimetres or millimetres, not metres."""


@dataclass
class ImportReport:
    """What `import_sequences` did.

    skipped: (sequence index, reason) of sequences left out. dropped_frames: untracked frames removed.
    label_map: original label -> stored index. median_extent: median over sequences of the largest
    distance of a joint from the centre joint (metres expected: about 0.5-1).
    """

    output: Path
    num_train: int
    num_test: int
    num_frames: int
    class_names: tuple[str, ...]
    label_map: dict
    skipped: list[tuple[int, str]] = field(default_factory=list)
    dropped_frames: int = 0
    resampled: int = 0
    median_extent: float = float("nan")
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"wrote {self.output}: {self.num_train} train / {self.num_test} test sequences, {self.num_frames} "
            f"frames, {len(self.class_names)} classes",
            f"dropped {self.dropped_frames} untracked frames, resampled {self.resampled} sequences, "
            f"skipped {len(self.skipped)}",
        ]
        lines += [f"  skipped sequence {i}: {why}" for i, why in self.skipped]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def map_labels(labels: Sequence, class_names: Sequence[str] | None = None,
               label_base: int = 0) -> tuple[np.ndarray, tuple[str, ...], dict]:
    """labels (N,) -> (indices (N,) int64 in 0..C-1, class names (C,), {original label: index}).

    Strings: by `class_names` order when given (an unknown name is an error), else sorted. Integers:
    with `class_names`, `label - label_base` must lie in 0..C-1 (1-based labels without label_base=1
    are an error saying so); without, the sorted distinct values map to 0..C-1 and name the classes.
    """
    values = np.asarray(labels)
    if values.ndim != 1:
        raise DatasetError(f"labels must be one per sequence (N,), got shape {values.shape}")
    if values.dtype.kind in "US" or values.dtype == object:
        names = [str(v) for v in values]
        if values.dtype == object and not all(isinstance(v, str) for v in values):
            bad = next(v for v in values if not isinstance(v, str))
            raise DatasetError(f"labels mix strings and {type(bad).__name__} ({bad!r}); use one kind")
        classes = tuple(str(c) for c in class_names) if class_names is not None else tuple(sorted(set(names)))
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted(set(names) - set(index))
        if unknown:
            raise DatasetError(f"label {unknown[0]!r} is not one of the class_names {list(classes)}")
        return np.array([index[n] for n in names], dtype=np.int64), classes, {c: index[c] for c in sorted(set(names))}
    if values.dtype.kind == "b" or (values.dtype.kind == "f" and not np.all(values == np.round(values))):
        raise DatasetError(f"labels must be integers or strings, got dtype {values.dtype}")
    if values.dtype.kind not in "iuf":
        raise DatasetError(f"labels must be integers or strings, got dtype {values.dtype}")
    ints = values.astype(np.int64)
    if class_names is None:
        distinct = np.unique(ints)
        mapping = {int(v): i for i, v in enumerate(distinct)}
        return np.searchsorted(distinct, ints).astype(np.int64), tuple(str(v) for v in distinct), mapping
    classes = tuple(str(c) for c in class_names)
    shifted = ints - int(label_base)
    if len(ints) and (shifted.min() < 0 or shifted.max() >= len(classes)):
        hint = ""
        if label_base == 0 and ints.min() >= 1 and ints.max() == len(classes):
            hint = f"; they run 1..{len(classes)}: pass label_base=1 for 1-based labels"
        raise DatasetError(
            f"labels span {int(ints.min())}..{int(ints.max())} but {len(classes)} class_names take "
            f"{label_base}..{label_base + len(classes) - 1}{hint}"
        )
    return shifted, classes, {int(v): int(v) - int(label_base) for v in np.unique(ints)}


def centre_like_ntu(sequence: np.ndarray, centre: int) -> np.ndarray:
    """sequence (T, M, V, 3) -> minus person 1's `centre` joint in its first present frame; frames where a
    person is absent (all zero) stay zero (NTU `seq_translation`)."""
    absent = np.all(sequence == 0, axis=(2, 3))  # (T, M)
    present = np.flatnonzero(~absent[:, 0])
    if len(present) == 0:
        present = np.flatnonzero(~absent.all(1))
        if len(present) == 0:
            return sequence.copy()
        person = int(np.argmax(~absent[present[0]]))
        origin = sequence[present[0], person, centre]
    else:
        origin = sequence[present[0], 0, centre]
    out = sequence - origin
    out[absent] = 0.0
    return out


def _as_sequence(index: int, array, joints: int) -> np.ndarray:
    x = np.asarray(array, dtype=np.float64)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[2:] != (joints, 3):
        raise DatasetError(f"sequence {index}: expected (T, {joints}, 3) or (T, M, {joints}, 3), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        frame = int(np.argwhere(~np.isfinite(x))[0][0])
        raise DatasetError(f"sequence {index}: NaN or inf coordinates (first in frame {frame})")
    return x


def _is_train(subjects: np.ndarray, train_subjects, test_subjects, is_train) -> np.ndarray:
    given = [v is not None for v in (train_subjects, test_subjects, is_train)]
    if sum(given) != 1:
        raise ValueError("give exactly one of train_subjects, test_subjects or is_train")
    if is_train is not None:
        mask = np.asarray(is_train, dtype=bool)
        if mask.shape != subjects.shape:
            raise ValueError(f"is_train must have one entry per sequence ({len(subjects)}), got {mask.shape}")
        return mask
    chosen = np.asarray(list(train_subjects if train_subjects is not None else test_subjects))
    unknown = sorted(set(chosen.tolist()) - set(subjects.tolist()))
    if unknown:
        raise ValueError(f"subject {unknown[0]!r} of the split list has no sequence")
    inside = np.isin(subjects, chosen)
    return inside if train_subjects is not None else ~inside


def import_sequences(
    out: str | os.PathLike,
    sequences: Sequence[np.ndarray],
    labels: Sequence,
    subjects: Sequence[int],
    *,
    layout: str | SkeletonLayout,
    train_subjects: Iterable[int] | None = None,
    test_subjects: Iterable[int] | None = None,
    is_train: Sequence[bool] | None = None,
    class_names: Sequence[str] | None = None,
    label_base: int = 0,
    scale: float = 1.0,
    max_frames: int | None = None,
    min_frames: int = DEFAULT_MIN_FRAMES,
    name: str | None = None,
) -> ImportReport:
    """Sequences of any length -> the dataset file `out` (see the module docstring for every step).

    sequences: N arrays (T_i, V, 3) or (T_i, M_i, V, 3) in the layout's joint order; labels: N ints or
    strings; subjects: N ints, stored as subject_train / subject_test. The split: `train_subjects` (the
    rest test), `test_subjects` (the rest train) or a boolean `is_train` per sequence.
    Raises DatasetError naming the sequence or label that is wrong.
    """
    layout = layout if isinstance(layout, SkeletonLayout) else get_layout(layout)
    if len(sequences) != len(labels) or len(sequences) != len(subjects):
        raise DatasetError(f"{len(sequences)} sequences, {len(labels)} labels and {len(subjects)} subjects: "
                           "give one label and one subject per sequence")
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    if isinstance(min_frames, bool) or int(min_frames) != min_frames or min_frames < 1:
        raise ValueError(f"min_frames must be an integer >= 1, got {min_frames!r}")
    if max_frames is not None and (int(max_frames) != max_frames or max_frames < max(min_frames, 2)):
        raise ValueError(f"max_frames must be an integer >= max(min_frames, 2), got {max_frames!r}")
    y, classes, label_map = map_labels(labels, class_names, label_base)
    subjects = np.asarray(subjects)
    if subjects.dtype.kind not in "iu":
        raise DatasetError(f"subjects must be integers, got dtype {subjects.dtype}")
    train_mask = _is_train(subjects, train_subjects, test_subjects, is_train)
    kept, skipped, extents = [], [], []
    dropped = resampled = 0
    for i, array in enumerate(sequences):
        x = _as_sequence(i, array, layout.num_joints) * scale
        tracked = ~np.all(x == 0, axis=(1, 2, 3))
        dropped += int((~tracked).sum())
        x = x[tracked]
        if len(x) < min_frames:
            skipped.append((i, f"{len(x)} tracked frames < min_frames={min_frames}"))
            continue
        x = centre_like_ntu(x, layout.centre)
        present = ~np.all(x[:, 0] == 0, axis=(1, 2))
        if present.any():
            extents.append(float(np.median(np.linalg.norm(x[present, 0], axis=-1).max(-1))))
        if max_frames is not None and len(x) > max_frames:
            persons = x.shape[1]
            x = resample_frames(x.reshape(len(x), -1, 3), max_frames).reshape(max_frames, persons, layout.num_joints, 3)
            resampled += 1
        kept.append((i, x))
    train = [(i, x) for i, x in kept if train_mask[i]]
    test = [(i, x) for i, x in kept if not train_mask[i]]
    if not train or not test:
        raise DatasetError(f"{out}: {len(train)} train and {len(test)} test sequences left; need both")
    persons = max(x.shape[1] for _, x in kept)
    length = max_frames if max_frames is not None else max(len(x) for _, x in kept)

    def stack(part):
        x = np.zeros((len(part), length, persons, layout.num_joints, 3), dtype=np.float32)
        for row, (_, seq) in enumerate(part):
            x[row, : len(seq), : seq.shape[1]] = seq
        rows = np.array([i for i, _ in part])
        meta = {"subject": subjects[rows].astype(np.int64),
                "length": np.array([len(seq) for _, seq in part], dtype=np.int64)}
        return x, y[rows], meta

    x_train, y_train, meta_train = stack(train)
    x_test, y_test, meta_test = stack(test)
    notes = []
    extent = float(np.median(extents)) if extents else float("nan")
    if extent > METRES_MAX_EXTENT:
        factor = 0.01 if extent < 300 else 0.001
        unit = "centimetres" if factor == 0.01 else "millimetres"
        notes.append(f"coordinates look like {unit}: the median body extent is {extent:.4g} units (about 1 in "
                     f"metres); pass scale={factor} to store metres")
        warnings.warn(f"{out}: {notes[-1]}", UnitsWarning, stacklevel=2)
    extra = {f"{k}_train": v for k, v in meta_train.items()} | {f"{k}_test": v for k, v in meta_test.items()}
    path = save_dataset(out, x_train, y_train, x_test, y_test, num_classes=len(classes), layout=layout,
                        num_persons=persons, class_names=classes, name=name, extra=extra)
    return ImportReport(path, len(train), len(test), length, classes, label_map, skipped, dropped, resampled,
                        extent, notes)


SEQUENCE_INDEX = "sequences.csv"  # file,label,subject[,split] per sequence, in a `stars prepare byo` folder
CLASS_NAMES_FILE = "class_names.txt"  # optional: one class name per line, in label order


def load_layout_file(path: str | os.PathLike) -> SkeletonLayout:
    """A custom layout from JSON: {"name", "joints": [...], "parents": [...], "centre", "pairs": [[l, r], ...]}
    (parents, centre and pairs by joint name or index; "pairs" optional: left_*/right_* names pair)."""
    import json

    try:
        spec = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: not a readable layout JSON file ({err})") from err
    missing = [k for k in ("name", "joints", "parents", "centre") if k not in spec]
    if missing:
        raise DatasetError(f"{path}: layout JSON needs the keys name, joints, parents, centre; missing {missing}")
    from stars.data.layouts import custom_layout

    try:
        return custom_layout(spec["name"], spec["joints"], spec["parents"], spec["centre"], spec.get("pairs"))
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{path}: {err}") from None


def read_sequence_folder(folder: str | os.PathLike) -> dict:
    """A `stars prepare byo` folder -> import_sequences arguments.

    folder/sequences.csv has a header and one row per sequence: `file` (a .npy file of (T, V, 3) or
    (T, M, V, 3) coordinates, relative to the folder), `label` (integer or name), `subject` (integer) and
    optionally `split` (train or test). folder/class_names.txt, when present, names the classes in order.
    -> {"sequences", "labels", "subjects"[, "is_train"][, "class_names"]}.
    """
    import csv

    folder = Path(folder)
    index = folder / SEQUENCE_INDEX
    try:
        with open(index, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{index}: cannot read the sequence index ({err})") from err
    if not rows or not {"file", "label", "subject"} <= set(rows[0]):
        raise DatasetError(f"{index}: needs a header with the columns file, label, subject (and optionally split)")
    sequences, labels, subjects, splits = [], [], [], []
    for line, row in enumerate(rows, start=2):
        path = folder / row["file"]
        try:
            sequences.append(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as err:
            raise DatasetError(f"{index} line {line}: cannot read {path} ({err})") from err
        try:
            subjects.append(int(row["subject"]))
        except (TypeError, ValueError):
            raise DatasetError(f"{index} line {line}: subject {row['subject']!r} is not an integer") from None
        labels.append(row["label"].strip())
        splits.append((row.get("split") or "").strip())
    if all(label.lstrip("-").isdigit() for label in labels):
        labels = [int(label) for label in labels]
    out = {"sequences": sequences, "labels": labels, "subjects": subjects}
    if any(splits):
        bad = sorted({s for s in splits if s not in ("train", "test")})
        if bad:
            raise DatasetError(f"{index}: split must be train or test on every row, got {bad[0]!r}")
        out["is_train"] = [s == "train" for s in splits]
    names = folder / CLASS_NAMES_FILE
    if names.exists():
        out["class_names"] = [line.strip() for line in names.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out


__all__ = [
    "UnitsWarning", "ImportReport", "map_labels", "centre_like_ntu", "import_sequences", "load_layout_file",
    "read_sequence_folder",
]
