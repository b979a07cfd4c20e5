"""Bucket trigger of `crunet serve` = AcquisitionAccumulateTriggerGadget (trigger_dimension=slice).

Gadgetron's gadget (gadgets/mri_core/AcquisitionAccumulateTriggerGadget.cpp) sends the open
bucket before an acquisition whose trigger index differs from the previous acquisition's,
and at the end of the stream; noise lines are skipped; ACQ_LAST_IN_SLICE plays no part.
"""

import ismrmrd
import numpy as np
import pytest

from gadgets.bucket import Bucket
from gadgets.chain import ChainAssembler, SliceTrigger
from gadgets.server import start_background
from gadgets.settings import GadgetSettings
from recon.io.header import parse_header
from tests.gadgetron_harness import StockClient, file_acquisitions

ZF = GadgetSettings(method="zf", device="cpu")


def _acq(slice_, flags=0, line=0):
    a = ismrmrd.Acquisition.from_array(np.zeros((2, 8), np.complex64))
    a.idx.slice = slice_
    a.idx.kspace_encode_step_1 = line
    a.flags = flags
    return a


def _slices(groups):
    return [[int(a.idx.slice) for a in g] for g in groups]


def test_trigger_fires_on_a_change_of_slice_and_at_the_end():
    t = SliceTrigger()
    out = []
    for s in (0, 0, 1, 1, 0):
        out += t.add(_acq(s))
    assert _slices(out) == [[0, 0], [1, 1]]
    assert _slices(t.flush()) == [[0]] and t.flush() == []


def test_last_in_slice_does_not_trigger():
    t = SliceTrigger()
    last = 1 << (ismrmrd.ACQ_LAST_IN_SLICE - 1)
    out = []
    for i in range(6):
        out += t.add(_acq(0, flags=last if i in (1, 3) else 0))
    assert out == [] and len(t.flush()[0]) == 6


def test_auxiliary_lines_count_for_the_trigger():
    """A navigator with another slice index splits the bucket in Gadgetron too; it is not kept."""
    t = SliceTrigger()
    out = t.add(_acq(0)) + t.add(_acq(1), keep=False) + t.add(_acq(0))
    assert _slices(out) == [[0]]
    assert _slices(t.flush()) == [[0]]


def test_interleaved_slices_make_a_bucket_per_change():
    t = SliceTrigger()
    out = []
    for s in (0, 1, 0, 1):
        out += t.add(_acq(s))
    out += t.flush()
    assert _slices(out) == [[0], [1], [0], [1]]


def test_shepp_logan_repetitions_make_one_bucket(shepp_logan_file):
    """ismrmrd_generate_cartesian_shepp_logan -a 4: four repetitions, each ending ACQ_LAST_IN_SLICE."""
    xml, acqs = file_acquisitions(shepp_logan_file)
    last = [a for a in acqs if a.is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE)]
    assert len(last) == 4
    asm = ChainAssembler(parse_header(xml), ZF)
    buckets = [b for a in acqs for b in asm.acquisition(a)] + asm.close()
    assert len(buckets) == 1 and isinstance(buckets[0], Bucket)
    noise = sum(a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT) for a in acqs)
    kept = {id(a) for a in list(buckets[0].data) + list(buckets[0].ref)}
    assert len(kept) == len(acqs) - noise
    assert {int(a.idx.repetition) for a in buckets[0].data} == {0, 1, 2, 3}


@pytest.fixture
def server():
    srv, _ = start_background(idle_timeout=30)
    yield srv
    srv.shutdown(grace=0)
    srv.server_close()


def test_serve_reconstructs_shepp_logan_as_one_multiframe_slice(shepp_logan_file, server):
    run = StockClient(server.port).replay(shepp_logan_file, config="crunet_zf.xml")
    assert not run.aborted and not run.texts, (run.aborted, run.texts)
    assert len(run.images) == 4
    assert {im.slice for im in run.images} == {0}
    assert sorted(im.repetition for im in run.images) == [0, 1, 2, 3]
    assert [im.image_index for im in run.images] == [1, 2, 3, 4]
    assert all(im.data.shape == (1, 1, 128, 128) and np.isfinite(im.data).all() for im in run.images)
