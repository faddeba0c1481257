"""thop-style MAC counting rules and the paper's Table 11 numbers (exact)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stars.analysis.flops import count_macs, format_table11, table11
from stars.models.encoder import EncoderConfig, SkeletonEncoder
from stars.models.heads import ProjectorPredictor
from stars.models.mamp import MAMPConfig, MaskedMotionModel


class WithBareParameter(nn.Module):
    def __init__(self):
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(5))  # not owned by a leaf module: not counted
        self.fc = nn.Linear(3, 5)

    def forward(self, x):
        return self.fc(x) + self.offset


def test_linear_rule_and_bare_parameters():
    params, macs = count_macs(WithBareParameter(), torch.zeros(2, 7, 3))
    assert params == 3 * 5 + 5
    assert macs == 3 * (2 * 7 * 5)  # in_features x output elements, bias free


def test_conv_norm_and_zero_cost_rules():
    conv = nn.Conv2d(3, 8, kernel_size=(4, 1), stride=(4, 1))
    assert count_macs(conv, torch.zeros(1, 3, 8, 5))[1] == (8 * 2 * 5) * (3 * 4 + 1)
    no_bias = nn.Conv2d(4, 6, kernel_size=3, groups=2, bias=False)
    assert count_macs(no_bias, torch.zeros(1, 4, 5, 5))[1] == (6 * 3 * 3) * (2 * 9)
    assert count_macs(nn.LayerNorm(6), torch.zeros(2, 3, 6)) == (12, 4 * 36)
    assert count_macs(nn.BatchNorm1d(6).train(), torch.zeros(4, 6)) == (12, 4 * 24)
    assert count_macs(nn.BatchNorm1d(6, affine=False), torch.zeros(4, 6)) == (0, 2 * 24)
    chain = nn.Sequential(nn.GELU(), nn.ReLU(), nn.Dropout(0.1), nn.Identity())
    assert count_macs(chain, torch.zeros(3, 4)) == (0, 0)


def test_module_called_twice_counts_twice_and_unknown_leaf_raises():
    linear = nn.Linear(4, 2)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = linear

        def forward(self, x):
            return self.fc(x) + self.fc(x)

    assert count_macs(Twice(), torch.zeros(3, 4)) == (10, 2 * 4 * 6)
    with pytest.raises(ValueError, match="no MAC counting rule for leaf module Embedding"):
        count_macs(nn.Embedding(4, 3), torch.zeros(2, dtype=torch.long))


def test_encoder_and_head_reference_counts():
    with torch.device("meta"):
        encoder, head = SkeletonEncoder(EncoderConfig()), ProjectorPredictor()
        sequence, pooled = torch.zeros(1, 3, 120, 25, 1), torch.zeros(64, 256)
    assert count_macs(encoder, sequence) == (6_321_920, 4_734_144_000)  # 4.734 GMACs per 750-token sequence
    assert count_macs(head.train(), pooled) == (2_106_112, 135_331_840)  # heads on 64 pooled vectors


def test_table11_exact():
    mamp, stars = table11("mamp"), table11("stars")
    assert (mamp.params, mamp.macs) == (10_340_108, 250_377_830_400)  # 3.912 G x 64 sequences
    assert (stars.params, stars.macs) == (8_428_032, 606_105_763_840)  # 4.734 G x 128 + 0.135 G
    assert format_table11() == [("MAMP", 10.34, 250.4), ("STARS", 8.43, 606.1)]
    assert format_table11("stars") == [("STARS", 8.43, 606.1)]
    with pytest.raises(ValueError, match="'mamp' or 'stars'"):
        table11("moco")


@pytest.mark.parametrize("rounding, macs", [("round", 220_188_672_000), ("official", 219_780_710_400)])
def test_mamp_macs_at_configured_ratio(rounding, macs):
    """At the configured 90 % ratio: 75 (round) or 74 (official) visible tokens per sequence."""
    with torch.device("meta"):
        model = MaskedMotionModel(EncoderConfig(), MAMPConfig(decoder_depth=5, visible_rounding=rounding))
        x = torch.zeros(32, 3, 120, 25, 2)
    assert count_macs(model, x)[1] == macs


def test_cli_prints_table11(capsys):
    from stars.cli import main

    assert main(["flops", "all"]) == 0
    out = capsys.readouterr().out
    assert "10.34" in out and "250.4" in out and "8.43" in out and "606.1" in out
