"""PKU-MMD v1/v2: skeleton, label and split files -> PKUv{1,2}_XSub.npz and PKUv{1,2}_XView.npz.

Inputs (spec section 1.5):

    skeleton/<video>.txt   one line per frame: 150 floats = 2 bodies x 25 joints (NTU order) x xyz,
                           the second body zeros when absent
    label/<video>.txt      lines "class,start,end,confidence" (class 1-51, frames [start, end))
    split files            cross-subject / cross-view lists; line 2 = training videos, line 4 = test
                           videos, each ", "-separated. Accepted names: cross-subject.txt,
                           cross_subject.txt, cross_subject_v2.txt, cross-subject-v2.txt, ... (v1
                           prefers the unversioned name, v2 the "_v2" one).

Every labelled segment of every video of a split is one sample. Official behaviour (MAMP
pku_gendata), kept by default: raw camera coordinates (no centring); segments longer than 300
frames truncated to their first 300 frames; segments whose values sum to exactly zero dropped;
51 one-hot columns for v1 and v2. Differences: videos are taken in sorted name order (the official
script follows os.listdir order); `centre=True` centres each segment like NTU (origin = body-1
spine-middle joint in its first non-zero frame, absent-body frames kept zero); `resample=True`
linearly resizes segments longer than `num_frames` to `num_frames` frames instead of truncating.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from stars.data.npz import save_dataset
from stars.data.ntu import FRAME_WIDTH, SkeletonFileError, centre_on_first_spine_mid, float32_zeros

PKU_NUM_CLASSES = 51
PKU_NUM_FRAMES = 300
PROTOCOLS = {"XSub": "cross_subject", "XView": "cross_view"}


class PkuFileError(ValueError):
    """A PKU-MMD input file is malformed; the message names the file and the line."""

    def __init__(self, path, reason: str, line: int | None = None):
        self.path = str(path)
        self.reason = reason
        self.line = line
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.line))


class Segment(NamedTuple):
    """One labelled action: class label (1-based, as in the file), frames [start, end)."""

    label: int
    start: int
    end: int
    confidence: int


def read_pku_skeleton(path: str | os.PathLike) -> np.ndarray:
    """(T, 150) float32 frames of a PKU-MMD skeleton file; PkuFileError naming the bad line."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise PkuFileError(path, f"cannot read the skeleton file ({err})") from None
    if not text.strip():
        raise PkuFileError(path, "empty skeleton file", line=1)
    try:
        frames = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        frames = None
    if frames is None or frames.shape[1:] != (FRAME_WIDTH,) or not np.isfinite(frames).all():
        _raise_first_bad_line(path, text)
    return frames.astype(np.float32)


def _raise_first_bad_line(path: Path, text: str) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        values = line.split()
        if not values:
            continue
        if len(values) != FRAME_WIDTH:
            raise PkuFileError(path, f"{len(values)} values, expected {FRAME_WIDTH} (2 bodies x 25 joints x 3)",
                               line=number)
        for value in values:
            try:
                number_value = float(value)
            except ValueError:
                raise PkuFileError(path, f"non-numeric value {value!r}", line=number) from None
            if not np.isfinite(number_value):
                raise PkuFileError(path, f"non-finite value {value!r}", line=number)
    raise PkuFileError(path, "empty skeleton file", line=1)


