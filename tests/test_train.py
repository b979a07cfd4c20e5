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
from recon.train.config import DataConfig, LossConfig, RunConfig, TrainConfig, load_run_config
from recon.train.data import (RawFileSlices, SimulatedCine, collate, global_index, simulate_sample,
                              split_series)
from recon.train.loss import ReconLoss, image_l1, image_mse, kspace_mse, ssim_loss
from recon.train.schedule import WarmupCosine, warmup_cosine_lr

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
VARIANTS = ("crunet", "crunet_conv", "crunet_ca", "crunet_ca_k2", "crunet_ca_k3", "crnn")


@pytest.fixture
def one_thread():
    """Small models train fastest (and most reproducibly) on one thread, also on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_data(**kw) -> DataConfig:
    base = dict(images="phantom", matrix=(32, 32), frames=4, coils=3, accelerations=(4,), acs_lines=8,
                strip_width=24, coil_grid=16, val_samples=1, val_acceleration=4, snr=(30.0, 30.0))
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
    p.write_text("data: {strip_width: 4}\n")
    with pytest.raises(InputError, match="strip_width"):
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
    for fn in (image_mse, image_l1, kspace_mse, ssim_loss):
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


def test_recon_loss_is_the_weighted_sum():
    pred, target = _pair(3)
    cfg = LossConfig(kspace_mse=0.25, image_mse=0.5, image_l1=0.5, ssim=0.5)
    total, terms = ReconLoss(cfg)(pred, target)
    expect = 0.25 * terms["kspace_mse"] + 0.5 * (terms["image_mse"] + terms["image_l1"]) + 0.5 * terms["ssim"]
    assert float(total) == pytest.approx(float(expect), rel=1e-6)
    total, terms = ReconLoss(LossConfig(kspace_mse=0, image_mse=1, image_l1=0, ssim=0))(pred, target)
    assert float(total) == pytest.approx(float(image_mse(pred, target)), rel=1e-6)
    assert float(terms["ssim"]) == 0.0


# ---------------------------------------------------------------------------- data


def test_simulated_samples_are_deterministic_and_shaped():
    cfg = tiny_data(accelerations=(4, 8))
    a = SimulatedCine(cfg, seed=0).sample(2, 5)
    b = SimulatedCine(cfg, seed=0).sample(2, 5)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["target"], SimulatedCine(cfg, seed=0).sample(2, 6)["target"])
    assert not torch.equal(a["target"], SimulatedCine(cfg, seed=0).sample(3, 5)["target"])
    assert not torch.equal(a["target"], SimulatedCine(cfg, seed=1).sample(2, 5)["target"])
    t, c, ny, w = cfg.frames, cfg.coils, cfg.matrix[0], cfg.strip_width
    assert a["k"].shape == (t, c, ny, w) and a["k"].dtype == torch.complex64
    assert a["mask"].shape == (t, ny) and a["mask"].dtype == torch.bool
    assert a["maps"].shape == (c, ny, w) and a["target"].shape == (t, ny, w)
    assert int(a["acceleration"]) in (4, 8)
    # every ky line exists; sampled lines hold data, the others are zero
    m = a["mask"][:, None, :, None].expand_as(a["k"])
    assert bool((a["k"][~m] == 0).all()) and bool((a["k"][m].abs() > 0).all())
    assert bool(a["mask"][:, ny // 2 - 4: ny // 2 + 4].all())  # the ACS
    # unit sum-of-squares maps
    assert torch.allclose(a["maps"].abs().pow(2).sum(0), torch.ones(ny, w), atol=1e-4)
    batch = collate([a, b])
    assert batch["k"].shape == (2, t, c, ny, w) and batch["acceleration"].shape == (2,)


def test_validation_set_is_fixed():
    cfg = tiny_data(val_samples=2, val_acceleration=8)
    v0 = SimulatedCine(cfg, seed=0, split="val")
    v1 = SimulatedCine(cfg, seed=9, split="val")  # the training seed does not matter
    assert len(v0) == 2
    for i in range(2):
        a, b = v0.sample(0, i), v1.sample(7, i)
        assert torch.equal(a["target"], b["target"]) and int(a["acceleration"]) == 8
        assert a["k"].shape[-1] == cfg.matrix[1]  # whole matrix (val_strip_width null)


def test_strip_keeps_full_fov_ky_aliasing():
    """Cropping the readout after the coils: the strip's zero-filled image is the crop of the full one."""
    from recon.baselines.zero_filled import zero_filled
    from recon.problem import SliceProblem
    from recon.simulate.phantom import cine_phantom

    cfg = tiny_data(matrix=(40, 36), snr=(1e9, 1e9), strip_width=None)
    mag = cine_phantom(cfg.frames, cfg.matrix, "sax", 0)
    full = simulate_sample(cfg, mag, np.random.default_rng(5), acceleration=4, strip_width=None)
    strip = simulate_sample(cfg, mag, np.random.default_rng(5), acceleration=4, strip_width=16)
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
    from recon.sense import SenseOperator

    cfg = tiny_data(accelerations=(1,), snr=(1e9, 1e9))
    s = SimulatedCine(cfg, seed=0).sample(0, 0)
    x = SenseOperator(s["maps"][None], s["mask"][None]).adjoint(s["k"][None])[0]
    assert torch.allclose(x, s["target"], atol=1e-4 * float(s["target"].abs().max()))


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
                    strip_width=16, maps="true")
    val = RawFileSlices(cfg, split="val")
    assert len(val) == 2
    v = val.sample(0, 1)
    gt = torch.as_tensor(np.asarray(read_reference(path, "ground_truth", 1)))
    assert torch.allclose(v["target"] * v["scale"], gt.reshape(v["target"].shape), atol=1e-5)
    tr = RawFileSlices(cfg, seed=0, split="train")
    a, b = tr.sample(0, 3), tr.sample(0, 3)
    assert torch.equal(a["k"], b["k"]) and a["k"].shape == (3, 2, 32, 16) and a["mask"].shape == (3, 32)


# ---------------------------------------------------------------------------- training


def test_overfitting_a_tiny_sample_lowers_the_loss(one_thread):
    from recon.models.registry import build_model

    torch.manual_seed(0)
    sample = SimulatedCine(tiny_data(strip_width=16), seed=0).sample(0, 0)
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


def test_cli_run_folder_and_resume(tmp_path, capsys, one_thread):
    from recon.cli.train import main
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
