"""Model configurations (dataclasses, validated; loaded from YAML by recon.config)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from recon.config import Settings
from recon.errors import InputError


def check_wrap_rows(rows: int) -> None:
    if int(rows) != rows or rows < 0:
        raise InputError(f"wrap_rows must be an integer >= 0, got {rows!r}")


@dataclass(frozen=True)
class CRUNetConfig(Settings):
    """CRUNet-MR (docs/design.md §1, §4) and its cross-cascade feature bank.

    channels : feature width at every UNet level (paper: 64).
    cascades : unrolled iterations, each followed by hard data consistency (paper: 5).
    fusion : ``none`` (plain CRUNet-MR), ``conv`` (3x3 conv over the concatenated
        bank) or ``ca`` (squeeze-and-excitation channel attention over the bank, then
        a projection to ``channels``).
    bank_depth : how many earlier cascades the bank holds: 0 = all, else the K most recent.
    bank_projection : how the ``n*C`` bank channels become ``C``: ``3x3`` (a 3x3 conv at the
        level's dilation, the reference's fusion conv; the default), ``1x1`` (a pointwise
        conv, a ninth of the cost) or ``sum`` (``ca`` only: the attention-weighted features
        of the ``n`` cascades summed, no projection weights: attention alone).
    ca_reduction : squeeze ratio r of the channel attention.
    dilations : dilation rates of (level 0, level 1, bottleneck), as in the reference (1, 2, 4).
    temporal_padding : ``circular`` (cine is periodic) or ``zeros``.
    wrap_rows : rows of each edge along y (the phase-encode axis, periodic in every Cartesian
        image) that the network sees beyond the opposite edge
        (:func:`recon.models.layers.pad_to_multiple`): then the edge of the field of view in
        y is no boundary and the result hardly depends on where the object sits along y.
        0 = zero padding at the edge (the reference's, and the weights trained before the
        option): those learn the simulator's edge and lose up to 7 dB when the object moves
        by one row. No parameters depend on it.
    data_consistency : ``hard`` (the reference's: every cascade replaces the sampled k-space
        by the measurement, right for noise-free data) or ``noise``: cascade ``i`` mixes
        its estimate and the measurement at the sampled locations with the weight
        ``tau_i^2 / (tau_i^2 + sigma^2)`` (:func:`recon.sense.noise_weight`): ``sigma`` the
        measured per-coil k-space noise std of the slice (noise scan, else estimated from
        the data; :func:`recon.problem.noise_level`), ``tau_i`` a learned error std of the
        cascade's estimate (one parameter per cascade, relative to the normalised k-space).
        Hard replacement puts the measurement's whole noise back after every cascade, the
        last one included; weighted, the noisier the data, the more of the network's
        estimate is kept. Needs the noise level at every call. ``cg``: MoDL's data consistency
        instead of the replacement (:class:`recon.sense.CGConsistency`): cascade ``i``'s image
        becomes ``argmin ||A x - k||^2 + lam_i ||x - z_i||^2`` around its estimate ``z_i``, by
        ``cg_iterations`` conjugate-gradient steps, ``lam_i = sigma^2 / tau_i^2 + cg_lam_floor`` (the same learned
        ``tau_i`` and measured ``sigma`` as ``noise``, so weights trained with ``noise`` start
        from theirs). The replacement treats each coil apart; CG uses the coils' joint encoding
        to unfold what the estimate got wrong. Costs ``cg_iterations`` SENSE normal operators per
        cascade instead of one FFT pair.
    cg_iterations : CG steps per cascade with ``data_consistency: cg`` (>= 1).
    cg_lam_floor : added to every ``lam_i`` (``data_consistency: cg``, >= 0): the data's own
        error besides the noise (ESPIRiT maps that miss the true coils, a model that is not
        ``A x``). With ``lam_i`` from the noise alone, noise-free slices get ``lam ~ 0``:
        unregularised SENSE steps that put every map error into the image. Measured in a
        250-step fine-tuning of the shipped weights (``configs/cpu/crunet_ca_cg.yaml``): with /
        without the floor, validation 37.00 / 36.06 dB (held-out acquisitions 37.12 / 37.39); the
        training losses on the same samples were alike, so the floor is a safeguard, not a cure.
    composite_input : ``none`` (the reference's input alone), ``average``, ``missing`` or ``nearest``: every
        cascade also sees a composite image through its own 3x3 head convolution, added to the
        cascade's head (:func:`recon.sense.composite_image`). ``average``: the SENSE adjoint of
        the time-averaged k-space (each line the mean over the frames that sampled it,
        :func:`recon.kspace.time_average`), the same for every frame; with a mask that moves
        from frame to frame it holds the static anatomy without aliasing, with a fixed mask it
        is the mean of the zero-filled frames. ``missing``: per frame, only the lines that
        frame did not sample, from that average (view sharing of the missing lines); zero for
        a mask that is the same in every frame, and its heads have no bias, so on fixed masks
        the network is exactly the one without it. ``nearest``: as ``missing``, each line from
        the frames nearest in (circular) time that sampled it instead of their mean (ties
        averaged): less temporal blur where the heart moves, more noise.
    mean_consistency : after every cascade's data consistency, the temporal mean's
        (:class:`recon.sense.TemporalMeanConsistency`): on every line that some frames sampled
        and others did not, the mean of the frames' k-space over time is set to the line's mean
        over the frames that sampled it (exact for what does not move, view sharing's assumption
        for what does), weighted with ``data_consistency: noise`` as the frames are, with that
        mean's noise (``sigma / sqrt(frames that sampled the line)``). No parameters. Lines every
        frame sampled are left to the frames' own data consistency, so a mask with the same
        lines in every frame is untouched. Switched per call at inference by the learned
        method's ``mean_consistency`` option (:mod:`recon.inference`).
    """

    WHERE = "model.crunet"

    channels: int = 64
    cascades: int = 5
    fusion: Literal["none", "conv", "ca"] = "none"
    bank_depth: int = 0
    bank_projection: Literal["3x3", "1x1", "sum"] = "3x3"
    ca_reduction: int = 4
    dilations: tuple[int, int, int] = (1, 2, 4)
    temporal_padding: Literal["circular", "zeros"] = "circular"
    wrap_rows: int = 0
    data_consistency: Literal["hard", "noise", "cg"] = "hard"
    cg_iterations: int = 5
    cg_lam_floor: float = 0.1
    composite_input: Literal["none", "average", "missing", "nearest"] = "none"
    mean_consistency: bool = False

    def check(self) -> None:
        if self.channels < 1 or self.cascades < 1:
            raise InputError(f"channels and cascades must be >= 1, got {self.channels}, {self.cascades}")
        if self.bank_depth < 0:
            raise InputError(f"bank_depth must be 0 (all) or a positive K, got {self.bank_depth}")
        if self.fusion == "none" and self.bank_depth:
            raise InputError("bank_depth needs a feature bank (fusion 'conv' or 'ca')")
        if self.bank_projection == "sum" and self.fusion != "ca":
            raise InputError(f"bank_projection 'sum' weights the bank by channel attention: it needs fusion 'ca', "
                             f"got fusion {self.fusion!r}")
        if self.ca_reduction < 1:
            raise InputError(f"ca_reduction must be >= 1, got {self.ca_reduction}")
        if min(self.dilations) < 1:
            raise InputError(f"dilations must be >= 1 (level 0, level 1, bottleneck), got {self.dilations}")
        check_wrap_rows(self.wrap_rows)
        if self.cg_iterations < 1:
            raise InputError(f"cg_iterations must be >= 1, got {self.cg_iterations}")
        if not self.cg_lam_floor >= 0:
            raise InputError(f"cg_lam_floor must be >= 0, got {self.cg_lam_floor}")


@dataclass(frozen=True)
class CRNNConfig(Settings):
    """CRNN-MRI (Qin et al. 2018): ``nf`` features, ``cascades`` (nc), ``layers`` (nd).

    wrap_rows : rows wrapped beyond each edge along y, as :attr:`CRUNetConfig.wrap_rows`.
    """

    WHERE = "model.crnn"

    channels: int = 64
    cascades: int = 5
    layers: int = 5
    wrap_rows: int = 0

    def check(self) -> None:
        if min(self.channels, self.cascades, self.layers) < 1:
            raise InputError("channels, cascades and layers must be >= 1")
        check_wrap_rows(self.wrap_rows)
        if self.layers < 3:
            raise InputError(f"CRNN-MRI needs at least 3 layers (BCRNN, CRNN, output), got {self.layers}")


@dataclass(frozen=True)
class PromptMRConfig(Settings):
    """PromptMR (Xin et al., STACOM 2023; :mod:`recon.models.promptmr`). Defaults: the paper's size.

    cascades : unrolled cascades, each a soft k-space DC step and a PromptUNet (paper: 12).
    adjacent_frames : frames stacked as channels around each target frame, odd (paper: 5).
    channels : features of the first convolution, the full-resolution level (``n_feat0``, 48).
    feature_dims : channels after each of the three 2x downsamplings (72, 96, 120).
    prompt_dims : prompt channels of the decoder levels, full- to low-resolution (24, 48, 72).
    prompt_components : learned prompt components per decoder level (5, 5, 5).
    prompt_sizes : spatial size (square) of the prompt components per decoder level (64, 32, 16).
    encoder_blocks, decoder_blocks, skip_blocks : channel-attention blocks (CABs) per level
        ((2, 3, 3), (2, 2, 3), (1, 1, 1)); ``bottleneck_blocks`` CABs at the lowest level (3).
    ca_reduction : squeeze ratio of the channel attention (4).
    channel_attention : False drops the attention from every CAB (the reference's ``no_use_ca``).
    learnable_prompt : True trains the prompt components (the paper's description); False
        keeps them at their random initialisation, as the reference code does by default.
    checkpoint : recompute each cascade in the backward pass (saves memory in training; the
        reference's ``use_checkpoint``); no effect on results or at inference.
    wrap_rows : rows wrapped beyond each edge along y, as :attr:`CRUNetConfig.wrap_rows`.
    """

    WHERE = "model.promptmr"

    cascades: int = 12
    adjacent_frames: int = 5
    channels: int = 48
    feature_dims: tuple[int, int, int] = (72, 96, 120)
    prompt_dims: tuple[int, int, int] = (24, 48, 72)
    prompt_components: tuple[int, int, int] = (5, 5, 5)
    prompt_sizes: tuple[int, int, int] = (64, 32, 16)
    encoder_blocks: tuple[int, int, int] = (2, 3, 3)
    decoder_blocks: tuple[int, int, int] = (2, 2, 3)
    skip_blocks: tuple[int, int, int] = (1, 1, 1)
    bottleneck_blocks: int = 3
    ca_reduction: int = 4
    channel_attention: bool = True
    learnable_prompt: bool = True
    checkpoint: bool = False
    wrap_rows: int = 0

    def check(self) -> None:
        if self.cascades < 1 or self.channels < 1:
            raise InputError(f"cascades and channels must be >= 1, got {self.cascades}, {self.channels}")
        if self.adjacent_frames < 1 or self.adjacent_frames % 2 == 0:
            raise InputError(f"adjacent_frames must be odd and >= 1 (the target frame in the middle), "
                             f"got {self.adjacent_frames}")
        for name in ("feature_dims", "prompt_dims", "prompt_components", "prompt_sizes", "encoder_blocks",
                     "decoder_blocks", "skip_blocks"):
            values = tuple(getattr(self, name))
            least = 0 if name == "skip_blocks" else 1
            if len(values) != 3 or min(values) < least:
                raise InputError(f"{name} must hold 3 values (one per level) >= {least}, got {values}")
        if self.bottleneck_blocks < 0:
            raise InputError(f"bottleneck_blocks must be >= 0, got {self.bottleneck_blocks}")
        if self.ca_reduction < 1:
            raise InputError(f"ca_reduction must be >= 1, got {self.ca_reduction}")
        check_wrap_rows(self.wrap_rows)


@dataclass(frozen=True)
class ModelConfig(Settings):
    """Which model, with its settings: ``name`` selects ``crunet``, ``crnn`` or ``promptmr``."""

    WHERE = "model"

    name: Literal["crunet", "crnn", "promptmr"] = "crunet"
    crunet: CRUNetConfig = field(default_factory=CRUNetConfig)
    crnn: CRNNConfig = field(default_factory=CRNNConfig)
    promptmr: PromptMRConfig = field(default_factory=PromptMRConfig)


#: Model settings that no parameter depends on: fine-tuning (``train.init_weights``) may change them.
PARAMETER_FREE_FIELDS = ("wrap_rows", "mean_consistency")


def same_parameters(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether ``a`` and ``b`` build the same model up to :data:`PARAMETER_FREE_FIELDS`."""
    def neutral(cfg: ModelConfig) -> ModelConfig:
        subs = {name: replace(sub, **{f: 0 for f in PARAMETER_FREE_FIELDS if hasattr(sub, f)})
                for name, sub in ((n, getattr(cfg, n)) for n in ("crunet", "crnn", "promptmr"))}
        return replace(cfg, **subs)

    return neutral(a) == neutral(b)