def read_pku_labels(path: str | os.PathLike) -> list[Segment]:
    """Segments of a label file ("class,start,end,confidence" per line; blank lines ignored)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise PkuFileError(path, f"cannot read the label file ({err})") from None
    segments = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 4:
            raise PkuFileError(path, f"expected 'class,start,end,confidence', got {line.strip()!r}", line=number)
        try:
            label, start, end, confidence = (int(f) for f in fields)
        except ValueError:
            raise PkuFileError(path, f"non-integer field in {line.strip()!r}", line=number) from None
        if not 1 <= label <= PKU_NUM_CLASSES:
            raise PkuFileError(path, f"class {label} outside 1..{PKU_NUM_CLASSES}", line=number)
        if start < 0 or end < 0:
            raise PkuFileError(path, f"negative frame index in {line.strip()!r}", line=number)
        segments.append(Segment(label, start, end, confidence))
    return segments


def read_split_file(path: str | os.PathLike) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training videos, test videos) from lines 2 and 4 of a split file (", "-separated names)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise PkuFileError(path, f"cannot read the split file ({err})") from None

    def names(index: int, what: str) -> tuple[str, ...]:
        if len(lines) <= index:
            raise PkuFileError(path, f"no {what} list: the file has {len(lines)} lines", line=index + 1)
        found = tuple(name.strip() for name in lines[index].split(",") if name.strip())
        if not found:
            raise PkuFileError(path, f"the {what} list is empty", line=index + 1)
        bad = [n for n in found if not re.fullmatch(r"[\w.-]+", n)]
        if bad:
            raise PkuFileError(path, f"odd video name {bad[0]!r} in the {what} list", line=index + 1)
        return found

    return names(1, "training"), names(3, "test")


def find_split_file(directories: Sequence[str | os.PathLike], version: int, protocol: str) -> Path:
    """The split file of `protocol` ("XSub" or "XView") for PKU-MMD `version`, hyphen or underscore.

    v1 looks for cross_subject.txt, then cross_subject_v1.txt; v2 for cross_subject_v2.txt, then
    cross_subject.txt (and likewise cross_view); '-' and '_' are interchangeable, case is ignored.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
    stem = PROTOCOLS[protocol]
    wanted = [f"{stem}.txt", f"{stem}_v1.txt"] if version == 1 else [f"{stem}_v2.txt", f"{stem}.txt"]
    found: dict[str, Path] = {}
    for directory in directories:
        directory = Path(directory)
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            key = path.name.lower().replace("-", "_")
            if path.is_file() and key in wanted:
                found.setdefault(key, path)
    for key in wanted:
        if key in found:
            return found[key]
    names = " or ".join(w.replace("_", "-") + "/" + w for w in wanted)
    raise FileNotFoundError(f"no PKU-MMD v{version} {protocol} split file ({names}) in "
                            f"{[str(d) for d in directories]}")


def resize_frames(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """Linear interpolation in time to `num_frames` frames; first and last frames are kept.

    frames: (L, C) -> (num_frames, C) float32.
    """
    length = len(frames)
    if length == num_frames:
        return frames.astype(np.float32)
    position = np.linspace(0.0, length - 1, num_frames)
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, length - 1)
    weight = (position - lower)[:, None]
    return ((1 - weight) * frames[lower] + weight * frames[upper]).astype(np.float32)


def segment_sample(
    frames: np.ndarray, segment: Segment, num_frames: int = PKU_NUM_FRAMES, centre: bool = False,
    resample: bool = False,
) -> np.ndarray | None:
    """One segment as a (L, 150) float32 sample with L <= num_frames; None when all values are 0.

    frames: (T, 150) the whole video. Frames [start, end) are taken (clipped to the video as NumPy
    slicing does); centred when `centre`; longer than num_frames -> first num_frames frames, or a
    linear resize when `resample`.
    """
    clip = frames[segment.start : segment.end]
    if len(clip) == 0 or clip.sum() == 0:
        return None
    if centre:
        clip = centre_on_first_spine_mid(clip)
    if len(clip) > num_frames:
        clip = resize_frames(clip, num_frames) if resample else clip[:num_frames]
    return np.ascontiguousarray(clip, dtype=np.float32)


class VideoResult(NamedTuple):
    """Samples of one video: (segment index, Segment, (L, 150) array or None, reason when None)."""

    video: str
    samples: list[tuple[int, Segment, np.ndarray | None, str]]
    error: str


