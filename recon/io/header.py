"""ISMRMRD XML header: build one for a cine protocol, parse and validate any.

:func:`encoding_info` is the one place where the numbers the reconstruction needs
(matrix sizes, limits, acceleration, coils) are read out of an ``ismrmrdHeader`` into
an :class:`recon.slicedata.EncodingInfo`;
the raw-file reader, the converter and the Gadgetron gadgets all use it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import ismrmrd.xsd as xsd

from recon.errors import InputError
from recon.io.limits import MAX_COILS, MAX_XML_BYTES, check_matrix, one_line
from recon.slicedata import EncodingInfo, Limit

#: ``encodingLimits`` values are unsigned 16-bit in the ISMRMRD schema.
LIMIT_RANGE = (0, 65535)


def parse_header(xml: str | bytes, source: str = "header") -> xsd.ismrmrdHeader:
    """Parse ISMRMRD XML into an ``ismrmrdHeader``; bad XML raises :class:`InputError`."""
    if isinstance(xml, str):
        xml = xml.encode()
    if not xml or not xml.strip():
        raise InputError(f"{source}: the ISMRMRD XML header is empty")
    if len(xml) > MAX_XML_BYTES:
        raise InputError(f"{source}: XML header of {len(xml)} bytes, more than the supported {MAX_XML_BYTES}")
    try:
        with warnings.catch_warnings():  # xsdata warns (on stderr) about values it cannot convert
            warnings.simplefilter("ignore")
            header = xsd.CreateFromDocument(xml)
    except Exception as exc:  # xsdata raises ParserError, TypeError, ValueError...
        raise InputError(one_line(f"{source}: not a valid ISMRMRD XML header ({exc})")) from None
    if not isinstance(header, xsd.ismrmrdHeader):
        raise InputError(f"{source}: XML root is not <ismrmrdHeader>")
    return header


def header_to_xml(header: xsd.ismrmrdHeader) -> str:
    """Serialise a header to an XML string."""
    return xsd.ToXML(header)


def _limit(limits, name: str, source: str) -> Limit:
    """One ``encodingLimits`` entry, checked: integers in ``LIMIT_RANGE``, minimum <= maximum."""
    value = getattr(limits, name, None) if limits is not None else None
    if value is None:
        return Limit(0, 0, 0)
    try:
        lim = Limit(int(value.minimum), int(value.maximum), int(value.center))
    except (TypeError, ValueError):
        raise InputError(one_line(f"{source}: encodingLimits.{name} must hold integer minimum, maximum and "
                                  f"center, got {value.minimum!r}, {value.maximum!r}, {value.center!r}")) from None
    lo, hi = LIMIT_RANGE
    if not all(lo <= v <= hi for v in (lim.minimum, lim.maximum, lim.center)) or lim.minimum > lim.maximum:
        raise InputError(f"{source}: encodingLimits.{name} = [{lim.minimum}, {lim.maximum}] (center "
                         f"{lim.center}) is not a range within {lo}..{hi}")
    return lim


def _sizes(space, name: str, source: str) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Matrix size and field of view of ``encodedSpace`` / ``reconSpace``, checked."""
    try:
        m, f = space.matrixSize, space.fieldOfView_mm
        matrix = (int(m.x), int(m.y), int(m.z))
        fov = (float(f.x), float(f.y), float(f.z))
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(one_line(f"{source}: {name} incomplete or not numeric ({exc})")) from None
    if min(matrix) < 1:
        raise InputError(f"{source}: matrix sizes must be positive, got {name} {matrix}")
    check_matrix(name, matrix, source)
    return matrix, fov


def _parallel_imaging(enc, source: str) -> tuple[tuple[int, int], str | None]:
    """Acceleration factors and calibration mode (``(1, 1), None`` without the section)."""
    if enc.parallelImaging is None:
        return (1, 1), None
    try:
        af = enc.parallelImaging.accelerationFactor
        accel = (int(af.kspace_encoding_step_1), int(af.kspace_encoding_step_2))
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(one_line(f"{source}: parallelImaging.accelerationFactor incomplete ({exc})")) from None
    cm = enc.parallelImaging.calibrationMode
    return accel, None if cm is None else (cm.value if hasattr(cm, "value") else str(cm))


