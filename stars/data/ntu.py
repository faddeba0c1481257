"""NTU RGB+D 60/120: raw `.skeleton` text files -> the official npz files (spec sections 1.1-1.4).

Per sample, as the official MAMP data scripts do (restated, not copied):

    read_skeleton_file          text -> bodies grouped by bodyID: joints (n*25, 3), interval, motion
    select_actors               length filter (<= 11 frames), spread filter (0.8 / 0.69754), motion
                                sort, assembly into (T, 75) or (T, 150); for multi-body samples the
                                frames that sum to exactly zero are then removed
    centre_on_first_spine_mid   origin = actor-1 spine-middle joint in its first non-zero frame

Over all samples:

    place_sequence              zero padding at the end up to T = max(300, longest); a missing second
                                actor is zeros (NTU-60 script) or a copy of actor 1 (NTU-120 script)
    split_indices               NTU-60 XSub / XView, NTU-120 XSub / XSet, grouped by ID in list order

`prepare_ntu` drives this over the raw folders: a process pool over files, a resumable cache of
per-file results (`out_dir/cache/`), a per-file report (`prepare_report.csv`) and a JSON summary
(`prepare_summary.json`) listing every skipped file with its reason. Corrupt files never stop a run.

Differences from the official scripts, none of which changes a well-formed file's result: the
colour pixel coordinates (only logged officially) are not kept; folder names are free (the official
NTU-120 script expects `nturgb+d_skeletons_120`, its README says `nturgb+d_skeletons120`, spec
section 8.2 item 22); files the official reader would crash on or misread (truncated, non-numeric,
a body ID twice in one frame, data after the last frame, every body <= 11 frames) are skipped and
reported instead; T = max(300, longest sequence) instead of the longest (both are 300 on NTU).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import multiprocessing
import operator
import os
import re
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from stars.data.npz import save_dataset
from stars.data.ntu_names import (
    NTU60_MISSING_SKELETONS,
    NTU120_CLASS_NAMES,
    NTU120_MISSING_SKELETONS,
    NTU120_MISSING_SKELETONS_COUNT,
)
from stars.io import atomic_write, atomic_write_bytes, remove_orphan_files

log = logging.getLogger(__name__)

NUM_JOINTS = 25
BODY_INFO_VALUES = 10  # bodyID, clippedEdges, 4 hand values, isRestricted, leanX, leanY, trackingState
JOINT_VALUES = 12  # x, y, z, depthX, depthY, colorX, colorY, orientation w/x/y/z, trackingState
ACTOR_WIDTH = NUM_JOINTS * 3  # 75 values per actor and frame
FRAME_WIDTH = 2 * ACTOR_WIDTH  # 150
MIN_FRAMES = 300  # official file length
SAMPLE_NAME = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")

_BODY_TOKENS = BODY_INFO_VALUES + 1 + NUM_JOINTS * JOINT_VALUES  # 311 tokens per body and frame
_XYZ_OFFSETS = (np.arange(NUM_JOINTS)[:, None] * JOINT_VALUES + np.arange(3)[None, :]).ravel()
_NUMBER_BYTES = b"0123456789+-.eE \t\r\n\f\v"


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


class SkeletonFileError(ValueError):
    """A `.skeleton` file cannot be used; the message names the file (and line when known).

    kind: short category used in reports: unreadable, empty, truncated, malformed, joint-count,
    non-finite, no-body (every frame is empty), too-short (no body longer than the noise length),
    no-actor (actor 1 is all zeros).
    """

    def __init__(self, path, reason: str, line: int | None = None, kind: str = "malformed"):
        self.path = str(path)
        self.reason = reason
        self.line = line
        self.kind = kind
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.line, self.kind))


@dataclass
class RawBody:
    """One tracked body of a sample.

    joints: (n * 25, 3) float32 camera-space x, y, z of the n frames the body appears in.
    interval: (n,) int64 valid-frame indices; as in the official reader it is the first index
        followed by consecutive ones (first, first+1, ...), even if the body skipped frames.
    motion: sum over x, y, z of the coordinate variance over all n*25 rows; only computed when the
        sample has two or more bodies (None otherwise), as in the official reader.
    """

    body_id: str
    joints: np.ndarray
    interval: np.ndarray
    motion: float | None = None

    @property
    def num_frames(self) -> int:
        return len(self.interval)


@dataclass
class RawSkeleton:
    """A parsed `.skeleton` file.

    bodies: bodyID -> RawBody, in order of first appearance.
    num_frames: frames announced by the file minus the dropped (empty) frames.
    dropped_frames: 0-based indices (among all announced frames) of frames without any body.
    """

    name: str
    bodies: dict[str, RawBody]
    num_frames: int
    num_raw_frames: int
    dropped_frames: tuple[int, ...] = ()


def _line_of_token(data: bytes, index: int) -> int:
    """1-based line holding whitespace token `index` (one past the last line when beyond the end)."""
    seen = 0
    lines = data.splitlines()
    for number, line in enumerate(lines, start=1):
        seen += len(line.split())
        if seen > index:
            return number
    return len(lines) + 1


def _first_bad_number(tokens: Sequence[bytes], indices: Iterable[int]) -> tuple[int, str, str]:
    """(token index, kind, reason) of the first token that is not a plain finite decimal number."""
    for i in indices:
        token = tokens[i]
        shown = token.decode(errors="replace")
        try:
            value = float(token)
        except ValueError:
            return i, "malformed", f"non-numeric value {shown!r}"
        if not np.isfinite(value):
            return i, "non-finite", f"non-finite value {shown!r}"
        if token.translate(None, _NUMBER_BYTES):
            return i, "malformed", f"non-numeric value {shown!r}"
    return 0, "malformed", "unparseable numbers"


def parse_skeleton_bytes(data: bytes, path: str | os.PathLike = "<bytes>") -> RawSkeleton:
    """Parse the text of a `.skeleton` file (see `read_skeleton_file`)."""
    name = Path(path).name.split(".")[0]
    tokens = data.split()
    n = len(tokens)
    if n == 0:
        raise SkeletonFileError(path, "empty file", line=1, kind="empty")

    def fail(index: int, reason: str, kind: str = "malformed"):
        return SkeletonFileError(path, reason, line=_line_of_token(data, index), kind=kind)

    if data.translate(None, _NUMBER_BYTES):
        index, kind, reason = _first_bad_number(tokens, range(n))
        raise fail(index, reason, kind)

    def count(index: int, what: str) -> int:
        if index >= n:
            raise fail(index, f"truncated: the file ends where the {what} should be", "truncated")
        try:
            value = int(tokens[index])
        except ValueError:
            raise fail(index, f"{what} must be a non-negative integer, got {tokens[index].decode()!r}") from None
        if value < 0:
            raise fail(index, f"{what} must be a non-negative integer, got {value}")
        return value

    num_raw_frames = count(0, "frame count")
    pos = 1
    joint_starts: list[int] = []  # token index of each (body, frame) joint block
    rows: dict[bytes, list[int]] = {}  # bodyID -> rows of joint_starts
    first_frame: dict[bytes, int] = {}
    dropped: list[int] = []
    valid = -1
    for frame in range(num_raw_frames):
        num_bodies = count(pos, f"body count of frame {frame + 1} of {num_raw_frames}")
        pos += 1
        if num_bodies == 0:
            dropped.append(frame)
            continue
        valid += 1
        in_frame: set[bytes] = set()
        for _ in range(num_bodies):
            if pos + BODY_INFO_VALUES >= n:
                raise fail(n, f"truncated: the file ends inside frame {frame + 1} of {num_raw_frames}",
                           "truncated")
            body_id = tokens[pos]
            if not body_id.isdigit():
                raise fail(pos, f"body ID must be an integer, got {body_id.decode()!r}")
            if body_id in in_frame:
                raise fail(pos, f"body {body_id.decode()} appears twice in frame {frame + 1}")
            in_frame.add(body_id)
            joint_count = count(pos + BODY_INFO_VALUES, "joint count")
            if joint_count != NUM_JOINTS:
                raise fail(pos + BODY_INFO_VALUES, f"joint count {joint_count}, expected {NUM_JOINTS}",
                           "joint-count")
            if pos + _BODY_TOKENS > n:
                raise fail(n, f"truncated: the file ends inside frame {frame + 1} of {num_raw_frames}",
                           "truncated")
            rows.setdefault(body_id, []).append(len(joint_starts))
            first_frame.setdefault(body_id, valid)
            joint_starts.append(pos + BODY_INFO_VALUES + 1)
            pos += _BODY_TOKENS
    if pos != n:
        raise fail(pos, f"{n - pos} values after the last of the {num_raw_frames} announced frames")
    if valid < 0:
        reason = "no frames" if num_raw_frames == 0 else f"all {num_raw_frames} frames are empty (no body)"
        raise SkeletonFileError(path, reason, kind="no-body")

    token_index = (np.asarray(joint_starts)[:, None] + _XYZ_OFFSETS[None, :]).ravel().tolist()
    try:
        xyz = np.array(operator.itemgetter(*token_index)(tokens), dtype=np.float64)
        finite = bool(np.isfinite(xyz).all())
    except ValueError:
        finite = False
    if not finite:
        index, kind, reason = _first_bad_number(tokens, token_index)
        raise fail(index, reason.replace("value", "coordinate"), kind)
    with np.errstate(over="ignore"):
        xyz32 = xyz.astype(np.float32)
    if not np.isfinite(xyz32).all():
        index = token_index[int(np.flatnonzero(~np.isfinite(xyz32))[0])]
        raise fail(index, f"coordinate {tokens[index].decode()!r} overflows float32", "non-finite")
    xyz = xyz32.reshape(len(joint_starts), NUM_JOINTS, 3)

    bodies: dict[str, RawBody] = {}
    for body_id, body_rows in rows.items():
        bodies[body_id.decode()] = RawBody(
            body_id=body_id.decode(),
            joints=xyz[body_rows].reshape(-1, 3),
            interval=first_frame[body_id] + np.arange(len(body_rows), dtype=np.int64),
        )
    if len(bodies) > 1:
        for body in bodies.values():
            body.motion = body_motion(body.joints)
    return RawSkeleton(name, bodies, valid + 1, num_raw_frames, tuple(dropped))


def read_skeleton_file(path: str | os.PathLike) -> RawSkeleton:
    """Read an NTU `.skeleton` file (format in spec section 1.1) strictly.

    The whole file is split once into whitespace tokens and walked by index arithmetic (1 frame
    count; per frame a body count; per body 10 info values, the joint count and 25 x 12 joint
    values). Frames with no body are dropped. Every byte must belong to a number; x, y, z must
    be finite. Raises `SkeletonFileError` (naming file, line and `kind`) for an empty or truncated
    file, non-numeric tokens, a joint count other than 25, non-finite coordinates, trailing data or
    a file whose frames are all empty.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise SkeletonFileError(path, f"cannot read the file ({err.strerror or err})", kind="unreadable") from None
    return parse_skeleton_bytes(data, path)


