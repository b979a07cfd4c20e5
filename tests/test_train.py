"""Training: configs, schedule, loss terms, datasets, overfitting, exact resume, the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from recon.errors import InputError
from recon.models.config import CRUNetConfig, ModelConfig
from recon.simulate.acquisition import HELDOUT_SPACE, TRAIN_SPACE, AcquisitionSpace
from recon.train.config import DataConfig, LossConfig, RunConfig, TrainConfig, load_run_config
from recon.train.data import RawFileSlices, SimulatedCine, collate, global_index
from recon.train.loss import ReconLoss, dynamic_mse, dynamic_weights, image_l1, image_mse, kspace_mse, ssim_loss
from recon.train.samples import augment_series, move_along_y, simulate_sample, strip_start, strip_width
from recon.train.schedule import WarmupCosine, warmup_cosine_lr
from recon.train.series import split_series

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
VARIANTS = ("crunet", "crunet_conv", "crunet_ca", "crunet_ca_k2", "crunet_ca_k3", "crunet_ca_p1", "crnn")


@pytest.fixture
def one_thread():
    """Small models train fastest (and most reproducibly) on one thread, also on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_space(**kw) -> AcquisitionSpace:
    base = dict(matrix=(32, 32), phase_fraction=(1.0, 1.0), frames=(4, 4), coil_counts=(3,), accelerations=(4,),
                n_acs=8, snr_bands=((30.0, 30.0),))
    base.update(kw)
    return replace(TRAIN_SPACE, **base)


def tiny_data(space: dict | None = None, **kw) -> DataConfig:
    """Phantom data on 32 x 32, 4 frames, 3 coils, R = 4; strips of 16 columns."""
    base = dict(images="phantom", train_space=tiny_space(**(space or {})),
                heldout_space=replace(HELDOUT_SPACE, **{k: v for k, v in tiny_space().__dict__.items()
                                                        if k in ("matrix", "phase_fraction", "frames", "accelerations",
                                                                 "n_acs")}, coil_counts=(3,)),
                pixels_per_sample=4 * 32 * 16, coil_grid=16, val_samples=1, val_acceleration=4)
    base.update(kw)
    return DataConfig(**base)


def tiny_run(**train) -> RunConfig:
    t = dict(epochs=2, steps_per_epoch=2, warmup_epochs=1, device="cpu", threads=1, seed=3)
    t.update(train)
    return RunConfig(model=ModelConfig(name="crunet", crunet=CRUNetConfig(channels=4, cascades=2)),
                     data=tiny_data(), train=TrainConfig(**t))


# ---------------------------------------------------------------------------- configs


