"""Weights cards: what a shipped model is, how it was trained and how well it does.

``crunet ship RUN NAME`` copies a finished (or stopped) training run's weights into
``weights/NAME/`` and writes ``CARD.md`` beside them from the run folder
(``config.yaml``, ``metrics.json``) and, when given, a ``crunet validate`` report:

* the model (architecture, parameters) and the data it saw: the acquisition space, the
  training and held-out patients (``weights/SPLIT.md``), steps, batch, schedule;
* the machine and the wall time of the run, seconds per step;
* the validation curve's last values on both validation sets (held-out patient with
  training acquisitions; with held-out acquisitions);
* the per-R table of ``crunet validate`` (both sets, every method it compared);
* ``NOTES.md`` of the run folder, when there is one: what the records cannot say (a
  schedule changed on resume, an estimator that changed mid-run).

``crunet ship RUN NAME --model-set mean_consistency=true`` ships the run's weights with a
setting no parameter depends on changed in ``config.yaml``; the card describes the shipped
model and names what differs from the run.

``crunet ship weights/NAME NAME --validation DIR`` (the shipped folder in place of a run)
replaces only the card's ``crunet validate`` section: every card can be brought onto one
validation run after the run folders are gone, the weights and the rest untouched.

The card is regenerated from files, never typed by hand, so its numbers are the run's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from recon.config import load_yaml
from recon.errors import InputError
from crunet.validation import load_results
from crunet.validation import markdown as validation_markdown
from recon.weights import CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE, read_manifest

CARD_FILE = "CARD.md"
#: Human notes on a run (in the run folder), copied into its card.
NOTES_FILE = "NOTES.md"
#: Shipped weights files larger than this are stored in bfloat16 (half the size).
BF16_ABOVE_BYTES = 16 * 2**20


def _run_summary(run: Path) -> tuple[dict, dict]:
    cfg_path, metrics_path = run / "config.yaml", run / "metrics.json"
    if not cfg_path.is_file() or not metrics_path.is_file():
        raise InputError(f"{run}: not a training run folder (config.yaml and metrics.json are needed)")
    return load_yaml(cfg_path), json.loads(metrics_path.read_text())


def _model_line(model: dict) -> str:
    if model["name"] == "crnn":
        c = model["crnn"]
        return f"CRNN-MRI, {c['channels']} channels, {c['cascades']} cascades x {c['layers']} layers"
    if model["name"] == "promptmr":
        c = model["promptmr"]
        return (f"PromptMR, {c['cascades']} cascades of PromptUNets ({c['channels']} / "
                f"{' / '.join(str(d) for d in c['feature_dims'])} channels), {c['adjacent_frames']} adjacent frames")
    c = model["crunet"]
    projection = c.get("bank_projection", "3x3")  # cards of runs from before the field: 3x3
    bank = {"none": "no feature bank", "conv": f"feature bank fused by a {projection} conv",
            "ca": ("feature bank fused by channel attention, the attended features summed (no projection)"
                   if projection == "sum" else f"feature bank fused by channel attention + {projection} projection"),
            }[c["fusion"]]
    depth = "" if c["fusion"] == "none" else f" (bank depth {c['bank_depth'] or 'all earlier cascades'})"
    dc = {"hard": "", "noise": "; data consistency weighted by the measured noise",
          "cg": f"; MoDL's data consistency in every cascade ({c.get('cg_iterations', 5)} CG steps of SENSE around "
                "the network's estimate, weighted by the measured noise)"}[c.get("data_consistency", "hard")]
    comp = {"none": "", "average": "; every cascade also sees the composite image (SENSE adjoint of the "
            "time-averaged k-space)", "missing": "; every cascade also sees each frame's missing lines taken "
            "from the frames that sampled them (SENSE adjoint of the time-averaged k-space on those lines)",
            "nearest": "; every cascade also sees each frame's missing lines taken from the frames nearest in time "
            "that sampled them (SENSE adjoint on those lines)",
            }[c.get("composite_input", "none")]
    mean = ("; after every cascade, each k-space line some frames sampled and others did not gets the mean of "
            "those frames as its temporal mean" if c.get("mean_consistency") else "")
    return f"CRUNet-MR, {c['channels']} channels, {c['cascades']} cascades, {bank}{depth}{dc}{comp}{mean}"


def _loss_line(loss: dict) -> str:
    """``{"image_l1": 0.5, "ssim": 0.5, "ssim_window": 7}`` -> ``0.5 image_l1 + 0.5 ssim (SSIM window 7)``."""
    terms = " + ".join(f"{w:g} {k}" for k, w in loss.items() if isinstance(w, (int, float)) and w
                       and not k.endswith("_window"))
    extras = ", ".join(f"{k.replace('ssim_', '')} {v}" for k, v in loss.items() if k.endswith("_window"))
    return terms + (f" (SSIM {extras})" if extras else "")


def _machines(metrics: dict, train: dict) -> str:
    """The machines the run recorded (one per resume on another machine), or that it recorded none."""
    from recon.machine import machine_line

    recorded = metrics.get("machines") or []
    if recorded:
        return "trained on " + "; then ".join(machine_line(m) for m in recorded)
    return (f"the run did not record its machine (runs before the machine record); config threads "
            f"{train.get('threads') or 'default'}")


def _export_checkpoint(run: Path, dest: Path) -> None:
    """Weights of the model in ``run/checkpoint.pt`` (its last completed epoch) into ``dest``."""
    from recon.config import from_dict
    from recon.models.registry import build_model
    from recon.train.config import RunConfig
    from recon.weights import save_weights

    try:
        ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is bad input
        raise InputError(f"{run / 'checkpoint.pt'}: unreadable checkpoint ({exc})") from None
    cfg = from_dict(RunConfig, ckpt["config"], where=f"{run / 'checkpoint.pt'}:config")
    model = build_model(cfg.model)
    model.load_state_dict(ckpt["model"])
    save_weights(model, cfg.model, dest)


def card_markdown(name: str, run: Path, manifest: dict, validation: dict | None = None,
                  shipped_model: dict | None = None) -> str:
    """The card of weights ``name`` trained in ``run`` (see the module docstring); ``shipped_model``:
    the shipped ``config.yaml`` when :func:`ship` set parameter-free settings the run did not have
    (the card describes what runs and names what differs from the run)."""

    cfg, metrics = _run_summary(run)
    model = shipped_model if shipped_model is not None else cfg["model"]
    changed = _changed_settings(cfg["model"], model)
    epochs = metrics.get("epochs", [])
    t, data = cfg["train"], cfg["data"]
    steps = epochs[-1]["step"] if epochs else 0
    hours = sum(e.get("seconds", 0.0) for e in epochs) / 3600
    planned = t["epochs"] * t["steps_per_epoch"]
    lines = [
        f"# {name}", "",
        f"{_model_line(model)}; {manifest.get('parameters', 0):,} parameters "
        f"(stored as {manifest.get('dtype', 'float32')}). "
        f"`model.safetensors` sha256 `{manifest['files'][WEIGHTS_FILE]['sha256']}`.", "",
        "## Training", "",
        f"- Steps: {steps:,} of {planned:,} planned ({len(epochs)} of {t['epochs']} epochs x "
        f"{t['steps_per_epoch']} steps), batch {t['batch_size']}, AdamW lr {t['lr']:g} -> {t['min_lr']:g} "
        f"(warm-up {t['warmup_epochs']} epochs, cosine), weight decay {t['weight_decay']:g}; "
        f"loss {_loss_line(t['loss'])}.",
        *([f"- Initialised from `{metrics['init_weights']['ref']}` (sha256 "
            f"`{metrics['init_weights']['sha256'][:16]}...`, {metrics['init_weights']['model']})"
            + (" widened from {} to {} channels (the same images at step 0; `recon/models/widen.py`)".format(
                *metrics['init_weights']['widened']) if metrics['init_weights'].get('widened') else "")
            + ": the steps and wall time below are this fine-tuning run's only."]
          if metrics.get("init_weights") else []),
        f"- Wall time: {hours:.2f} h on {metrics.get('device', '?')}, "
        f"{(epochs[-1]['seconds_per_step'] if epochs else float('nan')):.2f} s/step in the last epoch; "
        f"{_machines(metrics, t)}.",
        f"- Data: simulated on the fly ({data['source']}, images {data['images']}, maps {data['maps']}): "
        f"acquisitions from the training space (coil families {', '.join(data['train_space']['coil_families'])}, "
        f"{min(data['train_space']['coil_counts'])}-{max(data['train_space']['coil_counts'])} coils, image SNR "
        f"bands {data['train_space']['snr_bands']}, matrix {data['train_space']['matrix']}, frames "
        f"{data['train_space']['frames']}, R {data['train_space']['accelerations']}), strips of "
        f"{data['pixels_per_sample']} pixels, {data['scene_reuse']} samples per simulated slice.",
        f"- Held-out patients (never trained on): {', '.join(data['holdout'])}; see `weights/SPLIT.md`.",
        "- Full configuration: `train_config.yaml` beside this card (the run's resolved config).",
        *([f"- Shipped with {', '.join(f'`{k}: {new}`' for k, _, new in changed)} in `config.yaml` (the run: "
           f"{', '.join(f'`{old}`' for _, old, _ in changed)}; no parameter depends on "
           f"{'it' if len(changed) == 1 else 'them'}, `crunet ship --model-set`): the weights are the run's."]
          if changed else []), "",
    ]
    val = [e for e in epochs if "val_psnr" in e]
    if val:
        last = val[-1]
        lines += ["## Validation during training (R = 8, last epoch)", "",
                  "| set | model PSNR dB | zero-filled PSNR dB | model SSIM | zero-filled SSIM |",
                  "|---|---|---|---|---|",
                  f"| held-out patient, training acquisitions | {last['val_psnr']:.2f} | {last['zf_psnr']:.2f} | "
                  f"{last['val_ssim']:.3f} | {last['zf_ssim']:.3f} |"]
        if "xval_psnr" in last:
            lines.append(f"| held-out patient, held-out acquisitions | {last['xval_psnr']:.2f} | "
                         f"{last['xval_zf_psnr']:.2f} | {last['xval_ssim']:.3f} | {last['xval_zf_ssim']:.3f} |")
        lines += ["", "`loss_curve.png` (loss per step, validation PSNR per epoch) and `validation.png` are the "
                  "run's figures.", ""]
    notes = run / NOTES_FILE
    if notes.is_file():  # what the run's records cannot say (a resumed schedule, a changed estimator, ...)
        lines += ["## Notes on this run", "", notes.read_text().strip(), ""]
    if validation is not None:
        lines += [_validation_section(validation)]
    return "\n".join(lines) + "\n"


#: How the card's ``crunet validate`` section starts (it runs to the end of the card).
VALIDATE_HEADING = "## `crunet validate`"


def _validation_section(validation: dict) -> str:
    body = validation_markdown(validation).split("\n", 1)[1]  # drop its title
    return f"{VALIDATE_HEADING} ({validation['cases']} cases per set and R)\n\n{body.strip()}\n"


def refresh_validation(dest: str | Path, validation_dir: str | Path) -> Path:
    """Replace the ``crunet validate`` section of shipped weights ``dest``'s card.

    The rest of the card (training, notes) and the weights stay as they are; the weights
    are checked against their manifest first, and the validation run must have rows for
    this model (its folder name), so a card never shows a table without its own model."""
    from recon.weights import load_weights

    dest = Path(dest)
    card_path = dest / CARD_FILE
    if not card_path.is_file():
        raise InputError(f"{dest}: no {CARD_FILE} (ship the training run first)")
    load_weights(dest)  # the manifest check: refresh only intact weights
    validation = load_results(validation_dir)
    methods = validation["methods"]  # what the validation run evaluated (its tables' rows)
    if dest.name not in methods:
        raise InputError(f"{validation_dir}: no rows for {dest.name} (methods: {', '.join(sorted(methods))}); "
                         f"add it: crunet validate --out {validation_dir} --methods ... {dest.name}")
    card = card_path.read_text()
    head = card.split(VALIDATE_HEADING, 1)[0].rstrip("\n")
    card_path.write_text(f"{head}\n\n{_validation_section(validation)}")
    return dest


def _changed_settings(trained: dict, shipped: dict) -> list[tuple[str, str, str]]:
    """``(name, trained value, shipped value)`` of each CRUNet-MR setting that differs (values as JSON;
    a setting the run's config predates has its default)."""
    from dataclasses import asdict

    from recon.models.config import CRUNetConfig

    a, b, default = trained.get("crunet", {}), shipped.get("crunet", {}), asdict(CRUNetConfig())
    pairs = ((k, json.dumps(a.get(k, default.get(k))), json.dumps(b[k])) for k in sorted(b))  # tuples, lists alike
    return [(k, old, new) for k, old, new in pairs if old != new]


def set_model_settings(dest: Path, settings: dict) -> dict:
    """Set parameter-free CRUNet-MR settings (:data:`recon.models.config.PARAMETER_FREE_FIELDS`) in
    shipped weights ``dest``'s ``config.yaml`` and rewrite the manifest; returns the new model config
    as a dict. Anything else (a setting that builds parameters, another model) is an InputError."""
    from dataclasses import asdict, replace

    from recon.config import dump_yaml
    from recon.models.config import PARAMETER_FREE_FIELDS
    from recon.weights import load_weights, write_manifest

    model, cfg = load_weights(dest)
    bad = sorted(set(settings) - set(PARAMETER_FREE_FIELDS))
    if bad or cfg.name != "crunet":
        raise InputError(f"--model-set takes CRUNet-MR settings no parameter depends on "
                         f"({', '.join(PARAMETER_FREE_FIELDS)}); got {', '.join(bad) or 'them'} for {cfg.name}")
    cfg = replace(cfg, crunet=replace(cfg.crunet, **settings))
    cfg.crunet.validate()
    dtype = read_manifest(dest).get("dtype", "float32")
    dump_yaml(cfg, dest / CONFIG_FILE)
    write_manifest(dest, sum(p.numel() for p in model.parameters()), cfg.name, dtype)
    return asdict(cfg)


def ship(run: str | Path, name: str, dest_root: str | Path, validation_dir: str | Path | None = None,
         model_settings: dict | None = None) -> Path:
    """Copy ``run``'s weights to ``<dest_root>/<name>/`` with the run's config, curves and a card.

    A completed run ships ``run/weights``; a run still going (or stopped) ships the model
    of its last checkpoint (the last completed epoch), and the card says how many of the
    planned steps it had: the run can be resumed and shipped again later.
    ``model_settings``: parameter-free settings to ship with (:func:`set_model_settings`),
    e.g. ``{"mean_consistency": True}``; the card says which differ from the run's."""
    run = Path(run)
    dest = Path(dest_root) / name
    if (run / CARD_FILE).is_file() and (run / MANIFEST_FILE).is_file():  # a shipped folder: its card only
        if model_settings:
            raise InputError("--model-set ships a training run's weights with other settings; give the run folder")
        if validation_dir is None:
            raise InputError(f"{run} is shipped weights, not a training run: give --validation DIR to refresh "
                             "its card's crunet validate section")
        if run.resolve() != dest.resolve():
            raise InputError(f"{run} is shipped weights; refreshing its card writes in place, so NAME and "
                             f"--dest must name that folder (got {dest})")
        return refresh_validation(dest, validation_dir)
    src = run / "weights"
    if (src / MANIFEST_FILE).is_file():
        dest.mkdir(parents=True, exist_ok=True)
        for f in (WEIGHTS_FILE, CONFIG_FILE, MANIFEST_FILE):
            shutil.copy2(src / f, dest / f)
    elif (run / "checkpoint.pt").is_file():
        _export_checkpoint(run, dest)
    else:
        raise InputError(f"{run}: no weights/ and no checkpoint.pt (not a training run, or no epoch finished)")
    if (dest / WEIGHTS_FILE).stat().st_size > BF16_ABOVE_BYTES:  # keep the repository lean
        from recon.weights import load_weights, save_weights

        model, model_cfg = load_weights(dest)
        save_weights(model, model_cfg, dest, dtype=torch.bfloat16)
    shipped_model = set_model_settings(dest, model_settings) if model_settings else None
    manifest = read_manifest(dest)
    shutil.copy2(run / "config.yaml", dest / "train_config.yaml")
    for f in ("loss_curve.png", "validation.png", "metrics.csv"):
        if (run / f).is_file():
            shutil.copy2(run / f, dest / f)
    validation = load_results(validation_dir) if validation_dir is not None else None
    (dest / CARD_FILE).write_text(card_markdown(name, run, manifest, validation, shipped_model))
    return dest
