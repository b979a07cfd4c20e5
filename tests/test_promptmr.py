"""PromptMR (recon.models.promptmr): config validation, shapes, gradients, the k-space update
against its explicit coil k-space form, soft data consistency, scale equivariance, batch and
frame independence, save/load through recon.weights, two training steps."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from recon.errors import InputError
from recon.fft import fft2c, ifft2c
from recon.models.config import ModelConfig, PromptMRConfig
from recon.models.promptmr import PromptMR, adjacent_frame_index
from recon.sense import expand, expand_mask, reduce

REPO = Path(__file__).resolve().parents[1]

#: A tiny PromptMR: every block type present, seconds to run.
TINY = dict(cascades=3, adjacent_frames=3, channels=4, feature_dims=(4, 6, 8), prompt_dims=(2, 2, 4),
            prompt_components=(2, 3, 2), prompt_sizes=(6, 4, 2), encoder_blocks=(1, 1, 1), decoder_blocks=(1, 1, 1),
            skip_blocks=(1, 0, 1), bottleneck_blocks=1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks: intra-op threads only add synchronisation on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _model(seed=0, dtype=torch.float32, **kw) -> PromptMR:
    torch.manual_seed(seed)
    return PromptMR(PromptMRConfig(**{**TINY, **kw})).to(dtype)


def _crandn(g, *shape, dtype=torch.complex64):
    return torch.complex(torch.randn(*shape, generator=g, dtype=torch.float64),
                         torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)


def _problem(seed, b, t, c, ny, nx, dtype=torch.complex64, unit_coil=False):
    """Undersampled k-space ``[b, t, c, y, x]``, line mask ``[b, t, y]``, unit sum-of-squares maps."""
    g = torch.Generator().manual_seed(seed)
    if unit_coil:
        maps = torch.exp(1j * torch.rand(b, 1, ny, nx, generator=g, dtype=torch.float64) * 6.0).to(dtype)
    else:
        maps = _crandn(g, b, c, ny, nx, dtype=dtype)
        maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = torch.rand(b, t, ny, generator=g) < 0.4
    mask[..., ny // 2] = True
    k = _crandn(g, b, t, maps.shape[1], ny, nx, dtype=dtype) * mask[:, :, None, :, None]
    return k, mask, maps


def _randomise_dc(model: PromptMR, seed: int = 5) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for casc in model.cascades:
            if casc.dc_weight is not None:
                casc.dc_weight.copy_(0.2 + torch.rand(1, generator=g))


# ---------------------------------------------------------------------------- config


def test_config_validation_and_yaml(tmp_path):
    from recon.config import dump_yaml, load_config

    PromptMRConfig().validate()
    with pytest.raises(InputError, match="odd"):
        PromptMRConfig(adjacent_frames=4).validate()
    with pytest.raises(InputError, match="feature_dims"):
        PromptMR(PromptMRConfig(feature_dims=(8, 8)))
    with pytest.raises(InputError, match="prompt_sizes"):
        PromptMRConfig(prompt_sizes=(4, 0, 2)).validate()
    cfg = ModelConfig(name="promptmr", promptmr=PromptMRConfig(**TINY))
    dump_yaml(cfg, tmp_path / "m.yaml")
    assert load_config(ModelConfig, tmp_path / "m.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("name: promptmr\npromptmr: {cascades: 2, prompt_length: 3}\n")
    with pytest.raises(InputError, match="prompt_length"):
        load_config(ModelConfig, tmp_path / "bad.yaml")
    (tmp_path / "even.yaml").write_text("name: promptmr\npromptmr: {adjacent_frames: 2}\n")
    with pytest.raises(InputError, match="adjacent_frames"):
        load_config(ModelConfig, tmp_path / "even.yaml")


def test_registry_builds_it_and_describes_it():
    from recon.models.registry import MODEL_NAMES, build_model
    from recon.weights import describe_model

    assert "promptmr" in MODEL_NAMES
    cfg = ModelConfig(name="promptmr", promptmr=PromptMRConfig(**TINY))
    model = build_model(cfg)
    assert isinstance(model, PromptMR) and model.cfg == cfg.promptmr
    assert build_model(cfg, checkpoint=True).checkpoint
    assert describe_model(cfg) == "PromptMR 4ch x3 (3 adjacent frames)"


def test_cpu_config_has_the_recipe_of_crunet_ca():
    from recon.models.registry import build_model
    from recon.train.config import load_run_config

    ours, ref = (load_run_config(REPO / "configs" / "cpu" / f"{n}.yaml") for n in ("promptmr", "crunet_ca"))
    assert ours.model.name == "promptmr" and ours.data == ref.data
    assert ours.train == replace(ref.train, epochs=ours.train.epochs)
    assert ours.model.promptmr.adjacent_frames == 5  # the paper's dynamic setting
    assert 0 < sum(p.numel() for p in build_model(ours.model).parameters()) < 5e6


def test_adjacent_frame_index_wraps():
    assert adjacent_frame_index(6, 5).tolist()[0] == [4, 5, 0, 1, 2]
    assert adjacent_frame_index(6, 5).tolist()[5] == [3, 4, 5, 0, 1]
    assert adjacent_frame_index(2, 5).tolist() == [[0, 1, 0, 1, 0], [1, 0, 1, 0, 1]]
    assert adjacent_frame_index(1, 3).tolist() == [[0, 0, 0]]


# ---------------------------------------------------------------------------- shapes and gradients


@pytest.mark.parametrize("b,t,c,ny,nx,wrap", [(1, 1, 1, 8, 8, 0), (2, 2, 2, 9, 7, 0), (1, 6, 3, 13, 10, 0),
                                             (1, 3, 2, 1, 5, 0), (1, 3, 2, 13, 10, 8), (1, 2, 1, 3, 5, 8)])
def test_shapes_any_size_and_frame_count(b, t, c, ny, nx, wrap):
    k, mask, maps = _problem(1, b, t, c, ny, nx)
    model = _model(adjacent_frames=5, wrap_rows=wrap).eval()
    with torch.no_grad():
        out = model(k, mask, maps)
    assert out.shape == (b, t, ny, nx) and out.dtype == torch.complex64
    assert torch.isfinite(torch.view_as_real(out)).all()


def test_float64_model_and_bad_inputs():
    k, mask, maps = _problem(2, 1, 3, 2, 10, 9, dtype=torch.complex128)
    out = _model(dtype=torch.float64)(k, mask.double(), maps)
    assert out.dtype == torch.complex128
    model = _model()
    with pytest.raises(InputError, match="k-space"):
        model(k.real, mask, maps)
    with pytest.raises(InputError, match="maps"):
        model(k, mask, maps[:, :1])
    with pytest.raises(InputError, match="mask"):
        model(k, mask[..., :-1], maps)


def test_gradient_reaches_every_parameter():
    k, mask, maps = _problem(3, 2, 4, 2, 12, 10)
    target = _crandn(torch.Generator().manual_seed(9), 2, 4, 12, 10)
    model = _model(cascades=4)
    assert model.cascades[0].dc_weight is None  # k = k0 there: its soft-DC term is zero
    loss = (model(k, mask, maps) - target).abs().pow(2).mean()
    loss.backward()
    names = [n for n, _ in model.named_parameters()]
    assert any("components" in n for n in names) and sum("dc_weight" in n for n in names) == 3
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_fixed_prompts_are_saved_buffers():
    model = _model(learnable_prompt=False)
    names = [n for n, _ in model.named_parameters()]
    assert not any("components" in n for n in names)
    assert sum("components" in n for n in model.state_dict()) == 3 * len(model.cascades)


# ---------------------------------------------------------------------------- the k-space update


def _explicit(model: PromptMR, k, mask, maps):
    """The reference's update on the explicit coil k-space state, one target frame at a time:
    ``k <- k - lambda M (k - k0) - F S R(S^H F^H k)`` from ``k = k0``; frame ``s`` of the
    output is ``S^H F^H`` of the centre frame of the sample of frames ``s - A//2 .. s + A//2``."""
    b, t = k.shape[:2]
    a = model.cfg.adjacent_frames
    m = expand_mask(mask).to(k.real.dtype)  # [b, t, 1, y, 1]
    k0 = m * k
    out = torch.zeros(b, t, *k.shape[-2:], dtype=k.dtype)
    for i in range(b):
        for s in range(t):
            frames = [(s + j - a // 2) % t for j in range(a)]
            m_s, k0_s, maps_s = m[i, frames][None], k0[i, frames][None], maps[i:i + 1]
            state = k0_s.clone()
            for casc in model.cascades:
                lam = casc.dc_weight if casc.dc_weight is not None else 1.0
                term = fft2c(expand(casc.denoise(reduce(ifft2c(state), maps_s)), maps_s))
                state = state - lam * m_s * (state - k0_s) - term
            out[i, s] = reduce(ifft2c(state[:, a // 2: a // 2 + 1]), maps_s)[0, 0]
    return out


@pytest.mark.parametrize("t", [5, 2])
def test_update_equals_the_explicit_coil_kspace_form(t):
    k, mask, maps = _problem(4, 2, t, 3, 12, 9, dtype=torch.complex128)
    model = _model(cascades=4, dtype=torch.float64)
    _randomise_dc(model)
    with torch.no_grad():
        torch.testing.assert_close(model(k, mask, maps), _explicit(model, k, mask, maps), rtol=1e-9, atol=1e-10)


def test_soft_data_consistency_weight():
    """One coil of unit modulus (so the output image's k-space is the state's): with the last
    denoiser silenced, lambda = 1 puts the measured lines back, lambda = 0 keeps the previous
    cascade's, lambda = 0.5 averages them; lines not sampled never change with lambda."""
    k, mask, maps = _problem(5, 1, 4, 1, 12, 10, dtype=torch.complex128, unit_coil=True)
    model = _model(cascades=2, dtype=torch.float64)
    model.cascades[1].denoise = lambda x: torch.zeros_like(x)

    def kspace(lam):
        with torch.no_grad():
            model.cascades[1].dc_weight.fill_(lam)
            return fft2c(expand(model(k, mask, maps), maps))[:, :, 0]  # [b, t, y, x]

    m = mask[..., None].expand(-1, -1, -1, k.shape[-1])
    k1, k_full, k_half = kspace(0.0), kspace(1.0), kspace(0.5)
    measured = k[:, :, 0]
    torch.testing.assert_close(k_full[m], measured[m], rtol=1e-10, atol=1e-10)
    assert (k1[m] - measured[m]).abs().max() > 1e-3  # the first cascade moved the sampled lines
    torch.testing.assert_close(k_half[m], 0.5 * (k1[m] + measured[m]), rtol=1e-10, atol=1e-10)
    for other in (k_full, k_half):
        torch.testing.assert_close(other[~m], k1[~m], rtol=1e-10, atol=1e-10)


def test_a_silent_denoiser_leaves_the_state_unchanged():
    """R is a correction: a network that outputs zero changes nothing (with the input's mean
    added back it would subtract a constant from every pixel, which the bias-free network
    cannot cancel); a non-zero output scales with the input's standard deviation only."""
    g = torch.Generator().manual_seed(8)
    model = _model(cascades=1, dtype=torch.float64)
    casc = model.cascades[0]
    x = _crandn(g, 2, model.cfg.adjacent_frames, 10, 12, dtype=torch.complex128) + (3.0 + 2.0j)
    with torch.no_grad():
        torch.nn.init.zeros_(casc.unet.tail.weight)
        assert casc.denoise(x).abs().max() == 0
        torch.nn.init.normal_(casc.unet.tail.weight, std=0.1)
        torch.testing.assert_close(casc.denoise(x + (5.0 + 5.0j)), casc.denoise(x), rtol=1e-9, atol=1e-12)


def test_positive_scale_equivariance():
    k, mask, maps = _problem(6, 1, 3, 2, 10, 12, dtype=torch.complex128)
    model = _model(dtype=torch.float64)
    _randomise_dc(model)
    with torch.no_grad():
        ref = model(k, mask, maps)
        for a in (1e-4, 37.0, 1e5):
            torch.testing.assert_close(model(a * k, mask, maps), a * ref, rtol=1e-8, atol=1e-12 * a)


def test_batch_and_chunking_do_not_change_results():
    k, mask, maps = _problem(7, 2, 5, 2, 10, 8)
    model = _model().eval()
    with torch.no_grad():
        both = model(k, mask, maps)
        for i in range(2):
            torch.testing.assert_close(both[i:i + 1], model(k[i:i + 1], mask[i:i + 1], maps[i:i + 1]),
                                       rtol=1e-5, atol=1e-6)
        model.frames_per_pass = 2
        torch.testing.assert_close(model(k, mask, maps), both, rtol=1e-5, atol=1e-6)
    with torch.enable_grad():  # all frames at once
        torch.testing.assert_close(model(k, mask, maps).detach(), both, rtol=1e-5, atol=1e-6)


def test_each_frame_sees_only_its_adjacent_frames():
    t = 8
    k, mask, maps = _problem(8, 1, t, 2, 10, 8)
    model = _model(adjacent_frames=3).eval()
    with torch.no_grad():
        ref = model(k, mask, maps)
        k2 = k.clone()
        k2[:, 7] = 2 * k2[:, 7] + mask[:, 7, None, :, None]  # change the last frame only
        changed = (model(k2, mask, maps) - ref).abs().amax(dim=(0, 2, 3))
    assert (changed[[6, 7, 0]] > 1e-3).all()  # its neighbours, across the wrap of the cycle
    assert (changed[1:6] == 0).all()


def test_checkpointing_gives_the_same_values_and_gradients():
    k, mask, maps = _problem(9, 1, 3, 2, 8, 8)
    grads = []
    for ckpt in (False, True):
        model = _model(checkpoint=ckpt)
        out = model(k, mask, maps)
        out.abs().pow(2).sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------- weights and training


@pytest.mark.parametrize("learnable", [True, False])
def test_save_and_load_through_weights(tmp_path, learnable):
    from recon.weights import load_weights, save_weights, weights_info

    cfg = ModelConfig(name="promptmr", promptmr=PromptMRConfig(**{**TINY, "learnable_prompt": learnable}))
    model = _model(learnable_prompt=learnable)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    d = save_weights(model, cfg, tmp_path / "w")
    loaded, loaded_cfg = load_weights(d)
    assert loaded_cfg == cfg and isinstance(loaded, PromptMR) and not loaded.training
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    k, mask, maps = _problem(10, 1, 3, 2, 12, 8)
    with torch.no_grad():
        assert torch.equal(model.eval()(k, mask, maps), loaded(k, mask, maps))
    assert weights_info(d).describe().startswith("PromptMR 4ch x3 (3 adjacent frames) sha256:")


def test_trainer_runs_two_steps(tmp_path):
    """Two optimiser steps and a validation pass of the trainer (the run's plots are left out: slow)."""
    from recon.train.config import RunConfig, TrainConfig
    from recon.train.engine import Trainer
    from recon.weights import load_weights, save_weights
    from tests.test_train import tiny_data

    cfg = RunConfig(model=ModelConfig(name="promptmr", promptmr=PromptMRConfig(**TINY)), data=tiny_data(),
                    train=TrainConfig(epochs=1, steps_per_epoch=2, warmup_epochs=0, device="cpu", threads=1, seed=3))
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    try:
        before = [p.detach().clone() for p in trainer.model.parameters()]
        records = trainer.train_epoch(0)
        metrics = trainer.validate()
    finally:
        trainer.close()
    assert len(records) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert torch.isfinite(torch.tensor([metrics["val_psnr"], metrics["xval_psnr"]])).all()
    model, mcfg = load_weights(save_weights(trainer.model, cfg.model, tmp_path / "weights"))
    assert isinstance(model, PromptMR) and mcfg == cfg.model
