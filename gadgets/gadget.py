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
unchanged. The gadget keeps reading while slices reconstruct, two side by side on a
CPU (:class:`gadgets.slicejobs.SliceJobs`: at most 4 waiting, then it stops reading
until one starts), and sends everything in the order it came. A slice that fails is
logged (Gadgetron writes the gadget's output to its log) and the other slices go on.
By default (``error_reporting=image``) the failure also reaches the client as a
marker image, which Gadgetron passes on like any image: zeros in series
``series_index + 1000`` with the slice's geometry and meta ``CrunetStatus=failed``,
``CrunetError`` and an ``ImageComment`` naming the slice and the reason (the stock
client writes it to ``/<group>/image_1001``). ``error_reporting=text`` sends a TEXT
message instead, for peers that accept one (Gadgetron 4 does not: TEXT from an
external gadget ends its stream); ``log`` sends nothing. A failure of the gadget
itself (bad settings, header without encoding) is sent as ERROR, which Gadgetron
reports as a remote error.
"""

from __future__ import annotations

import logging
import os

# Gadgetron starts this module in a fresh Python: make idle OpenMP threads sleep
# (before torch is imported by the pipeline), or torch runs several times slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from gadgets.chain import ChainError, SliceReconstructor  # noqa: E402
from gadgets.external import Connection, PeerClosed, Text, run_handler  # checks the installed gadgetron package first
from gadgets.protocol import Limits
from gadgets.settings import GadgetSettings
from gadgets.slicejobs import SliceJobs
from gadgets.worker import Running
from recon.machine import set_up_process, threads_chosen
from recon.scheduler import runner_for

log = logging.getLogger("crunet.gadget")
#: slices in progress over every connection of this process (``crunet gadget`` serves several)
_RUNNING = Running()


def _handle(connection: Connection) -> None:
    settings = GadgetSettings.from_element(connection.config)
    recon = SliceReconstructor(connection.header, settings)
    log.info("crunet gadget: %s, device %s", recon.config.comment(), recon.config.torch_device())
    failed: list[str] = []

    def check() -> None:
        if failed:
            raise PeerClosed(f"sending to Gadgetron failed ({failed[0]})")

    jobs = SliceJobs(recon, threads=runner_for(recon.config.torch_device()).lanes, running=_RUNNING,
                     max_queued=Limits().max_queued_slices, send=connection.send,
                     report=lambda e: _report(connection, recon, e), lost=lambda: failed[0] if failed else None,
                     on_send_failed=lambda exc: failed.append(str(exc)), name="crunet-gadget-slices")
    try:
        for item in connection:  # buckets reconstruct side by side, everything goes out in order
            jobs.put([item], check)
        jobs.worker.finish()
        while not jobs.worker.wait(0.25):
            check()
        check()
    finally:
        if not jobs.worker.wait(0):  # the peer is gone or the handler failed: stop the slices
            jobs.worker.cancel()
            jobs.worker.wait(10)


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
    overrides), as a one-shot ``crunet`` command chooses them, and freed arrays are reused in one
    malloc arena (:func:`recon.machine.set_up_process`)."""
    if not threads_chosen():
        set_up_process()
    run_handler(connection, _handle)
