"""The external Python gadget for Gadgetron chains.

Use in an XML chain (see ``xml_configs/crunet.xml``)::

    <external>
        <execute name="gadgets.gadget" target="reconstruct" type="python"/>
        <configuration>
            <property name="method" value="crunet_ca"/>
        </configuration>
    </external>

Gadgetron runs ``python -m gadgetron <port> gadgets.gadget reconstruct``; the
target receives the connection after CONFIG and HEADER. Without a ``method``
setting the gadget runs the trained CRUNet-MR w/ CA (``crunet_ca``, weights
found by name: ``$CRUNET_WEIGHTS_DIR``, then the project's ``weights/``; when they
are missing the gadget sends one ERROR line saying so). Each AcquisitionBucket
(one slice, from AcquisitionAccumulateTriggerGadget with trigger_dimension=slice)
is reconstructed by :class:`gadgets.chain.SliceReconstructor` and sent back as
one ISMRMRD image per cardiac phase; every other message passes through
unchanged. A slice that fails is logged (Gadgetron writes the gadget's output to
its log) and the other slices go on. By default (``error_reporting=image``) the
failure also reaches the client as a marker image, which Gadgetron passes on like
any image: zeros in series ``series_index + 1000`` with the slice's geometry and
meta ``CrunetStatus=failed``, ``CrunetError`` and an ``ImageComment`` naming the
slice and the reason (the stock client writes it to ``/<group>/image_1001``).
``error_reporting=text`` sends a TEXT message instead, for peers that accept one
(Gadgetron 4 does not: TEXT from an external gadget ends its stream); ``log``
sends nothing. A failure of the gadget itself (bad settings, header without
encoding) is sent as ERROR, which Gadgetron reports as a remote error.
"""

from __future__ import annotations

import logging
import os

# Gadgetron starts this module in a fresh Python: make idle OpenMP threads sleep
# (before torch is imported by the pipeline), or torch runs several times slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from gadgets.bucket import Bucket  # noqa: E402
from gadgets.chain import ChainError, SliceReconstructor
from gadgets.external import Connection, Text, run_handler  # checks the installed gadgetron package first
from gadgets.settings import GadgetSettings
from recon.machine import choose_threads, reuse_freed_memory, threads_chosen

log = logging.getLogger("crunet.gadget")


def _handle(connection: Connection) -> None:
    settings = GadgetSettings.from_element(connection.config)
    recon = SliceReconstructor(connection.header, settings)
    log.info("crunet gadget: %s, device %s", recon.config.comment(), recon.config.torch_device())
    for item in connection:
        if isinstance(item, Bucket):
            for out in recon.safe_bucket(item):
                if isinstance(out, ChainError):
                    _report(connection, recon, out)
                else:
                    connection.send(out)
        else:
            connection.send(item)  # pass through what we do not handle


def _report(connection: Connection, recon: SliceReconstructor, error: ChainError) -> None:
    """A failed slice (already logged): marker image, TEXT or nothing, per ``error_reporting``."""
    mode = recon.settings.error_reporting
    if mode == "image":
        connection.send(recon.failure_image(error))
    elif mode == "text":
        connection.send(Text(error.message))


def reconstruct(connection: Connection) -> None:
    """Gadgetron target: ``<execute name="gadgets.gadget" target="reconstruct" type="python"/>``.

    Under ``<execute>`` Gadgetron starts a fresh Python per connection, which ends with
    it: its torch threads are chosen here from the machine's load (``$CRUNET_THREADS``
    overrides), as a one-shot ``crunet`` command chooses them, and freed arrays are reused
    (:func:`recon.machine.reuse_freed_memory`)."""
    if not threads_chosen():
        choose_threads()
        reuse_freed_memory()
    run_handler(connection, _handle)
