"""The XML chains shipped in ``xml_configs/`` and the gadget settings inside them.

``crunet serve`` accepts a CONFIG_FILE only by the name of a file in this folder
(never a path), or a CONFIG_SCRIPT holding a whole chain. The settings of the
chain's crunet external gadget (``<external><execute name="gadgets.gadget" ...>``
or a ``<connect>`` block) come from its ``<configuration>`` element.
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from gadgets.settings import GadgetSettings
from recon.errors import InputError

#: CONFIG_FILE names the stock client sends that mean "our default chain".
ALIASES = {"default.xml": "crunet.xml"}
GADGET_MODULE = "gadgets.gadget"


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


def resolve(name: str) -> Path:
    """The file for a CONFIG_FILE name; names with a path or unknown names are an error."""
    name = name.strip().strip("\0")
    name = ALIASES.get(name, name)
    if not name or "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".xml"):
        raise InputError(f"config '{name}' refused: give the name of a chain in xml_configs/ "
                         f"({', '.join(available())})")
    path = config_dir() / name
    if not path.is_file():
        raise InputError(f"unknown config '{name}'; available: {', '.join(available())}")
    return path


def gadget_settings(chain_xml: str | bytes, source: str = "config") -> GadgetSettings:
    """Settings of the crunet external gadget in a chain XML."""
    try:
        root = ET.fromstring(chain_xml)
    except ET.ParseError as exc:
        raise InputError(f"{source}: not valid XML ({exc})") from None
    for ext in root.iter("external"):
        execute = ext.find("execute")
        if execute is not None and execute.get("name") != GADGET_MODULE:
            continue
        return GadgetSettings.from_element(ext.find("configuration"))
    raise InputError(f"{source}: the chain has no crunet external gadget "
                     f"(<external><execute name=\"{GADGET_MODULE}\" .../>)")
