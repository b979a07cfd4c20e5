"""The one reconstruction pipeline every entry point calls.

``SliceData -> coil maps -> method -> frames [t, y, x] -> ISMRMRD images``.
``crunet recon-file``, the standalone server, the Gadgetron gadget, the demo,
``crunet evaluate`` and ``crunet bench`` all go through :func:`reconstruct_slice` /
:func:`slice_to_images`; none of them re-implements a step. The default method is
the trained CRUNet-MR w/ CA, ``crunet_ca``, its weights found by name
(:func:`recon.weights.resolve_weights`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import ismrmrd
import numpy as np
import torch

from recon.errors import InputError
from recon.coils.estimate import CoilMethod
from recon.config import Settings
from recon.io.images import ImageType, check_index, slice_images
from recon.kspace import to_recon_grid
from recon.machine import Device, resolve_device
from recon.noise import NOISE_SIGMA_KEY, check_sigma
from recon.problem import SliceProblem
from recon.slicedata import SliceData
from recon.weights import DEFAULT_WEIGHTS

#: The default method everywhere: trained CRUNet-MR w/ CA, weights by name (recon.weights).
DEFAULT_METHOD = DEFAULT_WEIGHTS


#: The most coils an ISMRMRD acquisition can flag active (16 channel-mask words of 64 bits).
MAX_VIRTUAL_COILS = 1024


@dataclass(frozen=True)
class ReconConfig(Settings):
    """How to reconstruct a slice.

    method : ``crunet_ca`` (default: CRUNet-MR with the channel-attention feature bank)
        or another installed weights name (``crunet``, ``crunet_conv``, ``crnn``), a
        classical method (``zf``, ``sense``, ``lps``), or ``model`` with
        ``options={"weights": <directory or name>}``; see :mod:`recon.methods`.
    coil_method : ``espirit`` or ``walsh`` (maps from the ACS, time-averaged).
    coil_second_set : ESPIRiT only: merge ESPIRiT's second map set where two sensitivities
        share a pixel, the object being cut by the field of view along y
        (:mod:`recon.coils.merge`; off: the first set alone, as BART ``ecalib -m1``).
    device : ``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``.
    image_type : ``magnitude`` or ``complex`` images out.
    series_index : ``image_series_index`` of the output images.
    options : method options (e.g. ``{"n_iter": 50}``).
    virtual_coils : compress the coils to this many SVD virtual coils (from the
        time-averaged ACS, :func:`recon.coils.compress_slice`) before the coil maps and the
        method: every FFT and coil sum of the reconstruction scales with the coil count.
        0 (the default) or at least the slice's coil count keeps every coil.
    """

    WHERE = "reconstruction settings"

    method: str = DEFAULT_METHOD
    coil_method: CoilMethod = "espirit"
    coil_second_set: bool = True
    device: Device = "auto"
    image_type: ImageType = "magnitude"
    series_index: int = 1
    options: dict = field(default_factory=dict)
    virtual_coils: int = 0

    def check(self) -> None:
        """A learned method must resolve to installed weights; a method's options must be its own;
        ``cuda`` needs CUDA here (types are checked by :meth:`validate`)."""
        from recon.methods import check_method, check_options

        check_method(self.method)
        check_options(self.method, self.options)
        if self.method == "model" and not self.options.get("weights"):
            raise InputError("method 'model' needs weights (a trained weights directory or the name "
                             "of installed weights)")
        resolve_device(self.device)
        check_index("series_index", self.series_index)
        if not 0 <= self.virtual_coils <= MAX_VIRTUAL_COILS:
            raise InputError(f"virtual_coils must lie in [0, {MAX_VIRTUAL_COILS}] (0: every coil), "
                             f"got {self.virtual_coils}")

    def check_ready(self) -> "ReconConfig":
        """:meth:`validate`, then load a learned method's weights on the device (cached for the
        slices), so that missing or broken weights stop a run before any data is read. Returns self."""
        self.validate()
        weights = self.weights()
        if weights:
            from recon.inference import load_cached

            device = torch.empty(0, device=self.torch_device()).device  # "cuda:0", as the tensors will be
            load_cached(weights, device)
        return self

    def torch_device(self) -> torch.device:
        """The device to compute on (:func:`recon.machine.resolve_device`)."""
        return resolve_device(self.device)

    def weights(self) -> str | None:
        """The weights (directory or name) of a learned method, None for a classical one."""
        from recon.methods import CLASSICAL

        if self.method in CLASSICAL:
            return None
        if self.method == "model":
            return str(self.options.get("weights") or "") or None
        return self.method

    def refine(self) -> str | None:
        """A learned method's ``refine`` option as it runs (the default when not given, as text),
        None for a classical one."""
        if not self.weights():
            return None
        from recon.inference import DEFAULT_REFINE

        return str(self.options.get("refine", DEFAULT_REFINE))

    def comment(self, refine_skipped: bool = False) -> str:
        """ImageComment: the method, for a learned one its architecture and weights hash, the coil maps.

        E.g. ``crunet sense, espirit maps``, ``crunet sense (lam=0.01), espirit maps`` or
        ``crunet crunet_ca (refine=auto): CRUNet-MR 16ch x5 fusion ca (bank all)
        sha256:0123456789ab, espirit maps`` (the options given, but the weights, in brackets).
        ``refine_skipped``: the slice's ``refine=motion`` did not run (no noise level,
        :attr:`SliceResult.refine_skipped`): the comment says ``refine=off (motion: no noise level)``.
        """
        text = f"crunet {self.method}"
        chosen = {k: v for k, v in sorted(self.options.items()) if k != "weights" and not callable(v)}
        weights = self.weights()
        if weights:  # a learned method's images say whether CG-SENSE refined them
            from recon.inference import MOTION

            refine = self.refine()
            if refine_skipped and refine == MOTION:
                refine = f"off ({MOTION}: no noise level)"
            chosen = dict(sorted({**chosen, "refine": refine}.items()))
        if chosen:  # the method's options as given (refine, lam, ...): images tell how they were made
            text += " (" + ", ".join(f"{k}={v}" for k, v in chosen.items()) + ")"
        if weights:
            from recon.weights import weights_info

            label = Path(weights).name if self.method == "model" else ""
            try:
                described = weights_info(weights).describe()
            except (InputError, OSError):  # the comment never fails a reconstruction
                described = "weights unreadable"
            text += (f" {label}" if label else "") + f": {described}"
        coils = f", {self.virtual_coils} virtual coils" if self.virtual_coils else ""
        first = " (first set only)" if self.coil_method == "espirit" and not self.coil_second_set else ""
        return f"{text}, {self.coil_method} maps{first}{coils}"


#: Methods compared by default (``crunet evaluate``, ``crunet bench``): classical, then the learned default.
COMPARED_METHODS = ("zf", "sense", "lps", DEFAULT_METHOD)


def compared_methods(methods: Sequence[str] | None, weights: Sequence[str | Path] = ()) -> tuple[str, ...]:
    """The method names to compare: ``methods`` when given, else :data:`COMPARED_METHODS`
    (only its classical ones when ``weights`` directories bring the learned methods)."""
    from recon.methods import CLASSICAL

    if methods is not None:
        return tuple(methods)
    return tuple(m for m in COMPARED_METHODS if m in CLASSICAL or not weights)


def parse_method(label: str) -> tuple[str, dict]:
    """``name`` or ``name:key=value,key=value`` -> ``(name, options)``.

    Values are numbers when they parse as numbers (``sense:lam=0.01``,
    ``lps:lambda_l=0.01,lambda_s=0.0025``), else strings (``sense:lam=auto``)."""
    name, _, rest = label.partition(":")
    options: dict = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise InputError(f"method '{label}': options must read key=value, got '{item}'")
        try:
            options[key] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            options[key] = value
    return name, options


def method_configs(methods: Sequence[str] = (), weights: Sequence[str | Path] = (),
                   **common) -> dict[str, ReconConfig]:
    """Label -> validated :class:`ReconConfig` for several methods side by side.

    methods : method names (classical or installed weights names), labelled by name;
        ``name:key=value,...`` sets options (:func:`parse_method`), e.g. ``sense:lam=0``.
    weights : weights directories (or names), each run as method ``model``, labelled by
        the folder name (the whole path when that name is taken).
    common : the other ReconConfig fields, shared by all.
    """
    out: dict[str, ReconConfig] = {}
    for m in methods:
        if m in out:
            raise InputError(f"method '{m}' given twice")
        name, options = parse_method(m)
        out[m] = ReconConfig(method=name, options=options, **common).validate()
    for w in weights:
        label = Path(w).name if Path(w).name not in out else str(w)
        if label in out:
            raise InputError(f"weights '{w}' given twice")
        out[label] = ReconConfig(method="model", options={"weights": str(w)}, **common).validate()
    if not out:
        raise InputError("no methods given")
    return out


@dataclass
class SliceResult:
    """Frames ``[t, y, x]`` (complex64, recon grid), the coil maps ``[c, y, x]`` and timings of one slice.

    seconds_maps : the coil-map estimate (0 when the maps were given);
    seconds_method : the method alone (what ``crunet evaluate`` / ``crunet bench`` compare);
    seconds_prepare : k-space, mask and maps onto the recon grid and the device.
    refine_skipped : why a learned method's ``refine=motion`` did not run on this slice (no
        noise level to weight it by), None when it ran or was not asked for.
    """

    frames: np.ndarray
    maps: np.ndarray
    seconds_maps: float
    seconds_method: float
    seconds_prepare: float = 0.0
    refine_skipped: str | None = None


def reconstruct_slice(s: SliceData, cfg: ReconConfig = ReconConfig(), maps: np.ndarray | None = None
                      ) -> SliceResult:
    """Estimate maps and run the configured method on one slice.

    s : the slice (k-space ``[t, c, ky, kx]``, ACS, headers).
    cfg : method, coil maps, device.
    maps : coil maps ``[c, y, x]`` on the recon grid already estimated for this slice
        (e.g. ``result.maps`` of an earlier call, so that several methods share one
        estimate); None estimates them with ``cfg.coil_method`` (``seconds_maps`` is 0
        when they are given). With ``cfg.virtual_coils`` they are the virtual coils' maps.
    """
    from recon.methods import run_method
    from recon.coils import compress_slice, estimate_maps

    cfg.validate()
    device = cfg.torch_device()
    t0 = time.perf_counter()
    if 0 < cfg.virtual_coils < s.n_coils:  # the maps' time counts the compression
        s = compress_slice(s, n_virtual=cfg.virtual_coils)[0]
    if maps is None:
        maps = estimate_maps(s, method=cfg.coil_method, second_set=cfg.coil_second_set)
    t1 = time.perf_counter()
    problem = prepare(s, maps=maps, device=device)
    sync_device(device)
    t2 = time.perf_counter()
    with torch.inference_mode():
        frames = run_method(cfg.method, problem, **cfg.options)
    sync_device(device)
    t3 = time.perf_counter()
    skipped, refine = None, cfg.refine()
    if refine is not None:  # a learned method (a classical one imports nothing more)
        from recon.inference import MOTION
        from recon.refine import motion_skip_reason

        skipped = motion_skip_reason(problem) if refine == MOTION else None
    return SliceResult(frames.detach().cpu().numpy().astype(np.complex64), np.asarray(maps), t1 - t0, t3 - t2,
                       t2 - t1, skipped)


def sync_device(device: torch.device) -> None:
    """Wait for queued CUDA work, so that wall-clock timings are the device's."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def slice_to_images(s: SliceData, cfg: ReconConfig = ReconConfig(), start_index: int = 1
                    ) -> tuple[list[ismrmrd.Image], SliceResult]:
    """Reconstruct one slice and build its ISMRMRD images (one per frame)."""
    result = reconstruct_slice(s, cfg)
    seconds = {"CrunetSecondsMaps": f"{result.seconds_maps:.3f}",
               "CrunetSecondsMethod": f"{result.seconds_method:.3f}"}
    images = slice_images(result.frames, s, series_index=cfg.series_index, image_type=cfg.image_type,
                          comment=cfg.comment(refine_skipped=result.refine_skipped is not None),
                          start_index=start_index, extra_meta=seconds)
    return images, result


