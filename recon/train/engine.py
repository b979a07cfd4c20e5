"""The training loop: AdamW + warm-up/cosine schedule, validation, checkpoints, exact resume.

A run folder (``--out``) holds::

    config.yaml      the resolved RunConfig (what the run was started with)
    checkpoint.pt    after every epoch: model, optimiser, scheduler, RNG states,
                     epoch / step counters, metric history (torch.save, weights_only loadable)
    metrics.csv      one row per epoch: train loss, lr, validation loss / PSNR / SSIM,
                     zero-filled PSNR / SSIM of the same validation samples, timings
    metrics.json     the same plus every step's loss terms and lr
    loss_curve.png   train loss per step and validation PSNR per epoch (rewritten every epoch)
    validation.png   the first validation sample: target, zero-filled, the model
    weights/         final weights (recon.weights: safetensors + config + SHA-256 manifest)

(the tables and figures written by :mod:`recon.train.outputs`).

Resume (``resume=True``) continues from the last completed epoch. Samples depend only
on (seed, epoch, index), the learning rate only on the step, and the model, optimiser
and RNG states are restored bit for bit, so a resumed run takes the same steps as an
uninterrupted one (a test checks the next loss).

Distributed (torchrun): every rank trains on its shard of each step's global batch,
DDP averages the gradients, validation samples are split over ranks and the metrics
summed; rank 0 alone writes files.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from recon.config import dump_yaml, to_dict
from recon.errors import CrunetError, InputError
from recon.machine import bf16_autocast, resolve_device
from recon.models.registry import noise_kwargs
from recon.train.config import RunConfig
from recon.train.data import epoch_loader, make_source, validation_set
from recon.train.ddp import DistContext, init_distributed, process_device, wrap_model
from recon.train.init import init_from_weights
from recon.train.loss import TERMS, ReconLoss
from recon.train.outputs import epoch_line, write_outputs
from recon.train.schedule import WarmupCosine

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.yaml"

#: Validation sets: ``val`` = held-out patients with training acquisitions,
#: ``xval`` = held-out patients with held-out acquisitions (coil model, coil counts,
#: noise band and line order training never saw); metric keys are prefixed with the name.
VAL_SETS = ("val", "xval")


class TrainingError(CrunetError):
    """Training cannot go on (e.g. the loss became non-finite)."""


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _same_run(a: RunConfig, b: RunConfig) -> bool:
    """Equal apart from the settings a resumed run may change (epochs, device, threads, time budget)."""
    def strip(c: RunConfig) -> RunConfig:
        return replace(c, train=replace(c.train, epochs=1, device="auto", threads=None, max_minutes=None))
    return strip(a) == strip(b)


class Trainer:
    """One training run into ``out_dir`` (see the module docstring).

    Parameters
    ----------
    cfg : the run configuration.
    out_dir : run folder (created). A folder with a checkpoint needs ``resume=True``.
    resume : continue from ``out_dir/checkpoint.pt``.
    progress : show a tqdm bar (rank 0 only).
    ctx : distributed context; default from the environment (:func:`init_distributed`).
    """

    def __init__(self, cfg: RunConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
                 ctx: DistContext | None = None):
        from recon.models.registry import build_model

        self.cfg, self.out = cfg, Path(out_dir)
        self.progress = progress
        requested = resolve_device(cfg.train.device)
        self.ctx = ctx if ctx is not None else init_distributed(requested)
        self.device = process_device(requested, self.ctx)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        ckpt_path = self.out / CHECKPOINT
        if ckpt_path.exists() and not resume:
            raise InputError(f"{self.out} already holds a run (checkpoint.pt): pass --resume to continue it "
                             "or choose another --out")
        if resume and not ckpt_path.exists():
            raise InputError(f"{ckpt_path}: no checkpoint to resume from")

        torch.manual_seed(cfg.train.seed)  # model initialisation (same on every rank)
        self.model = build_model(cfg.model).to(self.device)
        self.ddp_model = wrap_model(self.model, self.ctx, self.device)
        t = cfg.train
        self.optimizer = torch.optim.AdamW(parameter_groups(self.model, t.lr_scale), lr=t.lr,
                                           betas=tuple(t.betas), weight_decay=t.weight_decay)
        self.scheduler = WarmupCosine(self.optimizer, t.total_steps, t.warmup_steps, t.lr, t.min_lr)
        self.loss_fn = ReconLoss(t.loss)
        self.train_source = make_source(cfg.data, t.seed, "train")
        self.val_sources = {name: src for name in VAL_SETS
                            if (src := make_source(cfg.data, t.seed, name)) is not None}
        self.history: dict = {"epochs": [], "steps": []}
        self.start_epoch = 0
        self.n_params = sum(p.numel() for p in self.model.parameters())
        if resume:
            self._load_checkpoint(ckpt_path)
        else:
            if t.init_weights is not None:
                self.history["init_weights"] = init_from_weights(self.model, self.cfg, t.init_weights)
            torch.manual_seed(t.seed + 1)  # training-time randomness, independent of the model size
        if self.ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            dump_yaml(cfg, self.out / CONFIG)  # on resume too: it may extend the epochs
        self._started = time.perf_counter()
        self._val: dict[str, list] = {}
        self._zf: dict[str, tuple[float, float]] = {}
        self._val_example = None

    # ------------------------------------------------------------------ checkpoints

    def _load_checkpoint(self, path: Path) -> None:
        from recon.config import from_dict

        try:
            ckpt = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is bad input
            raise InputError(f"{path}: unreadable checkpoint ({exc})") from None
        saved = from_dict(RunConfig, ckpt["config"], where=f"{path}:config")
        if not _same_run(saved, self.cfg):
            raise InputError(f"{path}: the checkpoint was made with a different model/data/train config "
                             f"(only epochs, device, threads and max_minutes may change on resume)")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"], self.device)
        self.start_epoch = int(ckpt["epoch"])
        self.history = ckpt["history"]

    def save_checkpoint(self, epochs_done: int) -> None:
        if not self.ctx.is_main:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(self.device),
            "epoch": epochs_done,
            "step": self.scheduler.step_count,
            "history": self.history,
            "config": to_dict(self.cfg),
            "torch_version": str(torch.__version__),
        }
        tmp = self.out / (CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.out / CHECKPOINT)

    # ------------------------------------------------------------------ training

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def train_step(self, batch: dict) -> dict:
        """One optimiser step on a batch; returns this rank's loss terms and the lr used."""
        b = self._to_device(batch)
        self.ddp_model.train()
        with bf16_autocast(self.device, self.cfg.train.precision == "bf16"):
            pred = self.ddp_model(b["k"], b["mask"], b["maps"], **noise_kwargs(self.model, b["noise"]))
        loss, terms = self.loss_fn(pred.to(b["target"].dtype), b["target"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        lr = self.scheduler.apply()
        self.optimizer.step()
        self.scheduler.advance()
        out = {"loss": float(loss.detach()), "lr": lr}
        out.update({k: float(v) for k, v in terms.items()})
        return out

    def train_epoch(self, epoch: int) -> list[dict]:
        from tqdm import tqdm

        t = self.cfg.train
        if self.cfg.data.workers and getattr(self.train_source, "pool", None) is not None:
            self.train_source.pool.preload()
        loader = epoch_loader(self.train_source, epoch, t.steps_per_epoch, t.batch_size,
                              self.ctx.rank, self.ctx.world_size, self.cfg.data.workers)
        bar = tqdm(total=t.steps_per_epoch, desc=f"epoch {epoch + 1}/{t.epochs}", unit="step",
                   disable=not (self.progress and self.ctx.is_main), dynamic_ncols=True, leave=False)
        records = []
        for batch in loader:
            step = self.scheduler.step_count
            r = self.train_step(batch)
            keys = ["loss", *TERMS]
            if self.ctx.enabled:  # mean over ranks, for the log
                sums = self.ctx.all_reduce_sum([r[k] for k in keys], self.device)
                r.update({k: v / self.ctx.world_size for k, v in zip(keys, sums)})
            if not math.isfinite(r["loss"]):
                raise TrainingError(f"the loss became {r['loss']} at step {step} (epoch {epoch + 1}); "
                                    "lower the learning rate or check the data")
            rec = {"step": step, "epoch": epoch + 1, **r}
            records.append(rec)
            bar.set_postfix(loss=f"{r['loss']:.4g}", lr=f"{r['lr']:.3g}")
            bar.update(1)
        bar.close()
        return records

    # ------------------------------------------------------------------ validation

    def validation_samples(self, name: str = "val") -> list[dict]:
        """This rank's share of validation set ``name`` (made once, kept)."""
        if name not in self._val:
            self._val[name] = validation_set(self.val_sources[name], self.ctx.rank, self.ctx.world_size)
        return self._val[name]

    @torch.no_grad()
    def validate(self) -> dict:
        """Per validation set (:data:`VAL_SETS`): mean loss, PSNR and SSIM (recon.metrics)
        and the zero-filled PSNR / SSIM of the same samples, keys ``<set>_psnr`` etc.
        (``zf_psnr`` / ``zf_ssim`` for ``val``, ``xval_zf_psnr`` / ... for ``xval``)."""
        out: dict = {}
        self._val_example = None
        for name in self.val_sources:
            out.update(self._validate_set(name))
        return out

    def _validate_set(self, name: str) -> dict:
        from recon.baselines.zero_filled import zero_filled
        from recon.metrics import psnr, ssim
        from recon.problem import SliceProblem

        self.model.eval()
        sums = np.zeros(7)  # loss, psnr, ssim, zf_psnr, zf_ssim, count, zf_count
        for s in self.validation_samples(name):
            b = self._to_device({k: v[None] for k, v in s.items()})
            pred = self.model(b["k"], b["mask"], b["maps"], **noise_kwargs(self.model, b["noise"]))
            loss, _ = self.loss_fn(pred, b["target"])
            target, rec = s["target"].numpy(), pred[0].cpu().numpy()
            sums[:3] += [float(loss), float(np.mean(psnr(target, rec))), float(np.mean(ssim(target, rec)))]
            sums[5] += 1
            need_zf = name not in self._zf
            if need_zf or self._val_example is None:
                zf = zero_filled(SliceProblem(s["k"], s["mask"], s["maps"])).numpy()
                if self._val_example is None:  # the first sample, for the figure of this epoch
                    self._val_example = (name, target, zf, rec)
                if need_zf:
                    sums[3:5] += [float(np.mean(psnr(target, zf))), float(np.mean(ssim(target, zf)))]
                    sums[6] += 1
        sums = np.array(self.ctx.all_reduce_sum(sums.tolist(), self.device))
        n = max(sums[5], 1)
        if name not in self._zf:
            self._zf[name] = (float(sums[3] / max(sums[6], 1)), float(sums[4] / max(sums[6], 1)))
        zf_key = "zf" if name == "val" else f"{name}_zf"
        # plain floats: the history goes into a weights_only checkpoint and JSON
        return {f"{name}_loss": float(sums[0] / n), f"{name}_psnr": float(sums[1] / n),
                f"{name}_ssim": float(sums[2] / n),
                f"{zf_key}_psnr": self._zf[name][0], f"{zf_key}_ssim": self._zf[name][1]}

    # ------------------------------------------------------------------ outputs

    def write_outputs(self) -> None:
        """metrics.csv / .json, loss_curve.png, validation.png (:mod:`recon.train.outputs`); rank 0 only."""
        if not self.ctx.is_main:
            return
        info = {"parameters": self.n_params, "world_size": self.ctx.world_size, "device": str(self.device)}
        write_outputs(self.out, self.history, info, self._val_example, self.cfg.model.name)

    # ------------------------------------------------------------------ the run

    def fit(self, max_epochs: int | None = None) -> dict:
        """Train from the current epoch to ``cfg.train.epochs`` (or ``max_epochs`` more).

        Returns the last epoch's metrics; writes the final weights when the run is complete.
        """
        from recon.machine import describe_machine

        here = describe_machine(str(self.device))
        machines = self.history.setdefault("machines", [])  # every machine the run (and its resumes) used
        if here not in machines:
            machines.append(here)
        t = self.cfg.train
        end = t.epochs if max_epochs is None else min(t.epochs, self.start_epoch + max_epochs)
        last: dict = self.history["epochs"][-1] if self.history["epochs"] else {}
        epoch = self.start_epoch
        while epoch < end:
            t0 = time.perf_counter()
            records = self.train_epoch(epoch)
            seconds = time.perf_counter() - t0
            row = {"epoch": epoch + 1, "step": self.scheduler.step_count,
                   "train_loss": float(np.mean([r["loss"] for r in records])), "lr": records[-1]["lr"],
                   "seconds": seconds, "seconds_per_step": seconds / max(len(records), 1)}
            if (epoch + 1) % t.val_every == 0 or epoch + 1 == t.epochs:
                row.update(self.validate())
            self.history["steps"].extend(records)
            self.history["epochs"].append(row)
            if t.max_minutes is not None and "budget_epochs" not in self.history:
                end = self._fit_to_budget(epoch, time.perf_counter() - t0, max_epochs)
                t = self.cfg.train
            self.save_checkpoint(epoch + 1)
            self.write_outputs()
            if self.ctx.is_main:
                print(epoch_line(row, t.epochs), flush=True)
            last = row
            epoch += 1
        if end == t.epochs:
            diff = self.ctx.max_param_difference(self.model)
            self.history["ddp_max_param_diff"] = diff
            if self.ctx.is_main:
                from recon.weights import save_weights

                save_weights(self.model, self.cfg.model, self.out / "weights")
                self.write_outputs()
        self.ctx.barrier()
        return last

    def _fit_to_budget(self, epoch: int, seconds: float, max_epochs: int | None) -> int:
        """After the first epoch of a run with ``train.max_minutes``: plan as many epochs as
        fit the budget (at the first epoch's pace, validation included; at most
        ``train.epochs``), so the cosine schedule reaches ``min_lr`` at the end; the new
        epoch count is written into the run's config. Returns the new end epoch."""
        t = self.cfg.train
        seconds = self.ctx.all_reduce_sum([seconds], self.device)[0] / self.ctx.world_size  # ranks agree
        budget = t.max_minutes * 60 - (time.perf_counter() - self._started) + seconds
        epochs = int(min(t.epochs, max(epoch + 1, budget // max(seconds, 1e-9))))
        self.cfg = replace(self.cfg, train=replace(t, epochs=epochs))
        self.scheduler.total_steps = epochs * t.steps_per_epoch
        self.history["budget_epochs"] = epochs
        if self.ctx.is_main:
            dump_yaml(self.cfg, self.out / CONFIG)
            print(f"time budget {t.max_minutes:g} min at {seconds:.1f} s/epoch: {epochs} epochs", flush=True)
        return epochs if max_epochs is None else min(epochs, self.start_epoch + max_epochs)

    def close(self) -> None:
        self.ctx.shutdown()


def train(cfg: RunConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
          max_epochs: int | None = None) -> dict:
    """Run (or resume) a training run; returns the last epoch's metrics."""
    trainer = Trainer(cfg, out_dir, resume=resume, progress=progress)
    try:
        result = trainer.fit(max_epochs)
        # every rank done before any leaves the group: a rank that destroys it while another still has
        # a collective in flight aborts that rank's gloo threads (SIGABRT at exit). Only on success: a
        # rank that failed must not wait here for a peer that may never come.
        trainer.ctx.barrier()
        return result
    finally:
        trainer.close()


def parameter_groups(model: torch.nn.Module, lr_scale: dict[str, float]) -> list[dict]:
    """The optimiser's parameter groups: one per learning-rate factor of ``lr_scale``
    (``TrainConfig.lr_scale``: the first name part a parameter's name contains), in the
    order of ``model.parameters()`` within each group; without factors, one group."""
    groups: dict[float, list] = {}
    for name, param in model.named_parameters():
        factor = next((float(f) for part, f in lr_scale.items() if str(part) in name), 1.0)
        groups.setdefault(factor, []).append(param)
    return [{"params": params, "lr_scale": factor} for factor, params in groups.items()]
