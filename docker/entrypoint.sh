#!/bin/bash
# Entrypoint of the crunet-gadgetron image (after /tini, from Gadgetron's base image).
#   (no arguments) or options  -> gadgetron "$@"  (what Gadgetron's own entrypoint does)
#   sample [chain.xml] [raw.h5] -> /opt/crunet/run_sample.sh (Gadgetron + stock client)
#   anything else               -> run as given, in the gadgetron env (bash, crunet ...)
set -eo pipefail

# shellcheck disable=SC1091
. /opt/conda/etc/profile.d/conda.sh
conda activate gadgetron

case "${1:-}" in
    sample) shift; exec /opt/crunet/run_sample.sh "$@" ;;
    "" | -*) exec gadgetron "$@" ;;
    *) exec "$@" ;;
esac
