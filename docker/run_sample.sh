#!/bin/bash
# Run a raw file through a crunet chain with the stock gadgetron_ismrmrd_client and
# print where the images are.
#
#   run_sample.sh [CHAIN.xml] [RAW.h5]
#       CHAIN  a chain in $GADGETRON_HOME/share/gadgetron/config (default crunet.xml)
#       RAW    ISMRMRD raw file (default $CRUNET_SAMPLE_DIR/raw.h5)
#   environment:
#       CRUNET_SAMPLE_SERVER  gadgetron (default): start Gadgetron here;
#                             crunet: start `crunet serve` instead;
#                             none: use a server already listening on $GADGETRON_HOST
#       GADGETRON_HOST        server address for `none` (default 127.0.0.1; IPv4 only)
#       GADGETRON_PORT        port (default 9002)
#       CRUNET_OUTPUT_DIR     where images and logs go (default $CRUNET_SAMPLE_DIR/out)
#
# Output: $CRUNET_OUTPUT_DIR/<chain>.h5 with the images in /<chain>/image_<series>/
# (data is (images, channels, z, y, x)), and server.log / client.log.
set -eo pipefail

chain="${1:-crunet.xml}"
sample_dir="${CRUNET_SAMPLE_DIR:-/opt/crunet/sample}"
raw="${2:-$sample_dir/raw.h5}"
server="${CRUNET_SAMPLE_SERVER:-gadgetron}"
host="${GADGETRON_HOST:-127.0.0.1}"
port="${GADGETRON_PORT:-9002}"
out_dir="${CRUNET_OUTPUT_DIR:-$sample_dir/out}"
group="${chain%.xml}"
out="$out_dir/$group.h5"

[ -f "$raw" ] || { echo "run_sample: no raw file $raw (make one with: crunet simulate $raw)" >&2; exit 2; }
mkdir -p "$out_dir"
rm -f "$out"   # the client appends to an existing file
export HDF5_USE_FILE_LOCKING=FALSE  # the client opens the raw file read-write with a lock

server_pid=""
stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap stop_server EXIT

case "$server" in
    gadgetron)
        host=127.0.0.1
        echo "run_sample: starting gadgetron on port $port (log: $out_dir/server.log)"
        gadgetron -p "$port" >"$out_dir/server.log" 2>&1 &
        server_pid=$! ;;
    crunet)
        host=127.0.0.1
        echo "run_sample: starting crunet serve on port $port (log: $out_dir/server.log)"
        crunet serve --port "$port" >"$out_dir/server.log" 2>&1 &
        server_pid=$! ;;
    none) ;;
    *) echo "run_sample: CRUNET_SAMPLE_SERVER must be gadgetron, crunet or none, not '$server'" >&2; exit 2 ;;
esac

# Wait until the port accepts connections (the stock client has a small connect race).
python - "$host" "$port" "${server_pid:-0}" <<'PY'
import os, socket, sys, time
host, port, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
deadline = time.time() + 120
while time.time() < deadline:
    if pid:
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit("run_sample: the server exited before listening; see server.log")
    try:
        socket.create_connection((host, port), timeout=2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit(f"run_sample: nothing listens on {host}:{port} after 120 s")
PY

echo "run_sample: $raw -> $host:$port, chain $chain"
set +e
gadgetron_ismrmrd_client -a "$host" -p "$port" -f "$raw" -o "$out" -G "$group" -c "$chain" 2>&1 | tee "$out_dir/client.log"
client_rc=${PIPESTATUS[0]}
set -e
stop_server
trap - EXIT

if [ "$client_rc" -ne 0 ] || [ ! -f "$out" ]; then
    echo "run_sample: no images (client exit $client_rc); logs: $out_dir/client.log, $out_dir/server.log" >&2
    [ -f "$out_dir/server.log" ] && tail -n 40 "$out_dir/server.log" >&2
    exit 1
fi

python - "$out" "$group" <<'PY'
import sys
import h5py
path, group = sys.argv[1], sys.argv[2]
with h5py.File(path, "r") as f:
    series = sorted(k for k in f[group] if k.startswith("image_"))
    for name in series:
        d = f[group][name]["data"]
        print(f"  /{group}/{name}/data  shape {d.shape} (images, channels, z, y, x)  {d.dtype}")
    if not series:
        sys.exit(f"run_sample: {path} has no image series in /{group}")
PY
echo "run_sample: images written to $out (group /$group); logs in $out_dir"