def body_motion(joints: np.ndarray) -> float:
    """Sum over x, y, z of the variance of the coordinates. joints: (rows, 3) float32."""
    return float(np.sum(np.var(joints, axis=0)))


def write_skeleton_file(
    path: str | os.PathLike,
    bodies_per_frame: Sequence[Sequence[tuple[str | int, np.ndarray]]],
) -> Path:
    """Write frames in the NTU `.skeleton` text format.

    bodies_per_frame: one list per frame of (bodyID, xyz (25, 3)) pairs; an empty list is a frame
    without bodies. The fields the pipeline does not use are filled with plausible values (depth
    and colour pixels from a Kinect-like projection, identity joint orientation, tracking state 2).
    Coordinates are written with 9 significant digits, so float32 values read back exactly.
    """
    path = Path(path)
    body_format = "{} 0 1 1 1 1 0 {:.7g} {:.7g} 2\n25\n"
    joint_block = ("%.9g " * 11 + "2\n") * NUM_JOINTS
    out = io.StringIO()
    out.write(f"{len(bodies_per_frame)}\n")
    for frame in bodies_per_frame:
        out.write(f"{len(frame)}\n")
        for body_id, xyz in frame:
            xyz = np.asarray(xyz, dtype=np.float32)
            if xyz.shape != (NUM_JOINTS, 3):
                raise ValueError(f"{path}: body {body_id} joints must be (25, 3), got {xyz.shape}")
            xyz64 = xyz.astype(np.float64)
            depth = np.where(np.abs(xyz64[:, 2]) > 0.1, xyz64[:, 2], 1.0)
            u, v = xyz64[:, 0] / depth, xyz64[:, 1] / depth
            values = np.column_stack([
                xyz64, 256 + 365 * u, 212 - 365 * v, 960 + 1060 * u, 540 - 1060 * v,
                np.ones(NUM_JOINTS), np.zeros((NUM_JOINTS, 3)),
            ])  # fmt: skip
            out.write(body_format.format(body_id, 0.01 * float(xyz64[0, 0]), 0.01 * float(xyz64[0, 1])))
            out.write(joint_block % tuple(values.ravel()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(out.getvalue())
    return path


# ----------------------------------------------------------------------------------------------
# Denoising and actor selection (spec section 1.3)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DenoiseThresholds:
    """Thresholds of the official denoising (MAMP repo data/ntu/get_raw_denoised_data.py).

    max_noise_length: bodies seen in this many frames or fewer are noise (multi-body samples).
    spread_ratio: a frame of a body is valid when its x extent <= spread_ratio * its y extent.
    max_noise_ratio: a body whose fraction of invalid frames is >= this is deleted.
    (The official motion thresholds 0.089925 / 2 are defined but unused, so they are absent here.)
    """

    max_noise_length: int = 11
    spread_ratio: float = 0.8
    max_noise_ratio: float = 0.69754


@dataclass
class ActorSelection:
    """Result of `select_actors`.

    joints: (T, 75) float32 for one actor, or (T, 150) float32 = [actor 1 | actor 2] slots.
        For samples that had two or more bodies, frames summing to exactly zero are removed.
    actors: body IDs written into the array, actor 1 (largest motion) first.
    removed: body ID -> "length", "spread" or "overlap" for the bodies that were discarded.
    """

    joints: np.ndarray
    actors: tuple[str, ...]
    removed: dict[str, str] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return self.joints.shape[0]


def valid_frames_by_spread(joints: np.ndarray, spread_ratio: float = 0.8) -> np.ndarray:
    """(n,) bool: frames whose x extent is at most `spread_ratio` times the y extent.

    joints: (n, 25, 3) float32. Extents are float32 differences compared in float64, as NumPy 1.x
    evaluated the official scalar expression.
    """
    x_extent = joints[:, :, 0].max(1) - joints[:, :, 0].min(1)
    y_extent = joints[:, :, 1].max(1) - joints[:, :, 1].min(1)
    return x_extent.astype(np.float64) <= spread_ratio * y_extent.astype(np.float64)


def _one_actor_array(body: RawBody, num_frames: int) -> np.ndarray:
    joints = np.zeros((num_frames, ACTOR_WIDTH), dtype=np.float32)
    start, end = int(body.interval[0]), int(body.interval[-1])
    joints[start : end + 1] = body.joints.reshape(-1, ACTOR_WIDTH)
    return joints


def remove_missing_frames(joints: np.ndarray) -> np.ndarray:
    """Drop frames whose values sum to exactly zero. joints: (T, W) -> (T', W)."""
    return joints[joints.sum(axis=1) != 0]


def select_actors(raw: RawSkeleton, thresholds: DenoiseThresholds = DenoiseThresholds()) -> ActorSelection:
    """Denoise the bodies of a sample and assemble at most two actors (spec section 1.3).

    One body: its joints at its interval in a (num_frames, 75) array, nothing removed. Two or more:
      1. length filter: bodies with <= max_noise_length frames are deleted;
      2. spread filter (while more than one body is left, in order of first appearance): a body
         with a fraction >= max_noise_ratio of invalid frames is deleted, otherwise its motion
         becomes min(motion, motion over its valid frames);
      3. bodies sorted by motion, descending (stable);
      4. the largest-motion body is actor 1; each further body goes into actor 1's slot when its
         interval does not overlap actor 1's (touching counts as not overlapping; the slot's
         interval then grows), else into actor 2's slot under the same rule (actor 2 starts as
         the virtual interval [0, 0]), else it is discarded. A single survivor is a 75-wide actor;
      5. frames summing to exactly zero are removed.
    Raises SkeletonFileError(kind="too-short") when the length filter leaves no body (the
    official script would crash on such a sample).
    """
    if len(raw.bodies) == 1:
        body = next(iter(raw.bodies.values()))
        return ActorSelection(_one_actor_array(body, raw.num_frames), (body.body_id,))

    removed: dict[str, str] = {}
    bodies: dict[str, RawBody] = {}
    for body_id, body in raw.bodies.items():
        if body.num_frames <= thresholds.max_noise_length:
            removed[body_id] = "length"
        else:
            bodies[body_id] = body
    if not bodies:
        raise SkeletonFileError(
            raw.name,
            f"all {len(raw.bodies)} bodies appear in <= {thresholds.max_noise_length} frames",
            kind="too-short",
        )
    motion = {
        body_id: body_motion(body.joints) if body.motion is None else float(body.motion)
        for body_id, body in bodies.items()
    }
    if len(bodies) > 1:
        for body_id, body in list(bodies.items()):
            if len(bodies) == 1:
                break
            frames = body.joints.reshape(-1, NUM_JOINTS, 3)
            valid = valid_frames_by_spread(frames, thresholds.spread_ratio)
            num_noise = int((~valid).sum())
            if num_noise == 0:
                continue
            if num_noise / float(len(valid)) >= thresholds.max_noise_ratio:
                del bodies[body_id]
                removed[body_id] = "spread"
            else:
                motion[body_id] = min(motion[body_id], body_motion(frames[valid].reshape(-1, 3)))

    ordered = sorted(bodies.values(), key=lambda b: motion[b.body_id], reverse=True)
    if len(ordered) == 1:
        joints = _one_actor_array(ordered[0], raw.num_frames)
        return ActorSelection(remove_missing_frames(joints), (ordered[0].body_id,), removed)

    joints = np.zeros((raw.num_frames, FRAME_WIDTH), dtype=np.float32)
    actor1 = ordered[0]
    start1, end1 = int(actor1.interval[0]), int(actor1.interval[-1])
    joints[start1 : end1 + 1, :ACTOR_WIDTH] = actor1.joints.reshape(-1, ACTOR_WIDTH)
    start2, end2 = 0, 0
    placed = [actor1.body_id]
    for body in ordered[1:]:
        start, end = int(body.interval[0]), int(body.interval[-1])
        if min(end1, end) - max(start1, start) <= 0:
            joints[start : end + 1, :ACTOR_WIDTH] = body.joints.reshape(-1, ACTOR_WIDTH)
            start1, end1 = min(start, start1), max(end, end1)
        elif min(end2, end) - max(start2, start) <= 0:
            joints[start : end + 1, ACTOR_WIDTH:] = body.joints.reshape(-1, ACTOR_WIDTH)
            start2, end2 = min(start, start2), max(end, end2)
        else:
            removed[body.body_id] = "overlap"
            continue
        placed.append(body.body_id)
    return ActorSelection(remove_missing_frames(joints), tuple(placed), removed)


# ----------------------------------------------------------------------------------------------
# Centring, padding, splits (spec section 1.4)
# ----------------------------------------------------------------------------------------------


def centre_on_first_spine_mid(joints: np.ndarray, where: str = "sample") -> np.ndarray:
    """Translate so that actor 1's spine-middle joint (joint 2) in its first non-zero frame is 0.

    joints: (T, 75) or (T, 150) float32 -> a new array of the same shape. In two-slot arrays the
    frames where an actor was all-zero (sum exactly 0) before the translation are zero again
    afterwards; one-slot arrays are translated in every frame. No rotation, no scaling.
    """
    out = np.array(joints, dtype=np.float32, copy=True)
    width = out.shape[1]
    if width not in (ACTOR_WIDTH, FRAME_WIDTH):
        raise ValueError(f"{where}: expected 75 or 150 values per frame, got {width}")
    present = np.flatnonzero(np.any(out[:, :ACTOR_WIDTH] != 0, axis=1))
    if len(present) == 0:
        raise SkeletonFileError(where, "actor 1 is all zeros in every frame", kind="no-actor")
    missing = [out[:, :ACTOR_WIDTH].sum(1) == 0, out[:, ACTOR_WIDTH:].sum(1) == 0] if width == FRAME_WIDTH else []
    origin = out[present[0], 3:6].copy()
    out -= np.tile(origin, width // 3)
    for slot, frames in enumerate(missing):
        out[frames, slot * ACTOR_WIDTH : (slot + 1) * ACTOR_WIDTH] = 0
    return out


SECOND_ACTOR_MODES = ("official", "zeros", "duplicate")


def resolve_second_actor(variant: str, second_actor: str) -> str:
    """'official' -> 'zeros' for NTU-60, 'duplicate' for NTU-120 (the two official scripts differ)."""
    if second_actor not in SECOND_ACTOR_MODES:
        raise ValueError(f"second_actor must be one of {SECOND_ACTOR_MODES}, got {second_actor!r}")
    if second_actor != "official":
        return second_actor
    return "zeros" if variant == "ntu60" else "duplicate"


def place_sequence(out: np.ndarray, joints: np.ndarray, second_actor: str) -> None:
    """Copy a (T, 75|150) sequence to the start of `out` (T_max, 150), which holds zeros.

    A 75-wide sequence fills actor 1; actor 2 stays zero ("zeros") or repeats actor 1 ("duplicate").
    """
    length, width = joints.shape
    out[:length, :width] = joints
    if width == ACTOR_WIDTH and second_actor == "duplicate":
        out[:length, ACTOR_WIDTH:] = joints


def align_sequences(
    sequences: Sequence[np.ndarray], second_actor: str = "zeros", num_frames: int = MIN_FRAMES
) -> np.ndarray:
    """(N, T, 150) float32 with T = max(num_frames, longest sequence), zero-padded at the end."""
    if second_actor not in ("zeros", "duplicate"):
        raise ValueError(f"second_actor must be 'zeros' or 'duplicate', got {second_actor!r}")
    length = max([num_frames, *(len(s) for s in sequences)])
    out = np.zeros((len(sequences), length, FRAME_WIDTH), dtype=np.float32)
    for row, joints in zip(out, sequences):
        place_sequence(row, joints, second_actor)
    return out


class SampleId(NamedTuple):
    """The five numbers of a sample name SsssCcccPpppRrrrAaaa (1-based)."""

    setup: int
    camera: int
    subject: int
    replication: int
    action: int


def parse_sample_name(name: str) -> SampleId:
    """'S001C002P003R002A013' (optionally with '.skeleton') -> SampleId; ValueError otherwise."""
    stem = name[: -len(".skeleton")] if name.endswith(".skeleton") else name
    match = SAMPLE_NAME.match(stem)
    if match is None:
        raise ValueError(f"{name!r} is not an NTU sample name SsssCcccPpppRrrrAaaa")
    return SampleId(*(int(g) for g in match.groups()))


NTU60_XSUB_TRAIN_SUBJECTS = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
NTU120_XSUB_TRAIN_SUBJECTS = NTU60_XSUB_TRAIN_SUBJECTS + (
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91,
    92, 93, 94, 95, 97, 98, 100, 103,
)  # fmt: skip


@dataclass(frozen=True)
class Benchmark:
    """An official split: samples whose `key` value is in train_ids form the training set.

    Order inside a split: grouped by ID in the order of the ID tuple, then by sample name.
    """

    name: str
    key: str  # "subject", "camera" or "setup"
    train_ids: tuple[int, ...]
    test_ids: tuple[int, ...]


def _complement(ids: tuple[int, ...], upper: int) -> tuple[int, ...]:
    return tuple(i for i in range(1, upper + 1) if i not in ids)


NTU60_XSUB = Benchmark("NTU60_XSub", "subject", NTU60_XSUB_TRAIN_SUBJECTS, _complement(NTU60_XSUB_TRAIN_SUBJECTS, 40))
NTU60_XVIEW = Benchmark("NTU60_XView", "camera", (2, 3), (1,))
NTU120_XSUB = Benchmark(
    "NTU120_XSub", "subject", NTU120_XSUB_TRAIN_SUBJECTS, _complement(NTU120_XSUB_TRAIN_SUBJECTS, 106)
)
NTU120_XSET = Benchmark("NTU120_XSet", "setup", tuple(range(2, 33, 2)), tuple(range(1, 33, 2)))

VARIANTS = {
    "ntu60": {"benchmarks": (NTU60_XSUB, NTU60_XVIEW), "setups": 17, "actions": 60, "raw_files": 56_880},
    "ntu120": {"benchmarks": (NTU120_XSUB, NTU120_XSET), "setups": 32, "actions": 120, "raw_files": 114_480},
}

# (train, test) sizes of the official files (spec section 1.4, derived from the statistics files).
OFFICIAL_SPLIT_SIZES = {
    "NTU60_XSub": (40_091, 16_487),
    "NTU60_XView": (37_646, 18_932),
    "NTU120_XSub": (63_026, 50_919),
    "NTU120_XSet": (54_468, 59_477),
}


def split_indices(ids: Sequence[SampleId], benchmark: Benchmark) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) int64 positions into `ids` (which must be in sample-name order)."""
    values = np.array([getattr(i, benchmark.key) for i in ids], dtype=np.int64)

    def gather(id_list: tuple[int, ...]) -> np.ndarray:
        parts = [np.flatnonzero(values == i) for i in id_list]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    return gather(benchmark.train_ids), gather(benchmark.test_ids)


# ----------------------------------------------------------------------------------------------
# Missing-skeleton lists
# ----------------------------------------------------------------------------------------------


def read_missing_list(path: str | os.PathLike) -> frozenset[str]:
    """Sample names from a missing-skeleton list file (one name per line, as distributed).

    Every token that looks like an NTU sample name is taken; other lines (headers, blanks) are
    ignored. Raises ValueError naming the file when it holds no sample name.
    """
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        raise ValueError(f"{path}: cannot read the missing-skeleton list ({err.strerror or err})") from None
    names = frozenset(re.findall(r"S\d{3}C\d{3}P\d{3}R\d{3}A\d{3}", text))
    if not names:
        raise ValueError(f"{path}: no sample name (SsssCcccPpppRrrrAaaa) found in the missing-skeleton list")
    return names


# ----------------------------------------------------------------------------------------------
# Per-file processing and the resumable cache
# ----------------------------------------------------------------------------------------------


class FileResult(NamedTuple):
    """Outcome of one raw file. joints: (T, 75|150) float32 centred sequence when status == 'ok'."""

    name: str
    key: str  # content digest of the raw file (`file_digest`)
    status: str  # "ok" or "skipped"
    reason: str  # "" or a kind of SkeletonFileError ("error" for an unexpected exception)
    detail: str
    joints: np.ndarray | None
    num_bodies: int
    num_raw_frames: int


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a raw file's bytes (first 32 hex digits): the cache key of its parsed result."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()[:32]


def process_skeleton_file(task: tuple[str, str, str], thresholds: DenoiseThresholds = DenoiseThresholds()) -> FileResult:
    """Read, denoise and centre one file; never raises (problems become a 'skipped' result).

    task: (path, sample name, content digest of the file).
    """
    path, name, key = task
    try:
        raw = read_skeleton_file(path)
        selection = select_actors(raw, thresholds)
        joints = centre_on_first_spine_mid(selection.joints, where=path)
        return FileResult(name, key, "ok", "", "", joints, len(raw.bodies), raw.num_raw_frames)
    except SkeletonFileError as err:
        detail = err.reason if err.line is None else f"line {err.line}: {err.reason}"
        return FileResult(name, key, "skipped", err.kind, detail, None, 0, 0)
    except Exception as err:  # noqa: BLE001 - a bad file must never stop the run; it is reported
        return FileResult(name, key, "skipped", "error", f"{type(err).__name__}: {err}", None, 0, 0)


CACHE_VERSION = 2
_PARSER_SOURCE = Path(__file__)
_SHARD_NAME = re.compile(r"^shard_(\d{6})\.npz$")
_SHARD_KEYS = ("names", "keys", "status", "reasons", "details", "lengths", "widths", "bodies", "raw_frames", "data")


def parser_version() -> str:
    """CACHE_VERSION and a digest of this module's source: any change to the parser invalidates the cache."""
    return f"v{CACHE_VERSION}-{hashlib.sha256(_PARSER_SOURCE.read_bytes()).hexdigest()[:10]}"


class ResultCache:
    """Per-file results in `directory/shard_NNNNNN.npz`, each written whole or not at all.

    A result is keyed by the sample name and the SHA-256 of the raw file's bytes, so an edited file
    (even of the same size) or another raw folder is parsed again. The directory name encodes the
    parser version (`parser_version`) and the denoising thresholds, so results made by other code or
    settings are never mixed in. Shards are written through a hidden temporary file and a rename; the
    temporary files a kill leaves behind never match the shard name and are deleted by `load` (call it
    under the output folder's lock). A shard that fails to read or is inconsistent is ignored, with a
    warning. Later shards override earlier ones for the same sample.
    """

    def __init__(self, root: Path, thresholds: DenoiseThresholds):
        tag = (f"{parser_version()}_len{thresholds.max_noise_length}_spr{thresholds.spread_ratio}"
               f"_noise{thresholds.max_noise_ratio}")
        self.directory = Path(root) / tag
        self.pending: list[FileResult] = []

    def shard_paths(self) -> list[Path]:
        if not self.directory.exists():
            return []
        return sorted(p for p in self.directory.iterdir() if _SHARD_NAME.match(p.name))

    def load(self) -> dict[tuple[str, str], FileResult]:
        """(sample name, content digest) -> cached result."""
        remove_orphan_files(self.directory)
        results: dict[tuple[str, str], FileResult] = {}
        for path in self.shard_paths():
            try:
                with np.load(path, allow_pickle=False) as shard:
                    arrays = {key: shard[key] for key in _SHARD_KEYS}
                offsets = np.concatenate([[0], np.cumsum(arrays["lengths"] * arrays["widths"])])
                if offsets[-1] != arrays["data"].size or len({len(arrays[k]) for k in _SHARD_KEYS[:-1]}) != 1:
                    raise ValueError("inconsistent array sizes")
            except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
                log.warning("%s: unreadable cache shard ignored (%s)", path, err)
                continue
            for i, name in enumerate(arrays["names"]):
                joints = None
                if arrays["status"][i] == "ok":
                    flat = arrays["data"][offsets[i] : offsets[i + 1]]
                    joints = flat.reshape(int(arrays["lengths"][i]), int(arrays["widths"][i]))
                result = FileResult(
                    str(name), str(arrays["keys"][i]), str(arrays["status"][i]), str(arrays["reasons"][i]),
                    str(arrays["details"][i]), joints, int(arrays["bodies"][i]), int(arrays["raw_frames"][i]),
                )
                results[(result.name, result.key)] = result
        return results

    def add(self, result: FileResult) -> None:
        self.pending.append(result)

    def flush(self) -> Path | None:
        """Write the pending results as one new shard; returns its path (None when nothing pending)."""
        if not self.pending:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = [int(_SHARD_NAME.match(p.name).group(1)) for p in self.shard_paths()]
        path = self.directory / f"shard_{(max(existing) + 1 if existing else 0):06d}.npz"
        items = self.pending
        empty = np.zeros(0, dtype=np.float32)
        arrays = {
            "names": np.array([r.name for r in items]),
            "keys": np.array([r.key for r in items]),
            "status": np.array([r.status for r in items]),
            "reasons": np.array([r.reason for r in items]),
            "details": np.array([r.detail for r in items]),
            "lengths": np.array([0 if r.joints is None else r.joints.shape[0] for r in items], dtype=np.int64),
            "widths": np.array([0 if r.joints is None else r.joints.shape[1] for r in items], dtype=np.int64),
            "bodies": np.array([r.num_bodies for r in items], dtype=np.int64),
            "raw_frames": np.array([r.num_raw_frames for r in items], dtype=np.int64),
            "data": np.concatenate([empty] + [r.joints.ravel() for r in items if r.joints is not None]),
        }
        atomic_write(path, lambda handle: np.savez(handle, **arrays))
        self.pending = []
        return path


# ----------------------------------------------------------------------------------------------
# The driver
# ----------------------------------------------------------------------------------------------


@dataclass
class PrepareReport:
    """What `prepare_ntu` did. skipped: (sample name, reason, detail) for every file left out."""

    variant: str
    out_dir: str
    outputs: dict[str, str]
    split_sizes: dict[str, tuple[int, int]]
    num_files: int
    num_ok: int
    num_parsed: int
    num_cached: int
    skipped: list[tuple[str, str, str]]
    skipped_by_reason: dict[str, int]
    second_actor: str
    num_frames: int
    missing_list: str
    warnings: list[str]
    seconds: float
    files_per_second: float
    report_csv: str
    summary_json: str


def discover_skeleton_files(raw_dirs: Sequence[str | os.PathLike]) -> tuple[dict[str, Path], list[tuple[str, str, str]]]:
    """All `*.skeleton` files under the folders (recursively).

    Returns (sample name -> path, problems) where problems are (path, reason, detail) for files
    with a non-NTU name or a name already found in another folder (the first one is kept).
    """
    files: dict[str, Path] = {}
    problems: list[tuple[str, str, str]] = []
    for raw_dir in raw_dirs:
        raw_dir = Path(raw_dir)
        if not raw_dir.is_dir():
            raise ValueError(f"{raw_dir}: raw NTU folder does not exist")
        def unreadable(err: OSError) -> None:
            problems.append((printable_path(err.filename), "unreadable", f"cannot list the folder ({err.strerror})"))

        for folder, subdirs, names in os.walk(raw_dir, onerror=unreadable):
            subdirs.sort()
            for file_name in sorted(names):
                if not file_name.endswith(".skeleton"):
                    continue
                path = Path(folder) / file_name
                stem = file_name[: -len(".skeleton")]
                if not path.is_file():  # a dangling link, a FIFO or device: never opened (a FIFO would block)
                    detail = "dangling symbolic link" if path.is_symlink() and not path.exists() else "not a regular file"
                    problems.append((printable_path(path), "unreadable", detail))
                elif SAMPLE_NAME.match(stem) is None:
                    problems.append((printable_path(path), "bad-name", "not SsssCcccPpppRrrrAaaa.skeleton"))
                elif stem in files:
                    problems.append((printable_path(path), "duplicate", f"same sample as {printable_path(files[stem])}"))
                else:
                    files[stem] = path
    return files, problems


def printable_path(path: str | os.PathLike) -> str:
    """A path as text that can always be written: bytes that are not UTF-8 become backslash escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8", "backslashreplace"))


def _run_pool(tasks, thresholds, workers: int, progress: bool, cache: ResultCache, shard_size: int, desc: str):
    """Process `tasks`, yielding results in order; pending results are flushed every shard_size."""
    worker = partial(process_skeleton_file, thresholds=thresholds)
    bar = tqdm(total=len(tasks), unit="file", desc=desc, disable=not progress, dynamic_ncols=True)
    pool = None
    try:
        if workers <= 1 or len(tasks) <= 1:
            results = map(worker, tasks)
        else:
            pool = multiprocessing.get_context().Pool(workers)
            chunk = max(1, min(32, len(tasks) // (4 * workers)))
            results = pool.imap(worker, tasks, chunksize=chunk)
        for result in results:
            cache.add(result)
            if len(cache.pending) >= shard_size:
                cache.flush()
            bar.update()
            yield result
    finally:
        cache.flush()  # whatever finished before an interruption is kept
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()


IN_MEMORY_LIMIT = 2 * 1024**3  # bytes; larger output arrays are assembled in memory-mapped files


def float32_zeros(shape: tuple[int, ...], scratch: Path) -> np.ndarray:
    """float32 zeros, in RAM up to IN_MEMORY_LIMIT bytes, else a memory-mapped file in `scratch`."""
    nbytes = int(np.prod(shape)) * 4
    if nbytes <= IN_MEMORY_LIMIT:
        return np.zeros(shape, dtype=np.float32)
    fd, name = tempfile.mkstemp(suffix=".f32", dir=scratch)
    os.close(fd)
    return np.memmap(name, dtype=np.float32, mode="w+", shape=shape)


def prepare_ntu(
    raw_dirs: Sequence[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    variant: str = "ntu60",
    workers: int | None = None,
    resume: bool = True,
    missing_list: str | os.PathLike | None = None,
    limit: int | None = None,
    *,
    second_actor: str = "official",
    official_keys_only: bool = False,
    num_frames: int = MIN_FRAMES,
    shard_size: int = 500,
    thresholds: DenoiseThresholds = DenoiseThresholds(),
    progress: bool = True,
) -> PrepareReport:
    """Raw NTU `.skeleton` folders -> NTU60_XSub.npz + NTU60_XView.npz, or NTU120_XSub/XSet.npz.

    raw_dirs: one or several folders, searched recursively (NTU-120 comes in two folders).
    variant: "ntu60" (setups 1-17, actions 1-60) or "ntu120" (setups 1-32, actions 1-120); other
        files found are ignored (counted in the summary).
    workers: processes for parsing (default os.cpu_count(); 1 = in this process).
    resume: reuse per-file results cached in out_dir/cache/ (written every `shard_size` files).
    missing_list: file with the official "samples with missing skeletons" names; it replaces the
        built-in list (302 names for NTU-60, 535 for NTU-120, see stars.data.ntu_names). Listed samples
        are skipped and reported.
    limit: only the first `limit` files in name order (for trials).
    second_actor: "official" (zeros for NTU-60, copy of actor 1 for NTU-120, as the two official
        scripts do), "zeros" or "duplicate".
    official_keys_only: write only x_train, y_train, x_test, y_test; otherwise the files also hold
        class_names, name and per-sample setup_/view_ (camera)/subject_/replication_ arrays.
    num_frames: minimum frame axis; T = max(num_frames, longest kept sequence) (official: the
        longest, which is 300 for the real data).
    Writes out_dir/prepare_report.csv (file, status, reason, detail, frames, bodies) and
    out_dir/prepare_summary.json; npz files are written atomically.
    """
    start_time = time.perf_counter()
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    mode = resolve_second_actor(variant, second_actor)
    if isinstance(raw_dirs, (str, os.PathLike)):
        raw_dirs = [raw_dirs]
    if not raw_dirs:
        raise ValueError("prepare_ntu: no raw folder given")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of files, got {limit}")
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = VARIANTS[variant]
    warnings: list[str] = []

    files, problems = discover_skeleton_files(raw_dirs)
    in_variant = sorted(
        name for name in files
        if parse_sample_name(name).setup <= spec["setups"] and parse_sample_name(name).action <= spec["actions"]
    )  # fmt: skip
    outside = len(files) - len(in_variant)
    if limit is not None:
        in_variant = in_variant[:limit]

    if missing_list is not None:
        missing = read_missing_list(missing_list)
        missing_source = str(missing_list)
        if variant == "ntu120" and len(missing) != NTU120_MISSING_SKELETONS_COUNT:
            warnings.append(f"{missing_list} holds {len(missing)} names; the official NTU-120 list has "
                            f"{NTU120_MISSING_SKELETONS_COUNT}")
    elif variant == "ntu120":
        missing = frozenset(NTU120_MISSING_SKELETONS)
        missing_source = f"built-in NTU-120 list ({len(missing)} names)"
    else:
        missing = frozenset(NTU60_MISSING_SKELETONS)
        missing_source = f"built-in NTU-60 list ({len(missing)} names)"

    tasks = []
    rows: dict[str, FileResult] = {}
    for name in tqdm(in_variant, unit="file", desc="hash files", disable=not progress, dynamic_ncols=True):
        if name in missing:
            rows[name] = FileResult(name, "", "skipped", "missing-list", missing_source, None, 0, 0)
            continue
        try:
            tasks.append((str(files[name]), name, file_digest(files[name])))
        except OSError as err:  # a dangling link, an unreadable file: reported, never fatal
            rows[name] = FileResult(name, "", "skipped", "unreadable", f"cannot read the file ({err.strerror or err})",
                                    None, 0, 0)

    cache = ResultCache(out_dir / "cache", thresholds)
    cached = cache.load() if resume else {}
    pending = []
    num_cached = 0
    for task in tasks:
        hit = cached.get((task[1], task[2]))
        if hit is not None:
            rows[task[1]] = hit
            num_cached += 1
        else:
            pending.append(task)
    del cached
    parse_start = time.perf_counter()
    for result in _run_pool(pending, thresholds, workers, progress, cache, shard_size, f"parse {variant}"):
        rows[result.name] = result
    parse_seconds = time.perf_counter() - parse_start

    ok_names = [name for name in in_variant if rows[name].status == "ok"]
    skipped = [(printable_path(files[n]), rows[n].reason, rows[n].detail) for n in in_variant if rows[n].status != "ok"]
    skipped += problems
    skipped_by_reason = dict(sorted(Counter(reason for _, reason, _ in skipped).items()))

    outputs: dict[str, str] = {}
    split_sizes: dict[str, tuple[int, int]] = {}
    length = max([num_frames, *(rows[n].joints.shape[0] for n in ok_names)])
    report_csv = out_dir / "prepare_report.csv"
    summary_json = out_dir / "prepare_summary.json"
    _write_report_csv(report_csv, in_variant, files, rows, problems)  # first: it survives a failure below
    if ok_names:
        ids = [parse_sample_name(n) for n in ok_names]
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".assembly-") as scratch:
            for benchmark in spec["benchmarks"]:
                path, sizes = _write_benchmark(
                    out_dir, benchmark, ok_names, ids, rows, length, mode, variant,
                    official_keys_only, Path(scratch),
                )  # fmt: skip
                outputs[benchmark.name] = str(path)
                split_sizes[benchmark.name] = sizes
    else:
        warnings.append("no usable sample: no npz file written")

    full_run = limit is None and len(files) - outside >= spec["raw_files"]
    if full_run:
        for bench, sizes in split_sizes.items():
            if sizes != OFFICIAL_SPLIT_SIZES[bench]:
                warnings.append(f"{bench}: {sizes[0]} train / {sizes[1]} test samples, the official file has "
                                f"{OFFICIAL_SPLIT_SIZES[bench][0]} / {OFFICIAL_SPLIT_SIZES[bench][1]}")
    for message in warnings:
        log.warning("prepare_ntu: %s", message)

    seconds = time.perf_counter() - start_time
    report = PrepareReport(
        variant=variant, out_dir=str(out_dir), outputs=outputs, split_sizes=split_sizes,
        num_files=len(in_variant), num_ok=len(ok_names), num_parsed=len(pending), num_cached=num_cached,
        skipped=skipped, skipped_by_reason=skipped_by_reason, second_actor=mode, num_frames=length,
        missing_list=missing_source, warnings=warnings, seconds=round(seconds, 3),
        files_per_second=round(len(pending) / parse_seconds, 1) if pending and parse_seconds > 0 else 0.0,
        report_csv=str(report_csv), summary_json=str(summary_json),
    )  # fmt: skip
    summary = asdict(report)
    summary["skipped"] = [{"file": f, "reason": r, "detail": d} for f, r, d in skipped]
    summary.update(raw_dirs=[str(d) for d in raw_dirs], files_found=len(files), files_outside_variant=outside,
                   limit=limit, official_split_sizes={b.name: OFFICIAL_SPLIT_SIZES[b.name] for b in spec["benchmarks"]})
    _atomic_write_text(summary_json, json.dumps(summary, indent=1) + "\n")
    if not ok_names:
        raise ValueError(f"prepare_ntu: no usable {variant} sample under {[str(d) for d in raw_dirs]} "
                         f"(see {summary_json})")
    return report


def _write_benchmark(out_dir, benchmark, names, ids, rows, length, mode, variant, official_keys_only, scratch):
    """Assemble and save one benchmark file; returns (path, (num_train, num_test))."""
    train, test = split_indices(ids, benchmark)
    arrays = {}
    for split, index in (("train", train), ("test", test)):
        x = float32_zeros((len(index), length, FRAME_WIDTH), scratch)
        for row, i in zip(x, index):
            place_sequence(row, rows[names[i]].joints, mode)
        arrays[f"x_{split}"] = x
        arrays[f"y_{split}"] = np.array([ids[i].action - 1 for i in index], dtype=np.int64)
        arrays[f"meta_{split}"] = {
            f"{key}_{split}": np.array([getattr(ids[i], attr) for i in index], dtype=np.int64)
            for key, attr in (("setup", "setup"), ("view", "camera"), ("subject", "subject"),
                              ("replication", "replication"))
        }  # fmt: skip
    num_classes = VARIANTS[variant]["actions"]
    path = save_dataset(
        out_dir / f"{benchmark.name}.npz",
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
        num_classes=num_classes,
        class_names=None if official_keys_only else NTU120_CLASS_NAMES[:num_classes],
        name=None if official_keys_only else benchmark.name,
        extra=None if official_keys_only else {**arrays["meta_train"], **arrays["meta_test"]},
    )
    return path, (len(train), len(test))


def _write_report_csv(path: Path, names, files, rows, problems) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "status", "reason", "detail", "frames", "bodies"])
    for name in names:
        r = rows[name]
        frames = "" if r.joints is None else r.joints.shape[0]
        writer.writerow([printable_path(files[name]), r.status, r.reason, r.detail, frames, r.num_bodies or ""])
    for file, reason, detail in problems:
        writer.writerow([file, "skipped", reason, detail, "", ""])
    _atomic_write_text(path, out.getvalue())
