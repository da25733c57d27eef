#!/usr/bin/env bash
# The demo: a private redis-server, the RTSP test camera playing tests/fixtures/vtest.mp4, and
# roadsightd with configs/demo; prints live detections for DEMO_SECONDS (default 20), then a
# latency summary, and stops everything it started. Idempotent; installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --bins --quiet

seconds="${DEMO_SECONDS:-20}"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

redis-server --port 0 --unixsocket "$work/redis.sock" --dir "$work" --save "" --appendonly no \
  --daemonize no >/dev/null &
pids+=($!)

mkfifo "$work/cam.out"
target/release/roadsight-testcam --source tests/fixtures/vtest.mp4 --listen 127.0.0.1:0 --fps 10 \
  >"$work/cam.out" 2>"$work/testcam.log" &
pids+=($!)
read -r line <"$work/cam.out"
url="${line#roadsight-testcam: serving }"
echo "demo: test camera at $url"

mkdir "$work/cameras.d"
sed "s|^url = .*|url = \"$url\"|" configs/demo/cameras.d/demo.toml >"$work/cameras.d/demo.toml"
export ROADSIGHT_REDIS__URL="unix://$work/redis.sock" ROADSIGHT_CAMERAS_DIR="$work/cameras.d"
for _ in $(seq 50); do [ -S "$work/redis.sock" ] && break; sleep 0.1; done

target/release/roadsightd run --config configs/demo/roadsight.toml 2>"$work/roadsightd.log" &
daemon=$!
pids+=("$daemon")
echo "demo: roadsightd started (log: shown at the end); following the stream for ${seconds}s"
target/release/roadsightd watch --config configs/demo/roadsight.toml --seconds "$seconds"

if ! kill -0 "$daemon" 2>/dev/null; then
  echo "demo: roadsightd is not running; its log:" >&2
  cat "$work/roadsightd.log" >&2
  exit 1
fi
rss_kib=$(ps -o rss= -p "$daemon" | tr -d ' ')
kill -TERM "$daemon"; wait "$daemon" || true
echo
echo "demo: roadsightd RSS at the end: $((rss_kib / 1024)) MiB"
echo "demo: roadsightd's own account (frames captured/processed/published/dropped by reason):"
grep -E "Camera summary|ERROR|WARN" "$work/roadsightd.log" | sed 's/^/  /' || true
