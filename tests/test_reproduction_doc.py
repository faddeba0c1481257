"""docs/reproduction.md: every switch it names exists as a config key (and takes the value it shows), and
the rows marked "sets" are exactly the switches the paper profile applies (stars.recipes.PAPER_SWITCHES)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from stars.config import apply_overrides
from stars.data.ntu import prepare_ntu
from stars.data.pku import prepare_pku
from stars.eval.cli import PROTOCOLS
from stars.recipes import PAPER_SWITCHES
from stars.train.pretrain import pretrain_preset
from stars.train.tune import tune_preset

DOC = Path(__file__).resolve().parent.parent / "docs" / "reproduction.md"
SWITCH = re.compile(r"`([a-z-]+): ([A-Za-z0-9_.]+)(?:=([^`]*))?`")


def _rows() -> list[dict[str, str]]:
    lines = DOC.read_text().splitlines()
    start = lines.index("## Differences")
    table = [line for line in lines[start:] if line.startswith("|")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    rows = []
    for line in table[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) != len(header):
            break  # the next table
        rows.append(dict(zip(header, cells)))
    return rows


def _check(scope: str, key: str, value: str | None) -> None:
    if scope in ("prepare-ntu", "prepare-pku"):
        function = prepare_ntu if scope == "prepare-ntu" else prepare_pku
        assert key in inspect.signature(function).parameters, f"{scope}: {key}"
        return
    if scope == "pretrain":
        cfg = pretrain_preset("mamp", "paper")
    elif scope == "tune":
        cfg = tune_preset("dino", "paper")
    else:
        cfg = PROTOCOLS[scope].presets["paper"]
    apply_overrides(cfg, [f"{key}={value}"] if value is not None else {key: getattr_dotted(cfg, key)})


def getattr_dotted(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def test_the_table_names_switches_and_says_whether_the_paper_profile_sets_them():
    rows = _rows()
    assert len(rows) >= 25
    for row in rows:
        assert row["paper profile"] in ("sets", "default", "no"), row["topic"]
        assert row["effect on published numbers"], row["topic"]
        if row["paper profile"] in ("sets", "default"):
            assert SWITCH.search(row["switch"]), f"{row['topic']}: a switch is needed"


@pytest.mark.parametrize("row", _rows(), ids=lambda row: row["topic"])
def test_every_named_switch_is_a_config_key(row):
    for scope, key, value in SWITCH.findall(row["switch"]):
        _check(scope, key, value or None)


def test_rows_marked_sets_are_the_paper_profile_switches():
    documented = set()
    for row in _rows():
        if row["paper profile"] == "sets":
            documented |= {f"{scope}: {key}={value}" for scope, key, value in SWITCH.findall(row["switch"])}
    profile = {f"{scope}: {item}" for scope, items in PAPER_SWITCHES.items() for item in items}
    assert documented == profile
    for scope, items in PAPER_SWITCHES.items():
        for item in items:
            key, value = item.split("=", 1)
            _check(scope, key, value)
