"""Skeleton layouts as data: joint names, bones, left-right pairs and the centre joint.

Every array the package loads is checked against its layout (joint count); mirroring uses the
layout's left-right permutation, bone features its parent list. Indices are 0-based.

Four layouts are built in (`LAYOUTS`); any other joint set is a `custom_layout(...)`, which a dataset
file stores in full (`layout_joints`, `layout_parents`, `layout_centre`, `layout_mirror`, see
`stars.data.npz`), so an encoder of any joint count can be trained on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SkeletonLayout:
    """A joint set.

    name: registry key (`ntu25`, `kinect_v1_20`, `utd_mhad20`, `openni15`).
    joints: joint names, in storage order.
    parents: parent joint index for each joint (the root points to itself); bones = joint - parent.
    mirror: permutation applied when the body is mirrored left-right (new joint j = old joint mirror[j]).
    centre: joint used as origin when centring (NTU: spine middle).
    """

    name: str
    joints: tuple[str, ...]
    parents: tuple[int, ...]
    centre: int
    mirror: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.joints)
        if len(self.parents) != n:
            raise ValueError(f"layout {self.name}: {len(self.parents)} parents for {n} joints")
        mirror = self.mirror or _mirror_from_names(self.joints)
        object.__setattr__(self, "mirror", tuple(mirror))
        if sorted(self.mirror) != list(range(n)):
            raise ValueError(f"layout {self.name}: mirror is not a permutation of {n} joints")
        if not 0 <= self.centre < n:
            raise ValueError(f"layout {self.name}: centre joint {self.centre} out of range")

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    @property
    def bones(self) -> list[tuple[int, int]]:
        """(child, parent) pairs, root excluded."""
        return [(j, p) for j, p in enumerate(self.parents) if j != p]

    def index(self, joint: str) -> int:
        return self.joints.index(joint)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The full definition as npz-storable arrays (keys `layout`, `layout_joints`, ...)."""
        return {
            "layout": np.array(self.name),
            "layout_joints": np.array(self.joints),
            "layout_parents": np.array(self.parents, dtype=np.int64),
            "layout_centre": np.array(self.centre, dtype=np.int64),
            "layout_mirror": np.array(self.mirror, dtype=np.int64),
        }

    def to_dict(self) -> dict:
        """Plain dict (for checkpoints and run.json); `layout_from_dict` reverses it."""
        return {"name": self.name, "joints": list(self.joints), "parents": list(self.parents),
                "centre": self.centre, "mirror": list(self.mirror)}

    def same_joints(self, other: SkeletonLayout) -> bool:
        """True when both store the same joints (by name) in the same order."""
        return self.joints == other.joints

    def check_array(self, array: np.ndarray, where: str = "array", joint_axis: int = -2) -> None:
        """Raise ValueError naming `where` when the joint axis does not match this layout."""
        if array.shape[joint_axis] != self.num_joints:
            raise ValueError(
                f"{where}: expected {self.num_joints} joints for layout {self.name!r}, "
                f"got shape {tuple(array.shape)}"
            )


def _mirror_from_names(joints: tuple[str, ...]) -> list[int]:
    """Swap every `left_*` joint with its `right_*` twin; unpaired joints stay."""
    index = {name: i for i, name in enumerate(joints)}
    out = []
    for name in joints:
        if name.startswith("left_"):
            twin = "right_" + name[5:]
        elif name.startswith("right_"):
            twin = "left_" + name[6:]
        else:
            twin = name
        if twin not in index:
            raise ValueError(f"joint {name!r} has no mirror twin {twin!r}")
        out.append(index[twin])
    return out


_NTU_JOINTS = (
    "spine_base", "spine_mid", "neck", "head",
    "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot",
    "right_hip", "right_knee", "right_ankle", "right_foot",
    "spine_shoulder", "left_hand_tip", "left_thumb", "right_hand_tip", "right_thumb",
)  # fmt: skip
# Official NTU bone pairs (1-based) (1,2),(2,21),(3,21),(4,3),(5,21),(6,5),(7,6),(8,7),(9,21),(10,9),
# (11,10),(12,11),(13,1),(14,13),(15,14),(16,15),(17,1),(18,17),(19,18),(20,19),(22,23),(21,21),
# (23,8),(24,25),(25,12); the root is the spine base.
_NTU_PARENTS_1 = (1, 1, 21, 3, 21, 5, 6, 7, 21, 9, 10, 11, 1, 13, 14, 15, 1, 17, 18, 19, 2, 23, 8, 25, 12)
NTU25 = SkeletonLayout(
    name="ntu25",
    joints=_NTU_JOINTS,
    parents=tuple(p - 1 for p in _NTU_PARENTS_1),
    centre=1,
)

# Kinect v1 SDK order (NW-UCLA): the first 20 joints of NTU-25 with the SDK's names.
_KINECT_V1_JOINTS = (
    "hip_center", "spine", "shoulder_center", "head",
    "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot",
    "right_hip", "right_knee", "right_ankle", "right_foot",
)  # fmt: skip
KINECT_V1_20 = SkeletonLayout(
    name="kinect_v1_20",
    joints=_KINECT_V1_JOINTS,
    parents=(0, 0, 1, 2, 2, 4, 5, 6, 2, 8, 9, 10, 0, 12, 13, 14, 0, 16, 17, 18),
    centre=1,
)

