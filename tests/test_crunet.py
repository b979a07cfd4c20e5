"""CRUNet-MR with the cross-cascade feature bank: shapes, gradients, data consistency,
batch independence, bank parameters, fast layers against naive ones, overfitting."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recon.errors import InputError
from recon.fft import fft2c, ifft2c
from recon.models.config import CRNNConfig, CRUNetConfig, ModelConfig
from recon.models.crnn import CRNNMRI
from recon.models.crunet import CRUNetMR
from recon.models.summary import describe, parameter_count
from recon.models.layers import (
    ChannelAttention,
    Conv1x1,
    RowTapConv,
    TemporalConv,
    crop_to,
    fold,
    normalize,
    pad_to_multiple,
    unfold,
)
from recon.models.recurrent import CRNNLayer
from recon.models.registry import MODEL_NAMES, build_model
from recon.sense import SenseOperator, expand


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These networks are tiny: intra-op threads only add synchronisation, which on a
    shared 2-core machine made this file ~7x slower. Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _crandn(g, *shape, dtype=torch.complex64):
    re = torch.randn(*shape, generator=g, dtype=torch.float64)
    im = torch.randn(*shape, generator=g, dtype=torch.float64)
    return torch.complex(re, im).to(dtype)


def _problem(g, b, t, c, ny, nx, dtype=torch.complex64, p=0.4):
    """Random undersampled k-space, line mask and unit-sum-of-squares maps."""
    maps = _crandn(g, b, c, ny, nx, dtype=dtype)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = torch.rand(b, t, ny, generator=g) < p
    mask[..., ny // 2] = True
    k = _crandn(g, b, t, c, ny, nx, dtype=dtype) * mask[:, :, None, :, None]
    return k, mask, maps


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("channels", 4)
    kw.setdefault("cascades", 2)
    return CRUNetMR(CRUNetConfig(**kw))


# ---------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("b,t,c,ny,nx", [(1, 1, 1, 8, 8), (2, 3, 2, 9, 7), (1, 4, 3, 13, 10), (1, 2, 2, 1, 5)])
@pytest.mark.parametrize("fusion", ["none", "ca"])
def test_shapes_any_size_and_frame_count(b, t, c, ny, nx, fusion):
    g = torch.Generator().manual_seed(1)
    k, mask, maps = _problem(g, b, t, c, ny, nx)
    model = _model(fusion=fusion, cascades=3).eval()
    with torch.no_grad():
        out = model(k, mask, maps)
    assert out.shape == (b, t, ny, nx) and out.dtype == torch.complex64
    assert torch.isfinite(torch.view_as_real(out)).all()


def test_float64_model_and_float_mask():
    g = torch.Generator().manual_seed(2)
    k, mask, maps = _problem(g, 1, 3, 2, 10, 9, dtype=torch.complex128)
    model = _model(fusion="conv").double().eval()
    with torch.no_grad():
        a = model(k, mask, maps)
        b = model(k, mask.to(torch.float64), maps)
    assert a.dtype == torch.complex128
    torch.testing.assert_close(a, b)


def test_bad_inputs_raise():
    g = torch.Generator().manual_seed(3)
    k, mask, maps = _problem(g, 1, 2, 2, 8, 8)
    model = _model()
    with pytest.raises(InputError):
        model(k[0], mask, maps)
    with pytest.raises(InputError):
        model(k, mask[..., :4], maps)
    with pytest.raises(InputError):
        model(k, mask, maps[:, :1])
    with pytest.raises(InputError):
        CRUNetMR(CRUNetConfig(dilations=(1, 2)))
    with pytest.raises(InputError):
        CRUNetMR(CRUNetConfig(fusion="none", bank_depth=2))


@pytest.mark.parametrize("fusion", ["none", "ca"])
def test_inference_gives_the_training_paths_values(fusion):
    """Without gradients the recurrent layers and skip additions work in place; the images
    are those of the path with gradients (float64, batch of 2, odd sizes)."""
    g = torch.Generator().manual_seed(7)
    k, mask, maps = _problem(g, 2, 3, 2, 11, 9, dtype=torch.complex128)
    model = _model(seed=8, fusion=fusion, cascades=3).double()
    train = model(k, mask, maps)
    assert train.requires_grad
    with torch.inference_mode():
        torch.testing.assert_close(model(k, mask, maps), train.detach())


# ---------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("fusion,projection", [("none", "3x3"), ("conv", "3x3"), ("ca", "3x3"), ("ca", "1x1"),
                                               ("ca", "sum"), ("conv", "1x1")])
def test_gradients_reach_every_parameter(fusion, projection):
    g = torch.Generator().manual_seed(4)
    k, mask, maps = _problem(g, 2, 3, 2, 12, 10)
    model = _model(seed=5, fusion=fusion, cascades=3, channels=8, ca_reduction=2, bank_projection=projection)
    out = model(k, mask, maps)
    torch.view_as_real(out).pow(2).sum().backward()
    names = [n for n, _ in model.named_parameters()]
    if fusion != "none":
        assert any(n.startswith("fusion.1.") for n in names)  # cascade 2 fuses two banked cascades
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert dead == [], f"no gradient for {dead}"


def test_checkpointing_gives_the_same_values_and_gradients():
    g = torch.Generator().manual_seed(6)
    k, mask, maps = _problem(g, 1, 3, 2, 9, 8, dtype=torch.complex128)
    grads = []
    for ckpt in (False, True):
        model = _model(seed=7, fusion="ca", cascades=3).double()
        model.checkpoint = ckpt
        out = model(k, mask, maps)
        torch.view_as_real(out).abs().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------- data consistency

def _one_coil_problem(seed, b=2, t=3, ny=11, nx=9):
    """k-space, line mask and the map of a single coil of unit modulus (``S^H S = 1`` exactly)."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(b, 1, ny, nx, generator=g, dtype=torch.float64) * 2 * math.pi
    maps = torch.polar(torch.ones_like(phase), phase).to(torch.complex64)
    mask = torch.rand(b, t, ny, generator=g) < 0.4
    mask[..., ny // 2] = True
    k = _crandn(g, b, t, 1, ny, nx) * mask[:, :, None, :, None]
    return k, mask, maps


@pytest.mark.parametrize("fusion", ["none", "conv"])
def test_data_consistency_exact_for_one_unit_modulus_coil(fusion):
    k, mask, maps = _one_coil_problem(seed=8)
    model = _model(fusion=fusion, cascades=2)
    with torch.no_grad():
        out = model(k, mask, maps)
    k_out = fft2c(expand(out, maps))
    m = mask[:, :, None, :, None].expand_as(k)
    err = (k_out[m] - k[m]).abs().max() / k[m].abs().max()
    assert err < 1e-5
    assert (k_out[~m].abs() > 0).any()  # the unsampled part is filled in by the network


def test_noise_weighted_data_consistency():
    """data_consistency: noise -- a noise level per slice is required and checked; at zero
    noise the model is the hard one with the same weights; the noisier the slice, the less
    its sampled k-space is replaced (single unit-modulus coil: exact); every tau_i gets a
    gradient."""
    k, mask, maps = _one_coil_problem(seed=9)
    b = k.shape[0]
    hard = _model(seed=3, fusion="ca", cascades=3)
    soft = _model(seed=3, fusion="ca", cascades=3, data_consistency="noise")
    assert soft.uses_noise and not hard.uses_noise
    soft.load_state_dict(hard.state_dict(), strict=False)
    with torch.no_grad():
        torch.testing.assert_close(soft(k, mask, maps, noise=torch.zeros(b)), hard(k, mask, maps))
        out = soft(k, mask, maps, noise=torch.tensor([0.0, 3.0]))
    k_out = fft2c(expand(out, maps))
    m = mask[:, :, None, :, None].expand_as(k)
    gap = (k_out - k).abs()
    assert gap[0][m[0]].max() < 1e-5 * k.abs().max()  # noise-free: the measurement is kept
    assert gap[1][m[1]].max() > 1e-2 * k.abs().max()  # noisy: the estimate is kept in part
    out = soft(k, mask, maps, noise=torch.tensor([0.5, 1.0]))
    torch.view_as_real(out).pow(2).sum().backward()
    assert soft.dc_log_tau.grad is not None and (soft.dc_log_tau.grad != 0).all()
    for bad, match in [(None, "pass the per-coil k-space noise std"), (torch.ones(3), "one level per slice"),
                       (torch.tensor([0.1, -1.0]), "finite and >= 0"), (torch.tensor([0.1, float("nan")]), "finite")]:
        with pytest.raises(InputError, match=match):
            soft(k, mask, maps, noise=bad)


def test_cg_data_consistency():
    """data_consistency: cg -- the same parameters as ``noise`` (weights carry over); each cascade
    solves ``argmin ||A x - k||^2 + lam ||x - z||^2`` with ``lam = sigma^2 / tau^2``: at zero noise
    and enough steps the sampled data are fitted (one unit-modulus coil), at huge noise the
    estimate is kept (hard replacement would not); tau and the network get gradients."""
    k, mask, maps = _one_coil_problem(seed=12)
    b = k.shape[0]
    soft = _model(seed=4, fusion="ca", cascades=2, data_consistency="noise")
    cg = _model(seed=4, fusion="ca", cascades=2, data_consistency="cg", cg_iterations=40, cg_lam_floor=0.0)
    assert cg.uses_noise and "CG data consistency (40 steps)" in describe(cg)
    cg.load_state_dict(soft.state_dict())  # strict: the same parameters
    with torch.no_grad():
        out = cg(k, mask, maps, noise=torch.tensor([0.0, 1e6]))
    k_out = fft2c(expand(out, maps))
    m = mask[:, :, None, :, None].expand_as(k)
    assert (k_out[0] - k[0])[m[0]].abs().max() < 1e-4 * k.abs().max()
    assert (k_out[1] - k[1])[m[1]].abs().max() > 1e-2 * k.abs().max()
    out = cg(k, mask, maps, noise=torch.tensor([0.3, 1.0]))
    torch.view_as_real(out).pow(2).sum().backward()
    assert (cg.dc_log_tau.grad != 0).all()
    assert all(p.grad is not None for p in cg.cascades[1].parameters())
    with pytest.raises(InputError, match="cg_iterations"):
        CRUNetConfig(data_consistency="cg", cg_iterations=0).validate()
    with pytest.raises(InputError, match="cg_lam_floor"):
        CRUNetConfig(data_consistency="cg", cg_lam_floor=-1.0).validate()


# ---------------------------------------------------------------------------- feature bank

def test_fusion_none_has_no_bank_parameters():
    counts = {}
    for fusion in ("none", "conv", "ca"):
        model = _model(fusion=fusion, channels=8, cascades=3)
        counts[fusion] = parameter_count(model)
        names = [n for n, _ in model.named_parameters()]
        assert any(n.startswith("fusion.") for n in names) == (fusion != "none")
    assert counts["none"] < counts["conv"] < counts["ca"]
    assert "bank" in describe(_model(fusion="ca", channels=8, cascades=3))


def test_bank_depth_limits_the_fused_cascades():
    c = 8
    full = _model(fusion="conv", channels=c, cascades=5)
    k2 = _model(fusion="conv", channels=c, cascades=5, bank_depth=2)
    assert [full.bank_size(i) for i in range(5)] == [0, 1, 2, 3, 4]
    assert [k2.bank_size(i) for i in range(5)] == [0, 1, 2, 2, 2]
    # cascade 4 (0-based) fuses F_2 and F_3 only: 2 * channels inputs at every level
    assert [f.project.in_channels for f in k2.fusion[3]] == [2 * c] * 3
    assert [f.project.in_channels for f in full.fusion[3]] == [4 * c] * 3
    assert parameter_count(k2) < parameter_count(full)
    ca = _model(fusion="ca", channels=c, cascades=4, bank_depth=2)
    assert [f.attention.squeeze.in_channels for f in ca.fusion[2]] == [2 * c] * 3
    g = torch.Generator().manual_seed(9)
    k, mask, maps = _problem(g, 1, 2, 2, 8, 6)
    with torch.no_grad():
        assert ca(k, mask, maps).shape == (1, 2, 8, 6)


@pytest.mark.parametrize("kw", [dict(fusion="ca"), dict(fusion="conv", bank_depth=2), dict(fusion="none"),
                                dict(fusion="ca", bank_projection="1x1")], ids=str)
def test_widening_keeps_the_images_and_trains_the_new_channels(kw):
    """recon.models.widen: a 4-channel model widened to 8 (and 12) gives the narrow model's
    images; the zeroed weights from new channels get gradients at once; narrowing is refused."""
    from recon.models.widen import old_positions, widen_into

    g = torch.Generator().manual_seed(21)
    k, mask, maps = _problem(g, 1, 3, 2, 12, 10)
    narrow = _model(seed=1, channels=4, cascades=4, **kw)
    with torch.no_grad():
        ref = narrow(k, mask, maps)
    for c_new in (8, 12):
        wide = _model(seed=2, channels=c_new, cascades=4, **kw)
        with torch.no_grad():
            assert (wide(k, mask, maps) - ref).abs().max() > 1e-3  # a fresh wide model differs
        widen_into(narrow, wide, 4, c_new)
        out = wide(k, mask, maps)
        torch.testing.assert_close(out.detach(), ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
        out.abs().mean().backward()
        cell = wide.cascades[1].enc0.cell.i2h.weight
        assert cell.grad[:4, 4:].abs().max() > 0  # new -> old weights start at zero, not stuck there
    assert old_positions(8, 16, 4, 8).tolist() == [0, 1, 2, 3, 8, 9, 10, 11]  # two blocks of 4 -> of 8
    assert old_positions(2, 4, 4, 8).tolist() == [0, 1]  # squeezed units: the old ones first
    with pytest.raises(InputError, match="fewer"):
        widen_into(_model(channels=8, cascades=4, **kw), narrow, 8, 4)


def test_widening_carries_the_learned_noise_weighting():
    """widen_into copies parameters outside the convolutions (each cascade's learned tau):
    the widened noise-weighted model gives the narrow one's images at a noise level where
    tau matters; ``keep_init`` leaves a parameter the narrow model lacks at its init."""
    from recon.models.widen import widen_into

    g = torch.Generator().manual_seed(5)
    k, mask, maps = _problem(g, 1, 3, 2, 12, 10)
    noise = torch.tensor([0.8])
    narrow = _model(seed=1, channels=4, cascades=3, fusion="ca", data_consistency="noise")
    with torch.no_grad():
        narrow.dc_log_tau.copy_(torch.tensor([0.01, -0.02, 0.03]))
        ref = narrow(k, mask, maps, noise=noise)
    wide = _model(seed=2, channels=8, cascades=3, fusion="ca", data_consistency="noise")
    widen_into(narrow, wide, 4, 8)
    torch.testing.assert_close(wide.dc_log_tau.detach(), narrow.dc_log_tau.detach())
    with torch.no_grad():
        out = wide(k, mask, maps, noise=noise)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    hard = _model(seed=1, channels=4, cascades=3, fusion="ca")
    with pytest.raises(InputError, match="dc_log_tau"):  # the narrow model has no tau to copy
        widen_into(hard, _model(seed=2, channels=8, cascades=3, fusion="ca", data_consistency="noise"), 4, 8)
    fresh = _model(seed=2, channels=8, cascades=3, fusion="ca", data_consistency="noise")
    init = fresh.dc_log_tau.detach().clone()
    widen_into(hard, fresh, 4, 8, keep_init=("dc_log_tau",))
    torch.testing.assert_close(fresh.dc_log_tau.detach(), init)


def test_bank_projection_sizes_and_checks():
    c = 8
    p3, p1, ps = (_model(fusion="ca", channels=c, cascades=4, bank_projection=p) for p in ("3x3", "1x1", "sum"))
    assert [f.project.kernel_size for f in p1.fusion[2]] == [(1, 1)] * 3
    assert all(f.project is None for f in ps.fusion[2])
    bank = lambda m: sum(parameter_count(f) for f in m.fusion)  # noqa: E731
    assert bank(ps) < bank(p1) < bank(p3)
    g = torch.Generator().manual_seed(11)
    k, mask, maps = _problem(g, 1, 3, 2, 8, 6)
    with torch.no_grad():
        for m in (p1, ps):
            assert m(k, mask, maps).shape == (1, 3, 8, 6)
    with pytest.raises(InputError, match="bank_projection 'sum' .* needs fusion 'ca'"):
        CRUNetMR(CRUNetConfig(fusion="conv", bank_projection="sum"))
    with pytest.raises(InputError, match="bank_projection"):
        CRUNetConfig(fusion="ca", bank_projection="5x5").validate()


@pytest.mark.parametrize("mode,projection", [("ca", "3x3"), ("ca", "1x1"), ("ca", "sum"), ("conv", "3x3"),
                                             ("conv", "1x1")])
def test_bank_fusion_equals_the_concatenated_formula(mode, projection):
    """Fused without concatenating: the same as projection(attention(cat(bank))) (or the sum of the
    attended cascades), to float rounding, in values and gradients."""
    from recon.models.crunet import BankFusion

    torch.manual_seed(12)
    n, c = 3, 4
    fusion = BankFusion(n, c, 2, mode, 2, projection).double()
    bank = [torch.randn(5, c, 9, 7, dtype=torch.float64, requires_grad=True) for _ in range(n)]
    x = torch.cat(bank, dim=1)
    if fusion.attention is not None:
        x = fusion.attention(x)
    ref = fusion.project(x) if fusion.project is not None else sum(x.split(c, dim=1))
    out = fusion(bank)
    torch.testing.assert_close(out, ref)
    g_ref = torch.autograd.grad(ref.square().sum(), bank + list(fusion.parameters()))
    g_out = torch.autograd.grad(fusion(bank).square().sum(), bank + list(fusion.parameters()))
    for a, b in zip(g_out, g_ref):
        torch.testing.assert_close(a, b)


def test_bank_depth_is_used_in_forward():
    """With K = 1, features older than the previous cascade must not matter."""
    model = _model(fusion="conv", channels=4, cascades=3, bank_depth=1).double()
    seen = []
    model.fusion[1][0].register_forward_pre_hook(lambda mod, args: seen.append(len(args[0])))
    g = torch.Generator().manual_seed(10)
    k, mask, maps = _problem(g, 1, 2, 2, 8, 6, dtype=torch.complex128)
    with torch.no_grad():
        model(k, mask, maps)
    assert seen == [1]


# ---------------------------------------------------------------------------- batch, determinism, side effects

@pytest.mark.parametrize("fusion", ["none", "ca"])
def test_batch_gives_the_same_per_sample_output(fusion):
    g = torch.Generator().manual_seed(11)
    k, mask, maps = _problem(g, 2, 3, 2, 10, 7, dtype=torch.complex128)
    k[1] *= 40.0  # very different scales: the normalisation must be per sample
    model = _model(fusion=fusion, cascades=3).double().eval()
    with torch.no_grad():
        both = model(k, mask, maps)
        one = torch.cat([model(k[i:i + 1], mask[i:i + 1], maps[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(both, one, rtol=1e-10, atol=1e-10)


def test_determinism_and_no_global_side_effects():
    g = torch.Generator().manual_seed(12)
    k, mask, maps = _problem(g, 1, 2, 2, 8, 8)
    outs = []
    for _ in range(2):
        model = _model(seed=13, fusion="ca").eval()
        with torch.no_grad():
            outs.append(model(k, mask, maps))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    # importing the model modules neither seeds nor draws from the global generators
    # (a fresh interpreter: reloading here would replace the classes other tests use)
    code = ("import random, numpy as np, torch; torch.manual_seed(1); random.seed(1); np.random.seed(1); "
            "s = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()); "
            "import recon.models.registry, recon.models.crunet, recon.models.layers; "
            "assert torch.equal(s[0], torch.get_rng_state()) and s[1] == random.getstate() "
            "and (s[2] == np.random.get_state()[1]).all()")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_forward_creates_no_tensors_that_require_grad():
    """The reference made hidden states with requires_grad inside forward (breaks FLOP
    counting under inference_mode); ours must run there and give plain outputs."""
    from torch.utils.flop_counter import FlopCounterMode

    g = torch.Generator().manual_seed(15)
    k, mask, maps = _problem(g, 1, 2, 2, 8, 8)
    model = _model(fusion="conv", cascades=3).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    out = model(k, mask, maps)
    assert not out.requires_grad
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            model(k, mask, maps)
    assert counter.get_total_flops() > 0


def test_pad_to_multiple_wraps_rows_and_crop_to_undoes_it():
    x = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    padded, size = pad_to_multiple(x, 4, wrap_rows=2)
    assert padded.shape == (2, 12, 4) and size == (5, 3, 2)  # 5 + 2 * 2 rows -> 12, 3 columns -> 4
    torch.testing.assert_close(padded[:, :2, :3], x[:, 3:])  # the last rows above the first
    torch.testing.assert_close(padded[:, 7:9, :3], x[:, :2])  # the first rows below the last
    assert (padded[:, 9:] == 0).all() and (padded[..., 3:] == 0).all()
    torch.testing.assert_close(crop_to(padded, size), x)
    padded, size = pad_to_multiple(x, 2, wrap_rows=9)  # at most the image's own rows
    assert size == (5, 3, 5) and padded.shape == (2, 16, 4)
    torch.testing.assert_close(crop_to(padded, size), x)
    torch.testing.assert_close(crop_to(pad_to_multiple(x, 4)[0], (5, 3)), x)


def _moved_along_y(k, mask, maps, rows):
    """The same acquisition of the object moved circularly by ``rows`` along y."""
    k = fft2c(torch.roll(ifft2c(k), rows, -2)) * mask[:, :, None, :, None]
    return k, mask, torch.roll(maps, rows, -2)


@pytest.mark.parametrize("arch", ["crunet", "crnn"])
def test_wrap_rows_make_the_networks_equivariant_to_moving_the_object_along_y(arch):
    """y is the phase-encode axis, periodic in every Cartesian image: with the edge rows
    wrapped, moving the object along y moves the reconstruction with it; with zero padding
    the edge of the field of view is a boundary the network sees (it learns where it is)."""
    g = torch.Generator().manual_seed(3)
    ny, rows = (24, 2) if arch == "crunet" else (12, 1)  # crunet: an even move keeps the 2x2 pooling grid
    k, mask, maps = _problem(g, 1, 3, 2, ny, 10)

    def build(wrap):
        torch.manual_seed(0)
        if arch == "crunet":
            return CRUNetMR(CRUNetConfig(channels=4, cascades=2, fusion="ca", wrap_rows=wrap)).eval()
        return CRNNMRI(CRNNConfig(channels=4, cascades=1, layers=3, wrap_rows=wrap)).eval()

    def mismatch(wrap):
        model = build(wrap)
        with torch.no_grad():
            out = model(k, mask, maps)
            moved = torch.roll(model(*_moved_along_y(k, mask, maps, rows)), -rows, -2)
        return float((moved - out).abs().max() / out.abs().max())

    assert mismatch(ny) < 1e-5
    assert mismatch(0) > 1e-3
    with pytest.raises(InputError, match="wrap_rows"):
        CRUNetConfig(wrap_rows=-1).validate()


def test_temporal_padding_setting_matters():
    g = torch.Generator().manual_seed(16)
    k, mask, maps = _problem(g, 1, 4, 2, 8, 8)
    outs = []
    for padding in ("circular", "zeros"):
        model = _model(seed=17, temporal_padding=padding).eval()
        with torch.no_grad():
            outs.append(model(k, mask, maps))
    assert not torch.allclose(outs[0], outs[1])


# ---------------------------------------------------------------------------- fast layers == naive layers

@pytest.mark.parametrize("padding", ["circular", "zeros"])
@pytest.mark.parametrize("t", [1, 2, 5])
def test_temporal_conv_matches_conv1d_over_time(padding, t):
    g = torch.Generator().manual_seed(18)
    b, cin, cout, ny, nx = 2, 3, 4, 5, 6
    conv = TemporalConv(cin, cout, padding).double()
    x = torch.randn(b * t, cin, ny, nx, generator=g, dtype=torch.float64)
    seq = unfold(x, t).permute(0, 3, 4, 2, 1).reshape(-1, cin, t)  # [b*y*x, cin, t]
    seq = F.pad(seq, (1, 1), mode="circular") if padding == "circular" else F.pad(seq, (1, 1))
    ref = F.conv1d(seq, conv.weight, conv.bias).reshape(b, ny, nx, cout, t).permute(0, 4, 3, 1, 2)
    with torch.no_grad():  # no gradients: the wrap-around taps accumulate in place
        torch.testing.assert_close(conv(x, t), fold(ref))
    # and with gradients
    x.requires_grad_(True)
    seq = unfold(x, t).permute(0, 3, 4, 2, 1).reshape(-1, cin, t)
    seq = F.pad(seq, (1, 1), mode="circular") if padding == "circular" else F.pad(seq, (1, 1))
    ref = F.conv1d(seq, conv.weight, conv.bias).reshape(b, ny, nx, cout, t).permute(0, 4, 3, 1, 2)
    probe = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    expected = torch.autograd.grad((ref * probe).sum(), [x, *conv.parameters()])
    out = conv(x, t)  # with gradients: a padded copy (circular)
    torch.testing.assert_close(out, fold(ref))
    got = torch.autograd.grad((out * fold(probe)).sum(), [x, *conv.parameters()])
    for e, o in zip(expected, got):
        torch.testing.assert_close(o, e)


@pytest.mark.parametrize("kernel, out_channels, bias", [(5, 2, True), (3, 3, False), (1, 2, True)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_row_tap_conv_matches_conv2d_values_and_gradients(kernel, out_channels, bias, layout):
    """The row taps and their shifted sums are the same 'same' convolution, forward and backward,
    on an odd-sized grid, with the state dict of nn.Conv2d."""
    g = torch.Generator().manual_seed(23)
    conv = RowTapConv(4, out_channels, kernel, bias=bias).double()
    ref = nn.Conv2d(4, out_channels, kernel, padding=kernel // 2, bias=bias).double()
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(3, 4, 7, 6, generator=g, dtype=torch.float64)
    x = (x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x).requires_grad_(True)
    probe = torch.randn(3, out_channels, 7, 6, generator=g, dtype=torch.float64)
    got, expected = conv(x), ref(x)
    torch.testing.assert_close(got, expected)
    grads = torch.autograd.grad((got * probe).sum(), [x, *conv.parameters()])
    ref_grads = torch.autograd.grad((expected * probe).sum(), [x, *ref.parameters()])
    for o, e in zip(grads, ref_grads):
        torch.testing.assert_close(o, e)
    with pytest.raises(InputError, match="odd kernel"):
        RowTapConv(4, 2, 4)


@pytest.mark.parametrize("padding", ["circular", "zeros"])
def test_temporal_conv_under_bf16_autocast_is_close_and_trains(padding):
    """The in-place tap products take autocast's dtype by hand: bf16 output near fp32 (batch > 1),
    gradients reach the input and every parameter."""
    g = torch.Generator().manual_seed(21)
    conv = TemporalConv(6, 5, padding)
    x = torch.randn(2 * 4, 6, 7, 9, generator=g, requires_grad=True)
    ref = conv(x, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x, 4)
    assert y.dtype == torch.bfloat16
    assert ((y.float() - ref).norm() / ref.norm()).item() < 2e-2
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # inference: wrap taps in place
        y_inference = conv(x, 4)
    assert y_inference.dtype == torch.bfloat16
    assert ((y_inference.float() - ref).norm() / ref.norm()).item() < 2e-2
    y.float().square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in conv.parameters())


@pytest.mark.parametrize("direction", ["forward", "backward", "bidirectional"])
@pytest.mark.parametrize("with_iteration", [False, True])
@pytest.mark.parametrize("t", [1, 4])
@pytest.mark.parametrize("inference", [False, True], ids=["grad", "inference"])
def test_crnn_layer_matches_a_naive_frame_loop(direction, with_iteration, t, inference):
    """Both paths: with gradients (frame states stacked) and without (states written over the
    drives in place, a bidirectional layer's directions in one reversed-time buffer)."""
    g = torch.Generator().manual_seed(19)
    b, cin, hid, ny, nx, dil = 2, 3, 5, 7, 6, 2
    layer = CRNNLayer(cin, hid, 3, dil, direction, iteration=True).double()
    cell = layer.cell
    x = torch.randn(b * t, cin, ny, nx, generator=g, dtype=torch.float64)
    h_iter = torch.randn(b * t, hid, ny, nx, generator=g, dtype=torch.float64) if with_iteration else None

    def run(order):
        xs, hi = unfold(x, t), (unfold(h_iter, t) if h_iter is not None else torch.zeros(b, t, hid, ny, nx,
                                                                                        dtype=x.dtype))
        h = torch.zeros(b, hid, ny, nx, dtype=x.dtype)
        out = [None] * t
        for s in order:
            h = torch.relu(cell.i2h(xs[:, s]) + cell.h2h(h) + cell.ih2ih(hi[:, s]))
            out[s] = h
        return torch.stack(out, 1)

    fwd, bwd = run(range(t)), run(range(t - 1, -1, -1))
    ref = {"forward": fwd, "backward": bwd, "bidirectional": fwd + bwd}[direction]
    with torch.inference_mode(inference):
        out = layer(x, t, h_iter)
    assert out.requires_grad is not inference
    torch.testing.assert_close(out, fold(ref))
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_crnn_layer_inference_path_under_bf16_autocast_is_close():
    g = torch.Generator().manual_seed(23)
    layer = CRNNLayer(4, 4, 3, 1, "bidirectional")
    x = torch.randn(6, 4, 8, 8, generator=g)
    ref = layer(x, 3).detach()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x, 3)
    assert y.dtype == torch.bfloat16
    assert ((y.float() - ref).norm() / ref.norm()).item() < 2e-2


@pytest.mark.parametrize("inference", [False, True], ids=["grad", "inference"])
def test_conv1x1_add_to_accumulates_in_place_only_without_gradients(inference):
    g = torch.Generator().manual_seed(24)
    conv = Conv1x1(6, 4).double()
    x = torch.randn(3, 6, 5, 7, generator=g, dtype=torch.float64)
    out = torch.randn(3, 4, 5, 7, generator=g, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    expected = out + nn.functional.conv2d(x, conv.weight, conv.bias)
    before = out.clone()
    with torch.inference_mode(inference):
        y = conv.add_to(out, x)
    torch.testing.assert_close(y, expected)
    assert (y is out) is inference  # in place only where no gradient is needed
    if not inference:
        assert torch.equal(out, before) and y.requires_grad
    with torch.inference_mode():  # not channels-last: a new tensor, out untouched
        plain = before.contiguous()
        torch.testing.assert_close(conv.add_to(plain, x), expected)
        assert torch.equal(plain, before)


def test_conv1x1_and_channel_attention():
    g = torch.Generator().manual_seed(20)
    x = torch.randn(3, 6, 5, 4, generator=g, dtype=torch.float64)
    fast = Conv1x1(6, 2).double()
    ref = nn.Conv2d(6, 2, 1).double()
    ref.load_state_dict(fast.state_dict())
    torch.testing.assert_close(fast(x), ref(x))
    ca = ChannelAttention(6, 4).double()  # 6 // 4 = 1 squeezed channel
    w = torch.sigmoid(ca.excite(torch.relu(ca.squeeze(x.mean((-2, -1), keepdim=True)))))
    torch.testing.assert_close(ca(x), x * w)


def test_normalize_is_per_sample_and_safe_on_zeros():
    g = torch.Generator().manual_seed(21)
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    x[1] = 0.0
    x.requires_grad_(True)
    y, _, _ = normalize(x)
    torch.testing.assert_close(y[0].mean(), torch.tensor(0.0, dtype=torch.float64))
    torch.testing.assert_close(y[0].std(), torch.tensor(1.0, dtype=torch.float64))
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


def test_cascade_input_is_normalised_per_sample_over_all_frames():
    """The features entering each cascade have mean 0 / std 1 per *sample* (all frames
    together), so a bright frame stays brighter than a dark one (the reference
    CRUNet-MR's normalisation). Per-frame normalisation would give every frame std 1."""
    g = torch.Generator().manual_seed(30)
    k, mask, maps = _problem(g, 2, 4, 2, 12, 10)
    k[0, 0] *= 20.0  # frame 0 of sample 0 much brighter than the others
    model = _model(seed=31, channels=4, cascades=2)
    seen = []
    hooks = [c.head.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
             for c in model.cascades]
    with torch.no_grad():
        model(k, mask, maps)
    for h in hooks:
        h.remove()
    assert len(seen) == 2
    for feat in seen:
        per_sample = unfold(feat.float(), 4)  # [b, t, 2, y, x]
        for b in range(2):
            v = per_sample[b]
            assert abs(float(v.mean())) < 1e-4 and abs(float(v.std()) - 1) < 1e-3
        frame_std = per_sample[0].flatten(1).std(dim=1)
        assert frame_std[0] > 3 * frame_std[1:].max()  # the bright frame stays bright


def test_frames_are_not_normalised_independently():
    """Scaling one frame's k-space changes the other frames' output (frames share one
    normalisation and the recurrence). With per-frame normalisation the network is
    exactly equivariant to per-frame scaling and the other frames would not change."""
    g = torch.Generator().manual_seed(32)
    k, mask, maps = _problem(g, 1, 3, 2, 12, 10, dtype=torch.complex128)
    model = _model(seed=33, channels=4, cascades=2).double()
    k2 = k.clone()
    k2[0, 0] *= 10.0
    with torch.no_grad():
        a, b = model(k, mask, maps), model(k2, mask, maps)
    rel = float((a[0, 1:] - b[0, 1:]).abs().max() / a[0, 1:].abs().max())
    assert rel > 1e-3, rel


@pytest.mark.parametrize("channels", [8, 16, 64])
def test_channel_attention_has_no_dead_units_at_init(channels):
    """Every squeezed unit of every CA module is active at initialisation (gets
    gradient) at every supported width; at 8 channels whole modules used to be dead."""
    torch.manual_seed(34)
    model = CRUNetMR(CRUNetConfig(channels=channels, cascades=3, fusion="ca"))
    g = torch.Generator().manual_seed(35)
    k, mask, maps = _problem(g, 1, 3, 2, 16, 16)
    alive = []
    modules = [m for m in model.modules() if isinstance(m, ChannelAttention)]
    for m in modules:
        m.squeeze.register_forward_hook(lambda mod, inp, out: alive.append((out > 0).flatten(1).any(0)))
    torch.view_as_real(model(k, mask, maps)).pow(2).sum().backward()
    assert modules and all(bool(a.all()) for a in alive)
    for m in modules:
        assert torch.any(m.squeeze.weight.grad != 0) and torch.any(m.excite.weight.grad != 0)


# ---------------------------------------------------------------------------- registry, sizes

def test_registry_builds_crunet():
    assert set(MODEL_NAMES) == {"crunet", "crnn", "promptmr"}
    model = build_model(ModelConfig(name="crunet", crunet=CRUNetConfig(channels=4, cascades=2, fusion="ca")),
                        checkpoint=True)
    assert isinstance(model, CRUNetMR) and model.checkpoint and model.cfg.fusion == "ca"


def test_registry_builds_crnn():
    import recon.models.crnn as crnn
    model = build_model(ModelConfig(name="crnn", crnn=CRNNConfig(channels=4, cascades=2, layers=3)))
    assert isinstance(model, crnn.CRNNMRI)


def test_paper_size_parameter_counts():
    """Reference (dong845/CRUNet) at 64 channels, 5 cascades: base 4,788,810, conv bank
    6,463,818. Ours leaves out the reference's fixed-size (1, 2, 224, 112) std-map
    parameter (5 x 50,176) and the first cascade's ih2ih convs, which never learn
    (5 x 36,928), and uses 1x1 skip convs (as the reference base) in the bank variants
    too (the reference bank variant has 3x3 ones: 25 x 32,768 more)."""
    counts = {f: parameter_count(CRUNetMR(CRUNetConfig(channels=64, cascades=5, fusion=f)))
              for f in ("none", "conv", "ca")}
    print("\nparameters at 64 channels, 5 cascades:", {f: f"{n:,}" for f, n in counts.items()})
    assert counts["none"] == 4_788_810 - 5 * 50_176 - 5 * 36_928
    assert counts["conv"] == 6_463_818 - 5 * 36_928 - 25 * 32_768
    assert counts["conv"] - counts["none"] == 1_106_688  # the reference's fusion convs exactly
    assert counts["conv"] < counts["ca"] < 1.05 * counts["conv"]


# ---------------------------------------------------------------------------- learning

def test_overfits_one_simulated_slice():
    from recon.kspace import to_recon_grid
    from recon.simulate.cine import SimulationConfig, simulate_scan

    cfg = SimulationConfig(n_phases=4, n_coils=4, matrix=(32, 32), acceleration=4, n_acs=4,
                           noise_scan=False, snr=200.0, seed=3)
    sl = simulate_scan(cfg).slices[0]
    csm = sl.csm / np.sqrt((np.abs(sl.csm) ** 2).sum(axis=0, keepdims=True))
    k_full = to_recon_grid(sl.kspace, (cfg.matrix[1], cfg.matrix[0], 1))
    mask = torch.from_numpy(sl.mask)[None]
    k = torch.from_numpy(np.ascontiguousarray(k_full, dtype=np.complex64))[None] * mask[:, :, None, :, None]
    maps = torch.from_numpy(np.ascontiguousarray(csm, dtype=np.complex64))[None]
    target = torch.from_numpy(sl.reference)[None]
    scale = target.abs().max()
    k, target = k / scale, target / scale

    model = _model(seed=22, fusion="ca", channels=8, cascades=2)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = (model(k, mask, maps) - target).abs().pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"\noverfit loss {losses[0]:.3g} -> {losses[-1]:.3g}")
    assert losses[-1] < 0.5 * losses[0], losses


def _moving_mask_problem(t=4, c=3, ny=12, nx=10, r=4, shifted=True):
    """A static object ``[1, t, ny, nx]``, unit-norm maps and its k-space on a mask moving one line
    per frame (the union every line) or the same lines in every frame."""
    torch.manual_seed(0)
    maps = torch.randn(1, c, ny, nx, dtype=torch.complex64)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    image = torch.randn(1, 1, ny, nx, dtype=torch.complex64).expand(1, t, ny, nx)
    mask = torch.zeros(1, t, ny)
    for i in range(t):
        mask[0, i, (i if shifted else 0)::r] = 1
    mask[0, :, ny // 2] = 1  # a line every frame samples (as the ACS)
    return image, SenseOperator(maps, mask).forward(image), mask, maps


def test_composite_images_hold_the_lines_of_the_other_frames():
    """``average``: with a moving mask and a static object, the fully sampled coil-combined image in
    every frame; ``missing``: each frame's zero-filled image plus it is that image, and it is zero
    for a fixed mask."""
    from recon.sense import composite_image

    image, k, mask, maps = _moving_mask_problem()
    torch.testing.assert_close(composite_image(k, mask, maps), image, atol=1e-5, rtol=1e-5)
    zero_filled = SenseOperator(maps, mask).adjoint(k)
    torch.testing.assert_close(zero_filled + composite_image(k, mask, maps, "missing"), image, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(zero_filled + composite_image(k, mask, maps, "nearest"), image,
                               atol=1e-5, rtol=1e-5)
    _, k, mask, maps = _moving_mask_problem(shifted=False)
    assert not composite_image(k, mask, maps, "missing").any()
    assert not composite_image(k, mask, maps, "nearest").any()
    with pytest.raises(InputError, match="composite mode"):
        composite_image(k, mask, maps, "none")


def test_nearest_lines_take_each_line_from_the_nearest_frames_in_circular_time():
    from recon.sense import nearest_lines

    t = 6
    k = torch.arange(t, dtype=torch.float32).view(1, t, 1, 1, 1).expand(1, t, 1, 3, 1).to(torch.complex64)
    lines = torch.zeros(1, t, 3, dtype=torch.bool)
    lines[0, 0, 0] = True             # line 0: frame 0 only
    lines[0, [1, 3], 1] = True        # line 1: frames 1 and 3 (frame 2 ties: their mean)
    filled = nearest_lines(k, lines)[0, :, 0, :, 0].real
    assert filled[:, 0].tolist() == [0.0] * t
    assert filled[:, 1].tolist() == [1.0, 1.0, 2.0, 3.0, 3.0, 2.0]  # frame 5: 1 (circular) and 3 both 2 away
    assert not filled[:, 2].any()     # no frame sampled line 2


@pytest.mark.parametrize("mode", ["average", "missing"])
def test_composite_input_reaches_the_network_only_through_its_heads(mode):
    """Zero heads: the output of the network without the input; trained (non-zero) heads change it
    on a moving mask, and with ``missing`` never on a fixed mask (no input there, no bias)."""
    from dataclasses import replace as dc_replace

    cfg = CRUNetConfig(channels=4, cascades=2, fusion="ca")
    plain, comp = CRUNetMR(cfg), CRUNetMR(dc_replace(cfg, composite_input=mode))
    missing, unexpected = comp.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(".composite_head." in name for name in missing)
    assert len(missing) == (4 if mode == "average" else 2)  # a bias only with "average"
    for name, p in comp.named_parameters():
        if ".composite_head." in name:
            torch.nn.init.zeros_(p)
    _, k, mask, maps = _moving_mask_problem()
    _, k_fixed, mask_fixed, _ = _moving_mask_problem(shifted=False)
    with torch.no_grad():
        torch.testing.assert_close(comp(k, mask, maps), plain(k, mask, maps))
        comp.cascades[0].composite_head.weight.fill_(0.1)
        assert not torch.allclose(comp(k, mask, maps), plain(k, mask, maps))
        fixed_same = torch.allclose(comp(k_fixed, mask_fixed, maps), plain(k_fixed, mask_fixed, maps))
        assert fixed_same == (mode == "missing")


def test_mean_consistency_gives_a_static_object_its_mean_with_no_parameters():
    """``mean_consistency``: the same parameters as without it (weights load both ways); on a static
    object, one coil of unit modulus and a mask whose lines cover k-space over time the output's
    temporal mean is the object (hard data consistency), whatever the weights; gradients reach
    every parameter."""
    from dataclasses import replace as dc_replace

    cfg = CRUNetConfig(channels=4, cascades=2, fusion="ca")
    plain, mc = CRUNetMR(cfg), CRUNetMR(dc_replace(cfg, mean_consistency=True))
    mc.load_state_dict(plain.state_dict())
    image, k, mask, maps = _moving_mask_problem(c=1)
    out = mc(k, mask, maps)
    torch.testing.assert_close(out.detach().mean(1), image[:, 0], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(plain(k, mask, maps).detach().mean(1), image[:, 0], atol=1e-3)
    out.abs().pow(2).sum().backward()
    assert all(p.grad is not None for p in mc.parameters() if p.requires_grad)
    assert "temporal mean consistency" in describe(mc)


def test_parameter_free_settings_do_not_stop_fine_tuning():
    """``wrap_rows`` and ``mean_consistency`` build no parameters: weights trained without them start
    a run with them (``same_parameters``); channels do not."""
    from dataclasses import replace as dc_replace

    from recon.models.config import ModelConfig, same_parameters

    base = ModelConfig(crunet=CRUNetConfig(channels=4, cascades=2, fusion="ca"))
    assert same_parameters(base, dc_replace(base, crunet=dc_replace(base.crunet, mean_consistency=True, wrap_rows=8)))
    assert not same_parameters(base, dc_replace(base, crunet=dc_replace(base.crunet, channels=8)))


def test_bench_counts_conv_flops_exactly_and_measures_a_matmul_rate():
    """crunet bench's arithmetic: a 3x3 conv's FLOPs are 2 * out * in * 9 * pixels, and the matmul
    rate is a positive GFLOP/s in fp32 (bf16 only where the device runs it natively)."""
    from crunet.bench.arithmetic import count_flops, matmul_rates
    from recon.machine import native_bf16

    conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=False)
    x = torch.randn(2, 4, 10, 12)
    assert count_flops(lambda: conv(x)) == 2 * 6 * 4 * 9 * (2 * 10 * 12)
    rates = matmul_rates(torch.device("cpu"), repeats=1)
    assert rates["fp32"] > 0 and ("bf16" in rates) == native_bf16("cpu") and "tf32" not in rates


@pytest.mark.parametrize("dilation,kernel", [(1, 3), (2, 3), (4, 3), (3, 5)])
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_same_convolution_values_and_gradients_match_conv2d(dilation, kernel, batch, layout):
    """conv2d_same: F.conv2d's values and gradients (float64, odd sizes); the backward in parts
    (a dilated weight gradient as per-tap matrix products) from MIN_BATCH images, PyTorch's below."""
    from recon.models.same_conv import MIN_BATCH, conv2d_same

    g = torch.Generator().manual_seed(31)
    x = torch.randn(batch, 3, 9, 7, generator=g, dtype=torch.float64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    w = torch.randn(4, 3, kernel, kernel, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    y = conv2d_same(x, w, b, dilation)
    custom = batch >= MIN_BATCH
    assert ("Parts" in type(y.grad_fn).__name__) is custom
    ref = nn.functional.conv2d(x, w, b, padding=dilation * (kernel - 1) // 2, dilation=dilation)
    torch.testing.assert_close(y, ref)
    up = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    for got, want in zip(torch.autograd.grad(y, (x, w, b), up), torch.autograd.grad(ref, (x, w, b), up)):
        torch.testing.assert_close(got, want)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 training keeps PyTorch's kernels
        assert "Parts" not in type(conv2d_same(x.float(), w.float(), b.float(), dilation).grad_fn).__name__


def test_same_conv2d_module_is_a_conv2d_with_its_state_dict():
    from recon.models.same_conv import SameConv2d

    torch.manual_seed(32)
    fast, ref = SameConv2d(3, 4, 3, dilation=2), nn.Conv2d(3, 4, 3, padding=2, dilation=2)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(4, 3, 10, 6)
    torch.testing.assert_close(fast(x), ref(x))
    with pytest.raises(ValueError, match="odd kernel"):
        SameConv2d(3, 4, 2)


@pytest.mark.parametrize("kernel,padding,dilation", [((3, 1), (0, 0), (1, 1)), ((3, 1), (1, 0), (1, 1)),
                                                      ((1, 5), (0, 4), (1, 2)), ((3, 3), (2, 1), (2, 1))])
def test_convolution_backward_in_parts_matches_conv2d(kernel, padding, dilation):
    """conv2d_parts on rectangular kernels, paddings and dilations (the temporal 3 x 1 among them):
    F.conv2d's values and input, weight and bias gradients (float64)."""
    from recon.models.same_conv import conv2d_parts

    g = torch.Generator().manual_seed(33)
    x = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    w = torch.randn(4, 3, *kernel, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    y = conv2d_parts(x, w, b, padding, dilation)
    assert "Parts" in type(y.grad_fn).__name__
    ref = nn.functional.conv2d(x, w, b, padding=padding, dilation=dilation)
    torch.testing.assert_close(y, ref)
    up = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    for got, want in zip(torch.autograd.grad(y, (x, w, b), up), torch.autograd.grad(ref, (x, w, b), up)):
        torch.testing.assert_close(got, want)
    with torch.no_grad():
        assert conv2d_parts(x, w, b, padding, dilation).grad_fn is None
