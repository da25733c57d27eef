#!/usr/bin/env bash
# Installs what roadsight needs on Debian 12 / Ubuntu and is idempotent: apt packages
# (GStreamer 1.22, rtsp-server, redis-server), ONNX Runtime's shared library from the PyPI
# wheel into .local/onnxruntime.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION="${ORT_VERSION:-1.23.2}"
ORT_DIR=".local/onnxruntime"

APT_PACKAGES=(
  pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  redis-server redis-tools openssl python3-pip python3-venv unzip systemd
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo is missing; install Rust >= 1.92 (https://rustup.rs) and run again" >&2
  exit 69
fi

lib="$ORT_DIR/lib/libonnxruntime.so"
if [ ! -e "$lib" ] || [ "$(cat "$ORT_DIR/VERSION" 2>/dev/null)" != "$ORT_VERSION" ]; then
  echo "setup: fetching ONNX Runtime $ORT_VERSION from PyPI"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "onnxruntime==$ORT_VERSION"
  unzip -q -o "$tmp"/onnxruntime-*.whl 'onnxruntime/capi/libonnxruntime.so*' -d "$tmp/x"
  rm -rf "$ORT_DIR" && mkdir -p "$ORT_DIR/lib"
  cp "$tmp"/x/onnxruntime/capi/libonnxruntime.so* "$ORT_DIR/lib/"
  real=$(ls "$ORT_DIR"/lib/libonnxruntime.so.* | head -n1)
  ln -sf "$(basename "$real")" "$lib"
  echo "$ORT_VERSION" > "$ORT_DIR/VERSION"
fi
echo "setup: ONNX Runtime at $PWD/$lib"
