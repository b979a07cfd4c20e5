"""CRUNet-MR (cascaded convolutional-recurrent UNet) with the cross-cascade feature bank.

Architecture (docs/design.md §1, §4; learned from github dong845/CRUNet, models/CRUNet_MR.py,
re-implemented here, batched and with every non-recurrent convolution run over all
frames at once):

* ``x_0`` = SENSE adjoint of the undersampled k-space (zero-filled, coil-combined); with
  ``composite_input`` every cascade's head also takes a composite image
  (:func:`recon.sense.composite_image`), scaled as ``x``, through a 3x3 conv of its own.
* Each cascade ``i`` (own weights): per-sample mean/std normalisation of ``x``;
  real/imag as 2 channels; zero padding of ``y``/``x`` to even sizes; a 3-level
  UNet, the levels being

  - level 0 (full resolution): encoder ``CRNN-TI-F`` (forward in time, dilation
    ``d0``), decoder ``CRNN-TI-B`` (backward in time, ``d0``);
  - level 1 (half resolution, after the one 2x2-stride-2 downsample of the
    reference): encoder ``CRNN-TI-F`` and decoder ``CRNN-TI-B`` (``d1``);
  - bottleneck (half resolution): a bidirectional CRNN (``d2``);

  ``(d0, d1, d2) = config.dilations`` (the reference's 1, 2, 4). Each recurrent
  unit adds a 1x1 conv of its input (skip); after the level-1 encoder, the
  bottleneck and each decoder unit sits a (2+1)D conv (3x3 spatial at the level's
  dilation -> ReLU -> kernel-3 temporal conv), the decoder ones taking the
  encoder skip concatenated; down/up-sampling are 2x2 stride-2 conv / transposed
  conv followed by a temporal conv. Temporal padding is ``config.temporal_padding``.
  A 5x5 conv maps to 2 channels, added to the input (residual); de-normalise; crop;
  data consistency (:class:`recon.sense.DataConsistency`: hard, the reference's, or with
  ``data_consistency: noise`` weighted per cascade by the slice's measured noise level,
  :class:`recon.models.config.CRUNetConfig`); with ``mean_consistency`` then the temporal
  mean's (:class:`recon.sense.TemporalMeanConsistency`, noise-weighted alike). The input is padded
  first: ``config.wrap_rows`` rows of each edge along y beyond the opposite edge (the
  phase-encode axis is periodic; the reference pads with zeros, ``wrap_rows: 0``), then
  zeros to even sizes; the hidden states carry the padded size. Measured (2 threads,
  bf16, 128 x 128, 12 frames, 10 coils, `crunet bench --what methods`): 8 rows cost
  1.11x (0.383 vs 0.344 s through the pipeline).
* Hidden states carried across cascades, one per level: ``H_0`` = level-0 decoder
  output, ``H_1`` = level-1 decoder output, ``H_2`` = bottleneck output. Both cells of
  a level (encoder and decoder) take ``ih2ih(H_j^{(i-1)})``. The first cascade's
  cells have no ``ih2ih`` (``H = 0`` there; in the reference those weights get no
  gradient).
* Feature bank (``fusion`` ``conv`` or ``ca``): the ``H_j`` of every cascade are kept;
  cascade ``i >= 1`` replaces ``H_j^{(i-1)}`` by ``fuse_{i,j}(concat(F_{i-n,j} .. F_{i-1,j}))``
  with ``n = i`` (``bank_depth = 0``) or ``min(i, K)``. ``conv``: a 3x3 conv
  ``n*C -> C`` at the level's dilation (as the reference's bank variant). ``ca``:
  squeeze-and-excitation channel attention over the ``n*C`` bank channels, then the
  same 3x3 conv projection -- so ``ca`` differs from ``conv`` by the attention alone
  (a clean ablation), and the projection keeps the spatial context the reference's
  fusion conv has. ``none``: plain CRUNet-MR, no bank parameters.
  ``bank_projection`` (the bank's cost study): ``1x1`` replaces the 3x3 projection by a
  pointwise conv (a ninth of its multiply-adds) with the channel attention folded into
  its weights (per image ``P (a * f) = (P diag(a)) f``: one batched matrix product per
  banked cascade, no attended copy of any feature); ``sum`` (``ca`` only) adds the ``n``
  attended features with no projection at all. Neither path concatenates the bank
  (:class:`BankFusion`). Cost against ``none`` (16 channels, 128 x 128, 12 frames, 10 coils,
  bf16, 2 threads, ``crunet bench --what bank``): ``ca`` 3x3 1.18x, 1x1 1.07x, sum 1.09x,
  ``conv`` 1.11x; quality at equal and at full training: ``weights/README.md``.

Differences from the reference, on purpose: any batch size (per-sample results do
not depend on the batch), any image size (pad to even, crop back), any frame count
(``t = 1`` included); no fixed-size ``(1, 2, 224, 112)`` std-map parameter; no
first-cascade ``ih2ih``; no seeding at import; no tensors with ``requires_grad``
made in forward; the same backbone (1x1 skip convs, as the base reference) for all
fusion modes, the reference bank variant used 3x3 skips.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from recon.models.config import CRUNetConfig
from recon.models.same_conv import SameConv2d, conv2d_same
from recon.models.layers import (
    ChannelAttention,
    Conv1x1,
    RowTapConv,
    SpatioTemporalConv,
    channels_last,
    channels_to_complex,
    complex_to_channels,
    check_model_inputs,
    crop_to,
    denormalize,
    normalize_cine,
    pad_to_multiple,
    pool,
)
from recon.models.recurrent import CRNNLayer
from recon.errors import InputError
from recon.sense import CGConsistency, DataConsistency, SenseOperator, TemporalMeanConsistency, composite_image, noise_weight

LEVELS = 3  # level 0 (full res), level 1 (half res), bottleneck (half res)
DOWNSAMPLING = 2  # total spatial downsampling of the UNet (one 2x2 stride-2 step)
DC_RATE = 20.0  # log tau_i = DC_RATE * parameter (CRUNetMR.dc_tau)
# data_consistency "cg": tau_i is the rms error of cascade i's image (k-space normalised so that the
# image rms is about 1, recon.kspace.normalisation_scale): about 0.04 for the shipped 16-channel
# network at R 8 (39 dB against a peak about 3.5x the rms), so lam_i = sigma^2 / tau_i^2 starts near
# (0.025 / 0.05)^2 = 0.25 at SNR 50. Starting at tau = 1 (the noise mode's start) gives lam ~ 1e-3,
# nearly unregularised SENSE steps. Neither start let a 250-step fine-tuning of the shipped weights
# recover their validation (configs/cpu/crunet_ca_cg.yaml has the numbers).
CG_TAU_INIT = 0.05


def _conv3(cin: int, cout: int, dilation: int) -> nn.Conv2d:
    return SameConv2d(cin, cout, 3, dilation)


class CRUNetCascade(nn.Module):
    """One cascade's UNet on normalised folded features ``[b*t, 2, y, x]`` (``y``, ``x`` even).

    ``forward(x, frames, states, composite)``, ``states`` = ``(H_0, H_1, H_2)`` of the previous cascade
    (or the fused bank) or None, ``composite`` folded as ``x`` or None, returns ``(x + residual, (H_0, H_1, H_2))``;
    ``H_0`` is ``[b*t, C, y, x]``, ``H_1`` and ``H_2`` are ``[b*t, C, y/2, x/2]``.
    """

    def __init__(self, channels: int, dilations: tuple[int, int, int], temporal_padding: str,
                 first: bool, composite: str = "none"):
        super().__init__()
        c = channels
        d0, d1, d2 = dilations
        it = not first
        tp = temporal_padding
        self.head = nn.Conv2d(2, c, 3, padding=1)
        self.composite_head = None if composite == "none" else nn.Conv2d(2, c, 3, 1, 1, bias=composite == "average")
        self.enc0 = CRNNLayer(c, c, 3, d0, "forward", iteration=it)
        self.enc0_skip = Conv1x1(c, c)
        self.down = SpatioTemporalConv(nn.Conv2d(c, c, 2, stride=2), c, tp)
        self.enc1 = CRNNLayer(c, c, 3, d1, "forward", iteration=it)
        self.enc1_skip = Conv1x1(c, c)
        self.enc1_out = SpatioTemporalConv(_conv3(c, c, d1), c, tp)
        self.bottleneck = CRNNLayer(c, c, 3, d2, "bidirectional", iteration=it)
        self.bottleneck_skip = Conv1x1(c, c)
        self.bottleneck_out = SpatioTemporalConv(_conv3(c, c, d2), c, tp)
        self.dec1 = CRNNLayer(c, c, 3, d1, "backward", iteration=it)
        self.dec1_skip = Conv1x1(c, c)
        self.dec1_out = SpatioTemporalConv(_conv3(2 * c, c, d1), c, tp)
        self.up = SpatioTemporalConv(nn.ConvTranspose2d(c, c, 2, stride=2), c, tp)
        self.dec0 = CRNNLayer(c, c, 3, d0, "backward", iteration=it)
        self.dec0_skip = Conv1x1(c, c)
        self.dec0_out = SpatioTemporalConv(_conv3(2 * c, c, d0), c, tp)
        self.tail = RowTapConv(c, 2, 5)

    def forward(self, x: torch.Tensor, frames: int, states: tuple[torch.Tensor, ...] | None = None,
                composite: torch.Tensor | None = None):
        h0, h1, h2 = states if states is not None else (None, None, None)
        f = self.head(x)
        if self.composite_head is not None:
            f = f + self.composite_head(composite)
        e0 = self.enc0_skip.add_to(self.enc0(f, frames, h0), f)
        d = self.down(e0, frames)
        e1 = self.enc1_skip.add_to(self.enc1(d, frames, h1), d)
        e1 = self.enc1_out(e1, frames)
        bott = self.bottleneck_skip.add_to(self.bottleneck(e1, frames, h2), e1)
        bott = self.bottleneck_out(bott, frames)
        u1 = self.dec1_skip.add_to(self.dec1(bott, frames, h1), bott)
        u1 = self.dec1_out(torch.cat([e1, u1], dim=1), frames)
        u = self.up(u1, frames)
        u0 = self.dec0_skip.add_to(self.dec0(u, frames, h0), u)
        u0 = self.dec0_out(torch.cat([e0, u0], dim=1), frames)
        return x + self.tail(u0), (u0, u1, bott)


class BankFusion(nn.Module):
    """Fuses ``n`` banked features of one level, ``[b*t, n*C, y, x] -> [b*t, C, y, x]``.

    ``mode='conv'``: the projection alone; ``'ca'``: channel attention over the ``n*C``
    channels, then the projection. ``projection``: ``3x3`` (conv at the level's
    dilation), ``1x1`` (pointwise conv) or ``sum`` (the ``n`` attended ``C``-channel
    features added, no weights).
    """

    def __init__(self, n: int, channels: int, dilation: int, mode: str, reduction: int, projection: str = "3x3"):
        super().__init__()
        self.n = n
        self.attention = ChannelAttention(n * channels, reduction) if mode == "ca" else None
        if projection == "3x3":
            self.project = _conv3(n * channels, channels, dilation)
        elif projection == "1x1":
            self.project = nn.Conv2d(n * channels, channels, 1)
        else:
            self.project = None

    def forward(self, bank: list[torch.Tensor]) -> torch.Tensor:
        """Without concatenating the bank: the attention's pooled descriptors of the
        concatenation are those of each feature, and a convolution over concatenated
        channels is the sum of convolutions over each feature with its slice of the
        weights. Same result (max relative difference 3e-7 in fp32); the concatenated
        copy of ``n*C`` channels, most of the bank's cost, is never made (crunet_ca
        against crunet, 1 thread, bf16: 16 ch 1.155x -> 1.094x, 64 ch 1.25x -> 1.20x)."""
        if len(bank) != self.n:
            raise RuntimeError(f"bank fusion built for {self.n} cascades got {len(bank)}")
        feats = bank
        if self.attention is not None:
            pooled = torch.cat([pool(f) for f in bank], dim=1)
            weights = self.attention.gate(pooled).split(bank[0].shape[1], dim=1)
            if self.project is not None and self.project.kernel_size == (1, 1):
                return self._pointwise_attended(bank, weights)
            feats = [f * w for f, w in zip(bank, weights)]
        if self.project is None:  # sum: the attended features added
            out = feats[0].clone() if len(feats) > 1 else feats[0]
            for f in feats[1:]:
                out += f
            return out
        conv, c = self.project, bank[0].shape[1]
        d = conv.dilation[0]
        out = conv2d_same(feats[0], conv.weight[:, :c], conv.bias, d)
        for k in range(1, self.n):  # in place into the fresh convolution output (its backward needs no output)
            out.add_(conv2d_same(feats[k], conv.weight[:, k * c:(k + 1) * c], None, d))
        return out

    def _pointwise_attended(self, bank: list[torch.Tensor], weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The 1x1 projection of the attended bank with the attention folded into the
        projection's weights: per image ``P (a * f) = (P diag(a)) f``, one batched matrix
        product per banked cascade over the channels-last pixels, so no attended copy of
        any feature is made. ``bank``: ``n`` x ``[b, C, y, x]``; ``weights``: ``n`` x
        ``[b, C, 1, 1]``; returns ``[b, C_out, y, x]`` (channels-last)."""
        b, c, y, x = bank[0].shape
        proj = self.project.weight.view(self.project.out_channels, self.n * c)
        out = self.project.bias.view(1, 1, -1)
        for k, (f, a) in enumerate(zip(bank, weights)):
            scaled = (proj[:, k * c:(k + 1) * c].unsqueeze(0) * a.view(b, 1, c)).transpose(1, 2)  # [b, C, C_out]
            pixels = channels_last(f).permute(0, 2, 3, 1).reshape(b, y * x, c)
            out = torch.baddbmm(out, pixels, scaled)  # the first adds the bias: [b, y*x, C_out]
        return out.view(b, y, x, -1).permute(0, 3, 1, 2)


