"""Answers to QUERY messages (id 6), as Gadgetron 4 gives them (apps/gadgetron/connection/Handlers.cpp).

``gadgetron_ismrmrd_client -Q <query>`` sends QUERY (uint64 reserved = 0, uint64
correlation id, uint64 length + query) and then CLOSE; the server answers RESPONSE
(id 7: uint64 correlation id, uint64 length + answer) and CLOSE. Gadgetron knows a
fixed set of keys and answers every other query with ``Unknown query`` (its 4.x
sources have no ``gadgetron::health``, so that query gets ``Unknown query`` from
Gadgetron and here alike). ``crunet serve`` answers the same keys for itself: the
version keys name this package, ``gadgetron::info`` is Gadgetron's layout with this
server's facts. A non-zero reserved field is an error, as in Gadgetron.
"""

from __future__ import annotations

from collections.abc import Callable

from recon.machine import physical_memory

UNKNOWN = "Unknown query"


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _version() -> str:
    from recon import __version__

    return f"crunet-gadgetron {__version__}"


def _ismrmrd_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ismrmrd")
    except PackageNotFoundError:
        return "unknown"


def _cuda_each(fn: Callable[[int], str]) -> str:
    return ";".join(fn(d) for d in range(_cuda_count()))


def _cuda_capability(device: int) -> str:
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return f"{major}.{minor}"


def _cuda_memory(device: int) -> str:
    import torch

    return str(torch.cuda.get_device_properties(device).total_memory)


def _cuda_runtime() -> str:
    import torch

    return str(torch.version.cuda or "N/A")


def info() -> str:
    """``gadgetron::info``: Gadgetron's system-information layout, for this server."""
    from recon.weights import weights_status

    n = _cuda_count()
    lines = [
        "crunet serve (Gadgetron client protocol; not Gadgetron)",
        f"  -- Version            : {_version()}",
        f"  -- System Memory size : {physical_memory() // (1024 * 1024)} MB",
        "  -- Python Support     : YES",
        "  -- Julia Support      : NO",
        "  -- Matlab Support     : NO",
        f"  -- CUDA Support       : {'YES' if n else 'NO'}",
    ]
    if n:
        lines.append(f"    * Number of CUDA capable devices: {n}")
    lines.append(f"  -- Default method     : {weights_status()}")
    return "\n".join(lines) + "\n"


def answers() -> dict[str, Callable[[], str]]:
    """Query key -> function giving the answer (evaluated only when asked)."""
    return {
        "ismrmrd::version": _ismrmrd_version,
        "gadgetron::version": _version,
        "gadgetron::build": lambda: "N/A",
        "gadgetron::info": info,
        "gadgetron::info::memory": lambda: str(physical_memory()),
        "gadgetron::info::python": lambda: "1",
        "gadgetron::info::matlab": lambda: "0",
        "gadgetron::info::cuda": lambda: "1" if _cuda_count() else "0",
        "gadgetron::cuda::devices": lambda: str(_cuda_count()),
        "gadgetron::cuda::driver": _cuda_runtime,
        "gadgetron::cuda::runtime": _cuda_runtime,
        "gadgetron::cuda::memory": lambda: _cuda_each(_cuda_memory),
        "gadgetron::cuda::capabilities": lambda: _cuda_each(_cuda_capability),
    }


def answer(query: str) -> str:
    fn = answers().get(query)
    return fn() if fn is not None else UNKNOWN
