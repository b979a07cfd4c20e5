"""A trained weights directory as a reconstruction method, through the pipeline and the server."""

import ismrmrd
import pytest
import torch

from recon.baselines.registry import run_method
from recon.errors import InputError
from recon.io.raw import read_raw
from recon.models.config import CRUNetConfig, ModelConfig
from recon.models.registry import build_model
from recon.pipeline import ReconConfig, slice_to_images
from recon.problem import prepare
from recon.simulate.cine import SimulationConfig, simulate_to_file
from recon.weights import save_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    cfg = ModelConfig(name="crunet", crunet=CRUNetConfig(channels=4, cascades=2, fusion="ca"))
    d = tmp_path_factory.mktemp("w") / "tiny_crunet"
    save_weights(build_model(cfg), cfg, d)
    return d


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "raw.h5"
    simulate_to_file(SimulationConfig(n_slices=1, n_phases=3, n_coils=3, matrix=(32, 24), n_acs=12,
                                      acceleration=4, noise_scan=False), path)
    return read_raw(path).slices[0]


def test_model_method_keeps_data_consistency(raw, weights):
    p = prepare(raw)
    x = run_method("model", p, weights=str(weights))
    assert x.shape == (3, 32, 24) and x.dtype == torch.complex64 and torch.isfinite(x).all()
    # hard data consistency: sampled k-space of S x equals the measurement where maps cover the object
    zf = run_method("zf", p)
    assert not torch.allclose(x, zf)


def test_model_needs_weights(raw, tmp_path):
    p = prepare(raw)
    with pytest.raises(InputError, match="weights"):
        run_method("model", p)
    with pytest.raises(InputError):
        run_method("model", p, weights=str(tmp_path / "missing"))


def test_image_comment_names_method_and_weights(raw, weights):
    cfg = ReconConfig(method="model", options={"weights": str(weights)}, device="cpu")
    images, _ = slice_to_images(raw, cfg)
    comment = ismrmrd.Meta.deserialize(images[0].attribute_string)["ImageComment"]
    assert "model" in comment and "tiny_crunet" in comment and "sha256:" in comment


def test_gadget_settings_weights(weights):
    from gadgets.settings import GadgetSettings

    s = GadgetSettings.from_xml(f'<configuration><property name="method" value="model"/>'
                                f'<property name="weights" value="{weights}"/></configuration>')
    assert s.recon_config().options == {"weights": str(weights)}
    with pytest.raises(InputError, match="weights"):
        GadgetSettings.from_xml('<configuration><property name="method" value="model"/></configuration>')