def process_video(
    task: tuple[str, str, str], num_frames: int, centre: bool, resample: bool, skip_bad_files: bool
) -> VideoResult:
    """task: (video name, skeleton path, label path)."""
    video, skeleton_path, label_path = task
    try:
        segments = read_pku_labels(label_path)
        frames = read_pku_skeleton(skeleton_path)
        samples = []
        for index, segment in enumerate(segments):
            reason = ""
            try:
                sample = segment_sample(frames, segment, num_frames, centre, resample)
            except SkeletonFileError:  # centre=True and body 1 absent in the whole segment
                sample, reason = None, "no-actor: body 1 is all zeros in the segment (cannot centre)"
            if sample is None and not reason:
                reason = "all-zero: the segment's values sum to 0 (or it lies past the video's end)"
            samples.append((index, segment, sample, reason))
        return VideoResult(video, samples, "")
    except PkuFileError as err:
        if not skip_bad_files:
            raise
        return VideoResult(video, [], str(err))


@dataclass
class PkuPrepareReport:
    """What `prepare_pku` did. skipped: (video, segment index or -1, reason) for everything left out."""

    version: int
    out_dir: str
    outputs: dict[str, str]
    split_sizes: dict[str, tuple[int, int]]
    split_files: dict[str, str]
    num_videos: int
    num_segments: int
    skipped: list[tuple[str, int, str]]
    skipped_by_reason: dict[str, int]
    centre: bool
    resample: bool
    seconds: float
    report_csv: str
    summary_json: str


