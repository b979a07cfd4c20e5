"""Data-parallel training with torchrun: 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from recon.config import dump_yaml
from recon.models.config import CRUNetConfig, ModelConfig
from recon.simulate.acquisition import TRAIN_SPACE
from recon.train.config import DataConfig, RunConfig, TrainConfig

REPO = Path(__file__).resolve().parents[1]


def _entry() -> list[str]:
    from crunet.cli import COMMANDS

    return ["-m", "crunet", "train"] if "train" in COMMANDS else ["-m", "crunet.cli.train"]


#: 32 x 32, 4 frames, 3 coils, R = 4: every sample has the same shape (batches of 2 collate)
TINY = replace(TRAIN_SPACE, matrix=(32, 32), phase_fraction=(1.0, 1.0), frames=(4, 4), coil_counts=(3,),
               accelerations=(4,), n_acs=8, readout_oversampling=(2,))


def test_ddp_two_cpu_processes_average_gradients(tmp_path):
    cfg = RunConfig(
        model=ModelConfig(name="crunet", crunet=CRUNetConfig(channels=4, cascades=2)),
        data=DataConfig(images="phantom", train_space=TINY, heldout_space=replace(TINY, name="heldout",
                                                                                 coil_families=("dipole",)),
                        pixels_per_sample=4 * 32 * 16, coil_grid=16, val_samples=2, val_acceleration=4),
        train=TrainConfig(epochs=1, steps_per_epoch=2, warmup_epochs=0, batch_size=1, device="cpu", threads=1,
                          seed=7),
    )
    dump_yaml(cfg, tmp_path / "ddp.yaml")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *_entry(), "--config", str(tmp_path / "ddp.yaml"), "--out", str(tmp_path / "ddp"), "--no-progress"]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / "ddp"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["ddp_max_param_diff"] == 0.0  # the two replicas ended identical
    assert r.stdout.count("epoch 1/1") == 1  # rank 0 alone reports and writes
    assert not list(out.glob("*.tmp*"))

    # The same global batch in one process (batch 2) takes the same steps: gradients were averaged.
    from recon.train.engine import Trainer
    from recon.weights import load_weights

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = Trainer(replace(cfg, train=replace(cfg.train, batch_size=2)), tmp_path / "single", progress=False)
        single.fit()
    finally:
        torch.set_num_threads(n)
    np.testing.assert_allclose([s["loss"] for s in metrics["steps"]],
                               [s["loss"] for s in single.history["steps"]], rtol=1e-4)
    ddp_model, _ = load_weights(out / "weights")
    for (name, a), b in zip(single.model.state_dict().items(), ddp_model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=2e-5, msg=name)
    assert metrics["epochs"][0]["val_psnr"] == pytest.approx(single.history["epochs"][0]["val_psnr"], abs=1e-3)
