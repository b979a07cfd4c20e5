"""PromptMR (Xin, Ye, Axel, Metaxas, STACOM 2023: "Fill the K-Space and Refine the Image:
Prompting for Dynamic and Multi-Contrast MRI Reconstruction"), with given coil maps.

The strongest published baseline of the CRUNet-MR paper. Learned from github
hellopipu/PromptMR (``models/promptmr.py``, ``data/mri_data.py``), written anew in this
project's conventions: our centred FFT (:mod:`recon.fft`) and SENSE expand/reduce
(:mod:`recon.sense`), our per-sample normalisation (:func:`recon.models.layers.normalize`)
and channel attention (:class:`recon.models.layers.ChannelAttention`).

Architecture
------------
* **Adjacent frames as channels** (the paper's dynamic setting; reference
  ``CmrxReconSliceDataset._get_frames_indices``): the cine ``[b, t, ...]`` becomes
  ``b * t`` independent samples, one per *target* frame ``s``, each holding the
  multi-coil k-space of the ``A = adjacent_frames`` frames ``s - A//2 .. s + A//2``
  taken modulo ``t`` (the cardiac cycle wraps; with ``t < A`` frames repeat). Every
  sample is reconstructed on its own through all cascades; the result is its
  centre frame. So each frame is reconstructed from its neighbours' k-space, and
  a cine costs ``t`` such reconstructions.
* **Cascades** (E2E-VarNet lineage): the state is the multi-coil k-space ``k``
  ``[n, A, c, y, x]`` of the ``A`` frames, starting at the measured ``k0 = M k``.
  Cascade ``i`` computes ``k <- k - lambda_i M (k - k0) - F S R(S^H F^H k)``: a soft data
  consistency with a learnable weight ``lambda_i`` (initialised at 1) and the denoiser
  ``R``, the PromptUNet of the cascade on the ``A`` coil-combined frames as ``2A``
  channels (real, imaginary per frame), normalised per sample (one mean and standard
  deviation over all channels and pixels; the output is scaled back by the deviation,
  not shifted by the mean, see below) and zero-padded to
  a multiple of 8. ``S`` / ``S^H`` are the SENSE expand / reduce with the given maps.
  The output image of frame ``s`` is ``S^H F^H k`` of its sample's centre frame after
  the last cascade.
* **How the k-space update is computed** (exactly, not approximately): every state the
  update can reach is ``k = k0 + F S u + M F S w`` for two images ``u``, ``w``
  ``[n, A, y, x]`` (start ``u = w = 0``): since ``M`` is a 0/1 diagonal and ``M k0 = k0``,
  ``M (k - k0) = M F S (u + w)``, so the cascade is ``u <- u - R(x)``,
  ``w <- w - lambda_i (u + w)`` with ``x = S^H F^H k = A^H k0 + (S^H S) u + A^H A w``
  (:func:`image_of_state`; ``A = M F S``, :class:`recon.sense.SenseOperator`). The model
  keeps the pair instead of the ``c``-fold coil k-space: ``A^H k0`` is computed once per
  frame and shared by the samples that hold it, the first two cascades need no coil
  FFT at all (``w = 0`` there) and each later one a single ``A^H A``, and only
  image-sized tensors are kept for the backward pass. ``tests/test_promptmr.py`` checks
  it against the explicit coil k-space update.
* **PromptUNet** (the denoiser of every cascade, own weights per cascade): a 3x3 conv
  ``2A -> C0``; encoder: three levels, each ``n_enc`` channel-attention blocks (CAB:
  3x3 conv -> PReLU -> 3x3 conv -> channel attention, plus the input) followed by a
  3x3 stride-2 conv to the next width (``C0 -> C1 -> C2 -> C3``); the skip of each
  level through ``n_skip`` CABs; bottleneck: ``n_bott`` CABs at ``C3``; decoder, from
  the lowest level up, each level ``j``: a *prompt block* makes a prompt from the
  features ``x`` (softmax of a linear map of ``x``'s global average pool weights ``L``
  learnable prompt components ``[L, P_j, S_j, S_j]``; their weighted sum is
  bilinearly interpolated to ``x``'s size and passed through a 3x3 conv), which is
  concatenated with ``x`` and fused by ``n_dec`` CABs at ``C + P_j`` channels, a 1x1
  conv back to ``C``, a bilinear 2x upsampling, a 1x1 conv to the skip's width, the
  skip added, one CAB; last a 5x5 conv ``C0 -> 2A``. Convolutions have no bias, as in
  the reference, except the stride-2 ones.

How ours differs from the paper / reference code
------------------------------------------------
* **Coil maps are given**, not learned: our pipeline estimates ESPIRiT maps from the 24
  ACS lines (time-averaged, one set ``[c, y, x]`` for all frames) and every model gets
  them. The paper's sensitivity-map estimation network (a second, smaller PromptUNet
  run per coil on the ACS-masked k-space of each adjacent frame, maps normalised to
  unit root-sum-of-squares; 24/[36, 48, 60] channels in the reference) is not built,
  so each adjacent frame uses the same maps.
* **Complex output**: the reference returns the root-sum-of-squares magnitude of the
  centre frame's coil images and trains an SSIM loss on it; ours returns the complex
  SENSE-combined centre frame ``S^H F^H k``, like every model of this project, so it
  trains with the same complex loss as CRUNet-MR and CRNN-MRI.
* **Channel attention** is :class:`recon.models.layers.ChannelAttention` (with biases,
  squeeze bias initialised at 1 so no unit starts dead); the reference's CALayer has
  no biases. Each CAB has its own PReLU; in the reference one PReLU module (a default
  argument) is shared by every CAB of every cascade except the first block of each
  network. The first cascade has no DC weight: there ``k = k0``, its soft-DC term is
  exactly zero and the reference's weight never receives a gradient.
* **Prompt components** are trained (``learnable_prompt``, the paper's description,
  as in PromptIR); the reference code keeps them at their ``U(0, 1)`` initialisation by
  default (``learnable_input_prompt=False``). With ``learnable_prompt: false`` they are a
  buffer with that initialisation, saved with the weights.
* **The denoiser's output is not shifted by the input's mean.** The reference's
  NormPromptUnet standardises its input (a mean and a standard deviation per real and
  imaginary part) and adds the mean back to the network's output, which the cascade then
  subtracts from the state as a correction: a network that outputs zero still removes a
  constant ``mean`` from every pixel, and with bias-free convolutions on a zero-mean input
  it cannot produce the per-sample constant that would cancel it. Ours scales the output by
  the standard deviation only (a zero output is a zero correction; one mean and deviation
  per sample, :func:`recon.models.layers.normalize`). Measured with the CPU configuration
  (same initialisation and samples, lr 3e-4, 150 steps): training loss 0.54 with the mean
  added back against 0.30 without; a model trained 2,250 steps with the mean added had a
  spatially constant error of 0.56-0.86 of its error's RMS and scored below zero-filling on
  held-out acquisitions (held-out R = 8 cases: 33.7 dB against zero-filled 33.8; without the
  mean after 150 steps from scratch: 34.1).
* Zero padding to a multiple of 8 at the end of each axis (the reference pads both
  sides); any image size, frame count (``t = 1`` included) and batch size.
* **Size.** Paper / reference (CMRxRecon cine): 12 cascades, ``C0 = 48``,
  ``C1..C3 = 72, 96, 120``, prompts ``24, 48, 72`` channels, 5 components of
  ``64^2, 32^2, 16^2``, CABs ``(2, 3, 3)`` / ``(2, 2, 3)`` / ``(1, 1, 1)`` / 3, 5 adjacent
  frames: 82 M parameters with the sensitivity network (16 cascades: 108 M); built here
  with the :class:`PromptMRConfig` defaults (``configs/paper/promptmr.yaml``, no
  sensitivity network): 79.7 M. The CPU configuration (``configs/cpu/promptmr.yaml``)
  keeps the block structure, the CAB counts, the prompt components and their sizes and
  the 5 adjacent frames, with 3 cascades instead of 12 and a quarter of the widths:
  ``C0 = 12``, ``C1..C3 = 18, 24, 30``, prompts ``6, 12, 18``: 1.72 M parameters, 0.62 M
  of them prompt components. Chosen by measured seconds per training step (forward,
  backward, AdamW; 2-core CPU, torch 2.13, one thread, shared with a training run; the
  trainer's samples: 12 frames, a 128 x 32 strip, 4 / 18 / 32 coils; median of 3 rounds
  run alternately with CRUNet-MR w/ CA at 16 channels and 5 cascades,
  ``configs/cpu/crunet_ca.yaml``): 0.52-0.57 / 1.04 / 1.46-1.68 s, mean 1.02-1.08 s,
  against 0.66-0.74 / 0.76-0.91 / 1.06-1.80 s, mean 0.90-1.08 s, for CRUNet-MR w/ CA.
  4 and 5 cascades cost 1.9 and 2.3 s (mean): every cascade after the second applies
  ``A^H A`` to 5 frames per target frame, which adds about 0.6 s on average, more than
  its network; in a profile of the step most of that time is spent in the
  ``fftshift`` / ``ifftshift`` copies (``torch.roll``) of :mod:`recon.fft`, not in the FFTs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from recon.models.config import PromptMRConfig
from recon.models.layers import (
    ChannelAttention,
    channels_last,
    check_model_inputs,
    crop_to,
    normalize,
    pad_to_multiple,
    pool,
)
from recon.sense import SenseOperator

__all__ = ["PromptMR", "PromptMRCascade", "PromptUNet", "PromptBlock", "ChannelAttentionBlock", "adjacent_frame_index",
           "image_of_state"]

LEVELS = 3
PAD_MULTIPLE = 2 ** LEVELS  # three 2x downsamplings


def _conv(cin: int, cout: int, kernel: int, bias: bool = False, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=bias)


def adjacent_frame_index(frames: int, adjacent: int, device: torch.device | None = None) -> torch.Tensor:
    """``[frames, adjacent]`` frame indices: row ``s`` is ``s - adjacent//2 .. s + adjacent//2`` modulo ``frames``."""
    offsets = torch.arange(adjacent, device=device) - adjacent // 2
    return (torch.arange(frames, device=device)[:, None] + offsets[None, :]) % frames


