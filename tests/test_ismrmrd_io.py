"""ISMRMRD raw files: header, writer, reader, round trips and bad input."""


import h5py
import ismrmrd
import numpy as np
import pytest

from recon.errors import InputError
from recon.io import flags as F
from recon.io.acquisitions import CineTiming, slice_to_acquisitions
from recon.io.header import CineProtocol, build_cine_header, encoding_info, header_to_xml, parse_header
from recon.io.raw import read_acquisitions, read_raw, read_reference, write_raw
from recon.masks import acs_indices, cine_mask
from recon.slicedata import Geometry
from tests.h5damage import grown_table, replace_dataset

GEOM = Geometry((1.0, -2.0, 3.5), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.0, 0.0, -10.0))


def _synthetic(rng, n_t=3, n_c=4, n_ky=32, n_kx=40, R=4, n_acs=8, n_slices=2, shifted=False):
    p = CineProtocol(matrix=(n_ky, n_kx // 2), n_phases=n_t, n_slices=n_slices, n_coils=n_c,
                     acceleration=R, n_acs=n_acs)
    header = build_cine_header(p)
    heads, data, truth = [], [], []
    for s in range(n_slices):
        k = (rng.standard_normal((n_t, n_c, n_ky, n_kx)) + 1j * rng.standard_normal((n_t, n_c, n_ky, n_kx)))
        k = k.astype(np.complex64)
        m = cine_mask(n_ky, R, n_acs, n_t, shifted)
        h, d = slice_to_acquisitions(k, m, acs_indices(n_ky, n_acs), s, GEOM, CineTiming(),
                                     scan_counter_start=sum(len(x) for x in heads))
        heads.append(h)
        data += d
        truth.append((k * m[:, None, :, None], m))
    headers = np.concatenate(heads)
    headers["flags"][-1] |= F.LAST_IN_MEASUREMENT
    return header, headers, data, truth


def test_header_roundtrip_and_encoding_info():
    p = CineProtocol(matrix=(120, 96), n_phases=20, n_slices=3, n_coils=12, acceleration=10)
    h = parse_header(header_to_xml(build_cine_header(p)))
    e = encoding_info(h)
    assert e.encoded_matrix == (192, 120, 1) and e.recon_matrix == (96, 120, 1)
    assert e.readout_oversampling == 2
    assert e.encoded_fov_mm[0] == 2 * e.recon_fov_mm[0]
    assert (e.ky.maximum, e.ky.center) == (119, 60)
    assert (e.phase.maximum, e.slice.maximum) == (19, 2)
    assert e.acceleration == (10, 1) and e.calibration_mode == "embedded"
    assert e.receiver_channels == 12


def test_roundtrip_exact(tmp_path, rng):
    header, headers, data, truth = _synthetic(rng)
    path = write_raw(tmp_path / "raw.h5", header, headers, data,
                     references={"ground_truth": [np.ones((3, 32, 20), np.complex64)] * 2})
    raw = read_raw(path)
    assert len(raw.slices) == 2 and raw.noise is None
    for s, (k, m) in zip(raw.slices, truth):
        np.testing.assert_array_equal(s.kspace, k)
        np.testing.assert_array_equal(s.mask, m)
        np.testing.assert_array_equal(s.acs_lines, acs_indices(32, 8))
        assert s.acs_mask.all()
        np.testing.assert_array_equal(s.acs, k[:, :, s.acs_lines])
        assert s.geometry == GEOM
        assert s.acceleration == 4 and s.n_coils == 4 and s.n_frames == 3
        assert s.frame_dim == "phase"
        assert s.readout_oversampled
    # headers (flags, geometry, time stamps, counters) come back byte for byte
    np.testing.assert_array_equal(np.concatenate([s.acq_headers for s in raw.slices]), headers)
    assert read_reference(path, "ground_truth", 1).shape == (3, 32, 20)
    assert read_reference(path, "csm", 0) is None


def test_file_opens_with_ismrmrd_dataset(tmp_path, rng):
    header, headers, data, _ = _synthetic(rng)
    path = write_raw(tmp_path / "raw.h5", header, headers, data)
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    assert ds.number_of_acquisitions() == len(headers)
    acq = ds.read_acquisition(5)
    np.testing.assert_array_equal(acq.data, data[5])
    assert acq.idx.kspace_encode_step_1 == headers[5]["idx"]["kspace_encode_step_1"]
    first = ds.read_acquisition(0)
    assert first.is_flag_set(ismrmrd.ACQ_FIRST_IN_SLICE)
    assert ds.read_acquisition(len(headers) - 1).is_flag_set(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
    parse_header(ds.read_xml_header())
    ds.close()


def test_flags_and_timing(rng):
    _, headers, _, truth = _synthetic(rng, n_slices=1)
    fl = headers["flags"]
    ky = headers["idx"]["kspace_encode_step_1"]
    acs = set(acs_indices(32, 8).tolist())
    assert F.has(fl[0], F.FIRST_IN_SLICE) and F.has(fl[-1], F.LAST_IN_SLICE)
    assert F.has(fl, F.FIRST_IN_SLICE).sum() == 1 and F.has(fl, F.LAST_IN_SLICE).sum() == 1
    cal = F.has(fl, F.CALIBRATION_AND_IMAGING)
    assert set(ky[cal].tolist()) == acs
    assert not F.has(fl, F.CALIBRATION).any()  # embedded: every ACS line also images
    ts = headers["acquisition_time_stamp"].astype(np.int64)
    assert (np.diff(ts) >= 0).all(), "time stamps increase"
    trig = headers["physiology_time_stamp"][:, 0]
    for t in range(3):
        assert trig[headers["idx"]["phase"] == t].min() == round(t * 1000 / 3 / 2.5)


def test_calibration_only_lines(tmp_path, rng):
    """ACS lines outside the imaging mask go to `acs` only (ACQ_IS_PARALLEL_CALIBRATION)."""
    n_t, n_c, n_ky, n_kx = 2, 2, 32, 16
    k = (rng.standard_normal((n_t, n_c, n_ky, n_kx)) + 0j).astype(np.complex64)
    acs = acs_indices(n_ky, 8)
    m = np.zeros((n_t, n_ky), bool)
    m[:, ::4] = True
    h, d = slice_to_acquisitions(k, m, acs, 0, GEOM)
    assert F.has(h["flags"], F.CALIBRATION).any()
    p = CineProtocol(matrix=(n_ky, n_kx // 2), n_phases=n_t, n_coils=n_c, acceleration=4, n_acs=8)
    raw = read_raw(write_raw(tmp_path / "r.h5", build_cine_header(p), h, d))
    s = raw.slices[0]
    np.testing.assert_array_equal(s.mask, m)
    np.testing.assert_array_equal(s.acs, k[:, :, acs])
    assert (s.kspace[:, :, ~m[0]] == 0).all()


def test_reads_shepp_logan(shepp_logan_file):
    shepp_logan = shepp_logan_file
    raw = read_raw(shepp_logan)
    assert raw.encoding.acceleration == (4, 1)
    assert raw.noise is not None and raw.noise.shape[0] == 8
    (s,) = raw.slices
    assert s.n_coils == 8
    assert s.frame_dim == "repetition" and s.n_frames == 4
    assert s.acceleration == 4
    np.testing.assert_array_equal(s.acs_lines, np.arange(52, 76))
    assert s.acs_mask.all()
    assert s.kspace.shape == (4, 8, 128, 256)
    # interleaved: repetition r samples lines r, r+4, ...; together all lines
    for r in range(4):
        assert s.mask[r, r::4].all() and s.mask[r].sum() == 32
    assert s.mask.any(axis=0).all()
    # the true maps are there for the coil-map tests
    assert read_reference(shepp_logan, "csm", 0).shape == (8, 128, 128)
    # data in k-space matches the file's acquisitions
    _, _, headers, data = read_acquisitions(shepp_logan)
    i = int(np.flatnonzero((headers["idx"]["kspace_encode_step_1"] == 8)
                           & (headers["idx"]["repetition"] == 0))[0])
    np.testing.assert_array_equal(s.kspace[0, :, 8], data[i])


# ------------------------------------------------------------------------------ bad input


def _write_h5(path, fn):
    with h5py.File(path, "w") as f:
        fn(f)
    return path


def test_not_hdf5(tmp_path):
    p = tmp_path / "x.h5"
    p.write_text("hello")
    with pytest.raises(InputError, match="not an HDF5 file"):
        read_raw(p)
    with pytest.raises(InputError, match="no such file"):
        read_raw(tmp_path / "missing.h5")


def test_hdf5_without_ismrmrd(tmp_path):
    p = _write_h5(tmp_path / "x.h5", lambda f: f.create_dataset("foo", data=[1, 2]))
    with pytest.raises(InputError, match="not an ISMRMRD file"):
        read_raw(p)


def test_missing_header(tmp_path, rng):
    header, headers, data, _ = _synthetic(rng, n_slices=1)
    p = write_raw(tmp_path / "r.h5", header, headers, data)
    with h5py.File(p, "a") as f:
        del f["dataset/xml"]
    with pytest.raises(InputError, match="no XML header"):
        read_raw(p)


def test_bad_xml(tmp_path, rng):
    _, headers, data, _ = _synthetic(rng, n_slices=1)
    p = write_raw(tmp_path / "r.h5", "<ismrmrdHeader><oops", headers, data)
    with pytest.raises(InputError, match="not a valid ISMRMRD XML header"):
        read_raw(p)


def test_non_cartesian(tmp_path, rng):
    header, headers, data, _ = _synthetic(rng, n_slices=1)
    xml = header_to_xml(header).replace("<trajectory>cartesian", "<trajectory>radial")
    p = write_raw(tmp_path / "r.h5", xml, headers, data)
    with pytest.raises(InputError, match="trajectory is 'radial'"):
        read_raw(p)


def test_no_calibration_lines(tmp_path, rng):
    header, headers, data, _ = _synthetic(rng, n_slices=1)
    headers["flags"] &= ~(F.CALIBRATION | F.CALIBRATION_AND_IMAGING)
    p = write_raw(tmp_path / "r.h5", header, headers, data)
    with pytest.raises(InputError, match="no calibration lines"):
        read_raw(p)


def test_inconsistent_coils(tmp_path, rng):
    header, headers, data, _ = _synthetic(rng, n_slices=1)
    headers["active_channels"][7] = 3
    data[7] = data[7][:3]
    p = write_raw(tmp_path / "r.h5", header, headers, data)
    with pytest.raises(InputError, match="inconsistent coil counts: acquisition 7"):
        read_raw(p)
    header2, headers2, data2, _ = _synthetic(rng, n_slices=1)
    xml = header_to_xml(header2).replace("<receiverChannels>4<", "<receiverChannels>6<")
    p2 = write_raw(tmp_path / "r2.h5", xml, headers2, data2)
    with pytest.raises(InputError, match="receiverChannels = 6"):
        read_raw(p2)


@pytest.mark.parametrize("field,value,match", [
    ("kspace_encode_step_1", 40, "kspace_encode_step_1 = 40"),
    ("phase", 9, "phase = 9"),
    ("slice", 4, "slice = 4"),
])
def test_index_outside_limits(tmp_path, rng, field, value, match):
    header, headers, data, _ = _synthetic(rng, n_slices=1)
    headers["idx"][field][3] = value
    p = write_raw(tmp_path / "r.h5", header, headers, data)
    with pytest.raises(InputError, match=match + ".*outside encodingLimits"):
        read_raw(p)


def test_truncated_data(tmp_path, rng):
    header, headers, data, _ = _synthetic(rng, n_slices=1)
    p = write_raw(tmp_path / "r.h5", header, headers, data)
    with h5py.File(p, "a") as f:
        row = f["dataset/data"][2]
        row["data"] = row["data"][:10]
        f["dataset/data"][2] = row
    with pytest.raises(InputError, match="acquisition 2 stores"):
        read_raw(p)


def _full_file(tmp_path, rng, lines=None, flagged=False, n_t=3, n_ky=32):
    """A fully sampled slice (every frame holds ``lines``, default all); calibration flags cleared
    unless ``flagged``."""
    n_c, n_kx = 2, 16
    k = (rng.standard_normal((n_t, n_c, n_ky, n_kx)) + 1j * rng.standard_normal((n_t, n_c, n_ky, n_kx)))
    k = k.astype(np.complex64)
    m = np.zeros((n_t, n_ky), bool)
    m[:, np.arange(n_ky) if lines is None else lines] = True
    h, d = slice_to_acquisitions(k, m, acs_indices(n_ky, 8), 0, GEOM)
    if not flagged:
        h["flags"] &= ~(F.CALIBRATION | F.CALIBRATION_AND_IMAGING)
    p = CineProtocol(matrix=(n_ky, n_kx // 2), n_phases=n_t, n_coils=n_c, acceleration=1, n_acs=8)
    return write_raw(tmp_path / "full.h5", build_cine_header(p), h, d), k, m


def test_fully_sampled_without_flags_calibrates_from_the_centre(tmp_path, rng):
    from recon.io.assemble import CALIBRATION_KEY, CENTRE_CALIBRATION_LINES

    path, k, m = _full_file(tmp_path, rng, n_ky=40)
    (s,) = read_raw(path).slices
    assert s.extra[CALIBRATION_KEY] == "fully sampled centre"
    np.testing.assert_array_equal(s.acs_lines, np.arange(20 - 12, 20 + 12))
    assert len(s.acs_lines) == CENTRE_CALIBRATION_LINES and s.acs_mask.all()
    np.testing.assert_array_equal(s.acs, k[:, :, s.acs_lines])
    np.testing.assert_array_equal(s.kspace, k)
    # flagged lines win when there are any
    flagged, _, _ = _full_file(tmp_path / "..", rng, flagged=True)
    s2 = read_raw(flagged).slices[0]
    assert s2.extra[CALIBRATION_KEY] == "flagged" and len(s2.acs_lines) == 8


def test_partial_fourier_without_flags_calibrates_from_its_block(tmp_path, rng):
    path, _, _ = _full_file(tmp_path, rng, lines=np.arange(8, 32))  # 24 of 32 lines, centre 16 inside
    s = read_raw(path).slices[0]
    assert s.acs_lines[0] >= 8 and 16 in s.acs_lines and len(s.acs_lines) == 24


def test_fully_sampled_without_flags_reconstructs_zero_filled(tmp_path, rng):
    from recon.pipeline import ReconConfig, reconstruct_slice

    path, _, _ = _full_file(tmp_path, rng)
    res = reconstruct_slice(read_raw(path).slices[0], ReconConfig(method="zf", device="cpu"))
    assert res.frames.shape == (3, 32, 8) and np.isfinite(res.frames).all()


def test_undersampled_without_flags_says_why(tmp_path, rng):
    header, headers, data, _ = _synthetic(rng, n_slices=1)
    headers["flags"] &= ~(F.CALIBRATION | F.CALIBRATION_AND_IMAGING)
    p = write_raw(tmp_path / "r.h5", header, headers, data)
    with pytest.raises(InputError, match="no calibration lines .* not fully sampled around the k-space centre"):
        read_raw(p)


def _with_bad_samples(tmp_path, rng, value):
    header, headers, data, _ = _synthetic(rng, n_slices=2)
    imaging = np.flatnonzero(~F.is_calibration(headers["flags"]) & (headers["idx"]["slice"] == 0))
    data[imaging[0]][1, 3] = value
    data[imaging[4]][0, 0] = value
    return write_raw(tmp_path / "bad.h5", header, headers, data), imaging[[0, 4]]


@pytest.mark.parametrize("value,match", [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"),
                                         (-3e38, "beyond")])
def test_bad_samples_in_imaging_lines(tmp_path, rng, value, match):
    path, bad = _with_bad_samples(tmp_path, rng, value)
    with pytest.raises(InputError, match=f"slice 0: acquisition\\(s\\) {bad[0]}, {bad[1]} hold .*{match}"):
        read_raw(path)
    raw = read_raw(path, skip_bad_slices=True)  # the other slice is still there
    assert [s.slice_index for s in raw.slices] == [1] and match.split()[0] in raw.slice_errors[0]


def test_bad_samples_through_the_chain(tmp_path, rng):
    """The server path assembles buckets with the same code: the bad slice is reported, the other one
    reconstructed."""
    import ismrmrd as mrd

    from gadgets.chain import ChainSession
    from gadgets.settings import GadgetSettings

    path, _ = _with_bad_samples(tmp_path, rng, np.nan)
    _, xml, headers, data = read_acquisitions(path)
    session = ChainSession(parse_header(xml), GadgetSettings(method="zf", device="cpu"))
    out = []
    for h, d in zip(headers, data):
        out += session.acquisition(mrd.Acquisition(mrd.AcquisitionHeader.from_buffer_copy(h.tobytes()), d))
    out += session.close()
    images = [o for o in out if isinstance(o, mrd.Image)]
    errors = [o.message for o in out if not isinstance(o, mrd.Image)]
    assert {im.slice for im in images} == {1} and all(np.isfinite(im.data).all() for im in images)
    assert len(errors) == 1 and "slice 0" in errors[0] and "NaN" in errors[0]


def _with_xml(tmp_path, rng, edit):
    header, headers, data, _ = _synthetic(rng, n_slices=1)
    return write_raw(tmp_path / "h.h5", edit(header_to_xml(header)), headers, data)


def _phase_max(value):
    return lambda x: x.replace("<maximum>2</maximum>\n    <center>1</center>",
                               f"<maximum>{value}</maximum>\n    <center>1</center>")


@pytest.mark.parametrize("edit,match", [
    (_phase_max(65535), "65536 frames x 4 coils x 32 x 40 .* more than the supported"),
    (lambda x: x.replace("<x>40</x>", "<x>100000</x>").replace("<y>32</y>", "<y>100000</y>"),
     "encodedSpace matrix 100000 x 100000 x 1 outside the supported 1..4096"),
    (_phase_max(70000), "encodingLimits.phase .* not a range within 0..65535"),
    (_phase_max("abc"), "encodingLimits.phase must hold integer"),
    (lambda x: x.replace("<receiverChannels>4<", "<receiverChannels>5000<"), "receiverChannels = 5000"),
])
def test_declared_sizes_are_bounded_before_allocating(tmp_path, rng, edit, match):
    with pytest.raises(InputError, match=match):
        read_raw(_with_xml(tmp_path, rng, edit))


def test_long_lists_are_cut(tmp_path, rng):
    with pytest.raises(InputError) as e:
        read_raw(_with_xml(tmp_path, rng, _phase_max(3999)))
    assert "no acquisitions for phase 3..3999 (of 4000 frames declared)" in str(e.value)
    assert len(str(e.value)) < 300


def test_short_list_and_one_line():
    from recon.io.limits import one_line, short_list

    assert short_list(range(12, 4000)) == "12..3999"
    assert short_list([5, 1, 2, 3, 9, 10]) == "1..3, 5, 9, 10"
    assert short_list(range(0, 100, 2)) == "0, 2, 4, 6, 8, 10, ... (50 in all)"
    assert one_line("a\n  b\tc") == "a b c" and len(one_line("x" * 5000)) == 1000


def test_noise_only_file(tmp_path, rng):
    from recon.io.acquisitions import noise_acquisitions

    header, _, _, _ = _synthetic(rng, n_slices=1)
    h, d = noise_acquisitions((rng.standard_normal((4, 512)) + 0j).astype(np.complex64))
    with pytest.raises(InputError, match="holds only a noise scan \\(2 noise acquisitions\\)"):
        read_raw(write_raw(tmp_path / "noise.h5", header, h, d))


@pytest.mark.parametrize("damage,match", [
    (replace_dataset("data", data=np.arange(10.0)), "not an ISMRMRD acquisition table"),
    (grown_table(10 ** 9), "declared, more than the supported"),
    (replace_dataset("data", shape=(100,), dtype=ismrmrd.hdf5.acquisition_dtype), "holds no data \\(never written\\)"),
    (replace_dataset("data"), "is a Group, not a dataset"),
    (replace_dataset("xml", data=np.zeros(0, "S10")), "no XML header"),
    (replace_dataset("xml", data=np.int32(7)), "not a valid ISMRMRD XML header"),
])
def test_damaged_tables_and_headers(tmp_path, rng, damage, match):
    header, headers, data, _ = _synthetic(rng, n_slices=1)
    p = write_raw(tmp_path / "r.h5", header, headers, data)
    with h5py.File(p, "a") as f:
        damage(f)
    with pytest.raises(InputError, match=match):
        read_raw(p)


def test_truncated_file(tmp_path, rng):
    header, headers, data, _ = _synthetic(rng, n_slices=1)
    p = write_raw(tmp_path / "r.h5", header, headers, data)
    blob = p.read_bytes()
    for keep in (len(blob) // 2, len(blob) - 100):
        p.write_bytes(blob[:keep])
        with pytest.raises(InputError, match="damaged or truncated|cannot open|not an HDF5"):
            read_raw(p)


def test_zeroed_global_heap_object_is_refused_not_spun_on(tmp_path, rng):
    """libhdf5 loops forever on a heap object header of index 0 and size 0 (a zeroed block):
    the reader finds it first (run in a subprocess so that a regression cannot hang the suite)."""
    import subprocess
    import sys

    header, headers, data, _ = _synthetic(rng, n_slices=1)
    p = write_raw(tmp_path / "r.h5", header, headers, data)
    blob = bytearray(p.read_bytes())
    first = blob.find(b"GCOL")
    blob[first + 16:first + 32] = bytes(16)  # the first object header of the first collection
    p.write_bytes(bytes(blob))
    code = ("import sys\nfrom recon.errors import InputError\nfrom recon.io.raw import read_raw\n"
            "try:\n    read_raw(sys.argv[1])\nexcept InputError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=60)
    assert f"global heap collection at byte {first} has an empty object header at byte {first + 16}" in r.stdout


def test_recon_grid_is_bounded_too(tmp_path, rng):
    edit = lambda x: x.replace("<x>20</x>", "<x>4096</x>", 1).replace("<y>32</y>", "<y>4096</y>", 1)  # noqa: E731
    header, headers, data, _ = _synthetic(rng, n_slices=1, n_t=3, n_c=8)
    xml = header_to_xml(header)
    recon = xml.index("<reconSpace>")
    p = write_raw(tmp_path / "r.h5", xml[:recon] + edit(xml[recon:]), headers, data)
    with pytest.raises(InputError, match="3 frames x 8 coils x 4096 x 4096"):
        read_raw(p)


def test_ground_truth_of_the_ismrmrd_tool_files(shepp_logan_file, tmp_path):
    """The tool writes no ground truth: it is made from its noise-free phantom and true maps
    (``phantom * sqrt(sum |csm|^2)``, every frame), on the grid of our images: the fully sampled
    union of the repetitions, combined with our maps, matches it up to the noise (measured 32.7
    dB) and does not match it mirrored along y (17.2 dB). Our own files keep their ground truth."""
    from recon.fft import ifft2c
    from recon.io.raw import read_ground_truth
    from recon.metrics.quality import psnr
    from recon.pipeline import prepare
    from recon.simulate.cine import SimulationConfig, simulate_to_file

    p = prepare(read_raw(shepp_logan_file).slices[0])
    truth = read_ground_truth(shepp_logan_file, 0, frames=4)
    phantom = read_reference(shepp_logan_file, "phantom", 0)
    csm = read_reference(shepp_logan_file, "csm", 0)
    assert truth.shape == (4, 128, 128) and truth.dtype == np.complex64
    np.testing.assert_allclose(truth[3], phantom * np.sqrt((np.abs(csm) ** 2).sum(0)), rtol=1e-5, atol=1e-6)
    counts = p.mask.sum(0).clamp_min(1).to(p.kspace.real.dtype)
    union = (p.maps.conj() * ifft2c(p.kspace.sum(0) / counts[None, :, None])).sum(0).abs()
    union = union.expand(4, -1, -1).contiguous().numpy()
    assert float(np.mean(psnr(np.abs(truth), union))) > 30
    assert float(np.mean(psnr(np.abs(truth[:, ::-1]).copy(), union))) < 20
    ours = tmp_path / "ours.h5"
    simulate_to_file(SimulationConfig(n_slices=1, n_phases=3, n_coils=2, matrix=(24, 16), acceleration=2,
                                      n_acs=4), ours)
    np.testing.assert_array_equal(read_ground_truth(ours, 0, frames=3), read_reference(ours, "ground_truth", 0))