def test_every_variant_is_checked_in_at_both_sizes():
    names = {(p.parent.name, p.stem) for p in CONFIGS}
    for size in ("paper", "cpu"):
        for v in VARIANTS:
            assert (size, v) in names, f"configs/{size}/{v}.yaml missing"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_checked_in_config_loads_and_builds(path):
    from recon.models.registry import build_model

    cfg = load_run_config(path)
    model = build_model(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    if path.parent.name == "paper":
        inner = cfg.model.crnn if cfg.model.name == "crnn" else cfg.model.crunet
        assert (inner.channels, inner.cascades) == (64, 5)
        assert (cfg.train.lr, cfg.train.min_lr, cfg.train.weight_decay) == (3e-4, 1e-4, 1e-3)
        assert (cfg.train.epochs, cfg.train.warmup_epochs, cfg.train.batch_size) == (144, 10, 1)


def test_config_unknown_key_and_bad_value_are_errors(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train: {epochs: 2, lr_typo: 1.0}\n")
    with pytest.raises(InputError, match="lr_typo"):
        load_run_config(p)
    p.write_text("data: {pixels_per_sample: 4}\n")
    with pytest.raises(InputError, match="pixels_per_sample"):
        load_run_config(p)
    p.write_text("data: {heldout_space: {coil_families: [helmet]}}\n")
    with pytest.raises(InputError, match="coil_families"):
        load_run_config(p)
    p.write_text("train: {lr: 1.0e-4, min_lr: 1.0e-3}\n")
    with pytest.raises(InputError, match="min_lr"):
        load_run_config(p)


# ---------------------------------------------------------------------------- schedule


def test_schedule_warmup_is_linear_then_cosine_to_min():
    base, low, total, warm = 3e-4, 1e-4, 100, 10
    lrs = [warmup_cosine_lr(s, total, warm, base, low) for s in range(total + 5)]
    assert lrs[:warm] == pytest.approx([base * (s + 1) / warm for s in range(warm)])
    assert lrs[warm] == pytest.approx(base)
    assert lrs[warm + (total - warm) // 2] == pytest.approx((base + low) / 2)
    assert np.all(np.diff(lrs[warm:total + 1]) <= 1e-15)
    assert lrs[total] == pytest.approx(low) and lrs[-1] == pytest.approx(low)
    # cosine shape: lr(p) = low + (base - low) (1 + cos(pi p)) / 2
    s = warm + 30
    assert lrs[s] == pytest.approx(low + (base - low) * 0.5 * (1 + math.cos(math.pi * 30 / 90)))
    # no warm-up
    assert warmup_cosine_lr(0, total, 0, base, low) == pytest.approx(base)


def test_scheduler_state_round_trip():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    a = WarmupCosine(opt, 20, 5, 3e-4, 1e-4)
    for _ in range(7):
        a.apply()
        a.advance()
    b = WarmupCosine(opt, 20, 5, 3e-4, 1e-4)
    b.load_state_dict(a.state_dict())
    assert b.lr() == a.lr() == warmup_cosine_lr(7, 20, 5, 3e-4, 1e-4)
    assert opt.param_groups[0]["lr"] == warmup_cosine_lr(6, 20, 5, 3e-4, 1e-4)


# ---------------------------------------------------------------------------- loss


def _pair(seed=0, shape=(2, 3, 16, 12)):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(*shape, dtype=torch.complex64, generator=g)
    b = torch.randn(*shape, dtype=torch.complex64, generator=g)
    return a, b


def test_loss_terms_on_known_inputs():
    _, target = _pair()
    offset = complex(0.3, -0.4)
    pred = target + offset
    assert float(image_mse(pred, target)) == pytest.approx((0.3**2 + 0.4**2) / 2, rel=1e-5)
    assert float(image_l1(pred, target)) == pytest.approx((0.3 + 0.4) / 2, rel=1e-5)
    for fn in (image_mse, image_l1, kspace_mse, ssim_loss, dynamic_mse):
        assert float(fn(target, target)) == pytest.approx(0.0, abs=1e-6)


def test_kspace_mse_equals_image_mse_by_parseval():
    pred, target = _pair(1, (1, 2, 15, 9))  # odd sizes
    assert float(kspace_mse(pred, target)) == pytest.approx(float(image_mse(pred, target)), rel=1e-5)


def test_ssim_term_is_two_ssims_with_target_scale():
    from recon.metrics import ssim_torch

    pred, target = _pair(2)
    s = torch.view_as_real(target).abs().flatten(1).amax(1).view(-1, 1, 1, 1)
    expect = 0.0
    for part in ("real", "imag"):
        a = (getattr(pred, part) / s).flatten(0, 1)
        b = (getattr(target, part) / s).flatten(0, 1)
        expect += 1 - float(ssim_torch(a, b, data_range=1.0).mean())
    assert float(ssim_loss(pred, target)) == pytest.approx(expect, rel=1e-5)
    # a wrong global scale is penalised (the reference's self-normalisation would hide it)
    assert float(ssim_loss(2 * target, target)) > 0.01


def test_losses_are_finite_for_an_all_zero_target():
    """A training strip outside the coil maps has a zero target: every loss term and its
    gradient stay finite (the SSIM normalisation once divided by ~0 there)."""
    pred, target = _pair(1)
    pred = pred.clone().requires_grad_(True)
    zero = torch.zeros_like(target)
    for p in (pred, torch.zeros_like(pred, requires_grad=True)):
        loss, terms = ReconLoss()(p, zero)
        loss.backward()
        assert torch.isfinite(loss) and all(torch.isfinite(v) for v in terms.values())
        assert torch.isfinite(torch.view_as_real(p.grad)).all()
    assert float(ReconLoss()(pred.detach(), zero)[0]) > 0  # a non-zero prediction is still penalised


def test_recon_loss_is_the_weighted_sum():
    pred, target = _pair(3)
    cfg = LossConfig(kspace_mse=0.25, image_mse=0.5, image_l1=0.5, ssim=0.5)
    total, terms = ReconLoss(cfg)(pred, target)
    expect = 0.25 * terms["kspace_mse"] + 0.5 * (terms["image_mse"] + terms["image_l1"]) + 0.5 * terms["ssim"]
    assert float(total) == pytest.approx(float(expect), rel=1e-6)
    total, terms = ReconLoss(LossConfig(kspace_mse=0, image_mse=1, image_l1=0, ssim=0))(pred, target)
    assert float(total) == pytest.approx(float(image_mse(pred, target)), rel=1e-6)
    assert float(terms["ssim"]) == 0.0


def test_dynamic_mse_weighs_the_moving_pixels():
    """Weights average 1 per sample and follow the target's temporal std: an error on a
    static pixel costs nothing, the same error on the moving pixel costs in proportion; with
    the same temporal std everywhere the term is the image MSE."""
    t, y, x = 6, 5, 4
    target = torch.ones(2, t, y, x, dtype=torch.complex64)
    target[0, :, 1, 2] = torch.arange(t) * (1 + 0.5j)  # sample 0: one moving pixel
    w = dynamic_weights(target)
    assert w.shape == (2, 1, y, x)
    assert float(w[0].mean()) == pytest.approx(1.0, rel=1e-6) and float(w[0, 0, 1, 2]) == pytest.approx(y * x)
    assert float(w[1].abs().max()) == 0.0  # sample 1 does not move: no weight, no NaN
    static_err, moving_err = target.clone(), target.clone()
    static_err[0, :, 0, 0] += 0.5
    moving_err[0, :, 1, 2] += 0.5
    assert float(dynamic_mse(static_err, target)) == 0.0
    assert float(dynamic_mse(moving_err, target)) == pytest.approx(y * x * 0.25 / 2 / (2 * y * x), rel=1e-5)
    flicker = torch.tensor([1.0, 2.0] * (t // 2)).view(1, t, 1, 1).expand(1, t, y, x).to(torch.complex64)
    pred = _pair(4, (1, t, y, x))[0]  # the same temporal std at every pixel: the image MSE
    assert float(dynamic_mse(pred, flicker)) == pytest.approx(float(image_mse(pred, flicker)), rel=1e-5)


def test_dynamic_mse_is_in_the_weighted_sum_and_off_by_default():
    pred, target = _pair(5)
    assert LossConfig().dynamic_mse == 0.0
    _, terms = ReconLoss()(pred, target)
    assert float(terms["dynamic_mse"]) == 0.0
    total, terms = ReconLoss(LossConfig(kspace_mse=0, image_mse=0, image_l1=0, ssim=0, dynamic_mse=2.0))(pred, target)
    assert float(total) == pytest.approx(2.0 * float(dynamic_mse(pred, target)), rel=1e-6)
    with pytest.raises(InputError, match="loss weights"):
        LossConfig(dynamic_mse=-1.0).check()


# ---------------------------------------------------------------------------- data


def test_simulated_samples_are_deterministic_and_shaped():
    cfg = tiny_data(space=dict(accelerations=(4, 8)))
    a = SimulatedCine(cfg, seed=0).sample(2, 5)
    b = SimulatedCine(cfg, seed=0).sample(2, 5)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["target"], SimulatedCine(cfg, seed=0).sample(2, 9)["target"])  # another scene
    assert not torch.equal(a["target"], SimulatedCine(cfg, seed=0).sample(3, 5)["target"])
    assert not torch.equal(a["target"], SimulatedCine(cfg, seed=1).sample(2, 5)["target"])
    t, c, ny, w = 4, 3, 32, 16
    assert a["k"].shape == (t, c, ny, w) and a["k"].dtype == torch.complex64
    assert a["mask"].shape == (t, ny) and a["mask"].dtype == torch.bool
    assert a["maps"].shape == (c, ny, w) and a["target"].shape == (t, ny, w)
    assert int(a["acceleration"]) in (4, 8)
    # every ky line exists; sampled lines hold data, the others are zero
    m = a["mask"][:, None, :, None].expand_as(a["k"])
    assert bool((a["k"][~m] == 0).all()) and bool((a["k"][m].abs() > 0).all())
    assert bool(a["mask"][:, ny // 2 - 4: ny // 2 + 4].all())  # the ACS
    # ESPIRiT maps (the default, soft crop): sum of squares in [0, 1] (the S-curve weight of the eigenvalue)
    sos = a["maps"].abs().pow(2).sum(0)
    assert bool((sos <= 1 + 1e-3).all()) and float(sos.max()) > 0.99 and float(sos.mean()) > 0.1
    batch = collate([a, b])
    assert batch["k"].shape == (2, t, c, ny, w) and batch["acceleration"].shape == (2,)


def test_a_scene_gives_scene_reuse_samples():
    """Samples 4..7 (scene_reuse 4) share one simulated slice: same frames, coils and
    matrix, their own R; sample 8 starts a new scene. Order of requests does not matter."""
    cfg = tiny_data(space=dict(accelerations=(4, 8, 10), matrix=(32, 48), frames=(3, 6), coil_counts=(2, 3, 4)))
    src = SimulatedCine(cfg, seed=0)
    same = [src.sample(0, i) for i in (4, 5, 6, 7)]
    assert len({tuple(x["k"].shape[:3]) for x in same}) == 1
    # each variant draws its own R (over three scenes, some scene mixes them)
    assert any(len({int(src.sample(0, 4 * n + j)["acceleration"]) for j in range(4)}) > 1 for n in (1, 2, 3))
    fresh = SimulatedCine(cfg, seed=0)
    for i in (7, 5):  # out of order, from a new source: identical samples
        assert torch.equal(fresh.sample(0, i)["k"], same[i - 4]["k"])


def test_samples_vary_what_a_scanner_varies():
    """Matrix, frames, coils, oversampling and R change from sample to sample; the strip
    width follows the pixel budget."""
    cfg = tiny_data(space=dict(matrix=(32, 48), phase_fraction=(0.7, 1.0), frames=(3, 6), coil_counts=(2, 4),
                               accelerations=(4, 8)))
    shapes = {tuple(SimulatedCine(cfg, seed=0).sample(0, 4 * i)["k"].shape) for i in range(8)}
    assert len({s[0] for s in shapes}) > 1 and len({s[1] for s in shapes}) > 1 and len({s[2] for s in shapes}) > 1
    for t, _, ny, w in shapes:
        assert w == strip_width(cfg.pixels_per_sample, t, ny, 64) or w <= 48


def test_strip_width_and_start():
    assert strip_width(None, 12, 128, 100) == 100
    assert strip_width(12 * 128 * 32, 12, 128, 128) == 32
    assert strip_width(12 * 128 * 32, 30, 256, 128) == 16  # at least 16
    assert strip_width(10**9, 12, 128, 96) == 96  # at most nx
    target = np.zeros((2, 8, 64), dtype=np.complex64)
    target[..., 40:50] = 1.0
    starts = [strip_start(target, 16, np.random.default_rng(i)) for i in range(200)]
    inside = np.mean([s + 16 > 40 and s < 50 for s in starts])
    assert inside > 0.75  # mostly where the object is
    assert min(starts) >= 0 and max(starts) <= 64 - 16


def test_validation_sets_are_fixed_and_held_out_acquisitions_differ():
    cfg = tiny_data(val_samples=2, val_acceleration=8)
    v0 = SimulatedCine(cfg, seed=0, split="val")
    v1 = SimulatedCine(cfg, seed=9, split="val")  # the training seed does not matter
    x0 = SimulatedCine(cfg, seed=0, split="xval")
    assert len(v0) == 2 and len(x0) == 2
    for i in range(2):
        a, b = v0.sample(0, i), v1.sample(7, i)
        assert torch.equal(a["target"], b["target"]) and int(a["acceleration"]) == 8
        assert a["k"].shape[-1] == 32  # whole matrix
        x = x0.sample(0, i)
        assert int(x["acceleration"]) == 8 and not torch.equal(x["target"], a["target"])
    acq = x0.acquisition(x0.rng(0, 0))
    assert acq.coil_family == "dipole" and acq.ordering == "linear"


def test_train_and_heldout_spaces_do_not_overlap():
    """The held-out acquisitions share no coil family, no coil count and no SNR band with training."""
    assert not set(TRAIN_SPACE.coil_families) & set(HELDOUT_SPACE.coil_families)
    assert not set(TRAIN_SPACE.coil_counts) & set(HELDOUT_SPACE.coil_counts)
    for lo, hi in HELDOUT_SPACE.snr_bands:
        assert all(hi <= a or lo >= b for a, b in TRAIN_SPACE.snr_bands)
    assert set(TRAIN_SPACE.orderings).isdisjoint(HELDOUT_SPACE.orderings)
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = TRAIN_SPACE.draw(rng)
        assert 96 <= min(a.matrix) and max(a.matrix) <= 256 and 12 <= a.frames <= 30
        assert a.samples <= TRAIN_SPACE.max_samples and a.n_coils in TRAIN_SPACE.coil_counts
        assert a.coil_family in TRAIN_SPACE.coil_families


def test_strip_keeps_full_fov_ky_aliasing():
    """Cropping the readout after the coils: the strip's zero-filled image is the crop of the full one."""
    from recon.baselines.zero_filled import zero_filled
    from recon.problem import SliceProblem
    from recon.simulate.acquisition import Acquisition
    from recon.simulate.phantom import cine_phantom

    cfg = tiny_data()
    acq = Acquisition(matrix=(40, 36), frames=4, n_coils=3, acceleration=4, n_acs=8, snr=1e9)
    mag = cine_phantom(4, acq.matrix, "sax", 0)
    full = simulate_sample(cfg, mag, acq, np.random.default_rng(5), strip=False)
    strip = simulate_sample(cfg, mag, acq, np.random.default_rng(5), strip=True)
    f_target = full["target"] * full["scale"]
    s_target = strip["target"] * strip["scale"]
    x0 = next(x for x in range(36 - 16 + 1) if torch.allclose(f_target[..., x:x + 16], s_target, atol=1e-5))
    zf_full = zero_filled(SliceProblem(full["k"], full["mask"], full["maps"])) * full["scale"]
    zf_strip = zero_filled(SliceProblem(strip["k"], strip["mask"], strip["maps"])) * strip["scale"]
    assert strip["mask"].shape == full["mask"].shape  # all ky lines kept
    assert torch.allclose(zf_strip, zf_full[..., x0:x0 + 16], atol=1e-4 * float(zf_full.abs().max()))
    # and it really is aliased: the zero-filled strip differs from the target
    assert float((zf_strip - s_target).abs().max()) > 0.05 * float(s_target.abs().max())


def test_fully_sampled_noise_free_adjoint_recovers_target():
    """With ESPIRiT maps from the ACS (the default), the target is what the maps can
    represent: the SENSE adjoint of fully sampled noise-free data reproduces it exactly."""
    from recon.sense import SenseOperator

    cfg = tiny_data(space=dict(accelerations=(1,), snr_bands=((1e9, 1e9),)))
    s = SimulatedCine(cfg, seed=0).sample(0, 0)
    x = SenseOperator(s["maps"][None], s["mask"][None]).adjoint(s["k"][None])[0]
    assert torch.allclose(x, s["target"], atol=1e-4 * float(s["target"].abs().max()))


def test_training_samples_take_the_raw_data_path(tmp_path):
    """A simulated slice assembled in memory (to_slice_data) is what reading its raw file
    gives: same k-space, mask and ACS, in either line order."""
    from recon.io.header import build_cine_header
    from recon.io.raw import read_raw, write_raw
    from recon.io.acquisitions import slice_to_acquisitions
    from recon.masks import acs_indices
    from recon.simulate.acquisition import Acquisition
    from recon.simulate.cine import protocol, simulate_slice, to_slice_data
    from recon.simulate.phantom import cine_phantom

    for ordering in ("segmented", "linear"):
        acq = Acquisition(matrix=(32, 24), frames=3, n_coils=2, acceleration=4, n_acs=8, ordering=ordering,
                          coil_family="ring", readout_oversampling=2)
        sim = simulate_slice(cine_phantom(3, acq.matrix, "sax", 1), acq, np.random.default_rng(2), coil_grid=16)
        mem = to_slice_data(sim, acq)
        heads, data = slice_to_acquisitions(sim.kspace, sim.mask, acs_indices(32, 8), 0, sim.geometry,
                                            ordering=ordering)
        path = tmp_path / f"{ordering}.h5"
        write_raw(path, build_cine_header(protocol(acq)), heads, data)
        disk = read_raw(path).slices[0]
        for name in ("kspace", "mask", "acs", "acs_lines", "acs_mask"):
            np.testing.assert_array_equal(getattr(mem, name), getattr(disk, name), err_msg=name)
        assert mem.kspace.shape[-1] == 48  # readout oversampling still in: prepare() removes it


def test_real_series_are_used_when_present_and_holdout_is_excluded():
    from recon.simulate.realdata import default_data_dir, list_series

    d = default_data_dir()
    if d is None or not list_series(d):
        pytest.skip("no real cine series (shared/data) on this machine")
    files = list_series(d)
    cfg = DataConfig(holdout=(files[-1].stem,))
    train, val = split_series(cfg)
    assert files[-1] not in train and val == [files[-1]]
    src = SimulatedCine(cfg, seed=0)
    assert src.uses_real_images and all(p != files[-1] for p, _ in src.pool.entries)
    assert split_series(replace(cfg, images="phantom")) == ([], [])


def test_sharding_matches_a_larger_batch():
    # rank r of W with batch B sees the indices one process with batch W * B sees
    single = [global_index(s, 0, 1, 4, b) for s in range(3) for b in range(4)]
    ranks = [global_index(s, r, 2, 2, b) for s in range(3) for r in range(2) for b in range(2)]
    assert single == ranks == list(range(12))


def test_ismrmrd_file_samples(tmp_path):
    from recon.io.raw import read_reference
    from recon.simulate.cine import SimulationConfig, simulate_to_file

    path = tmp_path / "train.h5"
    simulate_to_file(SimulationConfig(n_slices=2, n_phases=3, n_coils=2, matrix=(32, 24), acceleration=4,
                                      n_acs=8, noise_scan=False), path)
    cfg = tiny_data(source="ismrmrd", train_files=(str(tmp_path / "*.h5"),), val_files=(str(path),),
                    pixels_per_sample=3 * 32 * 16, maps="true")
    val = RawFileSlices(cfg, split="val")
    assert len(val) == 2
    v = val.sample(0, 1)
    gt = torch.as_tensor(np.asarray(read_reference(path, "ground_truth", 1)))
    assert torch.allclose(v["target"] * v["scale"], gt.reshape(v["target"].shape), atol=1e-5)
    # no noise scan: the noise level the data shows, as inference estimates it
    from recon.io.raw import read_raw
    from recon.noise import estimate_sigma
    from recon.pipeline import prepare

    p = prepare(read_raw(path).slices[1], maps=np.zeros((2, 32, 24), np.complex64))
    assert float(v["noise"]) * float(v["scale"]) == pytest.approx(estimate_sigma(p.kspace, p.mask), rel=1e-4)
    tr = RawFileSlices(cfg, seed=0, split="train")
    a, b = tr.sample(0, 3), tr.sample(0, 3)
    assert torch.equal(a["k"], b["k"]) and a["k"].shape == (3, 2, 32, 16) and a["mask"].shape == (3, 32)


# ---------------------------------------------------------------------------- training


def test_overfitting_a_tiny_sample_lowers_the_loss(one_thread):
    from recon.models.registry import build_model

    torch.manual_seed(0)
    sample = SimulatedCine(tiny_data(), seed=0).sample(0, 0)
    batch = collate([sample])
    model = build_model(ModelConfig(name="crunet", crunet=CRUNetConfig(channels=8, cascades=2)))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loss_fn = ReconLoss()
    losses = []
    for _ in range(40):
        pred = model(batch["k"], batch["mask"], batch["maps"])
        loss, _ = loss_fn(pred, batch["target"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_resume_is_exact(tmp_path, one_thread):
    from recon.train.engine import Trainer

    cfg = tiny_run()
    full = Trainer(cfg, tmp_path / "full", progress=False)
    full.fit()
    steps_full = [s["loss"] for s in full.history["steps"]]

    part = Trainer(cfg, tmp_path / "part", progress=False)
    part.fit(max_epochs=1)
    assert len(part.history["steps"]) == 2 and not (tmp_path / "part" / "weights").exists()
    with pytest.raises(InputError, match="resume"):
        Trainer(cfg, tmp_path / "part", progress=False)
    resumed = Trainer(cfg, tmp_path / "part", resume=True, progress=False)
    assert resumed.start_epoch == 1 and resumed.scheduler.step_count == 2
    resumed.fit()
    steps_resumed = [s["loss"] for s in resumed.history["steps"]]
    assert len(steps_resumed) == 4
    np.testing.assert_allclose(steps_resumed, steps_full, rtol=1e-6)
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
    with pytest.raises(InputError, match="different"):
        Trainer(replace(cfg, train=replace(cfg.train, lr=1e-3)), tmp_path / "part", resume=True, progress=False)


def test_bf16_training_steps_and_differs_from_fp32(tmp_path, one_thread):
    """train.precision bf16: the forward under autocast, finite losses, weights in fp32, and not the
    fp32 run (the option is really used); an unknown precision is refused."""
    from recon.train.engine import Trainer

    runs = {}
    for prec in ("fp32", "bf16"):
        tr = Trainer(tiny_run(epochs=1, precision=prec), tmp_path / prec, progress=False)
        tr.fit()
        runs[prec] = [s["loss"] for s in tr.history["steps"]]
        assert all(np.isfinite(runs[prec])) and next(tr.model.parameters()).dtype == torch.float32
    assert runs["fp32"] != runs["bf16"]
    with pytest.raises(InputError, match="precision"):
        tiny_run(precision="fp16").validate()


def test_cli_run_folder_and_resume(tmp_path, capsys, one_thread):
    from crunet.cli.train import main
    from recon.config import dump_yaml
    from recon.weights import load_weights

    cfg_path = tmp_path / "tiny.yaml"
    dump_yaml(tiny_run(epochs=1, steps_per_epoch=1, warmup_epochs=0), cfg_path)
    out = tmp_path / "run"
    assert main(["--config", str(cfg_path), "--out", str(out), "--no-progress"]) == 0
    for name in ("config.yaml", "checkpoint.pt", "metrics.csv", "metrics.json", "loss_curve.png", "validation.png",
                 "weights/model.safetensors", "weights/config.yaml", "weights/manifest.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    row = metrics["epochs"][0]
    assert {"val_psnr", "val_ssim", "zf_psnr", "zf_ssim", "train_loss", "lr"} <= set(row)
    assert len(metrics["steps"]) == 1 and metrics["ddp_max_param_diff"] == 0.0
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model, mcfg = load_weights(out / "weights")
    assert mcfg == tiny_run().model
    # an existing run is not overwritten; --resume extends it with the saved config
    assert main(["--config", str(cfg_path), "--out", str(out), "--no-progress"]) == 2
    assert "resume" in capsys.readouterr().err
    assert main(["--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert load_run_config(out / "config.yaml").train.epochs == 2


def test_time_budget_plans_the_epochs_that_fit(tmp_path, one_thread):
    """train.max_minutes: after the first epoch the run plans what fits (here: that one
    epoch), ends with weights, and records the planned epochs in its config."""
    from recon.train.engine import train

    cfg = tiny_run(epochs=50, steps_per_epoch=2, max_minutes=1e-4)
    last = train(cfg, tmp_path, progress=False)
    assert last["epoch"] == 1 and (tmp_path / "weights" / "manifest.json").is_file()
    assert load_run_config(tmp_path / "config.yaml").train.epochs == 1
    with pytest.raises(InputError, match="max_minutes"):
        tiny_run(max_minutes=0.0).train.validate()


def test_init_weights_fine_tunes_saved_weights(tmp_path, one_thread):
    """train.init_weights: the run starts from the given weights (not a random initialisation),
    records their SHA-256 for the card, and refuses weights of another architecture."""
    from recon.train.engine import Trainer
    from recon.weights import save_weights, weights_info

    donor = Trainer(tiny_run(epochs=1), tmp_path / "donor", progress=False)
    donor.fit()
    save_weights(donor.model, donor.cfg.model, tmp_path / "w")
    tuned = Trainer(tiny_run(init_weights=str(tmp_path / "w"), seed=4), tmp_path / "tuned", progress=False)
    for (name, a), b in zip(donor.model.state_dict().items(), tuned.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    fresh = Trainer(tiny_run(seed=4), tmp_path / "fresh", progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(fresh.model.state_dict().values(),
                                                    tuned.model.state_dict().values()))
    assert tuned.history["init_weights"]["sha256"] == weights_info(tmp_path / "w").sha256
    tuned.fit(max_epochs=1)
    assert json.loads((tmp_path / "tuned" / "metrics.json").read_text())["init_weights"]["ref"] == str(tmp_path / "w")
    other = tiny_run(init_weights=str(tmp_path / "w"))
    other = replace(other, model=ModelConfig(name="crunet", crunet=CRUNetConfig(channels=6, cascades=2)))
    with pytest.raises(InputError, match="another model config"):
        Trainer(other, tmp_path / "other", progress=False)
    with pytest.raises(InputError, match="init_weights"):
        tiny_run(init_weights=" ").validate()
    # a setting no parameter depends on may change (fine-tuning with wrapped rows)
    wrapped = tiny_run(init_weights=str(tmp_path / "w"))
    sub = wrapped.model.crunet
    wrapped = replace(wrapped, model=replace(wrapped.model, crunet=replace(sub, wrap_rows=sub.wrap_rows + 4)))
    moved = Trainer(wrapped, tmp_path / "wrapped", progress=False)
    for (name, a), b in zip(donor.model.state_dict().items(), moved.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_noise_weighted_run_starts_from_hard_weights_and_trains_on_the_noise(tmp_path, one_thread):
    """data_consistency: noise from weights with hard data consistency: every parameter copied,
    each tau_i at its initial value, the run records the change; training feeds the samples'
    noise levels (the simulated noise std over the sample's scale, what the data shows)."""
    from recon.noise import estimate_sigma
    from recon.train.engine import Trainer
    from recon.weights import save_weights

    def noisy(cfg: RunConfig) -> RunConfig:
        sub = replace(cfg.model.crunet, data_consistency="noise")
        return replace(cfg, model=replace(cfg.model, crunet=sub))

    donor = Trainer(tiny_run(epochs=1), tmp_path / "donor", progress=False)
    save_weights(donor.model, donor.cfg.model, tmp_path / "w")
    run = Trainer(noisy(tiny_run(init_weights=str(tmp_path / "w"), seed=4)), tmp_path / "n", progress=False)
    assert run.history["init_weights"]["data_consistency"] == ["hard", "noise"]
    new = run.model.state_dict()
    assert torch.equal(new.pop("dc_log_tau"), torch.zeros(2))
    for name, value in donor.model.state_dict().items():
        torch.testing.assert_close(new[name], value, msg=name)
    run.fit(max_epochs=1)
    assert (run.model.dc_log_tau != 0).all()  # trained
    sample = run.validation_samples("val")[0]
    est = estimate_sigma(sample["k"], sample["mask"])
    assert 0.7 < float(sample["noise"]) / est < 1.4


def test_cg_run_starts_from_noise_weighted_weights(tmp_path, one_thread):
    """data_consistency: cg from weights trained with ``noise``: the same parameters, every one
    copied but tau_i (it means the image's error there: CG_TAU_INIT, as a fresh CG model), the
    change recorded; from hard weights it is refused by name."""
    from recon.models.crunet import CG_TAU_INIT
    from recon.models.registry import build_model
    from recon.train.engine import Trainer

    def fresh_cg_tau(run):
        return build_model(run.cfg.model).dc_log_tau.detach()
    from recon.weights import save_weights

    def dc(cfg: RunConfig, mode: str) -> RunConfig:
        return replace(cfg, model=replace(cfg.model, crunet=replace(cfg.model.crunet, data_consistency=mode)))

    donor = Trainer(dc(tiny_run(epochs=1), "noise"), tmp_path / "donor", progress=False)
    donor.fit()
    save_weights(donor.model, donor.cfg.model, tmp_path / "w")
    run = Trainer(dc(tiny_run(init_weights=str(tmp_path / "w"), seed=4), "cg"), tmp_path / "cg", progress=False)
    assert run.history["init_weights"]["data_consistency"] == ["noise", "cg"]
    tau = run.model.dc_tau(0)
    assert abs(float(tau.detach()) - CG_TAU_INIT) < 1e-6 and torch.equal(run.model.dc_log_tau, fresh_cg_tau(run))
    for (name, a), b in zip(donor.model.state_dict().items(), run.model.state_dict().values()):
        if name != "dc_log_tau":
            torch.testing.assert_close(a, b, msg=name)
    run.fit(max_epochs=1)
    save_weights(Trainer(tiny_run(epochs=1), tmp_path / "hard", progress=False).model, tiny_run().model, tmp_path / "h")
    with pytest.raises(InputError, match="another model config"):
        Trainer(dc(tiny_run(init_weights=str(tmp_path / "h")), "cg"), tmp_path / "cg2", progress=False)


def test_init_widen_starts_a_wider_model_from_narrow_weights(tmp_path, one_thread):
    """train.init_widen: 4-channel weights start an 8-channel run that gives their images at
    step 0 (recorded for the card); without init_weights, or across architectures, refused."""
    from recon.train.engine import Trainer
    from recon.weights import load_weights, save_weights

    donor = Trainer(tiny_run(epochs=1), tmp_path / "donor", progress=False)
    save_weights(donor.model, donor.cfg.model, tmp_path / "w")
    wide_cfg = tiny_run(init_weights=str(tmp_path / "w"), init_widen=True, seed=4)
    wide_cfg = replace(wide_cfg, model=replace(wide_cfg.model, crunet=replace(wide_cfg.model.crunet, channels=8)))
    wide = Trainer(wide_cfg, tmp_path / "wide", progress=False)
    assert wide.history["init_weights"]["widened"] == [4, 8]
    narrow, _ = load_weights(tmp_path / "w")
    g = torch.Generator().manual_seed(5)
    k = torch.randn(1, 2, 2, 8, 6, dtype=torch.complex64, generator=g)
    mask = torch.ones(1, 2, 8, dtype=torch.bool)
    mask[..., 1::3] = False
    maps = torch.randn(1, 2, 8, 6, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().square().sum(1, keepdim=True).sqrt()
    k = k * mask[:, :, None, :, None]
    with torch.no_grad():
        torch.testing.assert_close(wide.model(k, mask, maps), narrow(k, mask, maps), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="another model config"):  # without init_widen: refused
        Trainer(replace(wide_cfg, train=replace(wide_cfg.train, init_widen=False)), tmp_path / "x", progress=False)
    with pytest.raises(InputError, match="init_widen needs init_weights"):
        tiny_run(init_widen=True).validate()
    crnn = replace(wide_cfg, model=ModelConfig(name="crnn"))
    with pytest.raises(InputError, match="CRUNet-MR"):
        Trainer(crnn, tmp_path / "crnn", progress=False)


def test_init_pointwise_bank_starts_a_1x1_bank_from_3x3_weights(tmp_path, one_thread):
    """train.init_pointwise_bank: CA weights with the 3x3 bank projection start a 1x1 run; each
    1x1 kernel is the sum of the 3x3 taps, everything else is copied; refused without
    init_weights, with init_widen, or when the run's model is not the 1x1 counterpart."""
    from recon.train.engine import Trainer
    from recon.weights import save_weights

    def ca(cfg: RunConfig, projection: str) -> RunConfig:
        sub = replace(cfg.model.crunet, fusion="ca", ca_reduction=2, bank_projection=projection)
        return replace(cfg, model=replace(cfg.model, crunet=sub))

    donor = Trainer(ca(tiny_run(epochs=1), "3x3"), tmp_path / "donor", progress=False)
    save_weights(donor.model, donor.cfg.model, tmp_path / "w")
    run = ca(tiny_run(init_weights=str(tmp_path / "w"), init_pointwise_bank=True, seed=4), "1x1")
    moved = Trainer(run, tmp_path / "p1", progress=False)
    assert moved.history["init_weights"]["bank_projection"] == ["3x3", "1x1"]
    old, new = donor.model.state_dict(), moved.model.state_dict()
    projections = [n for n in new if n.endswith("project.weight")]
    assert projections and all(new[n].shape[2:] == (1, 1) for n in projections)
    for name, value in new.items():
        expected = old[name].sum(dim=(2, 3), keepdim=True) if name in projections else old[name]
        torch.testing.assert_close(value, expected, msg=name)
    with pytest.raises(InputError, match="init_pointwise_bank turns"):  # the run's model keeps 3x3
        Trainer(ca(tiny_run(init_weights=str(tmp_path / "w"), init_pointwise_bank=True), "3x3"), tmp_path / "x",
                progress=False)
    with pytest.raises(InputError, match="init_pointwise_bank needs init_weights"):
        tiny_run(init_pointwise_bank=True).validate()
    with pytest.raises(InputError, match="cannot be combined"):
        tiny_run(init_weights="w", init_pointwise_bank=True, init_widen=True).validate()


def test_augmentation_moves_the_object_along_y_and_keeps_the_frames():
    """The fitted frames are moved circularly along y by a random number of rows (the cut of
    a cropped series must not sit at the field of view's edge), the rest of the augmentation
    keeps the frames a valid cine (same values, periodic in time)."""
    mag = np.random.default_rng(0).random((4, 12, 7)).astype(np.float32)
    shifts = set()
    for seed in range(12):
        moved = move_along_y(mag, np.random.default_rng(seed))
        found = [d for d in range(12) if np.array_equal(moved, np.roll(mag, d, axis=1))]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) >= 6  # many rows, not one fixed offset
    aug = augment_series(mag, np.random.default_rng(3))
    assert sorted(aug.ravel()) == sorted(mag.ravel())


def test_seam_rows_make_the_crop_periodic_along_y():
    """With seam_rows the crop's cut edges are cross-faded into each other: on a smooth
    image that is not periodic along y, the step from the last row to the first (the seam a
    move along y would put inside the field of view) is spread over the blended rows;
    without, it stays. Whether the rows beyond the cut come from below, above or a mirror (a crop
    that spans the series), the shape is the matrix and the interior is untouched."""
    from recon.train.samples import join_cut_rows, random_crop_fit

    yy, xx = np.mgrid[0:200, 0:150].astype(np.float32)
    series = np.stack([np.sin(yy / 23.0) + 0.01 * xx + yy / 10.0] * 3)  # smooth, not periodic in y
    for scale in ((0.5, 0.5), (1.0, 1.0)):
        for seed in range(4):
            cut = random_crop_fit(series, (96, 72), scale, np.random.default_rng(seed))
            joined = random_crop_fit(series, (96, 72), scale, np.random.default_rng(seed), seam_rows=8)
            assert joined.shape == cut.shape == (3, 96, 72)
            interior = np.abs(np.diff(cut, axis=1)).max()
            seam = np.abs(cut[:, 0] - cut[:, -1]).max()
            assert seam > 20 * interior  # a step at the cut
            # cross-faded over 8 rows: no step at the cut or anywhere larger than a ninth of it or so
            steps = np.abs(np.diff(np.concatenate([joined, joined[:, :1]], axis=1), axis=1)).max()
            assert steps < seam / 6
    x = np.arange(12, dtype=np.float32)[None, :, None]
    np.testing.assert_allclose(join_cut_rows(x, 10, 2, True)[0, :, 0], [20 / 3, 13 / 3, 2, 3, 4, 5, 6, 7, 8, 9],
                               rtol=1e-6)
    np.testing.assert_allclose(join_cut_rows(x, 10, 2, False)[0, :, 0], [2, 3, 4, 5, 6, 7, 8, 9, 20 / 3, 13 / 3],
                               rtol=1e-6)
    np.testing.assert_array_equal(join_cut_rows(x, 10, 0, False), x[:, 2:])  # no blend: the crop alone
    np.testing.assert_array_equal(join_cut_rows(x, 10, 0, True), x[:, :10])
    with pytest.raises(InputError, match="seam_rows"):
        DataConfig(seam_rows=-1).validate()


def test_seam_rows_reach_the_crop_of_real_series(tmp_path, monkeypatch):
    """DataConfig.seam_rows goes to the crop of every real series (0 without augmentation)."""
    import recon.train.data as D

    cine = (np.random.default_rng(0).random((2, 6, 40, 40)) * 100).astype(np.int16)
    for name in ("patient_a", "patient_b"):
        np.savez(tmp_path / f"{name}.npz", cine=cine)
    seen = []
    real = D.random_crop_fit
    monkeypatch.setattr(D, "random_crop_fit", lambda *a, **k: seen.append(k.get("seam_rows")) or real(*a, **k))
    for augment, want in ((True, 6), (False, 0)):
        cfg = DataConfig(data_dir=str(tmp_path), images="real", holdout=("patient_b",), seam_rows=6,
                         augment=augment).validate()
        src = SimulatedCine(cfg, seed=0, split="train")
        assert src.uses_real_images
        mag = src.magnitude(np.random.default_rng(1), 6, (32, 24))
        assert mag.shape == (6, 32, 24) and seen[-1] == want


def test_deform_warps_every_frame_alike_and_keeps_the_anatomy_recognisable():
    """deform_series: strength 0 is the identity and draws nothing; otherwise every frame gets the
    same warp (a frame-independent image stays frame-independent), the values stay non-negative
    and the warped image is a moved copy of the original, not noise (close to it in the centre
    for a mild warp, different from it overall)."""
    from recon.train.samples import deform_series

    yy, xx = np.mgrid[0:64, 0:48].astype(np.float32)
    blob = np.exp(-((yy - 32) ** 2 + (xx - 24) ** 2) / 200.0)
    series = np.stack([blob, blob, 2 * blob])
    rng = np.random.default_rng(0)
    assert deform_series(series, rng, 0.0) is series
    assert rng.random() == np.random.default_rng(0).random()  # no draw at strength 0
    out = deform_series(series, np.random.default_rng(1), 1.0)
    assert out.shape == series.shape and out.dtype == np.float32 and out.min() >= 0
    np.testing.assert_allclose(out[1], out[0], atol=1e-6)
    np.testing.assert_allclose(out[2], 2 * out[0], atol=1e-5)
    assert np.abs(out[0] - blob).max() > 0.01  # moved
    assert np.corrcoef(out[0].ravel(), blob.ravel())[0, 1] > 0.8  # a warp of the blob, not something else
    again = deform_series(series, np.random.default_rng(1), 1.0)
    np.testing.assert_array_equal(again, out)  # the generator's draws alone decide it


def test_deform_applies_to_training_series_only(tmp_path):
    """data.deform warps the real series of training samples; validation samples are those of a run
    without it (the sets every run is compared on)."""
    cine = (np.random.default_rng(0).random((2, 6, 40, 40)) * 100).astype(np.int16)
    for name in ("patient_a", "patient_b"):
        np.savez(tmp_path / f"{name}.npz", cine=cine)
    plain = DataConfig(data_dir=str(tmp_path), images="real", holdout=("patient_b",)).validate()
    warped = replace(plain, deform=1.0).validate()

    def mag(cfg, split):
        return SimulatedCine(cfg, seed=0, split=split).magnitude(np.random.default_rng(1), 6, (32, 24))

    np.testing.assert_array_equal(mag(plain, "val"), mag(warped, "val"))
    assert not np.allclose(mag(plain, "train"), mag(warped, "train"))
    with pytest.raises(InputError, match="deform"):
        DataConfig(deform=-0.5).validate()


def test_composite_input_run_starts_as_its_source_and_its_heads_learn_at_their_rate(tmp_path, one_thread):
    """composite_input from weights without it: every parameter copied, each cascade's composite
    head at zero (the run's model computes the source's images at step 0), the run records the
    change; train.lr_scale gives the new heads their own rate; a missing name part is refused."""
    from recon.train.engine import Trainer, parameter_groups
    from recon.weights import save_weights

    def composite(cfg: RunConfig) -> RunConfig:
        return replace(cfg, model=replace(cfg.model, crunet=replace(cfg.model.crunet, composite_input="missing")))

    donor = Trainer(tiny_run(epochs=1), tmp_path / "donor", progress=False)
    save_weights(donor.model, donor.cfg.model, tmp_path / "w")
    run = Trainer(composite(tiny_run(init_weights=str(tmp_path / "w"), seed=4, lr_scale={"composite_head": 20.0})),
                  tmp_path / "c", progress=False)
    assert run.history["init_weights"]["composite_input"] == ["none", "missing"]
    new = run.model.state_dict()
    heads = [name for name in new if ".composite_head." in name]
    assert len(heads) == 2  # the weight of each of the 2 cascades (no bias with "missing")
    for name in heads:
        assert not new.pop(name).any()
    for name, value in donor.model.state_dict().items():
        torch.testing.assert_close(new[name], value, msg=name)
    sample = run.validation_samples("val")[0]
    with torch.no_grad():
        args = (sample["k"][None], sample["mask"][None], sample["maps"][None])
        torch.testing.assert_close(run.model(*args), donor.model(*args))
    scales = sorted(g["lr_scale"] for g in run.optimizer.param_groups)
    assert scales == [1.0, 20.0]
    run.fit(max_epochs=1)
    lrs = {g["lr_scale"]: g["lr"] for g in run.optimizer.param_groups}
    assert lrs[20.0] == pytest.approx(20 * lrs[1.0])
    assert all(run.model.state_dict()[name].any() for name in heads)  # the heads left zero
    assert len(parameter_groups(run.model, {})) == 1
    frozen = Trainer(composite(tiny_run(init_weights=str(tmp_path / "w"), seed=5,
                                        lr_scale={"composite_head": 1.0, "": 0.0})), tmp_path / "f", progress=False)
    frozen.fit(max_epochs=1)
    for name, value in frozen.model.state_dict().items():  # only the heads trained
        if ".composite_head." in name:
            assert value.any(), name
        else:
            torch.testing.assert_close(value, donor.model.state_dict()[name], msg=name)
    for bad in ({"head": -1.0}, {"": 0.0}):
        with pytest.raises(InputError, match="lr_scale"):
            tiny_run(lr_scale=bad).validate()


def test_bench_times_a_training_step_per_arithmetic(tmp_path, capsys, one_thread):
    """crunet bench --what train: Trainer.train_step on the run's first sample, fp32 against bf16
    where bf16 is native (n/a elsewhere), with the step's FLOPs and their fraction of the matmul rate."""
    from crunet.cli import main
    from recon.config import dump_yaml
    from recon.machine import native_bf16

    cfg_path = tmp_path / "tiny.yaml"
    dump_yaml(tiny_run(), cfg_path)
    out = tmp_path / "bench.json"
    assert main(["bench", "--what", "train", "--train-config", str(cfg_path), "--repeats", "1", "--device", "cpu",
                 "--threads", "1", "--out", str(out)]) == 0  # auto would follow the machine's load
    printed = capsys.readouterr().out
    r = json.loads(out.read_text())["train"]
    assert r["batch_shape"]["k"] == [1, 4, 3, 32, 16] and r["gflop_per_step"] > 0 and r["threads"] == 1
    fp32 = r["variants"]["fp32"]
    assert fp32["ratio_to_fp32"] == 1.0 and fp32["gflops"] * fp32["seconds"] == pytest.approx(r["gflop_per_step"])
    assert "train step fp32" in printed and "of fp32 matmul)" in printed
    bf16 = r["variants"]["bf16"]
    assert (bf16["seconds"] > 0) if native_bf16("cpu") else bf16["note"] == "n/a: bf16 is emulated on this CPU"
