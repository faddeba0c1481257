"""The dataset file: the official NTU/PKU npz layout, validated, plus optional metadata.

Official layout (what the MAMP/STARS data scripts write, and what `stars prepare` writes):

    x_train (N_train, T, M*V*3) float32   frames zero-padded at the end; per frame the values are
                                          [person1 joint1 x,y,z, joint2 x,y,z, ..., person2 ...]
    y_train (N_train, num_classes)         one-hot (float)
    x_test, y_test                         the same for the test split

"Bring your own dataset": the same four keys, where labels may also be integer vectors (N,), plus
optional keys (all scalars are 0-d arrays):

    layout        str, a name from `stars.data.layouts` (default: ntu25 when M*V*3 == 150), or the
                  name of a custom layout stored in full by the four keys below
    layout_joints (V,) str joint names;  layout_parents (V,) int parent of each joint (root: itself)
    layout_centre int centre joint;      layout_mirror (V,) int left/right permutation
    num_persons   int (default 2)
    num_classes   int (default: one-hot width, or max label + 1)
    class_names   (num_classes,) str
    name          str, a human-readable dataset name
    subject_train, subject_test, view_train, view_test   (N,) int metadata, used by split helpers

Every load checks keys, shapes, dtypes, finite values and labels and raises `DatasetError` naming
the file and the problem.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stars.data.layouts import LAYOUTS, NTU25, SkeletonLayout, get_layout
from stars.io import atomic_write

SPLITS = ("train", "test")
_CHUNK = 1024
LAYOUT_KEYS = ("layout_joints", "layout_parents", "layout_centre", "layout_mirror")


class DatasetError(ValueError):
    """A dataset file is missing, corrupt or inconsistent; the message names the file."""


@dataclass
class SkeletonSplit:
    """One split in memory.

    x: (N, T, M, V, C) float32, zero-padded frames at the end.
    y: (N,) int64 labels in [0, num_classes).
    """

    x: np.ndarray
    y: np.ndarray
    layout: SkeletonLayout
    num_classes: int
    path: str = ""
    split: str = "train"
    name: str = ""
    class_names: tuple[str, ...] = ()
    meta: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_persons(self) -> int:
        return self.x.shape[2]

    @property
    def num_frames(self) -> int:
        return self.x.shape[1]

    def subset(self, indices: np.ndarray) -> SkeletonSplit:
        indices = np.asarray(indices, dtype=np.int64)
        meta = {k: v[indices] for k, v in self.meta.items()}
        return SkeletonSplit(
            self.x[indices], self.y[indices], self.layout, self.num_classes, self.path,
            self.split, self.name, self.class_names, meta,
        )


def _open(path: str | os.PathLike) -> np.lib.npyio.NpzFile:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such dataset file")
    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise DatasetError(f"{path}: not a readable npz file ({err})") from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DatasetError(
            f"{path}: a single array ({type(npz).__name__}), not an npz dataset file with x_train, y_train, "
            "x_test, y_test; write one with stars.data.npz.save_dataset"
        )
    return npz


def _read(npz: np.lib.npyio.NpzFile, key: str, path) -> np.ndarray:
    try:
        return npz[key]
    except KeyError:
        raise DatasetError(f"{path}: missing key {key!r} (has {sorted(npz.files)})") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise DatasetError(f"{path}: key {key!r} is truncated or corrupt ({err})") from err


def _scalar(npz, key, path, default):
    if key not in npz.files:
        return default
    value = _read(npz, key, path)
    if value.ndim != 0:
        raise DatasetError(f"{path}: key {key!r} must be a scalar, got shape {value.shape}")
    return value.item()


def read_header(path: str | os.PathLike) -> dict:
    """Layout, persons, classes and names of a dataset file without loading the arrays' values."""
    with _open(path) as npz:
        for key in ("x_train", "y_train", "x_test", "y_test"):
            if key not in npz.files:
                raise DatasetError(f"{path}: missing key {key!r} (has {sorted(npz.files)})")
        x_shape = _array_shape(npz, "x_train", path)
        y_train = _read(npz, "y_train", path)
        y_test = _read(npz, "y_test", path)
        for key, y in (("y_train", y_train), ("y_test", y_test)):
            _check_label_dtype(y, path, key)
        num_persons = int(_scalar(npz, "num_persons", path, 2))
        layout_name = _scalar(npz, "layout", path, None)
        if len(x_shape) != 3:
            raise DatasetError(f"{path}: x_train must be (N, T, M*V*3), got shape {x_shape}")
        width = x_shape[2]
        if any(key in npz.files for key in LAYOUT_KEYS):
            layout = _stored_layout(npz, path, layout_name)
        elif layout_name is None:
            if width != num_persons * NTU25.num_joints * 3:
                raise DatasetError(
                    f"{path}: frame width {width} is not {num_persons} persons x 25 joints x 3; "
                    "store a 'layout' key naming the joint layout (or a custom layout, see docs/datasets.md)"
                )
            layout = NTU25
        else:
            try:
                layout = get_layout(str(layout_name))
            except ValueError as err:
                raise DatasetError(f"{path}: {err}; store a custom layout's joints, parents, centre and "
                                   "mirror (stars.data.layouts.custom_layout + save_dataset)") from None
        if width != num_persons * layout.num_joints * 3:
            raise DatasetError(
                f"{path}: frame width {width} does not match layout {layout.name!r} "
                f"({num_persons} persons x {layout.num_joints} joints x 3 = "
                f"{num_persons * layout.num_joints * 3})"
            )
        num_classes = _scalar(npz, "num_classes", path, None)
        if num_classes is None:
            if y_train.ndim == 2:
                num_classes = y_train.shape[1]
            else:
                num_classes = int(max(y_train.max(initial=-1), y_test.max(initial=-1))) + 1
                if min(y_train.min(initial=1), y_test.min(initial=1)) >= 1:
                    raise DatasetError(
                        f"{path}: integer labels never use 0 (they span 1..{num_classes - 1}); store 0-based "
                        "labels, or a num_classes key when class 0 is really absent"
                    )
        class_names = tuple(str(c) for c in _read(npz, "class_names", path)) if "class_names" in npz.files else ()
        if class_names and len(class_names) != num_classes:
            raise DatasetError(f"{path}: {len(class_names)} class_names for {num_classes} classes")
        return {
            "layout": layout,
            "num_persons": num_persons,
            "num_classes": int(num_classes),
            "class_names": class_names,
            "name": str(_scalar(npz, "name", path, Path(path).stem)),
            "num_frames": x_shape[1],
        }


