# syntax=docker/dockerfile:1
#
# crunet-gadgetron as an MRD App: `crunet serve` on port 9002, no Gadgetron inside.
# Clients: python-ismrmrd-server's client.py, gadgetron_ismrmrd_client, Siemens FIRE
# (as a chroot made from this image) and OpenRecon (this image with its label).
# docker/Dockerfile is the Gadgetron image; this one stands beside it.
#
# Build from the repository root (docker/mrdapp.Dockerfile.dockerignore filters the context):
#     docker build -f docker/mrdapp.Dockerfile -t crunet-mrdapp .
# With the OpenRecon label (base64 of docker/OpenReconLabel.json, see docker/README.md):
#     docker build -f docker/mrdapp.Dockerfile -t crunet-mrdapp \
#         --build-arg OPENRECON_LABEL="$(base64 -w0 docker/OpenReconLabel.json)" .
# torch's CUDA build (PyPI's Linux x86_64 torch; needs only the host driver): add
#         --build-arg TORCH_INDEX_URL=
# Run:
#     docker run --rm -p 9002:9002 crunet-mrdapp                 # serves on 0.0.0.0:9002
#     docker run --rm -p 9002:9002 crunet-mrdapp --log-level DEBUG
#     docker run --rm --gpus all -p 9002:9002 crunet-mrdapp:cuda
# Nothing here has been built or run by us (no Docker engine on our machines); see
# docker/README.md for what was run instead.

ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

# The CPU wheel index gives the small CPU build of torch; empty means PyPI (the CUDA
# build on Linux x86_64). The range is setup.py's.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC="torch>=2.1,<=2.14.1"
ARG RUNTIME_UID=1000
# OpenRecon reads this label: base64 of docker/OpenReconLabel.json (empty when not given).
ARG OPENRECON_LABEL=""
LABEL "com.siemens-healthineers.magneticresonance.openrecon.metadata:1.1.0"="${OPENRECON_LABEL}"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV CRUNET_HOME=/opt/crunet \
    CRUNET_XML_CONFIGS=/opt/crunet/xml_configs \
    CRUNET_WEIGHTS_DIR=/opt/crunet/weights \
    HDF5_USE_FILE_LOCKING=FALSE \
    OMP_WAIT_POLICY=PASSIVE \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

COPY . /opt/crunet/src
WORKDIR /opt/crunet/src

# torch first (else pip pulls PyPI's CUDA build), then the package; piq and DISTS_pytorch
# without their torchvision dependency, as the Makefile installs them. The import check
# runs from / so that the installed copy is the one checked.
RUN python -m pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC" \
    && python -m pip install . \
    && python -m pip install --no-deps "piq>=0.8" "DISTS_pytorch==0.1" \
    && cd / && python -c "import torch, gadgets.server, gadgets.mrdapp; \
print('torch', torch.__version__, '| cuda build', torch.version.cuda)"

# Chains and weights at fixed places ($CRUNET_XML_CONFIGS, $CRUNET_WEIGHTS_DIR), the
# parameter files beside them, the FIRE start script; an unprivileged user.
RUN mkdir -p "${CRUNET_XML_CONFIGS}" "${CRUNET_WEIGHTS_DIR}" \
    && cp xml_configs/*.xml "${CRUNET_XML_CONFIGS}/" \
    && cp -r weights/. "${CRUNET_WEIGHTS_DIR}/" \
    && cp docker/OpenReconLabel.json docker/crunet.json "${CRUNET_HOME}/" \
    && install -m 0755 docker/mrdapp_start.sh "${CRUNET_HOME}/start.sh" \
    && useradd --uid "${RUNTIME_UID}" --create-home --shell /bin/bash crunet

USER ${RUNTIME_UID}
WORKDIR /opt/crunet
EXPOSE 9002

# crunet serve handles SIGTERM/SIGINT itself (finishes or interrupts the slice in
# progress, tells each client, exits 0), so it can be PID 1. Arguments given to
# `docker run` are appended (e.g. --log-level DEBUG, --max-connections 4).
ENTRYPOINT ["crunet", "serve", "--host", "0.0.0.0", "--port", "9002"]
CMD []
