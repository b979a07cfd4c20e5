"""Weights I/O: safetensors + config + SHA-256 manifest, and every way loading must fail."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from recon.config import dump_yaml
from recon.errors import InputError
from recon.models.config import CRUNetConfig, ModelConfig
from recon.weights import CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE, file_sha256, load_weights, save_weights, \
    write_manifest

CFG = ModelConfig(name="crunet", crunet=CRUNetConfig(channels=4, cascades=2))


@pytest.fixture
def saved(tmp_path):
    from recon.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(CFG)
    with torch.no_grad():  # make the weights differ from a fresh initialisation
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    d = save_weights(model, CFG, tmp_path / "w")
    return model, d


def _inputs():
    g = torch.Generator().manual_seed(1)
    k = torch.randn(1, 3, 2, 16, 12, dtype=torch.complex64, generator=g)
    mask = torch.zeros(1, 3, 16, dtype=torch.bool)
    mask[..., ::2] = True
    maps = torch.randn(1, 2, 16, 12, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    return k * mask[:, :, None, :, None], mask, maps


def test_round_trip(saved):
    model, d = saved
    manifest = json.loads((d / MANIFEST_FILE).read_text())
    assert manifest["parameters"] == sum(p.numel() for p in model.parameters())
    assert manifest["torch_version"] == torch.__version__ and manifest["created"]
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        assert manifest["files"][name]["sha256"] == file_sha256(d / name)
    loaded, cfg = load_weights(d)
    assert cfg == CFG and not loaded.training
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(*_inputs()), loaded(*_inputs()))


def test_corrupted_weights_file(saved):
    _, d = saved
    data = bytearray((d / WEIGHTS_FILE).read_bytes())
    data[-3] ^= 0xFF
    (d / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"model\.safetensors.*SHA-256"):
        load_weights(d)


def test_truncated_weights_file(saved):
    _, d = saved
    data = (d / WEIGHTS_FILE).read_bytes()
    (d / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"model\.safetensors.*truncated"):
        load_weights(d)


def test_modified_config_file(saved):
    _, d = saved
    (d / CONFIG_FILE).write_text((d / CONFIG_FILE).read_text().replace("channels: 4", "channels: 6"))
    with pytest.raises(InputError, match=r"config\.yaml"):
        load_weights(d)


@pytest.mark.parametrize("name", [MANIFEST_FILE, WEIGHTS_FILE, CONFIG_FILE])
def test_missing_file(saved, name):
    _, d = saved
    (d / name).unlink()
    with pytest.raises(InputError, match=name.replace(".", r"\.")):
        load_weights(d)


def test_config_of_another_model_is_a_shape_mismatch(saved):
    _, d = saved
    dump_yaml(ModelConfig(name="crunet", crunet=CRUNetConfig(channels=6, cascades=2)), d / CONFIG_FILE)
    write_manifest(d, 0, "crunet")  # a consistent manifest: only the contents disagree
    with pytest.raises(InputError, match="shape mismatch"):
        load_weights(d)


def _rewrite_state(d, change):
    from safetensors.torch import load_file, save_file

    state = load_file(str(d / WEIGHTS_FILE))
    change(state)
    save_file(state, str(d / WEIGHTS_FILE))
    write_manifest(d, 0, "crunet")


def test_missing_key(saved):
    _, d = saved
    victim = {}

    def drop(state):
        victim["key"] = sorted(state)[0]
        del state[victim["key"]]

    _rewrite_state(d, drop)
    with pytest.raises(InputError, match="missing keys") as e:
        load_weights(d)
    assert victim["key"] in str(e.value)


def test_unexpected_key(saved):
    _, d = saved
    _rewrite_state(d, lambda state: state.__setitem__("extra.weight", torch.zeros(2)))
    with pytest.raises(InputError, match=r"unexpected keys \['extra\.weight'\]"):
        load_weights(d)


def test_not_a_safetensors_file(saved):
    _, d = saved
    (d / WEIGHTS_FILE).write_bytes(b"this is not a safetensors file")
    write_manifest(d, 0, "crunet")
    with pytest.raises(InputError, match=r"model\.safetensors.*safetensors"):
        load_weights(d)


def test_not_a_directory(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_weights(tmp_path / "nothing")


# ------------------------------------------------------------------ weights by name


@pytest.fixture
def only_env(monkeypatch, tmp_path):
    """An empty search path apart from what a test puts into $CRUNET_WEIGHTS_DIR."""
    import recon.weights as W

    monkeypatch.setattr(W, "builtin_weights_dirs", lambda: [])
    monkeypatch.setenv(W.WEIGHTS_ENV, "")
    return monkeypatch


def test_directory_path_is_used_as_is(saved):
    from recon.weights import resolve_weights

    _, d = saved
    assert resolve_weights(d) == d and resolve_weights(str(d)) == d


def test_name_found_in_env_folders_first_wins(only_env, tmp_path):
    from recon.weights import WEIGHTS_ENV, available_weights, resolve_weights
    from tests.conftest import save_tiny_weights

    a, b = tmp_path / "a", tmp_path / "b"
    save_tiny_weights(a / "crunet_ca", "crunet_ca")
    save_tiny_weights(b / "crunet_ca", "crunet_ca", seed=1)
    save_tiny_weights(b / "crnn", "crnn")
    (b / "not_weights").mkdir()  # no manifest: not a name
    only_env.setenv(WEIGHTS_ENV, os.pathsep.join([str(a), str(b)]))
    assert resolve_weights("crunet_ca") == a / "crunet_ca"
    assert resolve_weights("crnn") == b / "crnn"
    assert available_weights() == ["crnn", "crunet_ca"]


def test_bare_name_prefers_installed_weights_over_a_folder_of_that_name(only_env, tmp_path, monkeypatch):
    """``weights=crunet`` run from a checkout, where ``crunet/`` is the application package."""
    from recon.weights import WEIGHTS_ENV, resolve_weights
    from tests.conftest import save_tiny_weights

    save_tiny_weights(tmp_path / "installed" / "crunet", "crunet")
    only_env.setenv(WEIGHTS_ENV, str(tmp_path / "installed"))
    (tmp_path / "cwd" / "crunet").mkdir(parents=True)  # a folder without a manifest
    monkeypatch.chdir(tmp_path / "cwd")
    assert resolve_weights("crunet") == tmp_path / "installed" / "crunet"
    assert resolve_weights("./crunet") == Path("crunet")  # a path is taken as a path


def test_unknown_name_names_folders_and_available(only_env, tmp_path):
    from recon.weights import WEIGHTS_ENV, resolve_weights
    from tests.conftest import save_tiny_weights

    save_tiny_weights(tmp_path / "crnn", "crnn")
    only_env.setenv(WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(InputError) as e:
        resolve_weights("crunet_ca")
    msg = str(e.value)
    assert "'crunet_ca' not found" in msg and str(tmp_path) in msg and "available: crnn" in msg
    assert "\n" not in msg
    with pytest.raises(InputError, match="not found"):
        resolve_weights(tmp_path / "no" / "such" / "dir")


def test_project_weights_folder_is_searched(monkeypatch):
    from pathlib import Path

    import recon.weights as W

    monkeypatch.delenv(W.WEIGHTS_ENV, raising=False)
    project = Path(W.__file__).resolve().parents[1] / "weights"
    assert W.weights_search_path()[0] == project
    assert any("share/crunet-gadgetron/weights" in str(d) for d in W.weights_search_path())


def test_weights_info_reads_config_and_hash_through_the_manifest(saved):
    from recon.weights import weights_info

    _, d = saved
    info = weights_info(d)
    assert info.config == CFG and info.sha256 == file_sha256(d / WEIGHTS_FILE)
    assert info.describe() == f"CRUNet-MR 4ch x2 fusion none sha256:{info.sha256[:12]}"
    data = bytearray((d / WEIGHTS_FILE).read_bytes())
    data[-3] ^= 0xFF
    (d / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(InputError, match="SHA-256"):  # a changed file is checked again
        weights_info(d)


def test_describe_model_variants():
    from recon.models.config import CRNNConfig
    from recon.weights import describe_model

    assert describe_model(ModelConfig(crunet=CRUNetConfig(channels=16, fusion="ca"))) \
        == "CRUNet-MR 16ch x5 fusion ca (bank all)"
    assert describe_model(ModelConfig(crunet=CRUNetConfig(fusion="conv", bank_depth=2))) \
        == "CRUNet-MR 64ch x5 fusion conv (bank K=2)"
    assert describe_model(ModelConfig(crunet=CRUNetConfig(fusion="ca", bank_projection="1x1"))) \
        == "CRUNet-MR 64ch x5 fusion ca (bank all, 1x1 projection)"
    assert describe_model(ModelConfig(crunet=CRUNetConfig(channels=16, fusion="ca", data_consistency="noise"))) \
        == "CRUNet-MR 16ch x5 fusion ca (bank all), noise-weighted DC"
    assert describe_model(ModelConfig(crunet=CRUNetConfig(channels=16, fusion="ca", data_consistency="cg",
                                                           cg_iterations=3))) \
        == "CRUNet-MR 16ch x5 fusion ca (bank all), CG DC (3 steps)"
    shipped = CRUNetConfig(channels=16, fusion="ca", data_consistency="noise", composite_input="missing",
                           mean_consistency=True)  # the shipped crunet_ca's
    assert describe_model(ModelConfig(crunet=shipped)) \
        == "CRUNet-MR 16ch x5 fusion ca (bank all), noise-weighted DC, composite input (missing), mean-consistent"
    assert describe_model(ModelConfig(name="crnn", crnn=CRNNConfig())) == "CRNN-MRI 64ch x5 (5 layers)"


def test_bfloat16_weights_load_into_a_float32_model(tmp_path):
    """Large models ship in bfloat16 (half the file); they load into the float32 model."""
    import torch

    from recon.models.config import CRUNetConfig, ModelConfig
    from recon.models.registry import build_model
    from recon.weights import load_weights, read_manifest, save_weights

    cfg = ModelConfig(name="crunet", crunet=CRUNetConfig(channels=16, cascades=2, fusion="ca"))
    torch.manual_seed(0)
    model = build_model(cfg)
    full = save_weights(model, cfg, tmp_path / "f32")
    half = save_weights(model, cfg, tmp_path / "bf16", dtype=torch.bfloat16)
    assert read_manifest(half)["dtype"] == "bfloat16" and read_manifest(full)["dtype"] == "float32"
    assert (half / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size
    loaded, _ = load_weights(half)
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert b.dtype == torch.float32
        torch.testing.assert_close(b, a.to(torch.bfloat16).float(), msg=k)