def _stored_layout(npz, path, name) -> SkeletonLayout:
    """A layout stored in full in the file (`layout` + the four `layout_*` keys)."""
    missing = [key for key in LAYOUT_KEYS if key not in npz.files]
    if name is None or missing:
        absent = (["layout"] if name is None else []) + missing
        raise DatasetError(f"{path}: a custom layout needs the keys layout, {', '.join(LAYOUT_KEYS)}; missing {absent}")
    joints = _read(npz, "layout_joints", path)
    values = {key: _read(npz, key, path) for key in ("layout_parents", "layout_mirror")}
    for key, value in values.items():
        if value.ndim != 1 or len(value) != len(joints) or not np.issubdtype(value.dtype, np.integer):
            raise DatasetError(f"{path}: {key} must be ({len(joints)},) integers like layout_joints, "
                               f"got {value.dtype} {value.shape}")
    centre = _scalar(npz, "layout_centre", path, None)
    try:
        layout = SkeletonLayout(
            name=str(name), joints=tuple(str(j) for j in joints),
            parents=tuple(int(v) for v in values["layout_parents"]), centre=int(centre),
            mirror=tuple(int(v) for v in values["layout_mirror"]),
        )
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{path}: stored layout is invalid ({err})") from None
    bad = [p for p in layout.parents if not 0 <= p < layout.num_joints]
    if bad:
        raise DatasetError(f"{path}: layout_parents holds {bad[0]}, outside 0..{layout.num_joints - 1}")
    known = LAYOUTS.get(layout.name)
    if known is not None and known != layout:
        raise DatasetError(f"{path}: stored layout is named {layout.name!r} like the built-in layout but "
                           "differs from it; give the custom layout another name")
    return layout


def _array_shape(npz, key, path) -> tuple[int, ...]:
    """Shape of an array inside an npz without reading it."""
    try:
        with npz.zip.open(key + ".npy") as handle:
            major, _ = np.lib.format.read_magic(handle)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, _ = read(handle)
        return tuple(shape)
    except (KeyError, zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise DatasetError(f"{path}: cannot read the header of {key!r} ({err})") from err


def _check_label_dtype(y: np.ndarray, path, key: str) -> None:
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating) or y.dtype == bool):
        raise DatasetError(
            f"{path}: {key} holds {y.dtype} values; labels must be integers in [0, num_classes) or one-hot rows "
            "(map class names to integers and store them as class_names; stars.data.byo.import_sequences does it)"
        )


