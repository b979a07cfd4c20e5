"""Gadget settings from the XML ``<configuration>`` of the external gadget.

Gadgetron sends the ``<configuration>`` element of the ``<external>`` block to the
Python process (CONFIG message). Settings are read from ``<property name=".."
value=".."/>`` children (Gadgetron's usual form) or from plain child elements
(``<method>sense</method>``); unknown names are an error. ``crunet serve`` also takes
them from an MRD App's JSON parameters (:mod:`gadgets.mrdapp`), over the chain's, and
validates the result with the same :meth:`GadgetSettings.from_mapping`.

| name | default | meaning |
|---|---|---|
| method | crunet_ca | reconstruction method: ``crunet_ca`` (trained CRUNet-MR w/ CA, the default) or other installed weights by name (``crunet``, ``crunet_conv``, ``crnn``; looked up in ``$CRUNET_WEIGHTS_DIR``, then the project's ``weights/``), the classical ``zf``, ``sense``, ``lps``, or ``model`` with ``weights`` |
| coil_method | espirit | coil maps from the ACS: espirit or walsh |
| device | auto | cuda when available, else cpu (or force cpu / cuda) |
| image_type | magnitude | magnitude (float) or complex images |
| series_index | 1 | image_series_index of the output images |
| noise_adjust | true | pre-whiten with the noise scan when one arrives (crunet serve / crunet recon) |
| weights | (empty) | for method ``model`` only: a trained weights directory (``crunet train`` output ``weights/``) or the name of installed weights |
| error_reporting | image | a slice that fails (always logged, to Gadgetron's log under Gadgetron; the other slices go on): ``image`` also sends a marker image (zeros, series ``series_index + 1000``, meta ``CrunetStatus=failed``, ``CrunetError`` and ``ImageComment`` naming the slice and the reason), ``text`` a TEXT message instead (for peers that accept one; Gadgetron 4 treats TEXT from an external gadget as an illegal message and ends the stream), ``log`` nothing more |
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, fields

from recon.errors import InputError
from recon.pipeline import DEFAULT_METHOD, ReconConfig

#: How a failed slice is reported besides the log line (see the table above).
ERROR_REPORTING = ("image", "text", "log")


def _bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise InputError(f"setting '{name}': expected true/false, got '{value}'")


@dataclass(frozen=True)
class GadgetSettings:
    method: str = DEFAULT_METHOD
    coil_method: str = "espirit"
    device: str = "auto"
    image_type: str = "magnitude"
    series_index: int = 1
    noise_adjust: bool = True
    error_reporting: str = "image"
    weights: str = ""

    @classmethod
    def from_mapping(cls, values: dict[str, str]) -> "GadgetSettings":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InputError(f"unknown gadget setting(s) {unknown}; valid: {sorted(known)}")
        kwargs = {}
        for name, raw in values.items():
            default = getattr(cls, name)
            if isinstance(default, bool):
                kwargs[name] = _bool(name, raw)
            elif isinstance(default, int):
                try:
                    kwargs[name] = int(raw)
                except ValueError:
                    raise InputError(f"setting '{name}': expected an integer, got '{raw}'") from None
            else:
                kwargs[name] = raw.strip()
        settings = cls(**kwargs)
        if settings.error_reporting not in ERROR_REPORTING:
            raise InputError(f"setting 'error_reporting' must be one of {', '.join(ERROR_REPORTING)}, "
                             f"got '{settings.error_reporting}'")
        settings.recon_config()  # validates method, coil method, device, image type
        return settings

    @staticmethod
    def values_from_element(element: ET.Element | None) -> dict[str, str]:
        """The ``{name: text}`` a ``<configuration>`` element sets, not yet validated (``None``: ``{}``)."""
        values = {}
        for child in element if element is not None else ():
            if child.tag == "property":
                name, value = child.get("name"), child.get("value")
                if name is None or value is None:
                    raise InputError("<property> needs both a name and a value attribute")
                values[name] = value
            elif len(child) == 0:
                values[child.tag] = (child.text or "").strip()
        return values

    @classmethod
    def from_element(cls, element: ET.Element | None) -> "GadgetSettings":
        """Settings from a ``<configuration>`` element (``None`` or empty gives the defaults)."""
        if element is None:
            return cls()
        return cls.from_mapping(cls.values_from_element(element))

    @classmethod
    def from_xml(cls, text: str | bytes) -> "GadgetSettings":
        """Settings from the CONFIG text (a ``<configuration>`` element, possibly empty)."""
        if not text or not (text.strip() if isinstance(text, str) else text.strip(b"\0 \n")):
            return cls()
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise InputError(f"gadget configuration is not valid XML ({exc})") from None
        return cls.from_element(root)

    def recon_config(self) -> ReconConfig:
        options = {"weights": self.weights} if self.weights else {}
        if self.method == "model" and not self.weights:
            raise InputError("method 'model' needs the setting 'weights' (a trained weights directory "
                             "or the name of installed weights)")
        if self.weights and self.method != "model":
            raise InputError(f"setting 'weights' goes only with method 'model', not '{self.method}' "
                             "(installed weights are chosen by name alone, e.g. method=crunet_ca)")
        return ReconConfig(method=self.method, coil_method=self.coil_method, device=self.device,
                           image_type=self.image_type, series_index=self.series_index,
                           options=options).validate()
