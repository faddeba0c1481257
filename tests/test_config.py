"""Strict typed configs: overrides parse strings, unknown/mistyped keys fail naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from stars.config import ConfigError, apply_overrides, from_dict, load_config, save_config, to_dict


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)


@dataclass(frozen=True)
class Outer:
    epochs: int = 10
    name: str = "x"
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    shots: tuple[int, ...] = (1, 2, 5)
    maybe: float | None = None
    inner: Inner = field(default_factory=Inner)


def test_string_overrides_are_typed():
    cfg = apply_overrides(
        Outer(),
        ["epochs=20", "flag=true", "mode=b", "shots=1,5", "inner.lr=5e-4", "inner.betas=[0.8, 0.9]", "maybe=none"],
    )
    assert cfg.epochs == 20 and cfg.flag is True and cfg.mode == "b"
    assert cfg.shots == (1, 5) and cfg.inner.lr == 5e-4 and cfg.inner.betas == (0.8, 0.9)
    assert cfg.maybe is None
    assert Outer().epochs == 10  # frozen original untouched


@pytest.mark.parametrize(
    "item, key",
    [("epoch=3", "epoch"), ("inner.lrr=1", "inner.lrr"), ("epochs=ten", "epochs"), ("epochs=1.5", "epochs"),
     ("flag=maybe", "flag"), ("mode=c", "mode"), ("inner.betas=1,2,3", "inner.betas")],
)
def test_bad_overrides_name_the_key(item, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        apply_overrides(Outer(), [item])


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean epochs"):
        apply_overrides(Outer(), ["epoch=3"])


def test_missing_equals_sign():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(Outer(), ["epochs"])


def test_round_trip_yaml(tmp_path):
    cfg = apply_overrides(Outer(), {"epochs": 3, "inner.lr": 0.1})
    path = save_config(cfg, tmp_path / "c.yaml")
    assert load_config(Outer, path) == cfg
    assert from_dict(Outer, to_dict(cfg)) == cfg