def prepare_pku(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    version: int = 1,
    *,
    skeleton_dir: str | os.PathLike | None = None,
    label_dir: str | os.PathLike | None = None,
    split_dir: str | os.PathLike | None = None,
    centre: bool = False,
    resample: bool = False,
    num_frames: int = PKU_NUM_FRAMES,
    official_keys_only: bool = False,
    skip_bad_files: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> PkuPrepareReport:
    """PKU-MMD raw folder -> out_dir/PKUv{version}_XSub.npz and PKUv{version}_XView.npz.

    raw_dir: holds skeleton/, label/ and the split files (each overridable: skeleton_dir,
        label_dir, split_dir; split files are also looked for in raw_dir/split).
    centre, resample: see the module docstring (both False = official).
    skip_bad_files: report and skip videos with malformed files instead of raising PkuFileError.
    Files hold x_* (N, num_frames, 150) float32 and one-hot y_* (N, 51); unless official_keys_only
    also name and per-sample video_/start_/end_ arrays. Writes prepare_report_PKUv{version}.csv
    (video, segment, label, start, end, status, reason) and prepare_summary_PKUv{version}.json.
    """
    start_time = time.perf_counter()
    if version not in (1, 2):
        raise ValueError(f"PKU-MMD version must be 1 or 2, got {version!r}")
    raw_dir = Path(raw_dir)
    skeleton_dir = Path(skeleton_dir) if skeleton_dir is not None else raw_dir / "skeleton"
    label_dir = Path(label_dir) if label_dir is not None else raw_dir / "label"
    split_dirs = [Path(split_dir)] if split_dir is not None else [raw_dir, raw_dir / "split"]
    for folder, what in ((skeleton_dir, "skeleton"), (label_dir, "label")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: PKU-MMD {what} folder does not exist")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = f"PKUv{version}"

    splits: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    split_files: dict[str, str] = {}
    for protocol in PROTOCOLS:
        path = find_split_file(split_dirs, version, protocol)
        split_files[protocol] = str(path)
        splits[protocol] = read_split_file(path)

    listed = sorted({v for train, test in splits.values() for v in (*train, *test)})
    skipped: list[tuple[str, int, str]] = []
    tasks = []
    for video in listed:
        skeleton, label = skeleton_dir / f"{video}.txt", label_dir / f"{video}.txt"
        if not skeleton.is_file() or not label.is_file():
            missing = "skeleton" if not skeleton.is_file() else "label"
            skipped.append((video, -1, f"missing-file: no {missing} file"))
            continue
        tasks.append((video, str(skeleton), str(label)))

    worker = partial(process_video, num_frames=num_frames, centre=centre, resample=resample,
                     skip_bad_files=skip_bad_files)
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    videos: dict[str, VideoResult] = {}
    with tqdm(total=len(tasks), unit="video", desc=f"parse {tag}", disable=not progress) as bar:
        if workers <= 1 or len(tasks) <= 1:
            results = map(worker, tasks)
            pool = None
        else:
            pool = multiprocessing.get_context().Pool(workers)
            results = pool.imap(worker, tasks, chunksize=4)
        try:
            for result in results:
                videos[result.video] = result
                bar.update()
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()

    report_rows = []
    for video, result in videos.items():
        if result.error:
            skipped.append((video, -1, f"bad-file: {result.error}"))
        for index, segment, sample, reason in result.samples:
            if sample is not None:
                report_rows.append([video, index, segment.label, segment.start, segment.end, "ok", ""])
            else:
                skipped.append((video, index, reason))
                report_rows.append([video, index, segment.label, segment.start, segment.end, "skipped", reason])

    outputs: dict[str, str] = {}
    split_sizes: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".assembly-") as scratch:
        for protocol, (train_videos, test_videos) in splits.items():
            arrays = {}
            for split, members in (("train", train_videos), ("test", test_videos)):
                chosen = [
                    (video, index, segment, sample)
                    for video in sorted(set(members)) if video in videos
                    for index, segment, sample, _ in videos[video].samples if sample is not None
                ]  # fmt: skip
                x = float32_zeros((len(chosen), num_frames, FRAME_WIDTH), Path(scratch))
                for row, (_, _, _, sample) in zip(x, chosen):
                    row[: len(sample)] = sample
                arrays[f"x_{split}"] = x
                arrays[f"y_{split}"] = np.array([c[2].label - 1 for c in chosen], dtype=np.int64)
                arrays[f"video_{split}"] = np.array([c[0] for c in chosen], dtype=str)
                arrays[f"start_{split}"] = np.array([c[2].start for c in chosen], dtype=np.int64)
                arrays[f"end_{split}"] = np.array([c[2].end for c in chosen], dtype=np.int64)
            name = f"{tag}_{protocol}"
            extra = {k: v for k, v in arrays.items() if not k.startswith(("x_", "y_"))}
            path = save_dataset(
                out_dir / f"{name}.npz", arrays["x_train"], arrays["y_train"], arrays["x_test"],
                arrays["y_test"], num_classes=PKU_NUM_CLASSES,
                name=None if official_keys_only else name, extra=None if official_keys_only else extra,
            )  # fmt: skip
            outputs[name] = str(path)
            split_sizes[name] = (len(arrays["y_train"]), len(arrays["y_test"]))

    report_csv = out_dir / f"prepare_report_{tag}.csv"
    summary_json = out_dir / f"prepare_summary_{tag}.json"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["video", "segment", "label", "start", "end", "status", "reason"])
    writer.writerows(report_rows)
    writer.writerows([video, index, "", "", "", "skipped", reason] for video, index, reason in skipped
                     if index < 0)
    _atomic_write(report_csv, buffer.getvalue())
    report = PkuPrepareReport(
        version=version, out_dir=str(out_dir), outputs=outputs, split_sizes=split_sizes,
        split_files=split_files, num_videos=len(videos),
        num_segments=sum(len(v.samples) for v in videos.values()), skipped=skipped,
        skipped_by_reason=dict(sorted(Counter(r.split(":")[0] for _, _, r in skipped).items())),
        centre=centre, resample=resample, seconds=round(time.perf_counter() - start_time, 3),
        report_csv=str(report_csv), summary_json=str(summary_json),
    )  # fmt: skip
    summary = asdict(report)
    summary["skipped"] = [{"video": v, "segment": i, "reason": r} for v, i, r in skipped]
    summary["num_frames"] = num_frames
    _atomic_write(summary_json, json.dumps(summary, indent=1) + "\n")
    return report


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
