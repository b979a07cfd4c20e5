"""crunet ship: a run's weights into weights/NAME with the card written from the run's own files."""

from dataclasses import replace

import pytest
import torch

from crunet.cli import main
from crunet.validation import run_validation
from recon.errors import InputError
from recon.models.config import CRUNetConfig, ModelConfig
from recon.simulate.acquisition import HELDOUT_SPACE, TRAIN_SPACE
from recon.train.config import DataConfig, RunConfig, TrainConfig
from recon.train.engine import train
from recon.weights import load_weights

TINY = dict(matrix=(32, 32), phase_fraction=(1.0, 1.0), frames=(3, 3), coil_counts=(3,), n_acs=8, accelerations=(4,))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run")
    cfg = RunConfig(model=ModelConfig(name="crunet", crunet=CRUNetConfig(channels=4, cascades=2, fusion="ca")),
                    data=DataConfig(images="phantom", train_space=replace(TRAIN_SPACE, **TINY),
                                    heldout_space=replace(HELDOUT_SPACE, **TINY), pixels_per_sample=3 * 32 * 16,
                                    coil_grid=16, val_samples=1, val_acceleration=4),
                    train=TrainConfig(epochs=1, steps_per_epoch=2, warmup_epochs=0, device="cpu", threads=1))
    try:
        train(cfg, out, progress=False)
    finally:
        torch.set_num_threads(n)
    return out


def test_ship_writes_weights_and_card(run, tmp_path, capsys):
    val = tmp_path / "val"
    run_validation(val, ("zf",), cfg=DataConfig(images="phantom", train_space=replace(TRAIN_SPACE, **TINY),
                                                heldout_space=replace(HELDOUT_SPACE, **TINY), coil_grid=16),
                   accelerations=(4,), cases=1, device="cpu", log=lambda *_: None)
    assert main(["ship", str(run), "tiny_ca", "--dest", str(tmp_path / "w"), "--validation", str(val)]) == 0
    dest = tmp_path / "w" / "tiny_ca"
    model, cfg = load_weights(dest)  # manifest checked
    assert cfg.crunet.fusion == "ca"
    card = (dest / "CARD.md").read_text()
    assert "channel attention" in card and "Steps: 2 of 2 planned" in card and "sha256" in card
    assert "held-out patient, held-out acquisitions" in card and "| 4 | zf |" in card
    from recon.machine import cpu_model

    assert f"trained on {cpu_model()}" in card and "1 threads" in card  # the run's machine, not the shipper's
    for f in ("train_config.yaml", "loss_curve.png", "metrics.csv"):
        assert (dest / f).is_file(), f


def test_run_notes_go_into_the_card(run, tmp_path):
    from crunet.cards import NOTES_FILE, ship

    assert "## Notes on this run" not in (ship(run, "a", tmp_path) / "CARD.md").read_text()
    (run / NOTES_FILE).write_text("Resumed at epoch 3 with soft-cropped maps.\n")
    try:
        card = (ship(run, "b", tmp_path) / "CARD.md").read_text()
    finally:
        (run / NOTES_FILE).unlink()
    assert "## Notes on this run\n\nResumed at epoch 3 with soft-cropped maps.\n" in card


def test_ship_refuses_a_folder_without_weights_or_checkpoint(tmp_path):
    from crunet.cards import ship

    (tmp_path / "config.yaml").write_text("{}")
    with pytest.raises(InputError, match="no weights"):
        ship(tmp_path, "x", tmp_path / "w")


def test_a_run_still_going_ships_its_last_checkpoint(run, tmp_path):
    """Without run/weights (the run is not finished), the model of checkpoint.pt is shipped."""
    import shutil

    from crunet.cards import ship

    partial = tmp_path / "partial"
    shutil.copytree(run, partial)
    shutil.rmtree(partial / "weights")
    dest = ship(partial, "tiny", tmp_path / "w")
    a, _ = load_weights(dest)
    b, _ = load_weights(run / "weights")  # the run had one epoch: the same model
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k
    assert "Steps: 2 of 2 planned" in (dest / "CARD.md").read_text()


def test_large_weights_ship_in_bfloat16(run, tmp_path, monkeypatch):
    import crunet.cards as cards
    from recon.weights import read_manifest

    monkeypatch.setattr(cards, "BF16_ABOVE_BYTES", 1000)  # the tiny model counts as large here
    dest = cards.ship(run, "tiny", tmp_path / "w")
    assert read_manifest(dest)["dtype"] == "bfloat16" and "stored as bfloat16" in (dest / "CARD.md").read_text()
    load_weights(dest)


