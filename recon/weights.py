"""Model weights on disk: safetensors + the config that built the model + a SHA-256 manifest.

A weights directory holds three files::

    model.safetensors   the state dict (tensors only, no pickle)
    config.yaml         the ModelConfig that built the model (recon.models.config)
    manifest.json       SHA-256 and size of both files, parameter count, torch version,
                        creation time

:func:`load_weights` checks the manifest before reading anything else, rebuilds the
model with :func:`recon.models.registry.build_model` and loads the tensors strictly.
Every failure (missing file, hash mismatch, bad config, missing / unexpected keys,
shape mismatch) is an :class:`InputError` naming the file or the keys.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from recon.config import dump_yaml, load_config
from recon.errors import InputError
from recon.models.config import ModelConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "manifest.json"
FORMAT = "crunet-weights/1"


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(directory: str | Path, parameters: int, model_name: str) -> Path:
    """(Re)write ``manifest.json`` for the weights and config files in ``directory``."""
    d = Path(directory)
    manifest = {
        "format": FORMAT,
        "model": model_name,
        "parameters": int(parameters),
        "torch_version": str(torch.__version__),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": {name: {"sha256": file_sha256(d / name), "bytes": (d / name).stat().st_size}
                  for name in (WEIGHTS_FILE, CONFIG_FILE)},
    }
    path = d / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def save_weights(model: torch.nn.Module, model_cfg: ModelConfig, directory: str | Path) -> Path:
    """Write ``model.safetensors``, ``config.yaml`` and ``manifest.json`` into ``directory``.

    ``model`` may be wrapped (DDP): its ``.module`` is saved. Returns the directory.
    """
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)
    # contiguous copies: safetensors refuses tensors that share storage
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(d / WEIGHTS_FILE), metadata={"format": FORMAT, "model": model_cfg.name})
    dump_yaml(model_cfg, d / CONFIG_FILE)
    n_params = sum(p.numel() for p in model.parameters())
    write_manifest(d, n_params, model_cfg.name)
    return d


def read_manifest(directory: str | Path) -> dict:
    """The manifest of a weights directory, checked against the files it names."""
    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"{d}: weights directory not found")
    path = d / MANIFEST_FILE
    if not path.is_file():
        raise InputError(f"{path}: manifest missing (not a weights directory written by save_weights?)")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: unreadable manifest ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise InputError(f"{path}: format {manifest.get('format')!r} is not {FORMAT!r}")
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        f = d / name
        entry = files.get(name) if isinstance(files, dict) else None
        if not isinstance(entry, dict) or "sha256" not in entry:
            raise InputError(f"{path}: no SHA-256 recorded for {name}")
        if not f.is_file():
            raise InputError(f"{f}: file missing")
        size = f.stat().st_size
        if "bytes" in entry and size != entry["bytes"]:
            raise InputError(f"{f}: {size} bytes, the manifest says {entry['bytes']} (truncated or replaced)")
        digest = file_sha256(f)
        if digest != entry["sha256"]:
            raise InputError(f"{f}: SHA-256 {digest[:16]}... does not match the manifest's "
                             f"{str(entry['sha256'])[:16]}... (corrupted or modified)")
    return manifest


def load_weights(directory: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, ModelConfig]:
    """Verify, rebuild and load a weights directory; returns ``(model in eval mode, ModelConfig)``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from recon.models.registry import build_model

    d = Path(directory)
    read_manifest(d)
    cfg = load_config(ModelConfig, d / CONFIG_FILE)
    model = build_model(cfg)
    try:
        state = load_file(str(d / WEIGHTS_FILE), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{d / WEIGHTS_FILE}: not a readable safetensors file ({exc})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                    for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape))
    problems = []
    if missing:
        problems.append(f"missing keys {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_short(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch {_short(shapes)}")
    if problems:
        raise InputError(f"{d / WEIGHTS_FILE} does not fit the model of {d / CONFIG_FILE}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), cfg


def _short(items: list[str], n: int = 8) -> str:
    return str(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")