def _labels(y: np.ndarray, n: int, num_classes: int, path, key: str) -> np.ndarray:
    _check_label_dtype(y, path, key)
    if len(y) != n:
        raise DatasetError(f"{path}: {key} has {len(y)} labels for {n} samples")
    if y.ndim == 2:
        if y.shape[1] != num_classes:
            raise DatasetError(f"{path}: {key} is one-hot with {y.shape[1]} columns, expected {num_classes}")
        if not np.all(np.isfinite(y)) or not np.all((y == 0) | (y == 1)) or not np.all(y.sum(1) == 1):
            bad = int(np.flatnonzero(~((y.sum(1) == 1) & np.all((y == 0) | (y == 1), axis=1)))[0])
            raise DatasetError(f"{path}: {key} row {bad} is not one-hot")
        labels = y.argmax(1)
    elif y.ndim == 1:
        if not np.issubdtype(y.dtype, np.integer):
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise DatasetError(f"{path}: {key} holds non-integer labels")
        labels = y.astype(np.int64)
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if len(bad):
            raise DatasetError(
                f"{path}: {key}[{int(bad[0])}] = {int(labels[bad[0]])} is outside [0, {num_classes})"
            )
    else:
        raise DatasetError(f"{path}: {key} must be (N,) labels or (N, classes) one-hot, got shape {y.shape}")
    return labels.astype(np.int64)


def load_split(path: str | os.PathLike, split: str = "train") -> SkeletonSplit:
    """Read and validate one split of a dataset file. x comes back as (N, T, M, V, 3) float32."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    header = read_header(path)
    layout, persons = header["layout"], header["num_persons"]
    with _open(path) as npz:
        x = _read(npz, f"x_{split}", path)
        y = _read(npz, f"y_{split}", path)
        meta = {
            key[: -len(split) - 1]: _read(npz, key, path)
            for key in npz.files
            if key.endswith(f"_{split}") and key not in (f"x_{split}", f"y_{split}")
        }
    if x.ndim != 3 or x.shape[2] != persons * layout.num_joints * 3:
        raise DatasetError(
            f"{path}: x_{split} must be (N, T, {persons * layout.num_joints * 3}), got shape {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise DatasetError(f"{path}: x_{split} must hold floats, got dtype {x.dtype}")
    for start in range(0, len(x), _CHUNK):
        chunk = x[start : start + _CHUNK]
        if not np.all(np.isfinite(chunk)):
            bad = start + int(np.flatnonzero(~np.isfinite(chunk).reshape(len(chunk), -1).all(1))[0])
            raise DatasetError(f"{path}: x_{split} sample {bad} contains NaN or inf")
    labels = _labels(y, len(x), header["num_classes"], path, f"y_{split}")
    for key, value in meta.items():
        if len(value) != len(x):
            raise DatasetError(f"{path}: {key}_{split} has {len(value)} entries for {len(x)} samples")
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), x.shape[1], persons, layout.num_joints, 3)
    return SkeletonSplit(
        x=x, y=labels, layout=layout, num_classes=header["num_classes"], path=str(path), split=split,
        name=header["name"], class_names=header["class_names"], meta=meta,
    )


def save_dataset(
    path: str | os.PathLike,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    num_classes: int,
    layout: str | SkeletonLayout = "ntu25",
    num_persons: int = 2,
    one_hot: bool = True,
    class_names: tuple[str, ...] | list[str] | None = None,
    name: str | None = None,
    extra: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write a dataset file atomically (temporary file + rename: a crash never leaves half a file).

    x_*: (N, T, M*V*3) or (N, T, M, V, 3); y_*: (N,) integer labels (written one-hot when
    `one_hot`, as the official scripts do). layout: a built-in layout's name, or a `SkeletonLayout`
    (e.g. from `stars.data.layouts.custom_layout`), which is stored in full unless it is built in. `extra` holds further arrays (e.g. subject_train).
    The official four keys come first; metadata keys are only written when they carry information
    beyond the official layout, so an NTU file stays byte-for-byte comparable in its arrays.
    """
    path = Path(path)
    lay = layout if isinstance(layout, SkeletonLayout) else get_layout(layout)
    arrays: dict[str, np.ndarray] = {}
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 5:
            x = x.reshape(x.shape[0], x.shape[1], -1)
        if x.ndim != 3 or x.shape[2] != num_persons * lay.num_joints * 3:
            raise ValueError(f"x_{split} must be (N, T, {num_persons * lay.num_joints * 3}), got {x.shape}")
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"y_{split} must be (N,) integer labels matching x_{split}, got {y.shape}")
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"y_{split} labels must lie in [0, {num_classes})")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"x_{split} contains NaN or inf")
        arrays[f"x_{split}"] = x
        arrays[f"y_{split}"] = np.eye(num_classes, dtype=np.float64)[y] if one_hot else y.astype(np.int64)
    if LAYOUTS.get(lay.name) != lay:
        arrays.update(lay.to_arrays())
    elif lay.name != "ntu25":
        arrays["layout"] = np.array(lay.name)
    if num_persons != 2:
        arrays["num_persons"] = np.array(num_persons)
    if not one_hot:
        arrays["num_classes"] = np.array(num_classes)
    if class_names is not None:
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        arrays["class_names"] = np.array([str(c) for c in class_names])
    if name is not None:
        arrays["name"] = np.array(name)
    for key, value in (extra or {}).items():
        arrays[key] = np.asarray(value)
    return atomic_write(path, lambda handle: np.savez(handle, **arrays))
