"""Shared fixtures: seeded generators, small synthetic data and tiny trained-weights stand-ins.

:func:`tiny_weights` (session, autouse) writes tiny randomly initialised weights under
every shipped name (``crunet_ca`` — the default method —, ``crunet``, ``crunet_conv``,
``crnn``) into a temporary folder and puts it first in ``$CRUNET_WEIGHTS_DIR``, so the
default method, the default chain ``crunet.xml`` and the gadget processes the tests
start all run a tiny model.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (see the Makefile)

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def require_tool(executable: str, package: str) -> str:
    """The path of a Debian reference tool the test compares against.

    ``make test`` installs the tools when it runs as root (CI does). Where they are missing
    (no root, no Debian) the test is skipped with the reason; under CI (``CI=true``) a
    missing tool fails the test instead, so the reference checks cannot silently go away.
    """
    import shutil

    exe = shutil.which(executable)
    if exe is None:
        missing_tool(executable, package)
    return exe


def missing_tool(executable: str, package: str) -> None:
    """Skip the running test (fail it under CI) for a missing reference tool, saying which."""
    import os

    reason = (f"'{executable}' not found: install Debian's '{package}' package "
              "(`make test` does so as root) to run this reference check")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shepp_logan_file(tmp_path_factory):
    """`ismrmrd_generate_cartesian_shepp_logan -m 128 -c 8 -a 4 -w 24 -C`: an independent ISMRMRD file
    (interleaved R=4 over 4 repetitions, 24 calibration lines, noise scan, true maps in dataset/csm)."""
    import subprocess

    exe = require_tool("ismrmrd_generate_cartesian_shepp_logan", "ismrmrd-tools")
    d = tmp_path_factory.mktemp("shepp_logan")
    out = d / "sl.h5"
    subprocess.run([exe, "-m", "128", "-c", "8", "-a", "4", "-w", "24", "-C", "-o", str(out)],
                   check=True, capture_output=True, cwd=d)
    return out


#: Tiny models under the shipped weights names (random weights; seconds to build, fast to run).
TINY_MODELS = {
    # the shipped default's design: channel-attention bank, data consistency weighted by the noise, each
    # frame's missing lines as a second input, temporal-mean consistency
    "crunet_ca": dict(name="crunet", crunet=dict(channels=4, cascades=2, fusion="ca", data_consistency="noise",
                                                 composite_input="missing", mean_consistency=True)),
    "crunet": dict(name="crunet", crunet=dict(channels=4, cascades=2, fusion="none")),
    "crunet_conv": dict(name="crunet", crunet=dict(channels=4, cascades=2, fusion="conv")),
    "crnn": dict(name="crnn", crnn=dict(channels=4, cascades=2, layers=3)),
    "promptmr": dict(name="promptmr", promptmr=dict(
        cascades=2, adjacent_frames=3, channels=4, feature_dims=(4, 6, 8), prompt_dims=(2, 2, 4),
        prompt_components=(2, 2, 2), prompt_sizes=(6, 4, 2), encoder_blocks=(1, 1, 1), decoder_blocks=(1, 1, 1),
        skip_blocks=(1, 1, 1), bottleneck_blocks=1)),
}


#: How the tiny crunet_ca describes itself (ImageComment, weights status) before its hash.
TINY_CA_DESCRIPTION = ("CRUNet-MR 4ch x2 fusion ca (bank all), noise-weighted DC, composite input (missing), "
                       "mean-consistent")


def save_tiny_weights(directory, name: str = "crunet_ca", seed: int = 0):
    """Write tiny random weights of ``TINY_MODELS[name]`` into ``directory``; returns it."""
    import torch

    from recon.models.config import CRNNConfig, CRUNetConfig, ModelConfig, PromptMRConfig
    from recon.models.registry import build_model
    from recon.weights import save_weights

    spec = TINY_MODELS[name]
    cfg = ModelConfig(name=spec["name"], crunet=CRUNetConfig(**spec.get("crunet", {})),
                      crnn=CRNNConfig(**spec.get("crnn", {})), promptmr=PromptMRConfig(**spec.get("promptmr", {})))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(cfg)
    return save_weights(model, cfg, directory)


@pytest.fixture(scope="session", autouse=True)
def tiny_weights(tmp_path_factory):
    """Folder with tiny weights under every shipped name, first in ``$CRUNET_WEIGHTS_DIR`` for the session."""
    from recon.weights import WEIGHTS_ENV

    folder = tmp_path_factory.mktemp("weights")
    for name in TINY_MODELS:
        save_tiny_weights(folder / name, name)
    before = os.environ.get(WEIGHTS_ENV)
    os.environ[WEIGHTS_ENV] = str(folder) + (os.pathsep + before if before else "")
    yield folder
    if before is None:
        os.environ.pop(WEIGHTS_ENV, None)
    else:
        os.environ[WEIGHTS_ENV] = before


class FedSocket:
    """A socket whose peer sends ``data`` then EOF from a thread (``with FedSocket(data) as sock``)."""

    def __init__(self, data: bytes):
        import socket
        import threading

        self.sock, self._peer = socket.socketpair()
        self._writer = threading.Thread(target=self._feed, args=(data,), daemon=True)

    def _feed(self, data: bytes) -> None:
        import socket

        try:
            self._peer.sendall(data)
            self._peer.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def __enter__(self):
        self._writer.start()
        return self.sock

    def __exit__(self, *exc) -> None:
        self.sock.close()
        self._writer.join(5)
        self._peer.close()
