#!/bin/bash
# Start `crunet serve` on 0.0.0.0:9002 inside a chroot made from the MRD App image
# (docker/mrdapp.Dockerfile), as FIRE's chroot_command does: a chroot does not get the
# image's ENV, so this script sets it.
#
#   start.sh [LOGFILE] [crunet serve options ...]
#       LOGFILE  append the server's output there (else it goes to stdout/stderr)
set -eo pipefail

export CRUNET_HOME=/opt/crunet
export CRUNET_XML_CONFIGS=/opt/crunet/xml_configs
export CRUNET_WEIGHTS_DIR=/opt/crunet/weights
export HDF5_USE_FILE_LOCKING=FALSE
export OMP_WAIT_POLICY=PASSIVE
export PYTHONUNBUFFERED=1
export PATH=/usr/local/bin:/usr/bin:/bin:${PATH}

log="${1:-}"
[ $# -gt 0 ] && shift
if [ -n "$log" ]; then
    exec crunet serve --host 0.0.0.0 --port 9002 "$@" >>"$log" 2>&1
fi
exec crunet serve --host 0.0.0.0 --port 9002 "$@"