class CRUNetMR(nn.Module):
    """CRUNet-MR, optionally with the cross-cascade feature bank (see the module docstring).

    Parameters
    ----------
    cfg : :class:`CRUNetConfig` (validated here); the paper's defaults when None.
    checkpoint : recompute each cascade in the backward pass
        (:func:`torch.utils.checkpoint.checkpoint`) instead of storing its activations;
        saves memory in training at the cost of a second forward; no effect without grad.
    """

    def __init__(self, cfg: CRUNetConfig | None = None, checkpoint: bool = False):
        super().__init__()
        cfg = cfg if cfg is not None else CRUNetConfig()
        cfg.validate()  # fusion, padding, LEVELS dilations >= 1, widths: recon.config's checks
        self.cfg = cfg
        self.checkpoint = checkpoint
        dil = tuple(int(d) for d in cfg.dilations)
        self.cascades = nn.ModuleList(
            CRUNetCascade(cfg.channels, dil, cfg.temporal_padding, first=(i == 0), composite=cfg.composite_input)
            for i in range(cfg.cascades)
        )
        if cfg.fusion == "none":
            self.fusion = None
        else:
            # fusion[i - 1][j]: cascade i >= 1, level j, over the bank_size(i) most recent cascades
            self.fusion = nn.ModuleList(
                nn.ModuleList(BankFusion(self.bank_size(i), cfg.channels, dil[j], cfg.fusion, cfg.ca_reduction,
                                       cfg.bank_projection)
                              for j in range(LEVELS))
                for i in range(1, cfg.cascades)
            )
        # data_consistency "noise": each cascade's k-space error std tau_i (normalised units) is
        # exp(DC_RATE * dc_log_tau[i]); 0 (tau = 1) keeps data of normalised noise std below ~0.1
        # almost hard. Adam moves every parameter by about lr per step, far too little for a
        # log-scale over a short fine-tuning: the rate gives these scalars larger steps.
        start = math.log(CG_TAU_INIT) / DC_RATE if cfg.data_consistency == "cg" else 0.0
        self.dc_log_tau = nn.Parameter(torch.full((cfg.cascades,), start)) if self.uses_noise else None

    def dc_tau(self, i: int) -> torch.Tensor:
        """Cascade ``i``'s learned error std ``tau_i``: of its k-space (``data_consistency: noise``), of its
        image (``cg``)."""
        return (DC_RATE * self.dc_log_tau[i]).exp()

    @property
    def uses_noise(self) -> bool:
        """Whether :meth:`forward` needs the slice's noise level (``data_consistency: noise`` or ``cg``)."""
        return self.cfg.data_consistency in ("noise", "cg")

    def bank_size(self, cascade: int) -> int:
        """How many earlier cascades' features cascade ``cascade`` (0-based) fuses (0 for none)."""
        if self.cfg.fusion == "none" or cascade == 0:
            return 0
        k = self.cfg.bank_depth
        return min(cascade, k) if k else cascade

    def _cascade(self, i: int, x: torch.Tensor, dc: DataConsistency | CGConsistency,
                 states: tuple[torch.Tensor, ...] | None, banked: list[list[torch.Tensor]] | None,
                 noise: torch.Tensor | None = None, composite: torch.Tensor | None = None,
                 temporal: TemporalMeanConsistency | None = None):
        """Cascade ``i``: (fuse ``banked[j]``, the features to fuse per level,) normalise, UNet,
        de-normalise, data consistency (weighted by ``noise [b, 1, 1, 1, 1]`` when given), then
        the temporal mean's (``temporal``, weighted alike);
        ``composite``: the composite image's folded, padded features (``composite_input``),
        divided here by ``x``'s std."""
        if banked is not None:
            states = tuple(self.fusion[i - 1][j](banked[j]) for j in range(LEVELS))
        frames = x.shape[1]
        dtype = self.cascades[i].tail.weight.dtype
        feat, mean, std = normalize_cine(x)
        feat, size = pad_to_multiple(feat.to(dtype), DOWNSAMPLING, self.cfg.wrap_rows)
        feat = channels_last(feat)
        comp = None if composite is None else composite / std.to(dtype)
        out, new_states = self.cascades[i](feat, frames, states, comp)
        out = denormalize(crop_to(out, size).to(x.real.dtype), mean, std)
        tau = None if noise is None else self.dc_tau(i)
        z = channels_to_complex(out, frames)
        if isinstance(dc, CGConsistency):  # lam_i = sigma^2 / tau_i^2 + floor
            x = dc(z, (noise / tau).square().reshape(-1) + self.cfg.cg_lam_floor)
        else:
            x = dc(z, None if tau is None else noise_weight(tau, noise))
        if temporal is not None:
            x = temporal(x, None if tau is None else temporal.weight(tau, noise))
        return x, new_states

    def forward(self, k: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor,
                noise: torch.Tensor | None = None, temporal_mean: bool | None = None) -> torch.Tensor:
        """Reconstruct cine images.

        Parameters
        ----------
        k : complex ``[b, t, c, y, x]``, undersampled centred multi-coil k-space on the
            recon grid (zeros where not sampled).
        mask : bool or 0/1 ``[b, t, y]``, sampled phase-encode lines.
        maps : complex ``[b, c, y, x]``, coil sensitivities (unit sum-of-squares).
        noise : real ``[b]``, the per-coil noise std of ``k`` (same units); needed with
            ``data_consistency: noise`` (:attr:`uses_noise`), ignored otherwise.
        temporal_mean : the temporal-mean consistency on or off for this call (None: ``mean_consistency``).

        Returns
        -------
        Complex images ``[b, t, y, x]`` (dtype of ``k``), data-consistent after every cascade.
        """
        check_model_inputs(k, mask, maps)
        if self.uses_noise:
            noise = check_noise(noise, k.shape[0]).to(k.real.dtype).view(-1, 1, 1, 1, 1)
        else:
            noise = None
        op = SenseOperator(maps, mask)
        x = op.adjoint(k)  # SENSE adjoint: zero-filled, coil-combined
        mode = self.cfg.composite_input  # the second input, the same in every cascade
        composite = None if mode == "none" else channels_last(pad_to_multiple(complex_to_channels(
            composite_image(k, mask, maps, mode)).to(self.cascades[0].tail.weight.dtype), DOWNSAMPLING,
            self.cfg.wrap_rows)[0])
        dc = (CGConsistency(k, maps, mask, self.cfg.cg_iterations) if self.cfg.data_consistency == "cg"
              else DataConsistency(k, maps, mask))
        use_mean = self.cfg.mean_consistency if temporal_mean is None else temporal_mean
        temporal = TemporalMeanConsistency(k, maps, mask) if use_mean else None
        states = None
        bank = [[] for _ in range(LEVELS)] if self.fusion is not None else None
        keep = self.cfg.bank_depth or self.cfg.cascades
        use_ckpt = self.checkpoint and torch.is_grad_enabled()
        for i in range(len(self.cascades)):
            # fresh lists (not the bank itself): a checkpointed cascade is re-run later with the same inputs
            banked = [bank[j][-self.bank_size(i):] for j in range(LEVELS)] if bank is not None and i else None
            if use_ckpt:
                x, states = _checkpoint(self._cascade, i, x, dc, states, banked, noise, composite, temporal,
                                        use_reentrant=False)
            else:
                x, states = self._cascade(i, x, dc, states, banked, noise, composite, temporal)
            if bank is not None:
                for j in range(LEVELS):
                    bank[j].append(states[j])
                    del bank[j][:-keep]
        return x


def check_noise(noise: torch.Tensor | None, batch: int) -> torch.Tensor:
    """The noise levels ``[batch]`` of a noise-weighted model's input; InputError naming
    what is wrong (missing, wrong length, negative or not finite)."""
    if noise is None:
        raise InputError("this model weighs data consistency by the noise (data_consistency: noise or cg): "
                         "pass the per-coil k-space noise std of each slice, noise=[b]")
    noise = torch.as_tensor(noise)
    if noise.ndim > 1 or noise.numel() != batch:
        raise InputError(f"noise must hold one level per slice of the batch ({batch}), got shape "
                         f"{tuple(noise.shape)}")
    noise = noise.reshape(batch)
    if noise.is_complex() or not bool(torch.isfinite(noise).all()) or bool((noise < 0).any()):
        raise InputError(f"noise levels must be real, finite and >= 0, got {noise.tolist()}")
    return noise
