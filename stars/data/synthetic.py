"""Procedural synthetic skeleton actions: the default dataset, generated in seconds on a CPU.

Every sample is a performance of one action by one subject, rendered by forward kinematics of an
NTU-25 skeleton (fixed bone lengths per subject) and seen by several cameras. The files follow the
official NTU layout (`stars.data.npz`): `SYN_XSub.npz` and `SYN_XView.npz`, each with
x_* (N, 300, 150) float32 (2 persons x 25 joints x xyz, metres, zero-padded), one-hot y_*, class
names and per-sample metadata `subject_*`, `view_*`, `length_*`, `repetition_*`.

What varies, and why the task is not trivial:

* actions differ in motion over time, not in a static pose: sit down / stand up are time reversals
  of each other, clap / rub hands share the hands-together pose, punch / reach / raise one arm /
  point share the extended arm, kick / step and squat / jump share the leg movements;
* subjects differ in bone lengths (height and per-bone), tempo, amplitude, posture and handedness
  (left-handed subjects perform one-arm actions with the left arm and leg);
* each performance has its own idle lead-in and trailing time (0-70 frames each), number of
  repetitions (waves, claps, steps), a monotone time warp, an idle arm stance (hanging, hands on
  hips, arms crossed, hands behind the back or clasped) for the arms the action does not use,
  balance sway and a slow wandering of the body on the floor (up to 0.15 m);
* cameras (views) rotate the scene about the vertical axis (0, -45, +45 degrees by default, view 1
  frontal) and tilt slightly; sensor noise grows with the camera distance; occasional tracking
  glitches make one joint jump away or freeze for a few frames, and rarely all joints vanish for a
  few frames (all-zero frames, as an empty Kinect frame);
* coordinates are centred as in NTU (origin = actor-1 spine-middle joint of the first frame), so
  the camera distance itself is not visible.

Two-person interactions (handshake, push, hug, point at the other) fill the second person; all
other classes leave it zero, as single-actor NTU-60 samples do.

Protocols: XSub trains on half of the subjects (chosen by the seed), XView trains on views 2 and 3
and tests on view 1, as NTU. `write_skeleton_files` exports performances as NTU `.skeleton` text
files (camera coordinates, not centred) with two-body samples and noise bodies for the NTU
preprocessing pipeline.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stars.data.layouts import NTU25
from stars.data.npz import SkeletonSplit, save_dataset

PROTOCOLS = ("xsub", "xview")
NUM_JOINTS = 25
NUM_PERSONS = 2


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and difficulty of the synthetic dataset (defaults: NTU-like, 2400 samples, about 3 s)."""

    num_classes: int = 20  # the first `num_classes` actions of `ACTIONS` (at most 21)
    num_subjects: int = 40  # performers; XSub trains on half of them
    num_views: int = 3  # cameras; every performance is seen by all of them
    repetitions: int = 1  # performances per (subject, action)
    min_frames: int = 40  # shortest sequence
    max_frames: int = 300  # longest sequence
    max_length: int = 300  # T of the stored arrays (zero padding after each sequence)
    noise_std: float = 0.01  # sensor noise (metres) at 3 m camera distance; hands and feet get 1.5x
    dropout_prob: float = 0.2  # probability that a sample has one tracking glitch
    seed: int = 0
    view_angles: tuple[float, ...] = (0.0, -45.0, 45.0)  # camera azimuth (degrees) of views 1, 2, ...
    left_handed_fraction: float = 0.2  # expected fraction of left-handed subjects

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= len(ACTIONS):
            raise ValueError(f"num_classes must lie in [2, {len(ACTIONS)}], got {self.num_classes}")
        if self.num_subjects < 2:
            raise ValueError(f"num_subjects must be >= 2 (XSub needs train and test subjects), got {self.num_subjects}")
        if self.num_views < 1 or len(self.view_angles) != self.num_views:
            raise ValueError(
                f"num_views ({self.num_views}) must be >= 1 and equal len(view_angles) ({len(self.view_angles)})"
            )
        if self.repetitions < 1:
            raise ValueError(f"repetitions must be >= 1, got {self.repetitions}")
        if not 2 <= self.min_frames <= self.max_frames <= self.max_length:
            raise ValueError(
                "need 2 <= min_frames <= max_frames <= max_length, got "
                f"{self.min_frames}, {self.max_frames}, {self.max_length}"
            )
        if self.noise_std < 0 or not 0 <= self.dropout_prob <= 1 or not 0 <= self.left_handed_fraction <= 1:
            raise ValueError("noise_std must be >= 0; dropout_prob and left_handed_fraction in [0, 1]")


def make_config(seed: int = 0, **overrides) -> SyntheticConfig:
    """A config with type-checked overrides; an unknown key is an error naming the valid ones.

    Tuple fields (view_angles) also accept a comma-separated string ("0,-45,45").
    """
    fields = {f.name: f for f in dataclasses.fields(SyntheticConfig) if f.name != "seed"}
    for key, value in overrides.items():
        if key not in fields:
            raise ValueError(f"unknown synthetic option {key!r}; valid: seed (the argument), {sorted(fields)}")
        default = getattr(SyntheticConfig, key)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else value
            try:
                overrides[key] = tuple(float(v) for v in items)
            except (TypeError, ValueError):
                raise ValueError(f"synthetic option {key!r} must be numbers (e.g. '0,-45,45'), got {value!r}") from None
        elif isinstance(value, bool) or not isinstance(value, type(default)):
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                overrides[key] = float(value)
            else:
                raise ValueError(f"synthetic option {key!r} must be {type(default).__name__}, got {value!r}")
    return SyntheticConfig(seed=seed, **overrides)


# --------------------------------------------------------------------------------------------
# Keyframe animation
# --------------------------------------------------------------------------------------------

