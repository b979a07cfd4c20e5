"""DISTS (recon.metrics.dists) with a random VGG16 in torchvision's state-dict format.

The real ImageNet VGG16 is not available here, so the invariants are checked with seeded
random weights, and the arithmetic is checked against the authors' own DISTS_pt.py
(from the DISTS_pytorch wheel) run on the same random network through a stand-in for
torchvision.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from recon import metrics
from recon.errors import InputError
from recon.metrics import dists as dm
from recon.metrics import dists_weights as dw
from recon.metrics.frames import prepare


@functools.lru_cache(maxsize=1)
def _random_vgg16_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision vgg16 state dict (features + classifier) with He-normal random weights."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i, (c_in, c_out) in dm.VGG16_CONVS.items():
        std = math.sqrt(2.0 / (9 * c_in))
        state[f"features.{i}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=g) * std
        state[f"features.{i}.bias"] = torch.randn(c_out, generator=g) * 0.01
    # a (small stand-in) classifier, which the loader must ignore
    state["classifier.0.weight"] = torch.randn(8, 4, generator=g)
    state["classifier.0.bias"] = torch.zeros(8)
    return state


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vgg") / "vgg16_random.pth"
    torch.save(_random_vgg16_state(), path)
    return path


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dm.ENV_VAR, raising=False)


def _series(rng: np.random.Generator, t: int, ny: int, nx: int) -> np.ndarray:
    """Complex [t, ny, nx] with smooth blobs, edges and a little texture."""
    yy, xx = np.mgrid[0:ny, 0:nx]
    out = np.empty((t, ny, nx), dtype=np.complex128)
    for k in range(t):
        img = 0.2 + 0.8 * np.exp(-(((yy - ny / 2 - 2 * k) / (ny / 5)) ** 2 + ((xx - nx / 2) / (nx / 4)) ** 2))
        img = img + 0.5 * ((yy > ny / 3) & (xx < nx / 2))
        img = img + 0.05 * rng.standard_normal((ny, nx))
        out[k] = img * np.exp(1j * 0.3 * xx / nx)
    return out


def _noisy(ref: np.ndarray, level: float, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    scale = level * np.abs(ref).max()
    return ref + scale * (r.standard_normal(ref.shape) + 1j * r.standard_normal(ref.shape))


# ---------------------------------------------------------------------------
# DISTS_pytorch's learned weights


def test_alpha_beta_found_with_expected_shape() -> None:
    path = dm.dists_weights_path()
    assert path.name == "weights.pt" and path.parent.name == "DISTS_pytorch"
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert tuple(raw["alpha"].shape) == (1, 1475, 1, 1) and tuple(raw["beta"].shape) == (1, 1475, 1, 1)
    alpha, beta = dm.load_alpha_beta()
    assert alpha.shape == beta.shape == (1, sum(dm.CHANNELS), 1, 1)
    assert bool((alpha >= 0).all()) and bool((beta >= 0).all())
    assert "DISTS_pytorch.DISTS_pt" not in sys.modules and "torchvision" not in sys.modules


def test_importing_metrics_loads_no_dists() -> None:
    """``import recon.metrics`` leaves the DISTS network code (and torchvision) unloaded."""
    code = ("import sys, recon.metrics; "
            "print(sorted(m for m in sys.modules if 'dists' in m.lower() or m.split('.')[0] == 'torchvision'))")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"loaded by import recon.metrics: {r.stdout.strip()}"


def test_missing_dists_package_is_reported(vgg_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dw, "DISTS_PACKAGE", "no_such_dists_package_xyz")
    with pytest.raises(dm.DistsUnavailable, match="pip install --no-deps"):
        dm.dists_weights_path()


# ---------------------------------------------------------------------------
# invariants with a random VGG16


def test_identical_images_give_zero(vgg_file: Path, rng: np.random.Generator) -> None:
    ref = _series(rng, 2, 40, 36)
    got = dm.dists(ref, ref, vgg_weights=vgg_file)
    assert got.shape == (2,) and got.dtype == np.float64
    np.testing.assert_allclose(got, 0.0, atol=1e-6)
    # a global scale does not change max-normalised frames
    np.testing.assert_allclose(dm.dists(ref, 3.0 * ref, vgg_weights=vgg_file), 0.0, atol=1e-6)


def test_symmetric_bounded_and_monotone_in_noise(vgg_file: Path, rng: np.random.Generator) -> None:
    ref = _series(rng, 2, 48, 40)
    recs = np.concatenate([_noisy(ref[:1], level, seed=7) for level in (0.01, 0.05, 0.2)])
    scores = dm.dists(np.repeat(ref[:1], 3, axis=0), recs, vgg_weights=vgg_file)
    assert np.all((scores > 0) & (scores <= 1))
    assert scores[0] < scores[1] < scores[2]
    rec = _noisy(ref, 0.05, seed=3)
    np.testing.assert_allclose(dm.dists(ref, rec, vgg_weights=vgg_file),
                               dm.dists(rec, ref, vgg_weights=vgg_file), rtol=1e-5, atol=1e-7)


def test_torch_2d_and_crop(vgg_file: Path, rng: np.random.Generator) -> None:
    ref = _series(rng, 2, 64, 60)
    rec = _noisy(ref, 0.05, seed=1)
    cropped = dm.dists(ref, rec, vgg_weights=vgg_file, crop=(35, 33))
    ref_c = metrics.center_crop(torch.from_numpy(ref), (35, 33))
    rec_c = metrics.center_crop(torch.from_numpy(rec), (35, 33)).numpy()
    # one frame, as a 2-D torch tensor (float32 convolutions may differ with the batch size)
    np.testing.assert_allclose(dm.dists(ref_c[1], rec_c[1], vgg_weights=str(vgg_file)), cropped[1:],
                               rtol=1e-4, atol=1e-6)


def test_small_frames_are_input_errors(vgg_file: Path, rng: np.random.Generator) -> None:
    ref = _series(rng, 1, 31, 40)
    with pytest.raises(InputError, match="32x32"):
        dm.dists(ref, ref, vgg_weights=vgg_file)
    with pytest.raises(InputError, match="shape mismatch"):
        dm.dists(ref, ref[:, :, :-1], vgg_weights=vgg_file)


def test_matches_the_authors_implementation(vgg_file: Path, rng: np.random.Generator,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """DISTS_pt.py of the wheel, given our random VGG16 through a stand-in torchvision."""
    folder = Path(dm.dists_weights_path()).parent
    state = _random_vgg16_state()
    layers: list[nn.Module] = []
    for i in range(31):
        if i in dm.VGG16_CONVS:
            layers.append(nn.Conv2d(*dm.VGG16_CONVS[i], kernel_size=3, padding=1))
        elif i in dm.L2POOLS or i == 30:
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers.append(nn.ReLU(inplace=True))
    tv_features = nn.Sequential(*layers)
    tv_features.load_state_dict({k[len("features."):]: v for k, v in state.items()
                                 if k.startswith("features.")})
    fake_tv = types.ModuleType("torchvision")
    fake_tv.models = types.SimpleNamespace(vgg16=lambda **_: types.SimpleNamespace(features=tv_features))
    fake_tv.transforms = types.SimpleNamespace()
    monkeypatch.setitem(sys.modules, "torchvision", fake_tv)
    spec = importlib.util.spec_from_file_location("_dists_reference_impl", folder / "DISTS_pt.py")
    reference_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference_module)
    reference = reference_module.DISTS(load_weights=False)
    alpha, beta = dm.load_alpha_beta()
    reference.alpha.data, reference.beta.data = alpha.clone(), beta.clone()

    ref = _series(rng, 2, 48, 40)
    rec = _noisy(ref, 0.05, seed=5)
    r, p = prepare(ref, rec, None)
    with torch.no_grad():
        want = reference(r.float().unsqueeze(1).repeat(1, 3, 1, 1),
                         p.float().unsqueeze(1).repeat(1, 3, 1, 1)).double().numpy()
    np.testing.assert_allclose(dm.dists(ref, rec, vgg_weights=vgg_file), want, atol=1e-6)


# ---------------------------------------------------------------------------
# loading VGG16 weights


def test_keys_without_features_prefix_load(vgg_file: Path, tmp_path: Path) -> None:
    state = {k[len("features."):]: v for k, v in _random_vgg16_state().items() if k.startswith("features.")}
    path = tmp_path / "bare_keys.pth"
    torch.save(state, path)
    got = dm._network(path).features.state_dict()
    want = dm._network(vgg_file).features.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_wrong_shape_names_the_key(tmp_path: Path, rng: np.random.Generator) -> None:
    state = dict(_random_vgg16_state())
    state["features.17.weight"] = state["features.17.weight"][:, :128]
    path = tmp_path / "bad_shape.pth"
    torch.save(state, path)
    ok, reason = dm.dists_available(path)
    assert not ok and "features.17.weight" in reason and "(512, 256, 3, 3)" in reason
    with pytest.raises(dm.DistsUnavailable, match=r"features\.17\.weight"):
        dm.dists(_series(rng, 1, 32, 32), _series(rng, 1, 32, 32), vgg_weights=path)


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.pop("features.28.bias"), "missing key"),
    (lambda s: s.__setitem__("features.30.weight", torch.zeros(1)), "unexpected key"),
    (lambda s: s.__setitem__("features.0.weight", s["features.0.weight"].to(torch.int64)), "floating-point"),
])
def test_invalid_state_dicts(mutate, message: str) -> None:
    state = dict(_random_vgg16_state())
    mutate(state)
    with pytest.raises(dm.DistsUnavailable, match=message):
        dw._check_vgg_state(state, Path("bad.pth"))
    with pytest.raises(dm.DistsUnavailable, match="state dict"):
        dw._check_vgg_state([1, 2], Path("bad.pth"))


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(dm.DistsUnavailable, match="weights_only"):
        dm._network(junk)
    with pytest.raises(dm.DistsUnavailable, match="does not exist"):
        dm._network(tmp_path / "absent.pth")
    ok, reason = dm.dists_available(tmp_path)
    assert not ok and "not a file" in reason


def test_torchvision_hash_suffix_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "vgg16-397923af.pth"  # the real file's name, random content
    torch.save(_random_vgg16_state(), path)
    ok, reason = dm.dists_available(path)
    assert not ok and "SHA-256" in reason and "397923af" in reason


def test_no_weights_names_the_env_var(no_env: None, rng: np.random.Generator) -> None:
    ok, reason = dm.dists_available()
    assert not ok and dm.ENV_VAR in reason
    ref = _series(rng, 1, 32, 32)
    with pytest.raises(dm.DistsUnavailable, match=dm.ENV_VAR):
        dm.dists(ref, ref)


def test_env_var_is_used(vgg_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dm.ENV_VAR, str(vgg_file))
    assert dm.dists_available() == (True, "")
    assert dm._network(None) is dm._network(vgg_file)
    monkeypatch.setenv(dm.ENV_VAR, str(vgg_file.parent / "gone.pth"))
    ok, reason = dm.dists_available()
    assert not ok and "gone.pth" in reason and dm.ENV_VAR in reason


def test_network_is_cached_per_file(vgg_file: Path) -> None:
    assert dm._network(vgg_file) is dm._network(str(vgg_file))
    net = dm._network(vgg_file)
    names = set(net.features.state_dict())
    assert names == {f"{i}.{p}" for i in dm.VGG16_CONVS for p in ("weight", "bias")}


# ---------------------------------------------------------------------------
# summarise


def test_summarise_without_weights(no_env: None, rng: np.random.Generator) -> None:
    ref = _series(rng, 2, 40, 36)
    rec = _noisy(ref, 0.05, seed=4)
    summary = metrics.summarise(ref, rec)
    assert "dists" not in summary and dm.ENV_VAR in summary["dists_unavailable"]
    np.testing.assert_allclose(summary["psnr"], metrics.psnr(ref, rec).mean())


def test_summarise_with_weights(vgg_file: Path, monkeypatch: pytest.MonkeyPatch,
                                rng: np.random.Generator) -> None:
    monkeypatch.setenv(dm.ENV_VAR, str(vgg_file))
    ref = _series(rng, 1, 40, 36)
    rec = _noisy(ref, 0.05, seed=4)
    summary = metrics.summarise(ref, rec)
    assert "dists_unavailable" not in summary
    np.testing.assert_allclose(summary["dists"], dm.dists(ref, rec).mean())
    small = metrics.summarise(ref, rec, crop=(20, 30))
    assert "dists" not in small and "32x32" in small["dists_unavailable"]
