#!/usr/bin/env bash
# Every test: installs what is missing, then unit and integration tests (real redis-server,
# the RTSP test camera, the real model through ONNX Runtime). Integration tests run one at a
# time: each starts a daemon, a camera and Redis, and the machine may have only two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The systemd units: `systemd-analyze verify` silent, `security` exposure <= 2.5.
bash scripts/check-units.sh
bash scripts/check-yocto.sh
export ORT_DYLIB_PATH="$PWD/.local/onnxruntime/lib/libonnxruntime.so"
# Frames in CUDA memory (feature `cuda`) cannot run without an NVIDIA GPU: keep them compiling.
cargo build --all-targets --features cuda --quiet
cargo test --lib --features cuda --quiet cuda:: -- --test-threads=1
# fault-injection: test-only hooks (a wedged inference thread for the watchdog test).
cargo build --all-targets --features fault-injection --quiet
cargo test --lib --bins --tests --features fault-injection --quiet -- --test-threads=1