def _smoothstep(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


def _track(u: np.ndarray, times, values, amp=1.0, rest: float | None = None) -> np.ndarray:
    """Smooth keyframe curve: u (n, T) phase in [0, 1] -> (n, T) value.

    times (K,) increasing from 0 to 1; values (K,). Between keys the value eases in and out
    (smoothstep). With `rest`, the excursion from rest is scaled by `amp` ((n, 1) or scalar).
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    k = np.clip(np.searchsorted(times, u, side="right") - 1, 0, len(times) - 2)
    s = _smoothstep((u - times[k]) / (times[k + 1] - times[k]))
    out = values[k] + (values[k + 1] - values[k]) * s
    if rest is not None:
        out = rest + amp * (out - rest)
    return out


def _window(u: np.ndarray, start: float, end: float) -> np.ndarray:
    """Phase inside [start, end] rescaled to [0, 1] (clipped outside)."""
    return np.clip((u - start) / (end - start), 0.0, 1.0)


# Rest pose (degrees). Limb segments are directions given by elevation (0 = straight down,
# 90 = horizontal, 180 = straight up) and azimuth (0 = forward, 90 = sideways outward, 180 =
# backward) in the trunk frame (arms) or pelvis frame (legs). Negative elevation with azimuth 0
# points backward-down.
REST = {
    "ue": 8.0, "ua": 90.0, "fe": 12.0, "fa": 60.0,  # upper arm, forearm
    "te": 2.0, "ta": 0.0, "se": -2.0, "sa": 0.0, "ft": 80.0, "fta": 12.0,  # thigh, shin, foot
    "yaw": 0.0, "bow": 0.0, "lean": 0.0, "nod": 0.0, "lift": 0.0, "shift": 0.0, "stance": 0.5,
}  # fmt: skip


def _rest(key: str) -> float:
    """Rest value of a pose key; limb keys carry a side prefix (a_, o_, la_, lo_)."""
    return REST[key.split("_", 1)[1] if key.startswith(("a_", "o_", "la_", "lo_")) else key]


def _arm(u, amp, times, ue, ua, fe, fa) -> dict[str, np.ndarray]:
    """One arm as four keyframe tracks (upper elevation/azimuth, forearm elevation/azimuth)."""
    return {
        "ue": _track(u, times, ue, amp, REST["ue"]),
        "ua": _track(u, times, ua, amp, REST["ua"]),
        "fe": _track(u, times, fe, amp, REST["fe"]),
        "fa": _track(u, times, fa, amp, REST["fa"]),
    }


def _prefixed(prefix: str, tracks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}_{k}": v for k, v in tracks.items()}


# Pose dictionaries: keys "a_*" = active arm (the dominant hand), "o_*" = other arm, "la_*" /
# "lo_*" = active / other leg, plus root keys (yaw, bow, lean, nod, lift, shift, stance).
Pose = dict[str, np.ndarray]


def _wave(u, p) -> tuple[Pose, Pose | None]:
    amp = p["amp"]
    arm = _arm(u, amp, (0, 0.2, 0.8, 1), (8, 95, 95, 8), (90, 78, 78, 90), (12, 150, 150, 12), (60, 90, 90, 60))
    osc = np.sin(2 * np.pi * p["cycles"] * _window(u, 0.2, 0.8))
    arm["fe"] = arm["fe"] + 22.0 * amp * osc * _track(u, (0, 0.2, 0.8, 1), (0, 1, 1, 0))
    return _prefixed("a", arm), None


def _raise_one_arm(u, p):
    arm = _arm(u, p["amp"], (0, 0.35, 0.65, 1), (8, 165, 165, 8), (90, 45, 45, 90), (12, 170, 170, 12), (60, 40, 40, 60))
    return _prefixed("a", arm), None


def _raise_both_arms(u, p):
    keys = ((0, 0.35, 0.65, 1), (8, 160, 160, 8), (90, 50, 50, 90), (12, 168, 168, 12), (60, 45, 45, 60))
    lag = p["lag"]
    return {**_prefixed("a", _arm(u, p["amp"], *keys)), **_prefixed("o", _arm(u - lag, p["amp"], *keys))}, None


def _punch(u, p):
    amp = p["amp"]
    guard = (0, 0.15, 0.85, 1)
    pose = {}
    for side in ("a", "o"):
        pose.update(_prefixed(side, _arm(u, amp, guard, (8, 30, 30, 8), (90, 20, 20, 90), (12, 115, 115, 12), (60, -15, -15, 60))))
    thrust = np.maximum(0.0, np.sin(2 * np.pi * p["cycles"] * _window(u, 0.15, 0.85) - 0.3)) ** 3
    pose["a_ue"] = pose["a_ue"] + amp * 55.0 * thrust
    pose["a_fe"] = pose["a_fe"] - amp * 25.0 * thrust
    pose["a_ua"] = pose["a_ua"] - 15.0 * thrust
    pose["a_fa"] = pose["a_fa"] + 15.0 * thrust
    pose["yaw"] = -12.0 * thrust
    return pose, None


def _reach(u, p):
    times = (0, 0.4, 0.6, 1)
    arm = _arm(u, p["amp"], times, (8, 80, 80, 8), (90, 10, 10, 90), (12, 85, 85, 12), (60, 5, 5, 60))
    return {**_prefixed("a", arm), "bow": _track(u, times, (0, 12, 12, 0))}, None


def _throw(u, p):
    times = (0, 0.4, 0.5, 0.6, 1)
    arm = _arm(u, p["amp"], times, (8, 150, 120, 60, 8), (90, 110, 40, 0, 90), (12, 160, 150, 70, 12), (60, 160, 60, 0, 60))
    pose = _prefixed("a", arm)
    pose["yaw"] = _track(u, times, (0, 25, 0, -25, 0))
    pose["bow"] = _track(u, times, (0, -8, 5, 20, 0))
    pose["lo_te"] = _track(u, times, (2, 2, 20, 20, 2))
    pose["lo_se"] = _track(u, times, (-2, -2, 5, 5, -2))
    pose["stance"] = _track(u, times, (0.5, 0.8, 0.5, 0.3, 0.5))
    return pose, None


def _hands_together(u, amp, cycles):
    """Both forearms in front of the chest (hands touching); also the opening curve and envelope."""
    env = (0, 0.15, 0.85, 1)
    pose = {}
    for side in ("a", "o"):
        pose.update(_prefixed(side, _arm(u, amp, env, (8, 35, 35, 8), (90, 30, 30, 90), (12, 95, 95, 12), (60, -40, -40, 60))))
    gap = 0.5 * (1 - np.cos(2 * np.pi * cycles * _window(u, 0.15, 0.85)))
    return pose, gap, _track(u, env, (0, 1, 1, 0))


def _clap(u, p):
    pose, gap, env = _hands_together(u, p["amp"], p["cycles"])
    for side in ("a", "o"):
        pose[f"{side}_fa"] = pose[f"{side}_fa"] + 35.0 * gap * env
    return pose, None


def _rub_hands(u, p):
    pose, _, env = _hands_together(u, p["amp"], p["cycles"])
    angle = 2 * np.pi * p["cycles"] * _window(u, 0.15, 0.85)
    for side, sign in (("a", 1.0), ("o", -1.0)):
        pose[f"{side}_fe"] = pose[f"{side}_fe"] + 9.0 * sign * np.sin(angle) * env
        pose[f"{side}_ue"] = pose[f"{side}_ue"] + 5.0 * sign * np.cos(angle) * env
    return pose, None


def _kick(u, p):
    amp = p["amp"]
    times = (0, 0.3, 0.5, 0.7, 1)
    pose = {
        "la_te": _track(u, times, (2, 30, 80, 20, 2), amp, 2.0),
        "la_se": _track(u, times, (-2, -45, 65, -20, -2), amp, -2.0),
        "la_ft": _track(u, times, (80, 60, 150, 70, 80)),
        "stance": _track(u, times, (0.5, 0.0, 0.0, 0.0, 0.5)),
        "bow": _track(u, times, (0, -3, -12, -3, 0)),
        "o_ue": _track(u, times, (8, 20, 30, 20, 8)),
        "o_ua": _track(u, times, (90, 40, 30, 40, 90)),
    }
    return pose, None


def _step(u, p):
    amp = p["amp"]
    times = (0, 0.2, 0.35, 0.6, 0.75, 1)
    pose = {
        "la_te": _track(u, times, (2, 40, 22, 22, 40, 2), amp, 2.0),
        "la_se": _track(u, times, (-2, -30, 8, 8, -30, -2), amp, -2.0),
        "lo_te": _track(u, times, (2, 2, -15, -15, 2, 2), amp, 2.0),
        "lo_se": _track(u, times, (-2, -2, -20, -20, -2, -2), amp, -2.0),
        "stance": _track(u, times, (0.5, 0.0, 0.5, 0.5, 0.0, 0.5)),
    }
    return pose, None


def _squat(u, p):
    amp = p["amp"]
    down = 0.5 * (1 - np.cos(2 * np.pi * p["cycles"] * _window(u, 0.05, 0.95)))
    pose = {"bow": 35.0 * amp * down}
    for leg in ("la", "lo"):
        pose[f"{leg}_te"] = 2 + 93.0 * amp * down
        pose[f"{leg}_se"] = -2 + 32.0 * amp * down
        pose[f"{leg}_ft"] = 80 + 5.0 * down
    for side in ("a", "o"):
        pose[f"{side}_ue"] = 8 + 77.0 * down
        pose[f"{side}_ua"] = 90 - 85.0 * down
        pose[f"{side}_fe"] = 12 + 73.0 * down
        pose[f"{side}_fa"] = 60 - 55.0 * down
    return pose, None


def _jump(u, p):
    amp = p["amp"]
    times = (0, 0.3, 0.42, 0.55, 0.68, 0.8, 1)
    pose = {
        "bow": _track(u, times, (0, 30, 0, 5, 25, 5, 0)),
        "lift": _track(u, times, (0, 0, 0, 0.22, 0, 0, 0)) * p["height"],
    }
    for leg in ("la", "lo"):
        pose[f"{leg}_te"] = _track(u, times, (2, 55, 0, 25, 45, 10, 2), amp, 2.0)
        pose[f"{leg}_se"] = _track(u, times, (-2, 30, 0, -25, 25, 5, -2), amp, -2.0)
    for side in ("a", "o"):
        pose[f"{side}_ue"] = _track(u - (p["lag"] if side == "o" else 0), times, (8, -35, 140, 120, 30, 15, 8))
        pose[f"{side}_ua"] = _track(u, times, (90, 0, 20, 30, 20, 60, 90))
        pose[f"{side}_fe"] = _track(u, times, (12, -30, 150, 130, 45, 20, 12))
        pose[f"{side}_fa"] = _track(u, times, (60, 0, 20, 30, 20, 40, 60))
    return pose, None


def _bow(u, p):
    times = (0, 0.3, 0.55, 0.85, 1)
    bow = _track(u, times, (0, 60, 60, 0, 0), p["amp"], 0.0)
    pose = {"bow": bow, "nod": _track(u, times, (0, 15, 15, 0, 0))}
    for side in ("a", "o"):  # arms hang (vertical in the world) while the trunk bends
        pose[f"{side}_ue"] = 8 + 0.85 * bow
        pose[f"{side}_ua"] = 90 - 80 * bow / 60
        pose[f"{side}_fe"] = 12 + 0.9 * bow
        pose[f"{side}_fa"] = 60 - 50 * bow / 60
    return pose, None


def _sit_down(u, p):
    amp = p["amp"]
    times = (0, 0.3, 0.7, 1)
    pose = {
        "bow": _track(u, times, (0, 35, 25, 8)),
        "nod": _track(u, times, (0, 10, 5, 0)),
    }
    for leg in ("la", "lo"):
        pose[f"{leg}_te"] = _track(u, times, (2, 25, 85, 85), amp, 2.0)
        pose[f"{leg}_se"] = _track(u, times, (-2, 20, 8, 2), amp, -2.0)
    for side in ("a", "o"):
        pose[f"{side}_ue"] = _track(u, times, (8, 30, 20, 12))
        pose[f"{side}_ua"] = _track(u, times, (90, 30, 20, 40))
        pose[f"{side}_fe"] = _track(u, times, (12, 50, 70, 70))
        pose[f"{side}_fa"] = _track(u, times, (60, 20, 10, 15))
    return pose, None


def _stand_up(u, p):
    return _sit_down(1.0 - u, p)


def _walk_in_place(u, p):
    amp = p["amp"]
    env = _track(u, (0, 0.1, 0.9, 1), (0, 1, 1, 0))
    s = np.sin(2 * np.pi * p["cycles"] * _window(u, 0.1, 0.9))
    up_a, up_o = np.maximum(s, 0.0) * env * amp, np.maximum(-s, 0.0) * env * amp
    pose = {
        "la_te": 2 + 45.0 * up_a, "la_se": -2 - 40.0 * up_a,
        "lo_te": 2 + 45.0 * up_o, "lo_se": -2 - 40.0 * up_o,
        "stance": 0.5 - 0.3 * s * env,
        "lift": 0.015 * np.abs(s) * env,
        "a_ue": 8 - 25.0 * s * env * amp, "o_ue": 8 + 25.0 * s * env * amp,
        "a_ua": 90 - 85.0 * env, "o_ua": 90 - 85.0 * env,
        "a_fe": 12 + 30.0 * env, "o_fe": 12 + 30.0 * env,
        "a_fa": 60 - 55.0 * env, "o_fa": 60 - 55.0 * env,
    }  # fmt: skip
    return pose, None


def _turn_around(u, p):
    times = (0, 1)
    yaw = _track(u, times, (0, 1)) * p["turn"]
    s = np.sin(2 * np.pi * 2 * u)
    env = _track(u, (0, 0.1, 0.9, 1), (0, 1, 1, 0))
    pose = {
        "yaw": yaw,
        "la_te": 2 + 25.0 * np.maximum(s, 0) * env, "la_se": -2 - 30.0 * np.maximum(s, 0) * env,
        "lo_te": 2 + 25.0 * np.maximum(-s, 0) * env, "lo_se": -2 - 30.0 * np.maximum(-s, 0) * env,
        "stance": 0.5 - 0.3 * s * env,
    }  # fmt: skip
    return pose, None


def _handshake(u, p):
    amp = p["amp"]
    times = (0, 0.3, 0.75, 1)
    # The right hands meet on the line between the two actors: both reach slightly inward.
    keys = (times, (8, 50, 50, 8), (90, -15, -15, 90), (12, 80, 80, 12), (60, -20, -20, 60))
    shake = np.sin(2 * np.pi * p["cycles"] * _window(u, 0.35, 0.7)) * _track(u, (0, 0.35, 0.7, 1), (0, 1, 1, 0))
    actor = {**_prefixed("a", _arm(u, amp, *keys)), "shift": _track(u, times, (0, 0.12, 0.12, 0))}
    actor["a_ue"] = actor["a_ue"] + 7.0 * shake
    partner = {**_prefixed("a", _arm(u - p["lag"], amp, *keys)), "shift": _track(u, times, (0, 0.08, 0.08, 0))}
    partner["a_ue"] = partner["a_ue"] + 7.0 * shake
    return actor, partner


def _push(u, p):
    amp = p["amp"]
    times = (0, 0.3, 0.45, 0.6, 1)
    actor = {"shift": _track(u, times, (0, 0.05, 0.25, 0.25, 0.05)), "bow": _track(u, times, (0, 5, 15, 10, 0))}
    for side in ("a", "o"):
        actor.update(_prefixed(side, _arm(u, amp, times, (8, 40, 85, 80, 8), (90, 15, 5, 5, 90), (12, 100, 88, 85, 12), (60, 0, 0, 0, 60))))
    hit = (0, 0.45, 0.6, 0.8, 1)
    partner = {
        "shift": _track(u, hit, (0, 0, -0.3, -0.45, -0.45)),
        "bow": _track(u, hit, (0, 0, -15, 0, 0)),
        "lo_te": _track(u, hit, (2, 2, -20, 2, 2)),
        "stance": _track(u, hit, (0.5, 0.5, 1.0, 0.5, 0.5)),
    }
    for side in ("a", "o"):
        partner[f"{side}_ue"] = _track(u, hit, (8, 8, 40, 15, 8))
        partner[f"{side}_ua"] = _track(u, hit, (90, 90, 40, 80, 90))
    return actor, partner


def _hug(u, p):
    amp = p["amp"]
    times = (0, 0.3, 0.7, 1)
    arm = (times, (8, 80, 80, 8), (90, 30, 30, 90), (12, 90, 90, 12), (60, -60, -60, 60))
    actor = {"shift": _track(u, times, (0, 0.35, 0.35, 0)), "bow": _track(u, times, (0, 8, 8, 0))}
    partner = {"shift": _track(u - p["lag"], times, (0, 0.3, 0.3, 0)), "bow": _track(u, times, (0, 8, 8, 0))}
    for side in ("a", "o"):
        actor.update(_prefixed(side, _arm(u, amp, *arm)))
        partner.update(_prefixed(side, _arm(u - p["lag"], amp, *arm)))
    return actor, partner


def _point_at_other(u, p):
    times = (0, 0.35, 0.7, 1)
    actor = _prefixed("a", _arm(u, p["amp"], times, (8, 85, 85, 8), (90, 0, 0, 90), (12, 88, 88, 12), (60, 0, 0, 60)))
    actor["nod"] = _track(u, times, (0, -5, -5, 0))
    partner = {"bow": _track(u, (0, 0.4, 0.8, 1), (0, -4, -4, 0)), "nod": _track(u, (0, 0.4, 0.8, 1), (0, -8, -8, 0))}
    return actor, partner


@dataclass(frozen=True)
class Action:
    """One synthetic action class.

    pose: (u (n, T) phase in [0, 1], params) -> (actor pose, partner pose or None).
    duration: frames (30 fps) of one performance at normal tempo, plus `per_cycle` frames per
    repetition of a cyclic motion (cycles drawn uniformly from `cycles`).
    two_person: the partner is present; handedness is not applied (handshakes use the right hand).
    distance: range of the initial distance (metres) between the two actors.
    arms, partner_arms: the arms the action drives ("a" active, "o" other); the others keep the
    performance's idle arm stance (hanging, hands on hips, crossed, ...) throughout.
    """

    name: str
    pose: Callable[[np.ndarray, dict], tuple[Pose, Pose | None]]
    duration: float
    per_cycle: float = 0.0
    cycles: tuple[int, int] = (1, 1)
    two_person: bool = False
    distance: tuple[float, float] = (0.0, 0.0)
    arms: str = "ao"
    partner_arms: str = ""


ACTIONS: tuple[Action, ...] = (
    Action("wave", _wave, 30, 18, (2, 4), arms="a"),
    Action("raise one arm", _raise_one_arm, 60, arms="a"),
    Action("raise both arms", _raise_both_arms, 60),
    Action("punch forward", _punch, 30, 16, (1, 3)),
    Action("reach forward", _reach, 65, arms="a"),
    Action("throw", _throw, 55, arms="a"),
    Action("clap", _clap, 25, 14, (3, 6)),
    Action("rub hands", _rub_hands, 25, 14, (3, 6)),
    Action("kick", _kick, 45, arms=""),
    Action("step forward and back", _step, 65, arms=""),
    Action("squat", _squat, 20, 45, (1, 2)),
    Action("jump", _jump, 55),
    Action("bow", _bow, 60),
    Action("sit down", _sit_down, 75),
    Action("stand up", _stand_up, 75),
    Action("walk in place", _walk_in_place, 20, 30, (3, 5)),
    Action("handshake", _handshake, 60, 10, (2, 4), True, (1.0, 1.2), arms="a", partner_arms="a"),
    Action("push other", _push, 60, two_person=True, distance=(0.75, 0.9), partner_arms="ao"),
    Action("hug", _hug, 90, two_person=True, distance=(1.6, 1.8), partner_arms="ao"),
    Action("point at other", _point_at_other, 60, two_person=True, distance=(1.6, 2.4), arms="a"),
    Action("turn around", _turn_around, 70, arms=""),
)

# --------------------------------------------------------------------------------------------
# Bodies and forward kinematics
# --------------------------------------------------------------------------------------------

# Bone lengths (metres) of an average adult; each subject scales them (height) and jitters each.
BONES = {
    "spine_low": 0.28, "spine_up": 0.22, "neck": 0.06, "head": 0.13, "clavicle": 0.17,
    "upper_arm": 0.28, "forearm": 0.25, "hand": 0.07, "hand_tip": 0.07, "thumb": 0.05,
    "hip": 0.09, "thigh": 0.42, "shin": 0.40, "foot": 0.12,
}  # fmt: skip
_ANKLE_HEIGHT = 0.08
_THUMB_ANGLE = np.radians(40.0)
_CLAVICLE_DROP = np.radians(10.0)
_HIP_DROP = np.radians(30.0)
_EXTREMITIES = (6, 7, 10, 11, 14, 15, 18, 19, 21, 22, 23, 24)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _limb(frame, elevation, azimuth, side: float) -> tuple[np.ndarray, np.ndarray]:
    """Direction of a limb segment and a unit vector perpendicular to it, both (n, T, 3).

    frame: (right, up, forward) unit vectors (n, T, 3); angles (n, T) in degrees; side +1 for a
    right limb, -1 for a left one (mirrors the sideways component). The perpendicular is the
    derivative of the direction with respect to elevation, so it is defined (and smooth) for every angle.
    """
    right, up, fwd = frame
    e = np.radians(elevation)[..., None]
    a = np.radians(azimuth)[..., None]
    se, ce, sa, ca = np.sin(e), np.cos(e), np.sin(a), np.cos(a)
    direction = side * se * sa * right - ce * up + se * ca * fwd
    perpendicular = side * ce * sa * right + se * up + ce * ca * fwd
    return direction, perpendicular


def _person(pose: Pose, bones: dict[str, np.ndarray], mirrored: np.ndarray, base_yaw: np.ndarray,
            base_position: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """World joint positions (n, T, 25, 3) of one person, NTU-25 order, y up, floor at y = 0.

    pose: angle tracks (n, T) in degrees (missing keys take the rest pose); bones: (n,) lengths;
    mirrored: (n,) bool, the dominant side is the left one (active limbs go left, yaw and lean flip);
    base_yaw: (n,) degrees, 0 = facing the -z direction; base_position: (n, 3).
    """
    def dof(key: str) -> np.ndarray:
        return np.broadcast_to(pose.get(key, _rest(key)), shape).astype(np.float64)

    m = mirrored[:, None]
    flip = np.where(m, -1.0, 1.0)
    yaw = np.radians(base_yaw[:, None] + flip * dof("yaw"))[..., None]
    bow, lean, nod = (np.radians(dof(k))[..., None] for k in ("bow", "lean", "nod"))
    x_axis = np.array([1.0, 0.0, 0.0])
    up = np.broadcast_to(np.array([0.0, 1.0, 0.0]), (*shape, 3))
    back = np.array([0.0, 0.0, 1.0])
    right = np.cos(yaw) * x_axis + np.sin(yaw) * back
    fwd = np.cos(yaw) * -back + np.sin(yaw) * x_axis
    trunk_up = np.cos(bow) * up + np.sin(bow) * fwd
    trunk_fwd = np.cos(bow) * fwd - np.sin(bow) * up
    lean_angle = flip[..., None] * lean
    trunk_up, trunk_right = (
        np.cos(lean_angle) * trunk_up + np.sin(lean_angle) * right,
        np.cos(lean_angle) * right - np.sin(lean_angle) * trunk_up,
    )
    head_dir = np.cos(nod) * trunk_up + np.sin(nod) * trunk_fwd
    L = {k: v[:, None, None] for k, v in bones.items()}

    def chosen(active: str, other: str, key: str, right_side: bool) -> np.ndarray:
        first, second = (active, other) if right_side else (other, active)
        return np.where(m, dof(f"{second}_{key}"), dof(f"{first}_{key}"))

    # Legs relative to the pelvis, then the pelvis placed so the feet stay planted.
    pelvis_frame = (right, up, fwd)
    leg = {}
    for side_name, side in (("right", 1.0), ("left", -1.0)):
        is_right = side > 0
        hip = L["hip"] * (side * np.cos(_HIP_DROP) * right - np.sin(_HIP_DROP) * up)
        thigh, _ = _limb(pelvis_frame, chosen("la", "lo", "te", is_right), chosen("la", "lo", "ta", is_right), side)
        shin, _ = _limb(pelvis_frame, chosen("la", "lo", "se", is_right), chosen("la", "lo", "sa", is_right), side)
        foot, _ = _limb(pelvis_frame, chosen("la", "lo", "ft", is_right), chosen("la", "lo", "fta", is_right), side)
        knee = hip + L["thigh"] * thigh
        ankle = knee + L["shin"] * shin
        leg[side_name] = (hip, knee, ankle, ankle + L["foot"] * foot)
    stance = dof("stance")
    weight_right = np.where(m, 1.0 - stance, stance)[..., None]
    planted = weight_right * leg["right"][2] + (1.0 - weight_right) * leg["left"][2]
    base_yaw_rad = np.radians(base_yaw)[:, None, None]
    base_fwd = np.cos(base_yaw_rad) * -back + np.sin(base_yaw_rad) * x_axis
    pelvis = base_position[:, None, :] + dof("shift")[..., None] * base_fwd - planted * np.array([1.0, 0.0, 1.0])
    lowest = np.minimum(leg["right"][2][..., 1], leg["left"][2][..., 1])
    pelvis[..., 1] = _ANKLE_HEIGHT - lowest + dof("lift")

    joints = np.empty((*shape, NUM_JOINTS, 3))
    joints[:, :, 0] = pelvis
    joints[:, :, 1] = pelvis + L["spine_low"] * trunk_up
    joints[:, :, 20] = joints[:, :, 1] + L["spine_up"] * trunk_up
    joints[:, :, 2] = joints[:, :, 20] + L["neck"] * head_dir
    joints[:, :, 3] = joints[:, :, 2] + L["head"] * head_dir
    trunk_frame = (trunk_right, trunk_up, trunk_fwd)
    arm_joints = {"right": (8, 9, 10, 11, 23, 24), "left": (4, 5, 6, 7, 21, 22)}
    for side_name, side in (("right", 1.0), ("left", -1.0)):
        is_right = side > 0
        shoulder_j, elbow_j, wrist_j, hand_j, tip_j, thumb_j = arm_joints[side_name]
        upper, _ = _limb(trunk_frame, chosen("a", "o", "ue", is_right), chosen("a", "o", "ua", is_right), side)
        fore, fore_perp = _limb(trunk_frame, chosen("a", "o", "fe", is_right), chosen("a", "o", "fa", is_right), side)
        shoulder = joints[:, :, 20] + L["clavicle"] * (
            side * np.cos(_CLAVICLE_DROP) * trunk_right - np.sin(_CLAVICLE_DROP) * trunk_up
        )
        joints[:, :, shoulder_j] = shoulder
        joints[:, :, elbow_j] = shoulder + L["upper_arm"] * upper
        joints[:, :, wrist_j] = joints[:, :, elbow_j] + L["forearm"] * fore
        joints[:, :, hand_j] = joints[:, :, wrist_j] + L["hand"] * fore
        joints[:, :, tip_j] = joints[:, :, hand_j] + L["hand_tip"] * fore
        joints[:, :, thumb_j] = joints[:, :, hand_j] + L["thumb"] * (
            np.cos(_THUMB_ANGLE) * fore + np.sin(_THUMB_ANGLE) * fore_perp
        )
        leg_joints = (16, 17, 18, 19) if is_right else (12, 13, 14, 15)
        for j, position in zip(leg_joints, leg[side_name]):
            joints[:, :, j] = pelvis + position
    return joints


# --------------------------------------------------------------------------------------------
# Subjects, performances, cameras
# --------------------------------------------------------------------------------------------

@dataclass
class _Subjects:
    """Per-subject traits, arrays indexed by subject (0-based)."""

    bones: dict[str, np.ndarray]  # (S,) metres
    tempo: np.ndarray  # (S,) duration factor
    amp: np.ndarray  # (S,) amplitude factor
    left_handed: np.ndarray  # (S,) bool
    posture: dict[str, np.ndarray]  # (S,) degrees added to rest angles
    train: np.ndarray  # (S,) bool, XSub training subject


def _draw_subjects(cfg: SyntheticConfig, rng: np.random.Generator) -> _Subjects:
    n = cfg.num_subjects
    height = rng.uniform(0.85, 1.15, n)
    bones = {k: v * height * rng.uniform(0.93, 1.07, n) for k, v in BONES.items()}
    train = np.zeros(n, dtype=bool)
    train[rng.permutation(n)[: n // 2]] = True
    posture = {
        "bow": rng.normal(0.0, 4.0, n), "nod": rng.normal(0.0, 6.0, n), "lean": rng.normal(0.0, 2.0, n),
        "ue": rng.normal(0.0, 4.0, n), "fe": rng.normal(0.0, 8.0, n), "ta": rng.normal(0.0, 5.0, n),
    }  # fmt: skip
    return _Subjects(
        bones=bones,
        tempo=rng.uniform(0.75, 1.35, n),
        amp=rng.uniform(0.85, 1.1, n),
        left_handed=rng.random(n) < cfg.left_handed_fraction,
        posture=posture,
        train=train,
    )


def _timing(action: Action, cycles: np.ndarray, tempo: np.ndarray, cfg: SyntheticConfig,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start frame, action duration and total length (n,) of each performance."""
    n = len(tempo)
    duration = (action.duration + action.per_cycle * cycles) * tempo * rng.uniform(0.85, 1.15, n)
    lead = rng.uniform(0, 70, n)
    trail = rng.uniform(0, 70, n)
    total = lead + duration + trail
    shrink = np.minimum(1.0, (cfg.max_frames - 1) / total)
    lead, duration, trail = lead * shrink, duration * shrink, trail * shrink
    length = np.clip(np.round(lead + duration + trail), cfg.min_frames, cfg.max_frames).astype(np.int64)
    return lead, duration, length


def _phase(lead, duration, warp, max_length: int) -> np.ndarray:
    """Action phase u (n, T) in [0, 1], 0 before the start, 1 after the end, monotone time warp."""
    t = np.arange(max_length, dtype=np.float64)[None, :]
    s = np.clip((t - lead[:, None]) / duration[:, None], 0.0, 1.0)
    return s + warp[:, None] / np.pi * np.sin(np.pi * s)


def _idle(shape, rng: np.random.Generator) -> Pose:
    """Breathing / balance sway added to every frame (degrees)."""
    n, length = shape
    t = np.arange(length, dtype=np.float64)[None, :]
    phase = rng.uniform(0, 2 * np.pi, (n, 5))
    period = rng.uniform(60, 160, (n, 5))
    sway = np.sin(2 * np.pi * t / period[:, :, None] + phase[:, :, None])
    return {
        "bow": 1.5 * sway[:, 0], "lean": 1.0 * sway[:, 1], "a_ue": 2.0 * sway[:, 2], "o_ue": 2.0 * sway[:, 3],
        "yaw": rng.uniform(0, 8, (n, 1)) * sway[:, 4],
    }  # fmt: skip


def _drift(n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """Slow wandering of the whole body on the floor (n, T, 3), metres, zero at the first frame."""
    t = np.arange(length, dtype=np.float64)[None, :]
    amplitude = rng.uniform(0.0, 0.15, (n, 2, 1))
    period = rng.uniform(150, 400, (n, 2, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 2, 1))
    wave = amplitude * (np.sin(2 * np.pi * t / period + phase) - np.sin(phase))  # (n, 2, T)
    return np.stack([wave[:, 0], np.zeros((n, length)), wave[:, 1]], axis=-1)


# Idle arm stances (ue, ua, fe, fa): hanging, hands on hips, arms crossed, hands behind the back,
# hands clasped in front of the belly; drawn per performance with these probabilities.
ARM_STANCES = np.array([
    [8, 90, 12, 60], [40, 110, 34, -72], [25, 20, 90, -75], [20, 170, 70, -150], [15, 30, 55, -50],
], dtype=np.float64)  # fmt: skip
ARM_STANCE_PROBS = (0.4, 0.15, 0.15, 0.15, 0.15)


def _with_stance(pose: Pose, u: np.ndarray, driven: str, stance: np.ndarray, shape) -> Pose:
    """Move the arms to the idle stance (n, 4) wherever the action does not drive them.

    Driven arms blend from the stance into the action over the first and last 15% of the phase.
    """
    out = dict(pose)
    active = _smoothstep(u / 0.15) * _smoothstep((1.0 - u) / 0.15)
    for side in ("a", "o"):
        weight = 1.0 - active if side in driven else 1.0
        for k, key in enumerate(("ue", "ua", "fe", "fa")):
            name = f"{side}_{key}"
            out[name] = np.broadcast_to(out.get(name, REST[key]), shape) + weight * (stance[:, k : k + 1] - REST[key])
    return out


def _add(pose: Pose, extra: Pose, shape) -> Pose:
    out = dict(pose)
    for key, value in extra.items():
        out[key] = np.broadcast_to(out.get(key, _rest(key)), shape) + value
    return out


def _posture(subjects: _Subjects, index: np.ndarray) -> Pose:
    p = subjects.posture
    offsets = {key: p[key][index][:, None] for key in ("bow", "nod", "lean")}
    for side in ("a", "o"):
        offsets[f"{side}_ue"] = p["ue"][index][:, None]
        offsets[f"{side}_fe"] = p["fe"][index][:, None]
    for leg in ("la", "lo"):
        offsets[f"{leg}_ta"] = p["ta"][index][:, None]
    return offsets


@dataclass
class _Performances:
    """World coordinates of performances: joints (n, T, 2, 25, 3), y up, floor y = 0."""

    joints: np.ndarray
    length: np.ndarray  # (n,) frames
    label: np.ndarray  # (n,)
    subject: np.ndarray  # (n,) 1-based
    repetition: np.ndarray  # (n,) 1-based
    two_person: np.ndarray  # (n,) bool


def _perform(class_index: int, subject: np.ndarray, repetition: np.ndarray, subjects: _Subjects,
             cfg: SyntheticConfig, rng: np.random.Generator) -> _Performances:
    """Render performances of one action by the given 0-based subjects.

    The arrays are as long as the longest performance and hold 1 person (2 for interactions).
    """
    action = ACTIONS[class_index]
    n = len(subject)
    cycles = rng.integers(action.cycles[0], action.cycles[1] + 1, n).astype(np.float64)
    lead, duration, seq_length = _timing(action, cycles, subjects.tempo[subject], cfg, rng)
    shape = (n, int(seq_length.max()))
    u = _phase(lead, duration, rng.uniform(-0.4, 0.4, n), shape[1])
    params = {
        "amp": (subjects.amp[subject] * rng.uniform(0.9, 1.1, n))[:, None],
        "cycles": cycles[:, None],
        "lag": rng.uniform(-0.04, 0.04, n)[:, None],
        "height": rng.uniform(0.6, 1.2, n)[:, None],
        "turn": rng.uniform(120, 180, n)[:, None] * np.where(rng.random(n) < 0.5, -1.0, 1.0)[:, None],
    }
    actor_pose, partner_pose = action.pose(u, params)
    stances = ARM_STANCES[rng.choice(len(ARM_STANCES), size=(2, n), p=ARM_STANCE_PROBS)]
    actor_pose = _with_stance(actor_pose, u, action.arms, stances[0], shape)
    actor_pose = _add(_add(actor_pose, _posture(subjects, subject), shape), _idle(shape, rng), shape)
    facing_jitter = rng.normal(0.0, 10.0, n)
    if action.two_person:
        joints = np.empty((*shape, 2, NUM_JOINTS, 3))
        partner = np.array([_partner(s, subjects.train, rng) for s in subject], dtype=np.int64)
        distance = rng.uniform(*action.distance, n) * (subjects.bones["thigh"][subject] / BONES["thigh"])
        no_mirror = np.zeros(n, dtype=bool)
        # The pair stands on a line, facing each other; the whole pair turns by the jitter.
        turn = np.radians(facing_jitter)
        offset = np.stack([distance / 2 * np.cos(turn), np.zeros(n), distance / 2 * np.sin(turn)], axis=1)
        joints[:, :, 0] = _person(actor_pose, _take(subjects.bones, subject), no_mirror,
                                  90.0 + facing_jitter, -offset, shape)
        partner_pose = _with_stance(partner_pose, u, action.partner_arms, stances[1], shape)
        partner_pose = _add(_add(partner_pose, _posture(subjects, partner), shape), _idle(shape, rng), shape)
        joints[:, :, 1] = _person(partner_pose, _take(subjects.bones, partner), no_mirror,
                                  -90.0 + facing_jitter, offset, shape)
    else:
        joints = _person(actor_pose, _take(subjects.bones, subject), subjects.left_handed[subject],
                         facing_jitter, np.zeros((n, 3)), shape)[:, :, None]
    joints += np.stack([_drift(n, shape[1], rng) for _ in range(joints.shape[2])], axis=2)[:, :, :, None, :]
    return _Performances(
        joints=joints, length=seq_length, label=np.full(n, class_index, dtype=np.int64),
        subject=subject + 1, repetition=repetition + 1, two_person=np.full(n, action.two_person),
    )


def _partner(subject: int, train: np.ndarray, rng: np.random.Generator) -> int:
    """Another subject of the same XSub half (interaction partners never cross the split)."""
    same = np.flatnonzero((train == train[subject]) & (np.arange(len(train)) != subject))
    if len(same) == 0:
        same = np.flatnonzero(np.arange(len(train)) != subject)
    return int(rng.choice(same))


def _take(bones: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in bones.items()}


def _camera(world: np.ndarray, angle_deg: float | np.ndarray, distance: np.ndarray, tilt_deg: np.ndarray,
            height: np.ndarray) -> np.ndarray:
    """World (n, T, M, V, 3) -> Kinect camera space (float32): x right, y up, z away from the camera.

    The camera stands `distance` metres in front of the scene centre at `height`, turned by
    `angle_deg` about the vertical axis and tilted down by `tilt_deg` ((n,) each).
    """
    n = len(world)
    a = np.broadcast_to(np.radians(angle_deg), (n,))
    tilt = np.radians(tilt_deg)
    zero, one = np.zeros(n), np.ones(n)
    turn = np.stack([
        np.stack([np.cos(a), zero, -np.sin(a)], 1), np.stack([zero, one, zero], 1),
        np.stack([np.sin(a), zero, np.cos(a)], 1),
    ], 1)  # fmt: skip
    pitch = np.stack([
        np.stack([one, zero, zero], 1), np.stack([zero, np.cos(tilt), np.sin(tilt)], 1),
        np.stack([zero, -np.sin(tilt), np.cos(tilt)], 1),
    ], 1)  # fmt: skip
    rotation = (pitch @ turn).astype(np.float32)
    shift = (pitch @ np.stack([zero, -height, distance], 1)[:, :, None])[:, :, 0].astype(np.float32)
    points = world.reshape(n, -1, 3).astype(np.float32)
    camera = points @ rotation.transpose(0, 2, 1) + shift[:, None, :]
    return camera.reshape(world.shape)


def _sensor(camera: np.ndarray, present: np.ndarray, distance: np.ndarray, cfg: SyntheticConfig,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Add noise and tracking glitches (in place); return camera coords and a (n, T, M) "tracked" mask.

    camera: (n, T, M, V, 3); present: (n, T, M) bool, the body exists in that frame.
    """
    n = len(camera)
    scale = np.ones(NUM_JOINTS, dtype=np.float32)
    scale[list(_EXTREMITIES)] = 1.5
    std = cfg.noise_std * np.broadcast_to((distance / 3.0)[:, None, None], present.shape)[present]
    noise = rng.standard_normal((len(std), NUM_JOINTS, 3), dtype=np.float32)
    camera[present] += std[:, None, None].astype(np.float32) * scale[:, None] * noise
    tracked = present.copy()
    glitch = rng.random(n) < cfg.dropout_prob
    kind = rng.random(n)
    starts = rng.random(n)
    for i in np.flatnonzero(glitch):
        valid = np.flatnonzero(present[i, :, 0])
        if len(valid) < 12:
            continue
        start = int(valid[1 + int(starts[i] * (len(valid) - 11))])
        if kind[i] < 0.15:  # every body lost for a few frames: an empty Kinect frame
            tracked[i, start : start + int(rng.integers(1, 5))] = False
        elif kind[i] < 0.6:  # a joint jumps away
            joint = int(rng.choice(_EXTREMITIES))
            span = slice(start, start + int(rng.integers(2, 7)))
            camera[i, span, 0, joint] += _unit(rng.normal(size=3)) * rng.uniform(0.1, 0.4)
        else:  # a joint freezes
            joint = int(rng.choice(_EXTREMITIES))
            stop = start + int(rng.integers(3, 11))
            camera[i, start:stop, 0, joint] = camera[i, start - 1, 0, joint]
    return camera, tracked


def centre_like_ntu(x: np.ndarray, centre_joint: int = 1) -> np.ndarray:
    """NTU `seq_translation`: subtract actor 1's centre joint of its first non-empty frame.

    x: (n, T, M, V, 3); frames where a person is all zero stay zero. Returns a new array.
    """
    empty = np.all(x == 0, axis=(3, 4))  # (n, T, M)
    first = np.argmax(~empty[:, :, 0], axis=1)
    origin = x[np.arange(len(x)), first, 0, centre_joint]  # (n, 3)
    out = x - origin[:, None, None, None, :]
    out[empty] = 0.0
    return out


def _views(perf: _Performances, cfg: SyntheticConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Camera coordinates of every performance from every view: (n, views, T, M, 25, 3), tracked mask."""
    n, length, persons = perf.joints.shape[:3]
    t = np.arange(length)[None, :, None]
    present = np.broadcast_to(t < perf.length[:, None, None], (n, length, persons))
    out = np.empty((n, cfg.num_views, *perf.joints.shape[1:]), dtype=np.float32)
    tracked = np.empty((n, cfg.num_views, length, persons), dtype=bool)
    for v, angle in enumerate(cfg.view_angles):
        distance = rng.uniform(2.5, 4.0, n)
        camera = _camera(perf.joints, angle + rng.normal(0.0, 3.0, n), distance, rng.uniform(0.0, 12.0, n),
                         rng.uniform(0.7, 1.3, n))
        camera, tracked[:, v] = _sensor(camera, present, distance, cfg, rng)
        out[:, v] = camera
    out[~tracked] = 0.0
    return out, tracked


# --------------------------------------------------------------------------------------------
# Dataset assembly
# --------------------------------------------------------------------------------------------

def class_names(num_classes: int = 20) -> tuple[str, ...]:
    return tuple(a.name for a in ACTIONS[:num_classes])


def generate_all(cfg: SyntheticConfig = SyntheticConfig()) -> tuple[SkeletonSplit, np.ndarray]:
    """Every sample of the dataset (both splits) and the XSub training subjects (1-based).

    Returns a SkeletonSplit with x (N, max_length, 2, 25, 3) float32 centred like NTU, labels (N,)
    and meta subject/view/length/repetition (N,) int64, N = classes x subjects x reps x views,
    ordered by (subject, view, repetition, class).
    """
    rng = np.random.default_rng(cfg.seed)
    subjects = _draw_subjects(cfg, rng)
    subject_ids = np.repeat(np.arange(cfg.num_subjects), cfg.repetitions)
    rep_ids = np.tile(np.arange(cfg.repetitions), cfg.num_subjects)
    views = np.arange(cfg.num_views)
    total = len(subject_ids) * cfg.num_views * cfg.num_classes
    x = np.zeros((total, cfg.max_length, NUM_PERSONS, NUM_JOINTS, 3), dtype=np.float32)
    meta = {k: np.empty(total, dtype=np.int64) for k in ("label", "subject", "view", "length", "repetition")}
    for c in range(cfg.num_classes):
        perf = _perform(c, subject_ids, rep_ids, subjects, cfg, rng)
        camera, _ = _views(perf, cfg, rng)  # (n, views, ...)
        # Final position in (subject, view, repetition, class) order.
        position = (((subject_ids[:, None] * cfg.num_views + views) * cfg.repetitions + rep_ids[:, None])
                    * cfg.num_classes + c).reshape(-1)
        length, persons = camera.shape[2:4]
        x[position, :length, :persons] = centre_like_ntu(camera.reshape(-1, *camera.shape[2:]))
        meta["label"][position] = c
        meta["subject"][position] = np.repeat(perf.subject, cfg.num_views)
        meta["repetition"][position] = np.repeat(perf.repetition, cfg.num_views)
        meta["view"][position] = np.tile(views + 1, len(perf.subject))
        meta["length"][position] = np.repeat(perf.length, cfg.num_views)
    labels = meta.pop("label")
    samples = SkeletonSplit(
        x=x, y=labels, layout=NTU25, num_classes=cfg.num_classes, split="all", name="synthetic",
        class_names=class_names(cfg.num_classes), meta=meta,
    )
    return samples, np.flatnonzero(subjects.train) + 1


def split_protocol(samples: SkeletonSplit, protocol: str, train_subjects: np.ndarray) -> tuple[SkeletonSplit, SkeletonSplit]:
    """(train, test) of a protocol, ordered as NTU: grouped by subject (xsub) or view (xview).

    xsub: subjects in `train_subjects` train; xview: views 2, 3, ... train, view 1 tests.
    """
    meta = samples.meta
    if protocol == "xsub":
        is_train = np.isin(meta["subject"], train_subjects)
        order = np.lexsort((samples.y, meta["repetition"], meta["view"], meta["subject"]))
    elif protocol == "xview":
        is_train = meta["view"] != 1
        order = np.lexsort((samples.y, meta["repetition"], meta["subject"], meta["view"]))
    else:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    train = samples.subset(order[is_train[order]])
    test = samples.subset(order[~is_train[order]])
    train.split, test.split = "train", "test"
    return train, test


def generate(cfg: SyntheticConfig = SyntheticConfig(), protocol: str = "xsub") -> tuple[SkeletonSplit, SkeletonSplit]:
    """(train, test) SkeletonSplits of one protocol; x (N, T, 2, 25, 3) float32."""
    samples, train_subjects = generate_all(cfg)
    return split_protocol(samples, protocol, train_subjects)


def prepare_synthetic(out_dir: str | os.PathLike, seed: int = 0, **overrides) -> dict[str, Path]:
    """Write SYN_XSub.npz and SYN_XView.npz (official NTU layout + metadata); returns their paths."""
    cfg = make_config(seed, **overrides)
    samples, train_subjects = generate_all(cfg)
    out = Path(out_dir)
    paths = {}
    for protocol, file_name in (("xsub", "SYN_XSub.npz"), ("xview", "SYN_XView.npz")):
        train, test = split_protocol(samples, protocol, train_subjects)
        extra = {f"{key}_{part.split}": part.meta[key] for part in (train, test) for key in part.meta}
        paths[protocol] = save_dataset(
            out / file_name, train.x, train.y, test.x, test.y, num_classes=cfg.num_classes,
            layout="ntu25", num_persons=NUM_PERSONS, one_hot=True, class_names=samples.class_names,
            name=f"synthetic {protocol} (seed {cfg.seed})", extra=extra,
        )
        del train, test
    return paths


# --------------------------------------------------------------------------------------------
# NTU .skeleton export
# --------------------------------------------------------------------------------------------

def write_skeleton_files(out_dir: str | os.PathLike, n: int = 60, seed: int = 0, two_body_fraction: float = 0.25,
                         noisy_body_fraction: float = 0.2, cfg: SyntheticConfig | None = None) -> list[Path]:
    """Write `n` NTU-named `SsssCcccPpppRrrrAaaa.skeleton` files of synthetic performances.

    Coordinates are Kinect camera space (not centred). `two_body_fraction` of the files show an
    interaction (two bodies); `noisy_body_fraction` get an extra noise body that the NTU denoiser
    must remove (alternately short-lived, <= 11 frames, or spread out: wider than tall), or a
    tracking-ID switch (actor 1 continues under a new body ID). Tracking gaps are written as frames
    with 0 bodies. Files are named setup 1, camera = view, performer = subject, replication,
    action = class + 1; names are unique.
    """
    from stars.data.ntu import write_skeleton_file

    if not 0 <= two_body_fraction <= 1 or not 0 <= noisy_body_fraction <= 1:
        raise ValueError("two_body_fraction and noisy_body_fraction must lie in [0, 1]")
    cfg = cfg or SyntheticConfig(seed=seed)
    rng = np.random.default_rng(seed)
    subjects = _draw_subjects(cfg, rng)
    two_person = [c for c in range(cfg.num_classes) if ACTIONS[c].two_person]
    single = [c for c in range(cfg.num_classes) if not ACTIONS[c].two_person]
    if two_body_fraction > 0 and not two_person:
        raise ValueError(f"two_body_fraction > 0 needs a two-person class among the first {cfg.num_classes}")
    num_two = int(round(n * two_body_fraction)) if two_person else 0
    classes = np.array(
        [two_person[i % len(two_person)] for i in range(num_two)]
        + [single[i % len(single)] for i in range(n - num_two)], dtype=np.int64,
    )
    # Unique (subject, view, repetition) per class, repetitions numbered from 1 as needed.
    subject = np.empty(n, dtype=np.int64)
    view = np.empty(n, dtype=np.int64)
    repetition = np.empty(n, dtype=np.int64)
    cells = cfg.num_subjects * cfg.num_views
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        reps = max(cfg.repetitions, -(-len(members) // cells))
        pick = rng.permutation(cells * reps)[: len(members)]
        subject[members] = pick % cfg.num_subjects
        view[members] = (pick // cfg.num_subjects) % cfg.num_views
        repetition[members] = pick // cells
    noisy = rng.random(n) < noisy_body_fraction
    noise_kind = np.where(noisy, np.cumsum(noisy) % 3, -1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        c = int(classes[i])
        perf = _perform(c, subject[i : i + 1], repetition[i : i + 1], subjects, cfg, rng)
        distance = rng.uniform(2.5, 4.0, 1)
        camera = _camera(perf.joints, cfg.view_angles[view[i]], distance, rng.uniform(0, 12, 1), rng.uniform(0.7, 1.3, 1))
        present = np.ones(perf.joints.shape[:3], dtype=bool)
        camera, tracked = _sensor(camera, present, distance, cfg, rng)
        frames = _bodies_per_frame(camera[0], tracked[0], int(perf.length[0]), int(noise_kind[i]), rng)
        name = f"S001C{view[i] + 1:03d}P{subject[i] + 1:03d}R{repetition[i] + 1:03d}A{c + 1:03d}.skeleton"
        paths.append(write_skeleton_file(out / name, frames))
    return paths


def _body_id(rng: np.random.Generator) -> str:
    return str(72057594037927936 + int(rng.integers(1, 10**6)))


def _bodies_per_frame(camera: np.ndarray, tracked: np.ndarray, length: int, noise_kind: int,
                      rng: np.random.Generator) -> list[list[tuple[str, np.ndarray]]]:
    """Per frame, the list of (body ID, joints (25, 3)) the Kinect reported.

    camera: (T, M, 25, 3); tracked: (T, M). noise_kind: -1 none, 0 short-lived extra body,
    1 spread-out extra body, 2 actor 1 changes its body ID half-way.
    """
    ids = [_body_id(rng), _body_id(rng)]
    switched_id = _body_id(rng)
    switch_at = -1
    if noise_kind == 2 and length > 30:
        switch_at = int(rng.integers(length // 3, 2 * length // 3))
    if noise_kind == 0:  # short-lived body: a passer-by seen for a few frames
        start = int(rng.integers(0, max(1, length - 11)))
        extra_frames = range(start, min(length, start + int(rng.integers(3, 12))))
        extra_joints = camera[min(start, length - 1), 0] + np.array([rng.uniform(-1.5, 1.5), 0.0, rng.uniform(0.5, 1.5)])
    elif noise_kind == 1:  # spread-out body: a flat object tracked as a body (wider than tall)
        extra_frames = range(0, length)
        base = np.array([rng.uniform(-1.0, 1.0), -0.6, camera[0, 0, 0, 2] + rng.uniform(0.3, 1.0)])
        extra_joints = base + np.stack(
            [rng.uniform(-0.6, 0.6, NUM_JOINTS), rng.uniform(-0.1, 0.1, NUM_JOINTS), rng.uniform(-0.2, 0.2, NUM_JOINTS)],
            axis=1,
        )
    else:
        extra_frames = range(0)
    extra_id = _body_id(rng)
    frames = []
    for t in range(length):
        bodies = []
        for person in range(camera.shape[1]):
            if tracked[t, person]:
                body = ids[person] if not (person == 0 and 0 <= switch_at <= t) else switched_id
                bodies.append((body, camera[t, person].astype(np.float64)))
        if bodies and t in extra_frames:
            jitter = rng.normal(0.0, 0.01, (NUM_JOINTS, 3))
            bodies.append((extra_id, extra_joints + jitter))
        frames.append(bodies)
    return frames
