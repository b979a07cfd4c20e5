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

Weights by name: :func:`resolve_weights` takes a weights directory path (used as
is) or a bare name such as ``crunet_ca``, looked up in :func:`weights_search_path`:
the folders of ``$CRUNET_WEIGHTS_DIR`` (``os.pathsep``-separated, first), then the
project's ``weights/`` folder (source tree / editable install), then
``<sys.prefix>/share/crunet-gadgetron/weights`` (installed copy). A name resolves to
the first ``<folder>/<name>/`` that holds a ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from recon.config import dump_yaml, load_config
from recon.errors import InputError
from recon.models.config import ModelConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "manifest.json"
FORMAT = "crunet-weights/1"
#: Environment variable: folders searched for weights by name before the built-in ones.
WEIGHTS_ENV = "CRUNET_WEIGHTS_DIR"
#: The default learned method (CRUNet-MR with channel-attention feature bank).
DEFAULT_WEIGHTS = "crunet_ca"
#: Names under which trained weights are shipped (``weights/<name>/``).
SHIPPED_WEIGHTS = ("crunet_ca", "crunet", "crunet_conv", "crnn", "promptmr")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(directory: str | Path, parameters: int, model_name: str, dtype: str = "float32") -> Path:
    """(Re)write ``manifest.json`` for the weights and config files in ``directory``."""
    d = Path(directory)
    manifest = {
        "format": FORMAT,
        "model": model_name,
        "parameters": int(parameters),
        "dtype": dtype,
        "torch_version": str(torch.__version__),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": {name: {"sha256": file_sha256(d / name), "bytes": (d / name).stat().st_size}
                  for name in (WEIGHTS_FILE, CONFIG_FILE)},
    }
    path = d / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def save_weights(model: torch.nn.Module, model_cfg: ModelConfig, directory: str | Path,
                 dtype: torch.dtype | None = None) -> Path:
    """Write ``model.safetensors``, ``config.yaml`` and ``manifest.json`` into ``directory``.

    ``model`` may be wrapped (DDP): its ``.module`` is saved. ``dtype`` stores the
    floating-point tensors in that type (``torch.bfloat16`` halves a file; the model
    is rebuilt in float32 on load). Returns the directory.
    """
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)
    # contiguous copies: safetensors refuses tensors that share storage
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    stored = str(dtype or torch.float32).replace("torch.", "")
    save_file(state, str(d / WEIGHTS_FILE), metadata={"format": FORMAT, "model": model_cfg.name, "dtype": stored})
    dump_yaml(model_cfg, d / CONFIG_FILE)
    n_params = sum(p.numel() for p in model.parameters())
    write_manifest(d, n_params, model_cfg.name, stored)
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
    model.load_state_dict(state, strict=True)  # copies into the float32 parameters (bf16 files too)
    return model.to(device).eval(), cfg