def test_model_line_names_every_architecture():
    from crunet.cards import _model_line
    from recon.config import to_dict
    from recon.train.config import load_run_config

    lines = {name: _model_line(to_dict(load_run_config(f"configs/cpu/{name}.yaml"))["model"])
             for name in ("crunet_ca", "crunet_ca_p1", "crunet_conv", "crunet", "crnn", "promptmr")}
    assert lines["crunet_ca"].startswith("CRUNet-MR") and "channel attention + 3x3 projection" in lines["crunet_ca"]
    assert "channel attention + 1x1 projection" in lines["crunet_ca_p1"]  # the bank-cost study names its projection
    assert "3x3 conv" in lines["crunet_conv"] and "no feature bank" in lines["crunet"]
    assert lines["crnn"].startswith("CRNN-MRI") and lines["promptmr"].startswith("PromptMR, 3 cascades")


def test_a_fine_tuning_run_names_its_starting_weights(run, tmp_path):
    """A run started from other weights (train.init_weights) says so, with their hash, in the card."""
    import json

    from crunet.cards import ship

    card = (ship(run, "plain", tmp_path) / "CARD.md").read_text()
    assert "Initialised from" not in card
    metrics_path = run / "metrics.json"
    original = metrics_path.read_text()
    metrics = json.loads(original)
    metrics["init_weights"] = {"ref": "crunet_ca", "sha256": "ab" * 32, "model": "CRUNet-MR 4ch x2 fusion ca"}
    metrics_path.write_text(json.dumps(metrics))
    try:
        card = (ship(run, "tuned", tmp_path) / "CARD.md").read_text()
    finally:
        metrics_path.write_text(original)
    assert "Initialised from `crunet_ca` (sha256 `abababababababab...`" in card


def test_shipping_the_shipped_folder_refreshes_only_its_validation_section(run, tmp_path):
    from crunet.cards import ship

    cfg = DataConfig(images="phantom", train_space=replace(TRAIN_SPACE, **TINY),
                     heldout_space=replace(HELDOUT_SPACE, **TINY), coil_grid=16)
    old, new = tmp_path / "old", tmp_path / "new"
    run_validation(old, ("zf",), cfg=cfg, accelerations=(4,), cases=1, device="cpu", log=lambda *_: None)
    dest = ship(run, "tiny", tmp_path / "w", old)
    before = (dest / "CARD.md").read_text()
    weights = (dest / "model.safetensors").read_bytes()
    with pytest.raises(InputError, match="no rows for tiny"):
        ship(dest, "tiny", tmp_path / "w", old)
    with pytest.raises(InputError, match="give --validation"):
        ship(dest, "tiny", tmp_path / "w")
    with pytest.raises(InputError, match="in place"):
        ship(dest, "other", tmp_path / "w", old)

    run_validation(new, ("zf",), weights=(str(dest),), cfg=cfg, accelerations=(4,), cases=1, device="cpu",
                   sense_grid=(), log=lambda *_: None)
    assert main(["ship", str(dest), "tiny", "--dest", str(tmp_path / "w"), "--validation", str(new)]) == 0
    after = (dest / "CARD.md").read_text()
    head = before.split("## `crunet validate`")[0]
    assert after.startswith(head) and after.count("## `crunet validate`") == 1
    assert "| 4 | tiny |" in after and "| 4 | tiny |" not in before
    assert (dest / "model.safetensors").read_bytes() == weights


def test_model_set_ships_the_run_with_a_parameter_free_setting(run, tmp_path, capsys):
    """``--model-set mean_consistency=true``: the run's tensors, config.yaml with the setting (the
    manifest rewritten, so the weights load), a card that describes what runs and names what differs
    from the run; a setting that builds parameters is refused, and nothing is set on a shipped folder."""
    from safetensors.torch import load_file

    assert main(["ship", str(run), "tiny_mc", "--dest", str(tmp_path), "--model-set", "mean_consistency=true"]) == 0
    dest = tmp_path / "tiny_mc"
    model, cfg = load_weights(dest)
    assert cfg.crunet.mean_consistency and not load_weights(run / "weights")[1].crunet.mean_consistency
    trained, shipped = load_file(str(run / "weights" / "model.safetensors")), load_file(str(dest / "model.safetensors"))
    assert trained.keys() == shipped.keys() and all(torch.equal(trained[k], shipped[k]) for k in trained)
    card = (dest / "CARD.md").read_text()
    assert "gets the mean of those frames as its temporal mean" in card
    assert "Shipped with `mean_consistency: true` in `config.yaml` (the run: `false`; no parameter depends on it" in card
    for args, error in ((["tiny_bad", "--model-set", "channels=8"], "takes CRUNet-MR settings no parameter depends on"),
                        (["tiny_bad", "--model-set", "mean_consistency"], "--model-set takes KEY=VALUE"),
                        (["tiny_mc", "--model-set", "mean_consistency=true"], "give the run folder")):
        src = dest if error == "give the run folder" else run
        assert main(["ship", str(src), *args[:1], "--dest", str(tmp_path), *args[1:]]) == 2
        assert error in capsys.readouterr().err
