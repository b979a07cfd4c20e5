"""The XML chains shipped in ``xml_configs/`` and the gadget settings inside them.

``crunet serve`` accepts a CONFIG_FILE only by the name of a file in this folder
(never a path), with or without ``.xml`` (MRD App clients such as
python-ismrmrd-server's ``client.py`` send ``-c crunet``), or a CONFIG_SCRIPT holding
a whole chain. The settings of the chain's crunet external gadget
(``<external><execute name="gadgets.gadget" ...>`` or a ``<connect>`` block) come
from its ``<configuration>`` element.

What a connection's config asks for is a :class:`Chain` (:func:`chain_from_name`,
:func:`chain_from_xml`): a reconstruction, storing a noise measurement, or a
dependency query; :func:`configure` applies an MRD App's JSON parameters to it.
"""

from __future__ import annotations

import logging
import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

from gadgets import mrdapp
from gadgets.dependencies import NOISE_CHAIN_NAMES, is_noise_chain, parse_chain, query_target
from gadgets.mrdapp import ConfigAdditional
from gadgets.settings import GadgetSettings
from recon.errors import InputError

log = logging.getLogger("crunet.configs")

#: CONFIG_FILE names the stock client sends that mean "our default chain".
ALIASES = {"default.xml": "crunet.xml"}
GADGET_MODULE = "gadgets.gadget"
#: Config names other clients send by default, with the hint their refusal carries.
CLIENT_DEFAULTS = {"invertcontrast": "the default of python-ismrmrd-server's client.py; give -c crunet"}


def config_dir() -> Path:
    """``xml_configs/``: ``$CRUNET_XML_CONFIGS``, the source tree, or the installed share folder."""
    env = os.environ.get("CRUNET_XML_CONFIGS")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[1] / "xml_configs",
                   Path(sys.prefix) / "share" / "crunet-gadgetron" / "xml_configs"]
    for c in candidates:
        if c.is_dir() and any(c.glob("*.xml")):
            return c
    raise InputError(f"no xml_configs folder found (looked in {[str(c) for c in candidates]})")


def available() -> list[str]:
    return sorted(p.name for p in config_dir().glob("*.xml"))


def known() -> str:
    """The chain names for an error message: ``crunet.xml (crunet), ...``."""
    return ", ".join(f"{n} ({n[:-4]})" for n in available())


def resolve(name: str) -> Path:
    """The file for a CONFIG_FILE name (``crunet.xml`` or ``crunet``); names with a path or unknown
    names are an :class:`InputError` naming the known chains."""
    name = name.strip().strip("\0")
    given = name
    if is_app_name(name):
        name += ".xml"  # MRD App clients name a config without its extension
    name = ALIASES.get(name, name)
    if not name or "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".xml"):
        raise InputError(f"config '{given}' refused: give the name of a chain in xml_configs/, with or "
                         f"without .xml: {known()}")
    path = config_dir() / name
    if not path.is_file():
        hint = f" ({CLIENT_DEFAULTS[given]})" if given in CLIENT_DEFAULTS else ""
        raise InputError(f"unknown config '{given}'{hint}; known chains, with or without .xml: {known()}")
    return path


def is_app_name(name: str) -> bool:
    """A config name without an extension, as MRD App clients send (``crunet``, ``invertcontrast``)."""
    name = name.strip().strip("\0")
    return bool(name) and "." not in name and "/" not in name and "\\" not in name


def gadget_values(chain_xml: str | bytes, source: str = "config") -> dict[str, str]:
    """The settings (``{name: text}``, not yet validated) of the crunet external gadget in a chain XML."""
    try:
        root = ET.fromstring(chain_xml)
    except ET.ParseError as exc:
        raise InputError(f"{source}: not valid XML ({exc})") from None
    for ext in root.iter("external"):
        execute = ext.find("execute")
        if execute is not None and execute.get("name") != GADGET_MODULE:
            continue
        return GadgetSettings.values_from_element(ext.find("configuration"))
    raise InputError(f"{source}: the chain has no crunet external gadget "
                     f"(<external><execute name=\"{GADGET_MODULE}\" .../>)")


def gadget_settings(chain_xml: str | bytes, source: str = "config") -> GadgetSettings:
    """Settings of the crunet external gadget in a chain XML, validated."""
    return GadgetSettings.from_mapping(gadget_values(chain_xml, source))


# ------------------------------------------------------------------ what a connection asks for


@dataclass(frozen=True)
class Chain:
    """What a config asks for: a reconstruction, storing a noise measurement, or a dependency query.

    ``values`` are the crunet gadget's settings as the chain writes them (text, not yet validated);
    :func:`configure` validates them, with the JSON parameters on top, into ``settings``. Kind
    ``unknown``: an MRD App config name (no extension) that is no chain; refused with ``error``
    unless the JSON parameters name a chain.
    """

    kind: str  # "recon" | "noise" | "query" | "unknown"
    source: str
    settings: GadgetSettings | None = None
    target: str = ""  # measurement id a query asks for
    values: dict | None = None
    error: str = ""


def chain_from_xml(xml: str | bytes, source: str) -> Chain:
    root = parse_chain(xml, source)
    target = query_target(root)
    if target is not None:
        return Chain("query", source, target=target)
    if is_noise_chain(root):
        return Chain("noise", source)
    return Chain("recon", source, values=gadget_values(xml, source=source))


def chain_from_name(name: str) -> Chain:
    """A CONFIG_FILE name: Gadgetron's noise-dependency chains, or a chain in ``xml_configs/`` (with or
    without ``.xml``). An unknown name is an :class:`InputError` at once, except an MRD App name (no
    extension, e.g. ``invertcontrast``), which the JSON parameters after the header may still replace."""
    if name.strip() in NOISE_CHAIN_NAMES:
        return Chain("noise", name.strip())
    try:
        path = resolve(name)
    except InputError as exc:
        if not is_app_name(name):
            raise
        return Chain("unknown", name.strip(), error=str(exc))
    return chain_from_xml(path.read_bytes(), path.name)


def configure(chain: Chain, extra: ConfigAdditional | None = None) -> Chain:
    """The chain to run: the JSON parameters' ``config`` (if any) replaces the chain, then the settings are
    validated with the JSON's on top (:func:`gadgets.mrdapp.chain_settings`). Errors: :class:`InputError`."""
    if extra is not None:
        if extra.ignored:
            log.info("configAdditional: ignoring parameter(s) %s (not crunet settings; crunet reads config, "
                     "customconfig, %s, or their ids without '_')", ", ".join(extra.ignored),
                     ", ".join(mrdapp.setting_names()))
        if extra.config:
            log.info("configAdditional: config '%s' replaces '%s'", extra.config, chain.source)
            try:
                chain = chain_from_name(extra.config)
            except InputError as exc:
                raise InputError(f"configAdditional parameter 'config': {exc}") from None
            if chain.kind == "unknown":
                raise InputError(f"configAdditional parameter 'config': {chain.error}")
    if chain.kind == "unknown":
        raise InputError(chain.error)
    if chain.kind != "recon":
        if extra is not None and extra.values:
            log.info("configAdditional: %s takes no crunet settings; ignoring %s", chain.source,
                     ", ".join(extra.keys.values()))
        return chain
    return replace(chain, settings=mrdapp.chain_settings(chain.values or {}, extra))
