"""MRD App conventions on top of Gadgetron's protocol: JSON parameters and the OpenRecon description.

MRD Apps (python-ismrmrd-server's ``client.py`` and server, Siemens FIRE and OpenRecon)
speak the same streaming protocol as Gadgetron's client, plus one convention: right
after the ISMRMRD header the client may send a TEXT message (5) holding the JSON
"configAdditional" ``{"version": "...", "parameters": {"<id>": <value>, ...}}``.
``client.py`` sends the file ``<config>.json`` of its working folder, or the
``configAdditional`` dataset stored in the raw file; OpenRecon sends the values of the
parameters its label declares (:func:`label`).

:func:`parse_config_additional` reads that JSON for ``crunet serve``:

* a key that names a gadget setting (:class:`gadgets.settings.GadgetSettings`), as
  spelt in the XML (``coil_method``) or as its OpenRecon id, the name without
  underscores (``coilmethod``), sets that setting; values may be JSON strings, numbers
  or booleans, and are validated by the same :meth:`GadgetSettings.from_mapping` as
  the XML properties;
* ``config`` names the chain (``crunet``, ``crunet_sense.xml``, ...) in place of the
  CONFIG_FILE, and a non-empty ``customconfig`` does the same, overriding ``config``,
  as in python-ismrmrd-server's server;
* any other key (UI parameters of other apps) is ignored, and the server logs it.

Not JSON, not an object, ``parameters`` not an object, a value that is a list, object
or null, or the same setting given twice: :class:`InputError` naming it.

:func:`label` is the OpenRecon label (``docker/OpenReconLabel.json``): the container's
description and one UI parameter per gadget setting, with type, default, choices or
range, generated from the settings and the choices the validators accept (a test
checks both against :class:`GadgetSettings`). :func:`default_parameters` is the
configAdditional that UI sends untouched (``docker/crunet.json``). Regenerate both
with ``python -m gadgets.mrdapp --write docker``.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

from gadgets.settings import ERROR_REPORTING, GadgetSettings
from recon.errors import InputError

log = logging.getLogger("crunet.mrdapp")

#: keys of ``parameters`` that choose the chain (python-ismrmrd-server's server reads the same two)
CONFIG_KEYS = ("config", "customconfig")
#: the chain the OpenRecon label's ``config`` parameter offers (the others are settings presets)
LABEL_CONFIG = "crunet"
#: OpenRecon allows at most this many UI parameters (its label schema 1.1.0, ``maxItems``)
MAX_UI_PARAMETERS = 14
LABEL_FILE = "OpenReconLabel.json"
PARAMETERS_FILE = "crunet.json"
#: the key of the Docker label OpenRecon reads (base64 of :func:`label`)
LABEL_KEY = "com.siemens-healthineers.magneticresonance.openrecon.metadata:1.1.0"


def param_id(name: str) -> str:
    """The OpenRecon id of a setting (ids are letters and digits only): ``coil_method`` -> ``coilmethod``."""
    return name.replace("_", "")


def setting_names() -> list[str]:
    """The gadget settings, in :class:`GadgetSettings` order."""
    return [f.name for f in fields(GadgetSettings)]


@dataclass(frozen=True)
class ConfigAdditional:
    """What a configAdditional JSON asks for.

    config : chain name from ``config`` / ``customconfig``, or None (keep the CONFIG_FILE's).
    values : ``{setting name: text}``, applied over the chain's by :func:`chain_settings`.
    keys : ``{setting name: the JSON key that set it}`` (for messages).
    ignored : JSON keys that are neither settings nor config keys.
    version : the JSON's ``version`` (informative).
    """

    config: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()
    version: str = ""


def chain_settings(values: dict[str, str], extra: ConfigAdditional | None = None) -> GadgetSettings:
    """The gadget settings of a chain (``values``: its ``<configuration>``, as text) with the JSON's on top.

    Everything is validated once, by :meth:`GadgetSettings.from_mapping`. An error the chain has on its
    own is raised as it is; one that the JSON brings names the JSON key that carried the bad value.
    """
    if extra is None or not extra.values:
        return GadgetSettings.from_mapping(values)
    try:
        return GadgetSettings.from_mapping({**values, **extra.values})
    except InputError as whole:
        try:
            GadgetSettings.from_mapping(values)
            own = None
        except InputError as exc:
            own = str(exc)
        for name, text in extra.values.items():  # the key that is wrong on its own, if one is
            try:
                GadgetSettings.from_mapping({**values, name: text})
            except InputError as exc:
                if str(exc) != own:
                    raise InputError(f"configAdditional parameter '{extra.keys[name]}' = '{text}': {exc}") from None
        if own == str(whole):
            raise
        raise InputError(f"configAdditional parameters {', '.join(extra.keys.values())}: {whole}") from None


def _text(key: str, value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 2 ** 53 else repr(value)
    if isinstance(value, str):
        return value
    kind = "null" if value is None else type(value).__name__
    raise InputError(f"configAdditional parameter '{key}': expected a string, number or boolean, got {kind}")


def parse_config_additional(text: str) -> ConfigAdditional:
    """Read the configAdditional JSON of a TEXT message (a trailing NUL is allowed).

    Parameters
    ----------
    text : the TEXT message's text, e.g. ``'{"version": "1.0", "parameters": {"method": "sense"}}'``.

    Returns
    -------
    :class:`ConfigAdditional` (values not yet validated: :func:`chain_settings` does that).

    Raises
    ------
    InputError : not JSON, not an object, ``parameters`` not an object, a value of another type
        than string/number/boolean, ``config`` not a string, a setting given twice.
    """
    text = text.rstrip("\0")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"configAdditional: the TEXT after the header is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InputError(f"configAdditional: expected a JSON object {{\"version\": ..., \"parameters\": {{...}}}}, "
                         f"got {type(doc).__name__}")
    params = doc.get("parameters", {})
    if not isinstance(params, dict):
        raise InputError(f"configAdditional: 'parameters' must be an object, got {type(params).__name__}")
    by_key = {n: n for n in setting_names()} | {param_id(n): n for n in setting_names()}
    named = {}
    for key in CONFIG_KEYS:
        value = params.get(key, "")
        if not isinstance(value, str):
            raise InputError(f"configAdditional parameter '{key}': expected a chain name, got {value!r}")
        named[key] = value.strip()
    values, keys, ignored = {}, {}, []
    for key, value in params.items():
        if key in CONFIG_KEYS:
            continue
        if key in by_key:
            name = by_key[key]
            if name in values:
                raise InputError(f"configAdditional: setting '{name}' given twice ('{keys[name]}' and '{key}')")
            values[name] = _text(key, value)
            keys[name] = key
        else:
            ignored.append(key)
    config = named["customconfig"] or named["config"] or None  # customconfig wins, as in the reference server
    return ConfigAdditional(config=config, values=values, keys=keys, ignored=tuple(ignored),
                            version=str(doc.get("version", "")))


# ------------------------------------------------------------------ the OpenRecon description

#: Display names of the method choices; the choices themselves come from the method registry.
METHOD_NAMES = {
    "crunet_ca": "CRUNet-MR w/ channel attention (trained, default)",
    "crunet": "CRUNet-MR, no feature bank (trained)",
    "crunet_conv": "CRUNet-MR w/ conv bank (trained)",
    "crnn": "CRNN-MRI (trained)",
    "sense": "CG-SENSE (classical)",
    "lps": "L+S (classical)",
    "zf": "zero-filled (classical)",
    "model": "trained weights from the 'weights' parameter",
}

#: Label and help text of each setting in the UI; every setting needs one (tested).
UI_TEXT = {
    "method": ("Method", "Reconstruction method. The trained ones need their weights in the image "
                         "($CRUNET_WEIGHTS_DIR); 'model' runs the weights named in 'weights'."),
    "coil_method": ("Coil maps", "Coil sensitivity estimation from the ACS lines."),
    "coil_second_set": ("ESPIRiT second set", "Merge ESPIRiT's second map set where the anatomy is cut by "
                                              "the field of view along the phase encodes."),
    "device": ("Device", "auto: CUDA when the container sees a GPU, else CPU."),
    "image_type": ("Image type", "magnitude (float) or complex images; complex needs the "
                                 "compleximage injector."),
    "series_index": ("Series index", "image_series_index of the returned images."),
    "noise_adjust": ("Noise prewhitening", "Prewhiten with the noise scan when the data carry one."),
    "error_reporting": ("Failed slice report", "image: a marker image (series index + 1000) and a text "
                                               "message; text: the message only; log: the log only."),
    "weights": ("Weights", "For method 'model': a weights directory in the container, or installed "
                           "weights by name."),
    "virtual_coils": ("Virtual coils", "Compress the coils to this many SVD virtual coils before the coil "
                                       "maps and the reconstruction (faster for large arrays); 0: every coil."),
}


def choices() -> dict[str, list[str]]:
    """The values the UI offers for each choice setting (each accepted by the settings validator)."""
    from recon.coils.estimate import METHODS as COIL_METHODS
    from recon.io.images import IMAGE_TYPES
    from recon.machine import DEVICES
    from recon.methods import CLASSICAL
    from recon.weights import SHIPPED_WEIGHTS

    return {
        "method": list(SHIPPED_WEIGHTS) + list(CLASSICAL) + ["model"],
        "coil_method": list(COIL_METHODS),
        "device": list(DEVICES),
        "image_type": list(IMAGE_TYPES),
        "error_reporting": list(ERROR_REPORTING),
    }


def int_ranges() -> dict[str, tuple[int, int]]:
    """``{setting: (minimum, maximum)}`` of the integer settings."""
    from recon.io.images import MAX_INDEX
    from recon.pipeline import MAX_VIRTUAL_COILS

    return {"series_index": (0, MAX_INDEX), "virtual_coils": (0, MAX_VIRTUAL_COILS)}


def ui_parameters() -> list[dict]:
    """OpenRecon UI parameters: ``config``, then one per gadget setting (type, default, choices or range)."""
    defaults = GadgetSettings()
    opts, ranges = choices(), int_ranges()
    out = [{"id": "config", "label": {"en": "Config"}, "type": "choice",
            "values": [{"id": LABEL_CONFIG, "name": {"en": LABEL_CONFIG}}], "default": LABEL_CONFIG,
            "information": {"en": "The crunet chain; the parameters below override its settings."}}]
    for name in setting_names():
        default = getattr(defaults, name)
        label_text, info = UI_TEXT[name]
        p = {"id": param_id(name), "label": {"en": label_text}}
        if isinstance(default, bool):
            p.update(type="boolean", default=default)
        elif isinstance(default, int):
            lo, hi = ranges[name]
            p.update(type="int", minimum=lo, maximum=hi, default=default)
        elif name in opts:
            names = METHOD_NAMES if name == "method" else {}
            p.update(type="choice", values=[{"id": v, "name": {"en": names.get(v, v)}} for v in opts[name]],
                     default=default)
        else:
            p.update(type="string", default=default)
        p["information"] = {"en": f"{info} (setting '{name}')"}
        out.append(p)
    return out


def label(version: str | None = None) -> dict:
    """The OpenRecon label of the MRD App image (schema 1.1.0 layout: general, reconstruction, parameters)."""
    if version is None:
        from recon import __version__ as version
    return {
        "general": {
            "name": {"en": "crunet"},  # OpenRecon packaging puts vendor, name and version in file names
            "version": version,
            "vendor": "crunet-gadgetron",
            "information": {"en": "CRUNet-MR: accelerated 2D cardiac cine reconstruction. ESPIRiT coil maps from "
                                  "the ACS lines, then the trained CRUNet-MR or CG-SENSE, L+S, zero-filled. "
                                  "Research use only."},
            "id": "crunet",
            "regulatory_information": {
                "device_trade_name": "crunet", "production_identifier": version, "manufacturer_address": "",
                "made_in": "", "manufacture_date": "", "material_number": f"crunet_{version}", "gtin": "",
                "udi": "", "safety_advices": "Not a medical device. Research use only.",
                "special_operating_instructions": "Cartesian cine raw data with ACS lines; one bucket per slice.",
                "additional_relevant_information": "",
            },
        },
        "reconstruction": {
            "transfer_protocol": {"protocol": "ISMRMRD", "version": "1.4.1"},
            "port": 9002,
            "emitter": "raw",
            "injector": "image",
            "can_process_adjustment_data": False,
            "can_use_gpu": True,
            "min_count_required_gpus": 0,
            "min_required_gpu_memory": 2048,
            "min_required_memory": 4096,
            "min_count_required_cpu_cores": 2,
            "content_qualification_type": "RESEARCH",
        },
        "parameters": ui_parameters(),
    }


def default_parameters(version: str = "1.0.0") -> dict:
    """The configAdditional the OpenRecon UI sends with every parameter at its default."""
    return {"version": version, "parameters": {p["id"]: p["default"] for p in ui_parameters()}}


def _dump(obj: dict) -> str:
    return json.dumps(obj, indent=2) + "\n"


def write(folder: Path) -> list[Path]:
    """Write :data:`LABEL_FILE` and :data:`PARAMETERS_FILE` into ``folder``; returns their paths."""
    folder = Path(folder)
    out = [folder / LABEL_FILE, folder / PARAMETERS_FILE]
    out[0].write_text(_dump(label()))
    out[1].write_text(_dump(default_parameters()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gadgets.mrdapp",
                                     description="print or write the OpenRecon label and default parameters")
    parser.add_argument("--write", metavar="DIR", help=f"write {LABEL_FILE} and {PARAMETERS_FILE} into DIR")
    args = parser.parse_args(argv)
    if args.write:
        for p in write(Path(args.write)):
            print(p)
    else:
        print(_dump(label()), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
