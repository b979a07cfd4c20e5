"""Model configurations (dataclasses, validated; loaded from YAML by recon.config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from recon.errors import InputError


@dataclass(frozen=True)
class CRUNetConfig:
    """CRUNet-MR (design.md §1, §4) and its cross-cascade feature bank.

    channels : feature width at every UNet level (paper: 64).
    cascades : unrolled iterations, each followed by hard data consistency (paper: 5).
    fusion : ``none`` (plain CRUNet-MR), ``conv`` (3x3 conv over the concatenated
        bank) or ``ca`` (squeeze-and-excitation channel attention over the bank, then
        a projection to ``channels``).
    bank_depth : how many earlier cascades the bank holds: 0 = all, else the K most recent.
    ca_reduction : squeeze ratio r of the channel attention.
    dilations : dilation rates of (level 0, level 1, bottleneck), as in the reference (1, 2, 4).
    temporal_padding : ``circular`` (cine is periodic) or ``zeros``.
    """

    channels: int = 64
    cascades: int = 5
    fusion: Literal["none", "conv", "ca"] = "none"
    bank_depth: int = 0
    ca_reduction: int = 4
    dilations: tuple[int, ...] = (1, 2, 4)
    temporal_padding: Literal["circular", "zeros"] = "circular"

    def validate(self) -> None:
        if self.channels < 1 or self.cascades < 1:
            raise InputError(f"channels and cascades must be >= 1, got {self.channels}, {self.cascades}")
        if self.bank_depth < 0:
            raise InputError(f"bank_depth must be 0 (all) or a positive K, got {self.bank_depth}")
        if self.fusion == "none" and self.bank_depth:
            raise InputError("bank_depth needs a feature bank (fusion 'conv' or 'ca')")
        if self.ca_reduction < 1:
            raise InputError(f"ca_reduction must be >= 1, got {self.ca_reduction}")


@dataclass(frozen=True)
class CRNNConfig:
    """CRNN-MRI (Qin et al. 2018): ``nf`` features, ``cascades`` (nc), ``layers`` (nd)."""

    channels: int = 64
    cascades: int = 5
    layers: int = 5

    def validate(self) -> None:
        if min(self.channels, self.cascades, self.layers) < 1:
            raise InputError("channels, cascades and layers must be >= 1")
        if self.layers < 3:
            raise InputError(f"CRNN-MRI needs at least 3 layers (BCRNN, CRNN, output), got {self.layers}")


@dataclass(frozen=True)
class ModelConfig:
    """Which model, with its settings: ``name`` selects ``crunet`` or ``crnn``."""

    name: Literal["crunet", "crnn"] = "crunet"
    crunet: CRUNetConfig = field(default_factory=CRUNetConfig)
    crnn: CRNNConfig = field(default_factory=CRNNConfig)
