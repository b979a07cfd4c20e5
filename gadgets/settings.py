"""Gadget settings from the XML ``<configuration>`` of the external gadget.

Gadgetron sends the ``<configuration>`` element of the ``<external>`` block to the
Python process (CONFIG message). Settings are read from ``<property name=".."
value=".."/>`` children (Gadgetron's usual form) or from plain child elements
(``<method>sense</method>``); unknown names are an error. ``crunet serve`` also takes
them from an MRD App's JSON parameters (:mod:`gadgets.mrdapp`), over the chain's, and
validates the result with the same :meth:`GadgetSettings.from_mapping` (the one
mechanism of :mod:`recon.config`, as for YAML configs).

| name | default | meaning |
|---|---|---|
| method | crunet_ca | reconstruction method: ``crunet_ca`` (trained CRUNet-MR w/ CA, the default) or other installed weights by name (``crunet``, ``crunet_conv``, ``crnn``; looked up in ``$CRUNET_WEIGHTS_DIR``, then the project's ``weights/``), the classical ``zf``, ``sense``, ``lps``, or ``model`` with ``weights`` |
| coil_method | espirit | coil maps from the ACS: espirit or walsh |
| device | auto | cuda when available, else cpu (or force cpu / cuda) |
| image_type | magnitude | magnitude (float) or complex images |
| series_index | 1 | image_series_index of the output images |
| noise_adjust | true | pre-whiten with the noise scan when one arrives (crunet serve / crunet recon) |
| virtual_coils | 0 | compress the coils to this many SVD virtual coils (from the ACS) before coil maps and reconstruction: faster for large arrays; 0 keeps every coil |
| coil_second_set | true | espirit: merge ESPIRiT's second map set where the object is cut by the field of view along the phase encodes (two sensitivities share those pixels); false: the first set alone |
| weights | (empty) | for method ``model`` only: a trained weights directory (``crunet train`` output ``weights/``) or the name of installed weights |
| error_reporting | image | a slice that fails (always logged, to Gadgetron's log under Gadgetron; the other slices go on): ``image`` also sends a marker image (zeros, series ``series_index + 1000``, meta ``CrunetStatus=failed``, ``CrunetError`` and ``ImageComment`` naming the slice and the reason), ``text`` a TEXT message instead (for peers that accept one; Gadgetron 4 treats TEXT from an external gadget as an illegal message and ends the stream), ``log`` nothing more |
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Literal, get_args

from recon.coils.estimate import CoilMethod
from recon.config import Settings, validated
from recon.errors import InputError
from recon.io.images import ImageType
from recon.machine import Device
from recon.pipeline import DEFAULT_METHOD, ReconConfig

#: How a failed slice is reported besides the log line (see the table above).
ErrorReporting = Literal["image", "text", "log"]
ERROR_REPORTING: tuple[str, ...] = get_args(ErrorReporting)


@dataclass(frozen=True)
class GadgetSettings(Settings):
    """The gadget's settings (the table above), validated by the one mechanism of
    :mod:`recon.config`: text values from XML or JSON are parsed to the field types."""

    WHERE = "gadget settings"

    method: str = DEFAULT_METHOD
    coil_method: CoilMethod = "espirit"
    device: Device = "auto"
    image_type: ImageType = "magnitude"
    series_index: int = 1
    noise_adjust: bool = True
    error_reporting: ErrorReporting = "image"
    weights: str = ""
    virtual_coils: int = 0
    coil_second_set: bool = True

    def check(self) -> None:
        self.recon_config()  # method, its weights, CUDA, series index

    @classmethod
    def from_mapping(cls, values: dict[str, str]) -> "GadgetSettings":
        """Settings from ``{name: text}`` (XML properties, JSON parameters), converted and validated."""
        return cls.from_dict(values, text=True)

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
        return validated(ReconConfig(method=self.method, coil_method=self.coil_method,
                                     coil_second_set=self.coil_second_set, device=self.device,
                                     image_type=self.image_type, series_index=self.series_index,
                                     options=options, virtual_coils=self.virtual_coils), self.WHERE)