def _short(items: list[str], n: int = 8) -> str:
    return str(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


# ------------------------------------------------------------------ weights by name


def builtin_weights_dirs() -> list[Path]:
    """The project's ``weights/`` folder (source tree) and the installed share folder."""
    return [Path(__file__).resolve().parents[1] / "weights",
            Path(sys.prefix) / "share" / "crunet-gadgetron" / "weights"]


def weights_search_path() -> list[Path]:
    """Folders searched for weights by name, in order: ``$CRUNET_WEIGHTS_DIR``, then the built-in ones."""
    env = os.environ.get(WEIGHTS_ENV, "")
    dirs = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()] + builtin_weights_dirs()
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def is_weights_name(name: str) -> bool:
    """A bare name (no path separator, not ``.``/``..``) that may name a weights folder."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\")


def find_weights(name: str) -> Path | None:
    """The first ``<folder>/<name>/`` with a manifest in :func:`weights_search_path`, else None."""
    if not is_weights_name(name):
        return None
    for folder in weights_search_path():
        d = folder / name
        if (d / MANIFEST_FILE).is_file():
            return d
    return None


def available_weights() -> list[str]:
    """Names of the weights directories found in the search path (sorted, unique)."""
    names = set()
    for folder in weights_search_path():
        if folder.is_dir():
            names.update(d.name for d in folder.iterdir() if (d / MANIFEST_FILE).is_file())
    return sorted(names)


def missing_weights_message(name: str) -> str:
    """One line: weights ``name`` not found, where we looked, what there is, what to do instead."""
    searched = ", ".join(str(d) for d in weights_search_path())
    found = ", ".join(available_weights()) or "none"
    return (f"trained weights '{name}' not found (searched {searched}; available: {found}); "
            f"install them as <folder>/{name}/ (model.safetensors, config.yaml, manifest.json) in one of "
            f"those folders or in a folder named by ${WEIGHTS_ENV}, or choose another method "
            "(classical: zf, sense, lps; e.g. --method sense, or -c crunet_sense.xml in a chain)")


def resolve_weights(ref: str | Path) -> Path:
    """A weights directory from a path or a name.

    A directory holding a manifest, or any existing directory given as a path (with a
    separator), is used as is; a bare name is looked up in :func:`weights_search_path`
    first, so that a folder of the same name in the working directory (the ``crunet``
    package of a checkout, for ``weights=crunet``) does not shadow installed weights.
    Raises :class:`InputError` (naming the searched folders and the available names)
    when nothing is found. The files are checked (SHA-256) when they are loaded, by
    :func:`load_weights`.
    """
    text = str(ref).strip()
    if not text:
        raise InputError("no weights given: pass a weights directory or the name of installed weights")
    path = Path(text).expanduser()
    if path.is_dir() and ((path / MANIFEST_FILE).is_file() or not is_weights_name(text)):
        return path
    found = find_weights(text)
    if found is not None:
        return found
    if path.is_dir():  # a bare name, no such weights installed: load_weights says what the folder lacks
        return path
    if not is_weights_name(text):
        raise InputError(f"{path}: weights directory not found")
    raise InputError(missing_weights_message(text))


@dataclass(frozen=True)
class WeightsInfo:
    """What a weights directory holds: the model config and the SHA-256 of its tensors."""

    directory: Path
    config: ModelConfig
    sha256: str

    def describe(self) -> str:
        """E.g. ``CRUNet-MR 16ch x5 fusion ca (bank all) sha256:0123456789ab``."""
        return f"{describe_model(self.config)} sha256:{self.sha256[:12]}"


def describe_model(cfg: ModelConfig) -> str:
    """Architecture in a few words: ``CRUNet-MR 16ch x5 fusion ca (bank all)`` (``(bank all, 1x1 projection)``
    when the bank is not projected by the default 3x3 conv; ``, noise-weighted DC`` with
    ``data_consistency: noise``, ``, CG DC (5 steps)`` with ``cg``; ``, composite input (missing)`` with ``composite_input``; ``, mean-consistent``
    with ``mean_consistency``), ``CRNN-MRI 64ch x5 (5 layers)``,
    ``PromptMR 12ch x5 (5 adjacent frames)``."""
    if cfg.name == "crnn":
        c = cfg.crnn
        return f"CRNN-MRI {c.channels}ch x{c.cascades} ({c.layers} layers)"
    if cfg.name == "promptmr":
        c = cfg.promptmr
        return f"PromptMR {c.channels}ch x{c.cascades} ({c.adjacent_frames} adjacent frames)"
    c = cfg.crunet
    text = f"CRUNet-MR {c.channels}ch x{c.cascades} fusion {c.fusion}"
    if c.fusion != "none":
        projection = "" if c.bank_projection == "3x3" else f", {c.bank_projection} projection"
        text += f" (bank {'all' if c.bank_depth == 0 else f'K={c.bank_depth}'}{projection})"
    if c.data_consistency == "noise":
        text += ", noise-weighted DC"
    elif c.data_consistency == "cg":
        text += f", CG DC ({c.cg_iterations} steps)"
    if c.composite_input != "none":
        text += f", composite input ({c.composite_input})"
    if c.mean_consistency:
        text += ", mean-consistent"
    return text


_INFO: dict[tuple, WeightsInfo] = {}
_INFO_LOCK = threading.Lock()


def weights_info(ref: str | Path) -> WeightsInfo:
    """Config and SHA-256 (from the checked manifest) of a weights directory or name.

    The manifest check hashes the files, so results are cached per directory and
    file modification times / sizes (a changed file is checked again).
    """
    d = resolve_weights(ref)
    stamps = []
    for name in (MANIFEST_FILE, WEIGHTS_FILE, CONFIG_FILE):
        try:
            st = (d / name).stat()
            stamps.append((st.st_mtime_ns, st.st_size))
        except OSError:
            stamps.append(None)
    key = (str(d.resolve()), tuple(stamps))
    with _INFO_LOCK:
        if key not in _INFO:
            manifest = read_manifest(d)
            cfg = load_config(ModelConfig, d / CONFIG_FILE)
            _INFO[key] = WeightsInfo(d, cfg, str(manifest["files"][WEIGHTS_FILE]["sha256"]))
        return _INFO[key]


def weights_status(name: str = DEFAULT_WEIGHTS) -> str:
    """One line for start-up messages: where weights ``name`` are and what they hold, or that they are missing."""
    try:
        info = weights_info(name)
    except InputError as exc:
        return f"{name}: not usable: {exc}"
    return f"{name}: {info.describe()} ({info.directory})"
