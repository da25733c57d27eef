#!/usr/bin/env bash
# Installs what the two Python baselines need on Debian 12 (idempotent): apt's OpenCV, PyGObject
# with GStreamer's introspection data, numpy and redis-py, then a venv at .local/bench-venv that
# sees those system packages (--system-site-packages) and adds ONNX Runtime from PyPI, the same
# version the daemon loads, and onnx (models/make_dynamic_batch.py writes the batching benchmark's
# model with it). Prints the python to run the baselines with.
set -euo pipefail
cd "$(dirname "$0")/../.."

ORT_VERSION="${ORT_VERSION:-1.23.2}"
ONNX_VERSION="1.23.2"
VENV=".local/bench-venv"
# Debian's interpreter, not one from pyenv or conda: apt's cv2 and gi are built for it.
PYTHON=/usr/bin/python3

APT_PACKAGES=(
  python3 python3-venv python3-numpy python3-opencv python3-redis python3-gi python3-gst-1.0
  gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-libav
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bench-setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "bench-setup: creating $VENV" >&2
  "$PYTHON" -m venv --system-site-packages "$VENV"
fi
have=$("$VENV/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)' 2>/dev/null || true)
if [ "$have" != "$ORT_VERSION" ]; then
  echo "bench-setup: installing onnxruntime==$ORT_VERSION into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "onnxruntime==$ORT_VERSION"
fi

have=$("$VENV/bin/python" -c 'import onnx; print(onnx.__version__)' 2>/dev/null || true)
if [ "$have" != "$ONNX_VERSION" ]; then
  echo "bench-setup: installing onnx==$ONNX_VERSION into $VENV" >&2
  # "numpy<2" keeps Debian's numpy 1.24: apt's OpenCV is built against numpy 1.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "onnx==$ONNX_VERSION" "numpy<2"
fi

# Fails here, not in the middle of a benchmark, if anything is missing.
"$VENV/bin/python" - <<'PY' >&2
import re
import cv2, gi, numpy, onnx, onnxruntime, redis
gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
from gi.repository import Gst
Gst.init(None)
missing = [e for e in ("rtspsrc", "rtph264depay", "h264parse", "avdec_h264", "videoconvertscale", "appsink")
           if Gst.ElementFactory.find(e) is None]
if missing:
    raise SystemExit(f"bench-setup: GStreamer elements missing: {', '.join(missing)}")
if not re.search(r"FFMPEG:\s+YES", cv2.getBuildInformation()):
    raise SystemExit("bench-setup: this OpenCV has no FFmpeg backend")
print(f"bench-setup: ok (OpenCV {cv2.__version__}, {Gst.version_string()}, "
      f"onnxruntime {onnxruntime.__version__}, numpy {numpy.__version__}, redis-py {redis.__version__})")
PY
echo "$PWD/$VENV/bin/python"
