"""ISMRMRD image emission: headers copied from the acquisitions, meta, file layout."""

import h5py
import ismrmrd
import numpy as np
import pytest

from recon.errors import InputError
from recon.io.images import read_images, slice_images, write_images
from recon.io.raw import read_raw
from recon.simulate.cine import SimulationConfig, simulate_to_file


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "raw.h5"
    simulate_to_file(SimulationConfig(n_slices=2, n_phases=4, n_coils=2, matrix=(32, 24), n_acs=8,
                                      acceleration=4, noise_scan=False), path)
    return read_raw(path)


def test_headers_copied_from_acquisitions(raw):
    s = raw.slices[1]
    frames = np.random.default_rng(0).standard_normal((4, 32, 24)).astype(np.complex64)
    images = slice_images(frames, s, series_index=3, comment="crunet test", start_index=5)
    assert len(images) == 4
    for t, img in enumerate(images):
        fh = s.frame_headers[t]
        assert img.image_series_index == 3 and img.image_index == 5 + t
        assert img.slice == 1 and img.phase == t
        np.testing.assert_allclose(img.position, fh["position"])
        np.testing.assert_allclose(img.read_dir, fh["read_dir"])
        np.testing.assert_allclose(img.phase_dir, fh["phase_dir"])
        np.testing.assert_allclose(img.slice_dir, fh["slice_dir"])
        assert img.acquisition_time_stamp == fh["acquisition_time_stamp"]
        assert tuple(img.physiology_time_stamp) == tuple(fh["physiology_time_stamp"])
        np.testing.assert_allclose(img.field_of_view, raw.encoding.recon_fov_mm)
        assert tuple(img.matrix_size) == (24, 32, 1)
        assert img.image_type == ismrmrd.IMTYPE_MAGNITUDE
        np.testing.assert_allclose(img.data[0, 0], np.abs(frames[t]), rtol=1e-6)
        meta = ismrmrd.Meta.deserialize(img.attribute_string)
        assert meta["DataRole"] == "Image" and meta["ImageComment"] == "crunet test"
        assert float(meta["WindowWidth"]) > 0 and "WindowCenter" in meta
    # frames are ordered in time
    stamps = [img.physiology_time_stamp[0] for img in images]
    assert stamps == sorted(stamps)


def test_complex_images_and_file_layout(raw, tmp_path):
    s = raw.slices[0]
    frames = (np.ones((4, 32, 24)) * (1 + 2j)).astype(np.complex64)
    out = write_images(tmp_path / "out.h5", slice_images(frames, s, image_type="complex", series_index=2))
    series = read_images(out)
    data, headers, attrs = series[2]
    assert data.shape == (4, 1, 1, 32, 24)
    assert headers["image_type"][0] == ismrmrd.IMTYPE_COMPLEX
    with h5py.File(out) as f:
        assert set(f["dataset/image_2"].keys()) == {"data", "header", "attributes"}
    ds = ismrmrd.Dataset(str(out), "dataset", create_if_needed=False)
    img = ds.read_image("image_2", 3)
    np.testing.assert_allclose(img.data[0, 0], frames[3])
    ds.close()


def test_bad_frames(raw):
    with pytest.raises(InputError, match="expected frames"):
        slice_images(np.zeros((3, 32, 24)), raw.slices[0])
    with pytest.raises(InputError, match="image type"):
        slice_images(np.zeros((4, 32, 24)), raw.slices[0], image_type="phase")