def _receiver_channels(header: xsd.ismrmrdHeader, source: str) -> int | None:
    """``receiverChannels`` of the header (None when absent), within ``1..MAX_COILS``."""
    system = header.acquisitionSystemInformation
    channels = None if system is None else system.receiverChannels
    if channels is None:
        return None
    try:
        channels = int(channels)
    except (TypeError, ValueError):
        raise InputError(one_line(f"{source}: receiverChannels is not an integer ({channels!r})")) from None
    if not 1 <= channels <= MAX_COILS:
        raise InputError(f"{source}: receiverChannels = {channels}, outside the supported 1..{MAX_COILS}")
    return channels


def encoding_info(header: xsd.ismrmrdHeader, source: str = "header") -> EncodingInfo:
    """Extract and check :class:`EncodingInfo` from ``header.encoding[0]``.

    Raises :class:`InputError` for a header without encoding, a non-Cartesian
    trajectory, missing, non-numeric or out-of-range matrix sizes (1..``MAX_MATRIX``
    per axis, :mod:`recon.io.limits`), ``encodingLimits`` that are not ranges in
    0..65535, or a receiver channel count outside 1..``MAX_COILS``.
    """
    if not header.encoding:
        raise InputError(f"{source}: header has no <encoding> section")
    enc = header.encoding[0]
    traj = enc.trajectory.value if hasattr(enc.trajectory, "value") else str(enc.trajectory)
    if traj != "cartesian":
        raise InputError(one_line(
            f"{source}: trajectory is '{traj}'; only Cartesian cine data can be reconstructed"))
    encoded, efov = _sizes(enc.encodedSpace, "encodedSpace", source)
    recon, rfov = _sizes(enc.reconSpace, "reconSpace", source)
    limits = enc.encodingLimits
    ky = _limit(limits, "kspace_encoding_step_1", source)
    if limits is None or limits.kspace_encoding_step_1 is None:
        ky = Limit(0, encoded[1] - 1, encoded[1] // 2)
    accel, mode = _parallel_imaging(enc, source)
    return EncodingInfo(
        encoded_matrix=encoded,
        recon_matrix=recon,
        encoded_fov_mm=efov,
        recon_fov_mm=rfov,
        trajectory=traj,
        ky=ky,
        phase=_limit(limits, "phase", source),
        slice=_limit(limits, "slice", source),
        repetition=_limit(limits, "repetition", source),
        acceleration=accel,
        calibration_mode=mode,
        receiver_channels=_receiver_channels(header, source),
    )


@dataclass(frozen=True)
class CineScan:
    """The scan fields of a 2D multi-slice Cartesian cine, declared once.

    The header we write (:class:`CineProtocol`) and the simulator's configuration
    (:class:`recon.simulate.cine.SimulationConfig`) both extend it, so each field has
    one name, type and default. ``matrix`` is the reconstructed ``(ny, nx)``; the
    encoded readout is ``readout_oversampling * nx`` samples over
    ``readout_oversampling * fov_mm[1]``.
    """

    matrix: tuple[int, int] = (128, 128)
    fov_mm: tuple[float, float] = (320.0, 320.0)
    slice_thickness_mm: float = 8.0
    readout_oversampling: int = 2
    n_phases: int = 12
    n_slices: int = 1
    n_coils: int = 10
    acceleration: int = 8
    n_acs: int = 24
    heart_rate_bpm: float = 60.0
    view: str = "sax"


@dataclass(frozen=True)
class CineProtocol(CineScan):
    """Parameters of a 2D multi-slice Cartesian cine protocol (for headers we write):
    the scan fields of :class:`CineScan` and what only the header states."""

    calibration_mode: str = "embedded"
    field_strength_t: float = 1.5
    tr_ms: float = 3.4
    te_ms: float = 1.5
    flip_angle_deg: float = 45.0
    protocol_name: str = "crunet_cine"
    noise_dependency_id: str | None = None


def build_cine_header(p: CineProtocol) -> xsd.ismrmrdHeader:
    """An ISMRMRD header for a segmented 2D cine acquisition described by ``p``.

    ``encodedSpace`` carries the readout oversampling, ``reconSpace`` does not;
    ``encodingLimits`` cover ky, cardiac phase and slice with their centres; the
    parallel-imaging section holds R and the calibration mode.
    """
    ny, nx = p.matrix
    osf = int(p.readout_oversampling)
    enc = xsd.encodingType(
        encodedSpace=xsd.encodingSpaceType(
            matrixSize=xsd.matrixSizeType(x=nx * osf, y=ny, z=1),
            fieldOfView_mm=xsd.fieldOfViewMm(x=p.fov_mm[1] * osf, y=p.fov_mm[0], z=p.slice_thickness_mm),
        ),
        reconSpace=xsd.encodingSpaceType(
            matrixSize=xsd.matrixSizeType(x=nx, y=ny, z=1),
            fieldOfView_mm=xsd.fieldOfViewMm(x=p.fov_mm[1], y=p.fov_mm[0], z=p.slice_thickness_mm),
        ),
        encodingLimits=xsd.encodingLimitsType(
            kspace_encoding_step_0=xsd.limitType(minimum=0, maximum=nx * osf - 1, center=nx * osf // 2),
            kspace_encoding_step_1=xsd.limitType(minimum=0, maximum=ny - 1, center=ny // 2),
            kspace_encoding_step_2=xsd.limitType(minimum=0, maximum=0, center=0),
            slice=xsd.limitType(minimum=0, maximum=p.n_slices - 1, center=p.n_slices // 2),
            phase=xsd.limitType(minimum=0, maximum=p.n_phases - 1, center=p.n_phases // 2),
            repetition=xsd.limitType(minimum=0, maximum=0, center=0),
            average=xsd.limitType(minimum=0, maximum=0, center=0),
            contrast=xsd.limitType(minimum=0, maximum=0, center=0),
            set=xsd.limitType(minimum=0, maximum=0, center=0),
            segment=xsd.limitType(minimum=0, maximum=0, center=0),
        ),
        trajectory=xsd.trajectoryType.CARTESIAN,
        parallelImaging=xsd.parallelImagingType(
            accelerationFactor=xsd.accelerationFactorType(
                kspace_encoding_step_1=int(p.acceleration), kspace_encoding_step_2=1
            ),
            calibrationMode=xsd.calibrationModeType(p.calibration_mode),
        ),
    )
    dependencies = []
    if p.noise_dependency_id:
        dependencies.append(
            xsd.measurementDependencyType(dependencyType="Noise", measurementID=p.noise_dependency_id)
        )
    return xsd.ismrmrdHeader(
        version=2,
        measurementInformation=xsd.measurementInformationType(
            patientPosition=xsd.patientPositionType.HFS,
            protocolName=p.protocol_name,
            sequenceName="bSSFP cine",
            seriesDescription=f"{p.view.upper()} cine R={p.acceleration}",
            measurementDependency=dependencies,
        ),
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(
            systemVendor="crunet-gadgetron simulator",
            systemFieldStrength_T=p.field_strength_t,
            relativeReceiverNoiseBandwidth=0.793,
            receiverChannels=p.n_coils,
            coilLabel=[xsd.coilLabelType(coilNumber=i, coilName=f"coil{i:02d}") for i in range(p.n_coils)],
        ),
        experimentalConditions=xsd.experimentalConditionsType(
            H1resonanceFrequency_Hz=int(round(42.577478e6 * p.field_strength_t))
        ),
        encoding=[enc],
        sequenceParameters=xsd.sequenceParametersType(
            TR=[p.tr_ms], TE=[p.te_ms], flipAngle_deg=[p.flip_angle_deg], sequence_type="TrueFISP"
        ),
        userParameters=xsd.userParametersType(
            userParameterLong=[
                xsd.userParameterLongType(name="NumberOfACSLines", value=int(p.n_acs)),
            ],
            userParameterDouble=[
                xsd.userParameterDoubleType(name="HeartRate_bpm", value=float(p.heart_rate_bpm)),
            ],
            userParameterString=[xsd.userParameterStringType(name="View", value=p.view)],
        ),
    )