def prepare(
    s: SliceData,
    maps: np.ndarray | torch.Tensor | None = None,
    coil_method: str = "espirit",
    device: str | torch.device = "cpu",
    **coil_options,
) -> SliceProblem:
    """Build the problem of one slice.

    Parameters
    ----------
    s : assembled slice (encoded grid).
    maps : coil maps ``[c, y, x]`` on the recon grid; estimated from the ACS with
        ``coil_method`` (see :func:`recon.coils.estimate_maps`) when None.
    device : torch device of the returned tensors.

    The problem's ``noise_sigma`` is the slice's noise-scan value when it carries one
    (``s.extra[NOISE_SIGMA_KEY]``, set by :func:`recon.io.raw.read_raw` and the chain),
    else None: methods that need the noise level call :func:`noise_level`, which then
    estimates it, so zero-filling and the learned models pay nothing for it.
    """
    k = to_recon_grid(s.kspace, s.encoding.recon_matrix)
    if k.shape[-2] != s.mask.shape[-1]:
        raise InputError(
            f"slice {s.slice_index}: phase-encode oversampling ({s.mask.shape[-1]} encoded lines, "
            f"{k.shape[-2]} recon lines) is not supported by line masks"
        )
    if maps is None:
        from recon.coils import estimate_maps

        maps = estimate_maps(s, method=coil_method, **coil_options)
    maps_t = torch.as_tensor(np.asarray(maps) if not torch.is_tensor(maps) else maps).to(torch.complex64)
    if tuple(maps_t.shape) != (k.shape[1],) + tuple(k.shape[-2:]):
        raise InputError(f"coil maps shape {tuple(maps_t.shape)} does not match k-space coils/grid "
                         f"{(k.shape[1],) + tuple(k.shape[-2:])}")
    return SliceProblem(
        kspace=torch.from_numpy(np.ascontiguousarray(k, dtype=np.complex64)).to(device),
        mask=torch.from_numpy(np.ascontiguousarray(s.mask)).to(device),
        maps=maps_t.to(device),
        noise_sigma=_scan_sigma(s),
    )


def _scan_sigma(s: SliceData) -> float | None:
    scan = s.extra.get(NOISE_SIGMA_KEY)
    return None if scan is None else check_sigma(scan, f"slice {s.slice_index}: noise sigma of the noise scan")