# ---------------------------------------------------------------------------- blocks


class ChannelAttentionBlock(nn.Module):
    """CAB: ``x + CA(conv3x3(PReLU(conv3x3(x))))`` on ``[n, C, y, x]`` (no conv biases)."""

    def __init__(self, channels: int, reduction: int, attention: bool = True):
        super().__init__()
        self.conv1 = _conv(channels, channels, 3)
        self.act = nn.PReLU()
        self.conv2 = _conv(channels, channels, 3)
        self.attention = ChannelAttention(channels, reduction) if attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.conv2(self.act(self.conv1(x)))
        if self.attention is not None:
            res = self.attention(res)
        return res + x


def _cabs(n: int, channels: int, reduction: int, attention: bool) -> nn.Sequential:
    return nn.Sequential(*(ChannelAttentionBlock(channels, reduction, attention) for _ in range(n)))


class PromptBlock(nn.Module):
    """Input-adaptive prompt for decoder features ``x [n, C, h, w]`` -> ``[n, P, h, w]``.

    ``L`` prompt components ``[L, P, S, S]``, mixed per sample by ``softmax(linear(mean_{h,w} x))``
    (weights ``[n, L]``), interpolated bilinearly to ``(h, w)``, then a 3x3 conv ``P -> P``.
    ``learnable=False`` keeps the components fixed (a buffer, saved with the weights).
    """

    def __init__(self, in_channels: int, prompt_channels: int, components: int, size: int, learnable: bool):
        super().__init__()
        init = torch.rand(components, prompt_channels, size, size)
        if learnable:
            self.components = nn.Parameter(init)
        else:
            self.register_buffer("components", init)
        self.mix = nn.Linear(in_channels, components)
        self.conv = _conv(prompt_channels, prompt_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.mix(pool(x).flatten(1)), dim=1)  # [n, L]
        prompt = torch.einsum("nl,lpuv->npuv", weights, self.components.to(x.dtype))
        prompt = F.interpolate(prompt, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
        return self.conv(channels_last(prompt))


class _Down(nn.Module):
    """Encoder level: CABs at ``cin``, then a 3x3 stride-2 conv ``cin -> cout``; returns ``(down, features)``."""

    def __init__(self, cin: int, cout: int, blocks: int, reduction: int, attention: bool):
        super().__init__()
        self.blocks = _cabs(blocks, cin, reduction, attention)
        self.down = _conv(cin, cout, 3, bias=True, stride=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.blocks(x)
        return self.down(feat), feat


class _Up(nn.Module):
    """Decoder level: ``cat(x, prompt)`` -> CABs -> 1x1 to ``cin`` -> 2x bilinear up -> 1x1 to ``cout``
    -> + skip -> CAB."""

    def __init__(self, cin: int, cout: int, prompt_channels: int, blocks: int, reduction: int, attention: bool):
        super().__init__()
        self.fuse = _cabs(blocks, cin + prompt_channels, reduction, attention)
        self.reduce = _conv(cin + prompt_channels, cin, 1)
        self.project = _conv(cin, cout, 1)
        self.out = ChannelAttentionBlock(cout, reduction, attention)

    def forward(self, x: torch.Tensor, prompt: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.reduce(self.fuse(torch.cat([x, prompt], dim=1)))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.out(self.project(channels_last(x)) + skip)


class PromptUNet(nn.Module):
    """The PromptUNet of one cascade: ``[n, in, y, x] -> [n, out, y, x]`` (``y``, ``x`` multiples of 8)."""

    def __init__(self, in_channels: int, out_channels: int, cfg: PromptMRConfig):
        super().__init__()
        r, att = cfg.ca_reduction, cfg.channel_attention
        widths = (cfg.channels, *cfg.feature_dims)  # C0 .. C3
        self.head = _conv(in_channels, widths[0], 3)
        self.encoder = nn.ModuleList(
            _Down(widths[j], widths[j + 1], cfg.encoder_blocks[j], r, att) for j in range(LEVELS))
        self.skips = nn.ModuleList(_cabs(cfg.skip_blocks[j], widths[j], r, att) for j in range(LEVELS))
        self.bottleneck = _cabs(cfg.bottleneck_blocks, widths[LEVELS], r, att)
        # prompts[j] / decoder[j]: the decoder level whose output has width C_j (j = 0 full resolution)
        self.prompts = nn.ModuleList(
            PromptBlock(widths[j + 1], cfg.prompt_dims[j], cfg.prompt_components[j], cfg.prompt_sizes[j],
                        cfg.learnable_prompt) for j in range(LEVELS))
        self.decoder = nn.ModuleList(
            _Up(widths[j + 1], widths[j], cfg.prompt_dims[j], cfg.decoder_blocks[j], r, att) for j in range(LEVELS))
        self.tail = _conv(widths[0], out_channels, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(channels_last(x))
        skips = []
        for down in self.encoder:
            x, feat = down(x)
            skips.append(feat)
        x = self.bottleneck(x)
        for j in reversed(range(LEVELS)):
            x = self.decoder[j](x, self.prompts[j](x), self.skips[j](skips[j]))
        return self.tail(x)


class PromptMRCascade(nn.Module):
    """One cascade, ``k <- k - lambda M (k - k0) - F S R(S^H F^H k)``, on the image pair ``(u, w)``
    that stands for ``k = k0 + F S u + M F S w`` (see the module docstring).

    ``first=True`` builds no ``lambda``: the first cascade starts at ``k = k0``, where the
    soft-DC term is zero.
    """

    def __init__(self, cfg: PromptMRConfig, first: bool):
        super().__init__()
        a = cfg.adjacent_frames
        self.unet = PromptUNet(2 * a, 2 * a, cfg)
        self.dc_weight = None if first else nn.Parameter(torch.ones(1))
        self.wrap_rows = cfg.wrap_rows

    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        """``R``: the normalised PromptUNet on complex frames ``[n, A, y, x]`` -> ``[n, A, y, x]``.

        ``R`` is a correction the cascade subtracts, so the network's output is scaled back by
        the input's standard deviation only: a zero output is a zero correction (see the module
        docstring on why the mean is not added back)."""
        n, a, ny, nx = x.shape
        z, _, std = normalize(torch.view_as_real(x))  # one mean / std per sample
        feat = z.permute(0, 1, 4, 2, 3).reshape(n, 2 * a, ny, nx)  # channels (frame, re/im)
        feat, size = pad_to_multiple(feat.to(self.unet.tail.weight.dtype), PAD_MULTIPLE, self.wrap_rows)
        out = crop_to(self.unet(feat), size).to(z.dtype)
        out = out.reshape(n, a, 2, ny, nx).permute(0, 1, 3, 4, 2)
        return torch.view_as_complex((out * std).contiguous())

    def forward(self, x0: torch.Tensor, u: torch.Tensor | None, w: torch.Tensor | None, maps: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """New ``(u, w)`` from ``x0 = A^H k0``, ``u``, ``w`` (``[n, A, y, x]``, None = 0), ``maps [n, c, y, x]``
        and ``mask [n, A, y]``."""
        x = image_of_state(x0, u, w, maps, mask)  # S^H F^H k
        r = self.denoise(x)
        if self.dc_weight is not None and (u is not None or w is not None):
            v = u if w is None else (w if u is None else u + w)
            w = -self.dc_weight * v if w is None else w - self.dc_weight * v
        return (-r if u is None else u - r), w


def image_of_state(x0: torch.Tensor, u: torch.Tensor | None, w: torch.Tensor | None, maps: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
    """``S^H F^H k`` of ``k = k0 + F S u + M F S w``: ``x0 + (S^H S) u + A^H A w`` (None = 0), ``[n, A, y, x]``.

    ``x0 = A^H k0 [n, A, y, x]``, ``maps [n, c, y, x]``, ``mask [n, A, y]``; ``S^H S`` is the
    pixel-wise sum of ``|S_c|^2`` (the FFT is orthonormal), ``A^H A`` the SENSE normal operator.
    """
    x = x0
    if u is not None:
        x = x + maps.abs().square().sum(dim=1, keepdim=True) * u
    if w is not None:
        x = x + SenseOperator(maps, mask).normal(w)
    return x


class PromptMR(nn.Module):
    """PromptMR with given coil maps (see the module docstring), built from a :class:`PromptMRConfig`.

    Parameters
    ----------
    cfg : the configuration (validated here); the paper's size when None.
    checkpoint : overrides ``cfg.checkpoint`` (recompute each cascade in the backward pass).

    Attributes
    ----------
    frames_per_pass : without autograd, target frames are reconstructed this many at a
        time (the samples are independent, so results do not change; it bounds the memory
        of the ``A``-fold k-space copies at inference). With autograd all frames go at once.
    """

    frames_per_pass: int = 4

    def __init__(self, cfg: PromptMRConfig | None = None, checkpoint: bool | None = None):
        super().__init__()
        cfg = cfg if cfg is not None else PromptMRConfig()
        cfg.validate()
        self.cfg = cfg
        self.checkpoint = cfg.checkpoint if checkpoint is None else checkpoint
        self.cascades = nn.ModuleList(PromptMRCascade(cfg, first=(i == 0)) for i in range(cfg.cascades))

    def _frames(self, x0: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor,
                targets: torch.Tensor) -> torch.Tensor:
        """Target frames ``targets`` (indices ``[s]``) of every sample -> ``[b, s, y, x]``, from the
        zero-filled ``x0 = A^H k0 [b, t, y, x]``, ``mask [b, t, y]`` and ``maps [b, c, y, x]``."""
        b, t, ny, nx = x0.shape
        idx = adjacent_frame_index(t, self.cfg.adjacent_frames, x0.device)[targets].flatten()  # [s * A]
        a = self.cfg.adjacent_frames
        s = idx.numel() // a
        x0 = x0.index_select(1, idx).reshape(b * s, a, ny, nx)
        mask = mask.index_select(1, idx).reshape(b * s, a, ny)
        maps = maps.repeat_interleave(s, dim=0)  # [b * s, c, y, x], sample-major like x0
        u = w = None
        use_ckpt = self.checkpoint and torch.is_grad_enabled()
        for cascade in self.cascades:
            if use_ckpt:
                u, w = _checkpoint(cascade, x0, u, w, maps, mask, use_reentrant=False)
            else:
                u, w = cascade(x0, u, w, maps, mask)
        c = a // 2  # the centre frame's image S^H F^H k after the last cascade
        x = image_of_state(x0[:, c:c + 1], u[:, c:c + 1], None if w is None else w[:, c:c + 1], maps,
                           mask[:, c:c + 1])
        return x.reshape(b, s, ny, nx)

    def forward(self, k: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Reconstruct cine images.

        Parameters
        ----------
        k : complex ``[b, t, c, y, x]``, undersampled centred multi-coil k-space on the recon
            grid (only the sampled lines are used).
        mask : bool or 0/1 ``[b, t, y]``, sampled phase-encode lines.
        maps : complex ``[b, c, y, x]``, coil sensitivities (unit sum of squares).

        Returns
        -------
        Complex images ``[b, t, y, x]`` (dtype of ``k``): frame ``s`` is the SENSE-combined
        centre frame of the sample built from frames ``s - A//2 .. s + A//2`` (mod ``t``).
        """
        check_model_inputs(k, mask, maps)
        t = k.shape[1]
        x0 = SenseOperator(maps, mask).adjoint(k)  # A^H k0 of every frame, once (shared by its neighbours)
        step = t if torch.is_grad_enabled() else max(1, int(self.frames_per_pass))
        parts = [self._frames(x0, mask, maps, torch.arange(s, min(s + step, t), device=k.device))
                 for s in range(0, t, step)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
