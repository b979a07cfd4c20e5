"""Training configuration: ``RunConfig {model, data, train}``, loaded from YAML and validated.

A run is reproducible from its YAML file alone (DIRECT style): unknown keys are
errors (:func:`recon.config.from_dict`), every value is type-checked, and the
resolved config is written into the run folder. See ``configs/`` for the checked-in
configurations.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from recon.config import Settings, from_dict, load_yaml, validated
from recon.errors import InputError
from recon.models.config import ModelConfig
from recon.simulate.acquisition import HELDOUT_SPACE, TRAIN_SPACE, AcquisitionSpace


@dataclass(frozen=True)
class DataConfig(Settings):
    """Where training samples come from and how they are made (:mod:`recon.train.data`,
    :mod:`recon.train.samples`, :mod:`recon.train.series`).

    source : ``simulated`` (on the fly: real magnitude series or the phantom, through
        the forward model and the inference path) or ``ismrmrd`` (raw files with a
        ``ground_truth`` reference, e.g. from ``crunet simulate``).
    images : simulated only. ``auto`` uses the real series in ``data_dir`` (default
        :func:`recon.simulate.realdata.default_data_dir`) and falls back to the phantom
        when there are none; ``real`` requires them; ``phantom`` never uses them.
    data_dir : folder of ``.npz`` cine series; None = the default search.
    holdout : stems of series files (patients) kept out of training and used for
        validation; absent stems are ignored. With no held-out series, validation uses
        phantoms (with seeds no training sample uses). The shipped split is recorded in
        ``weights/SPLIT.md``.
    phantom_fraction : share of training samples drawn from the phantom when real
        series are used.
    train_space : the acquisitions training samples (and the in-distribution
        validation set) are drawn from (:class:`recon.simulate.acquisition.AcquisitionSpace`;
        default :data:`~recon.simulate.acquisition.TRAIN_SPACE`).
    heldout_space : the acquisitions of the held-out-acquisition validation set
        (default :data:`~recon.simulate.acquisition.HELDOUT_SPACE`: a coil model, coil
        counts and a noise band training never sees).
    pixels_per_sample : training strips hold about this many pixels over all frames
        (readout width ``pixels / (frames * ny)``, multiple of 8, >= 16); None trains on
        whole slices. 12 x 128 x 32 = 49152 keeps a CPU step near 2 s at 16 channels.
    scene_reuse : training samples cut from each simulated slice (each with its own R,
        mask shift and strip; :mod:`recon.train.samples`): the simulation costs more than a
        CPU training step, so it is amortised over this many steps.
    crop_scale : random crop of a real series, as a fraction ``(lo, hi)`` of the
        largest crop of the matrix's aspect ratio, before it is fitted to the matrix.
    seam_rows : with ``augment``, the rows over which the two cut edges of a real series'
        crop are cross-faded into each other (:func:`recon.train.samples.join_cut_rows`) so
        that the move along y leaves no seam; 0 = the cut stays a horizontal seam wherever
        the move puts it (the shipped weights were trained so; ``docs/design.md`` §3).
    augment : random 90-degree rotations, flips, temporal reversal and roll of the
        image series, and a random circular move of the fitted frames along y
        (:func:`recon.train.samples.move_along_y`).
    deform : with ``augment``, the strength of a random rotation (up to 45 degrees), anisotropic
        scaling and elastic warp of each real training series
        (:func:`recon.train.samples.deform_series`: at 1, scales up to ``exp(+-0.2)`` and
        elastic shifts up to 3 % of the side); 0 (the default, as the shipped weights were
        trained) = none. More anatomy from few patients; validation series are never warped.
    maps : ``espirit`` (estimated from the noisy ACS by the inference code path: what
        every entry point reconstructs with) or ``true`` (the simulated sensitivities,
        for ablations only: a model trained on true maps loses ~4 dB on ESPIRiT maps).
    coil_grid : the coil fields are computed on a ``coil_grid`` square grid and
        cubic-interpolated (:func:`recon.simulate.coils.coil_maps`).
    train_files, val_files : ismrmrd only: raw files (glob patterns allowed).
    val_samples : samples in each simulated validation set (fixed, made once per run).
    val_acceleration : R of every validation sample (the paper's headline R = 8).
    val_seed : seed of the validation sets.
    workers : DataLoader worker processes making samples (0 = in the training process).
    """

    WHERE = "data"

    source: Literal["simulated", "ismrmrd"] = "simulated"
    images: Literal["auto", "real", "phantom"] = "auto"
    data_dir: str | None = None
    holdout: tuple[str, ...] = ("sunnybrook_SCD0000401_sax_cine",)
    phantom_fraction: float = 0.1
    train_space: AcquisitionSpace = TRAIN_SPACE
    heldout_space: AcquisitionSpace = HELDOUT_SPACE
    pixels_per_sample: int | None = 49152
    scene_reuse: int = 4
    crop_scale: tuple[float, float] = (0.6, 1.0)
    seam_rows: int = 0
    augment: bool = True
    deform: float = 0.0
    maps: Literal["espirit", "true"] = "espirit"
    coil_grid: int = 48
    train_files: tuple[str, ...] = ()
    val_files: tuple[str, ...] = ()
    val_samples: int = 4
    val_acceleration: int = 8
    val_seed: int = 1_000_003
    workers: int = 0

    def check(self) -> None:
        if self.val_acceleration < 1:
            raise InputError(f"val_acceleration must be >= 1, got {self.val_acceleration}")
        if self.pixels_per_sample is not None and self.pixels_per_sample < 16:
            raise InputError(f"pixels_per_sample must be >= 16 (or null), got {self.pixels_per_sample}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise InputError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        if not 0 <= self.deform <= 3:
            raise InputError(f"deform must lie in [0, 3], got {self.deform}")
        if self.seam_rows < 0:
            raise InputError(f"seam_rows must be >= 0, got {self.seam_rows}")
        if not 0 <= self.phantom_fraction <= 1:
            raise InputError(f"phantom_fraction must lie in [0, 1], got {self.phantom_fraction}")
        if self.scene_reuse < 1:
            raise InputError(f"scene_reuse must be >= 1, got {self.scene_reuse}")
        if self.coil_grid < 8:
            raise InputError(f"coil_grid must be >= 8, got {self.coil_grid}")
        if self.val_samples < 1:
            raise InputError(f"val_samples must be >= 1, got {self.val_samples}")
        if self.workers < 0:
            raise InputError(f"workers must be >= 0, got {self.workers}")
        if self.source == "ismrmrd" and not (self.train_files and self.val_files):
            raise InputError("source 'ismrmrd' needs train_files and val_files (raw files with ground truth)")


@dataclass(frozen=True)
class LossConfig(Settings):
    """Weights of the loss terms (:mod:`recon.train.loss`); 0 switches a term off.

    Defaults are the reference's: ``0.25 * kspace_mse + 0.5 * (image_mse + image_l1)
    + 0.5 * ((1 - SSIM(real)) + (1 - SSIM(imag)))``.
    """

    WHERE = "train.loss"

    kspace_mse: float = 0.25
    image_mse: float = 0.5
    image_l1: float = 0.5
    ssim: float = 0.5
    ssim_window: int = 7
    dynamic_mse: float = 0.0  # ours, off in the reference recipe: image MSE weighted towards what moves

    def check(self) -> None:
        weights = (self.kspace_mse, self.image_mse, self.image_l1, self.ssim, self.dynamic_mse)
        if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
            raise InputError(f"loss weights must be >= 0 and not all 0, got {weights}")
        if self.ssim_window < 3 or self.ssim_window % 2 == 0:
            raise InputError(f"ssim_window must be an odd integer >= 3, got {self.ssim_window}")


@dataclass(frozen=True)
class TrainConfig(Settings):
    """Optimisation (paper: AdamW lr 3e-4, weight decay 1e-3, batch 1, 144 epochs,
    cosine annealing to 1e-4 after 10 linear warm-up epochs).

    steps_per_epoch : optimiser steps per epoch (on-the-fly data has no natural epoch).
    batch_size : samples per step per process (DDP: the global batch is
        ``batch_size * world_size``).
    grad_clip : clip the global gradient norm to this value; null = no clipping.
    seed : seeds the model initialisation and the training samples.
    device : ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    threads : torch CPU threads; null = torch's default.
    precision : ``fp32`` (the shipped recipe) or ``bf16``: the forward pass under bfloat16
        autocast (loss, gradients' accumulation and optimiser in fp32). Measured on the
        project's AVX512-BF16 CPU (crunet_ca 16 ch, one 12 x 128 x 32 strip, 1 thread):
        0.55 s per step against 0.70 s in fp32.
    init_weights : start from these weights (a shipped name such as ``crunet_ca`` or a
        weights folder) instead of a random initialisation, i.e. fine-tune them with this
        run's schedule and data; their model config must equal ``model``. null = random.
        Use another ``seed`` than the first run's so that the fine-tuning sees new samples.
    init_widen : with ``init_weights`` naming a CRUNet-MR of fewer ``channels`` (and
        otherwise this run's model): widen it to this run's width so that it computes the
        same images at step 0 (:mod:`recon.models.widen`), then train. A wider model
        starts where the narrow one's training ended instead of from scratch.
    init_pointwise_bank : with ``init_weights`` naming a CRUNet-MR with the 3x3 bank
        projection and this run's model the same with ``bank_projection: 1x1``: each 1x1
        projection starts as the sum of the 3x3 kernel's taps, every other weight copied
        (:mod:`recon.models.reproject`), then train: the cheaper bank without training
        the whole network again.
    lr_scale : ``{name part: factor}``: parameters whose name contains the part learn at the
        scheduled rate times the factor (the first matching part in the mapping's order
        counts; the part ``""`` matches every name, so put it last for "the rest"). A factor
        0 keeps those parameters as they are. For parameters a fine-tuning adds at zero
        (``composite_head`` with ``composite_input``): Adam moves each weight by about the
        rate per step, far too little at a fine-tuning's rate for a weight that has to grow
        from zero; or train them alone (``{composite_head: 1, "": 0}``).
    val_every : validate every N epochs (and after the last).
    max_minutes : a wall-time budget: after the first epoch the run plans as many epochs
        as fit it (at most ``epochs``), so the schedule still ends at ``min_lr``; null = none.
    """

    WHERE = "train"

    epochs: int = 144
    steps_per_epoch: int = 1000
    batch_size: int = 1
    lr: float = 3e-4
    min_lr: float = 1e-4
    weight_decay: float = 1e-3
    warmup_epochs: int = 10
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = None
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    init_weights: str | None = None
    init_widen: bool = False
    init_pointwise_bank: bool = False
    lr_scale: dict[str, float] = field(default_factory=dict)
    val_every: int = 1
    max_minutes: float | None = None
    loss: LossConfig = field(default_factory=LossConfig)

    def check(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size", "val_every"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_epochs < 0:
            raise InputError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not 0 < self.lr or not 0 <= self.min_lr <= self.lr:
            raise InputError(f"need 0 <= min_lr <= lr and lr > 0, got lr={self.lr}, min_lr={self.min_lr}")
        if self.weight_decay < 0:
            raise InputError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not all(0 <= b < 1 for b in self.betas):
            raise InputError(f"betas must lie in [0, 1), got {self.betas}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise InputError(f"grad_clip must be > 0 or null, got {self.grad_clip}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise InputError(f"max_minutes must be > 0 or null, got {self.max_minutes}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads must be >= 1 or null, got {self.threads}")
        if self.init_weights is not None and not str(self.init_weights).strip():
            raise InputError("init_weights must name weights (a shipped name or a folder) or be null")
        if self.init_widen and self.init_weights is None:
            raise InputError("init_widen needs init_weights: the narrower weights to widen")
        if self.init_pointwise_bank and self.init_weights is None:
            raise InputError("init_pointwise_bank needs init_weights: the weights with the 3x3 bank projection")
        for part, factor in self.lr_scale.items():
            if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not factor >= 0:
                raise InputError(f"lr_scale maps a parameter name part to a factor >= 0, got {part!r}: {factor!r}")
        if self.lr_scale and not any(self.lr_scale.values()):
            raise InputError(f"lr_scale {self.lr_scale} keeps every parameter fixed: nothing would train")
        if self.init_pointwise_bank and self.init_widen:
            raise InputError("init_pointwise_bank and init_widen cannot be combined: convert in two runs")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def warmup_steps(self) -> int:
        return self.warmup_epochs * self.steps_per_epoch


@dataclass(frozen=True)
class RunConfig(Settings):
    """One training run: which model, which data, how to optimise."""

    WHERE = "run config"

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def load_run_config(path: str | Path) -> RunConfig:
    """Load and validate a :class:`RunConfig` from YAML (unknown keys are errors)."""
    return from_dict(RunConfig, load_yaml(path), where=str(path))


def with_overrides(cfg: RunConfig, *, epochs: int | None = None, steps_per_epoch: int | None = None,
                   device: str | None = None, max_minutes: float | None = None,
                   threads: int | None = None) -> RunConfig:
    """A copy of ``cfg`` with command-line overrides applied and validated."""
    changes = {k: v for k, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch),
                                 ("device", device), ("max_minutes", max_minutes),
                                 ("threads", threads)) if v is not None}
    if not changes:
        return cfg
    return replace(cfg, train=validated(replace(cfg.train, **changes), "command-line options"))
