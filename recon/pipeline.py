"""The one reconstruction pipeline every entry point calls.

``SliceData -> coil maps -> method -> frames [t, y, x] -> ISMRMRD images``.
``crunet recon-file``, the standalone server, the Gadgetron gadget and the demo all
go through :func:`reconstruct_slice` / :func:`slice_to_images`; none of them
re-implements a step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import ismrmrd
import numpy as np
import torch

from recon.errors import InputError
from recon.io.images import IMAGE_TYPES, slice_images
from recon.problem import prepare
from recon.slicedata import SliceData

COIL_METHODS = ("espirit", "walsh")


@dataclass(frozen=True)
class ReconConfig:
    """How to reconstruct a slice.

    method : a name of :data:`recon.baselines.registry.METHODS` (``zf``, ``sense``, ``lps``).
    coil_method : ``espirit`` or ``walsh`` (maps from the ACS, time-averaged).
    device : ``cpu``, ``cuda`` or ``auto`` (CUDA when available).
    image_type : ``magnitude`` or ``complex`` images out.
    series_index : ``image_series_index`` of the output images.
    options : method options (e.g. ``{"n_iter": 50}``).
    """

    method: str = "sense"
    coil_method: str = "espirit"
    device: str = "cpu"
    image_type: str = "magnitude"
    series_index: int = 1
    options: dict = field(default_factory=dict)

    def validate(self) -> "ReconConfig":
        from recon.baselines.registry import METHODS

        if self.method not in METHODS:
            raise InputError(f"unknown method '{self.method}'; choose one of {sorted(METHODS)}")
        if self.coil_method not in COIL_METHODS:
            raise InputError(f"unknown coil method '{self.coil_method}'; choose one of {COIL_METHODS}")
        if self.image_type not in IMAGE_TYPES:
            raise InputError(f"unknown image type '{self.image_type}'; choose one of {sorted(IMAGE_TYPES)}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise InputError(f"device must be cpu, cuda or auto, got '{self.device}'")
        return self

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise InputError("device 'cuda' requested but CUDA is not available on this machine")
        return torch.device(self.device)

    def comment(self) -> str:
        """ImageComment: the method, the coil maps and, for a learned model, its weights."""
        text = f"crunet {self.method} ({self.coil_method} maps)"
        weights = self.options.get("weights")
        if weights:
            from pathlib import Path

            from recon.weights import read_manifest

            try:
                sha = read_manifest(Path(weights))["files"]["model.safetensors"]["sha256"][:12]
            except Exception:  # noqa: BLE001 - the comment never fails a reconstruction
                sha = ""
            text += f" weights {Path(weights).name}" + (f" sha256:{sha}" if sha else "")
        return text


@dataclass
class SliceResult:
    """Frames ``[t, y, x]`` (complex64, recon grid) and timings of one slice."""

    frames: np.ndarray
    maps: np.ndarray
    seconds_maps: float
    seconds_method: float


def reconstruct_slice(s: SliceData, cfg: ReconConfig = ReconConfig()) -> SliceResult:
    """Estimate maps and run the configured method on one slice."""
    from recon.baselines.registry import run_method
    from recon.coils import estimate_maps

    cfg.validate()
    device = cfg.torch_device()
    t0 = time.perf_counter()
    maps = estimate_maps(s, method=cfg.coil_method)
    t1 = time.perf_counter()
    problem = prepare(s, maps=maps, device=device)
    with torch.inference_mode():
        frames = run_method(cfg.method, problem, **cfg.options)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    return SliceResult(frames.detach().cpu().numpy().astype(np.complex64), np.asarray(maps), t1 - t0, t2 - t1)


def slice_to_images(s: SliceData, cfg: ReconConfig = ReconConfig(), start_index: int = 1
                    ) -> tuple[list[ismrmrd.Image], SliceResult]:
    """Reconstruct one slice and build its ISMRMRD images (one per frame)."""
    result = reconstruct_slice(s, cfg)
    seconds = {"CrunetSecondsMaps": f"{result.seconds_maps:.3f}",
               "CrunetSecondsMethod": f"{result.seconds_method:.3f}"}
    images = slice_images(result.frames, s, series_index=cfg.series_index, image_type=cfg.image_type,
                          comment=cfg.comment(), start_index=start_index, extra_meta=seconds)
    return images, result