# UTD-MHAD's own order (not the SDK's): head first, hip centre fourth.
_UTD_JOINTS = (
    "head", "shoulder_center", "spine", "hip_center",
    "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot",
    "right_hip", "right_knee", "right_ankle", "right_foot",
)  # fmt: skip
UTD_MHAD20 = SkeletonLayout(
    name="utd_mhad20",
    joints=_UTD_JOINTS,
    parents=(1, 2, 3, 3, 1, 4, 5, 6, 1, 8, 9, 10, 3, 12, 13, 14, 3, 16, 17, 18),
    centre=2,
)

# OpenNI / NiTE 15-joint skeleton.
_OPENNI_JOINTS = (
    "head", "neck", "torso",
    "left_shoulder", "left_elbow", "left_hand",
    "right_shoulder", "right_elbow", "right_hand",
    "left_hip", "left_knee", "left_foot",
    "right_hip", "right_knee", "right_foot",
)  # fmt: skip
OPENNI15 = SkeletonLayout(
    name="openni15",
    joints=_OPENNI_JOINTS,
    parents=(1, 2, 2, 1, 3, 4, 1, 6, 7, 2, 9, 10, 2, 12, 13),
    centre=2,
)

LAYOUTS: dict[str, SkeletonLayout] = {
    layout.name: layout for layout in (NTU25, KINECT_V1_20, UTD_MHAD20, OPENNI15)
}


def custom_layout(
    name: str,
    joints: list[str] | tuple[str, ...],
    parents: list[int] | tuple[int, ...],
    centre: int | str,
    pairs: list[tuple[int | str, int | str]] | None = None,
) -> SkeletonLayout:
    """A layout for any skeleton: joint names, the parent of each joint (the root is its own parent),
    the centre joint (index or name) and left/right pairs (indices or names).

    pairs None: joints named `left_*` / `right_*` are paired by name, the rest map to themselves.
    Raises ValueError naming the problem (unknown joint, a joint in two pairs, a parent out of range).
    """
    joints = tuple(str(j) for j in joints)
    if not name or not isinstance(name, str):
        raise ValueError(f"custom layout: name must be a non-empty string, got {name!r}")
    if len(set(joints)) != len(joints):
        raise ValueError(f"layout {name}: joint names are not unique")
    index = {j: i for i, j in enumerate(joints)}

    def position(value, what: str) -> int:
        if isinstance(value, str):
            if value not in index:
                raise ValueError(f"layout {name}: {what} {value!r} is not one of its joints")
            return index[value]
        value = int(value)
        if not 0 <= value < len(joints):
            raise ValueError(f"layout {name}: {what} {value} is outside 0..{len(joints) - 1}")
        return value

    parents = tuple(position(p, f"parent of joint {joints[i]!r}") for i, p in enumerate(parents))
    mirror: tuple[int, ...] = ()
    if pairs is not None:
        permutation = list(range(len(joints)))
        seen: set[int] = set()
        for left, right in pairs:
            a, b = position(left, "left/right pair joint"), position(right, "left/right pair joint")
            if a in seen or b in seen or a == b:
                raise ValueError(f"layout {name}: joint {joints[a]!r} or {joints[b]!r} is in more than one pair")
            seen |= {a, b}
            permutation[a], permutation[b] = b, a
        mirror = tuple(permutation)
    return SkeletonLayout(name=name, joints=joints, parents=parents, centre=position(centre, "centre joint"),
                          mirror=mirror)


def layout_from_dict(values: dict) -> SkeletonLayout:
    """Inverse of `SkeletonLayout.to_dict`."""
    return SkeletonLayout(name=str(values["name"]), joints=tuple(values["joints"]),
                          parents=tuple(int(p) for p in values["parents"]), centre=int(values["centre"]),
                          mirror=tuple(int(m) for m in values["mirror"]))


def get_layout(name: str) -> SkeletonLayout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown skeleton layout {name!r}; known: {sorted(LAYOUTS)}") from None


def joint_mapping(source: SkeletonLayout, target: SkeletonLayout) -> list[int]:
    """Index list `m` such that `x_target = x_source[..., m, :]` (joints matched by role).

    Kinect v1 and UTD-MHAD name the same 20 joints; the NTU names of the first 20 joints map onto
    Kinect v1 ones by position. Raises ValueError when a target joint has no source twin.
    """
    def canonical(layout: SkeletonLayout) -> tuple[str, ...]:
        if layout.name == "ntu25":
            return _KINECT_V1_JOINTS + layout.joints[20:]
        return layout.joints

    src = {name: i for i, name in enumerate(canonical(source))}
    out = []
    for name in canonical(target):
        if name not in src:
            raise ValueError(f"joint {name!r} of layout {target.name} has no twin in {source.name}")
        out.append(src[name])
    return out
