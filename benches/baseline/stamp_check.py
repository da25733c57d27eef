#!/usr/bin/env python3
"""Checks that the test camera's pixel stamp agrees with RTCP: decodes the stream at full size,
reads each frame's `timestamp/x-ntp` reference meta and its pixel stamp (from the luma plane),
and prints the distribution of stamp − NTP in µs. Usage:

    stamp_check.py --url rtsp://127.0.0.1:8554/cam [--seconds 20]
"""
import argparse
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import Gst, GstApp, GstVideo  # noqa: E402,F401  (GstApp: AppSink methods)

import numpy as np  # noqa: E402

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import common  # noqa: E402

NTP_TO_UNIX_NS = 2_208_988_800 * 1_000_000_000


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--seconds", type=float, default=20.0)
    args = p.parse_args()
    Gst.init(None)
    pipeline = Gst.parse_launch(
        f"rtspsrc location={args.url} latency=50 add-reference-timestamp-meta=true protocols=tcp "
        "! rtph264depay ! h264parse ! avdec_h264 ! video/x-raw,format=I420 "
        "! appsink name=sink max-buffers=0 sync=false emit-signals=false"
    )
    sink = pipeline.get_by_name("sink")
    ntp_caps = Gst.Caps.from_string("timestamp/x-ntp")
    frames = no_ntp = no_stamp = 0
    diffs, lags = [], []
    pipeline.set_state(Gst.State.PLAYING)
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        sample = sink.try_pull_sample(200_000_000)
        if sample is None:
            continue
        now_us = common.unix_us()
        frames += 1
        buf = sample.get_buffer()
        info = GstVideo.VideoInfo.new_from_caps(sample.get_caps())
        ok, mapped = buf.map(Gst.MapFlags.READ)
        stride, w, h = info.stride[0], info.width, info.height
        luma = np.frombuffer(mapped.data, dtype=np.uint8, count=stride * h, offset=info.offset[0])
        stamp = common.read_stamp(luma.reshape(h, stride)[:, :w], full_range=False)
        del luma
        buf.unmap(mapped)
        meta = buf.get_reference_timestamp_meta(ntp_caps)
        if stamp is None:
            no_stamp += 1
        if meta is None:
            no_ntp += 1
        if stamp is not None and meta is not None:
            diffs.append(stamp - (meta.timestamp - NTP_TO_UNIX_NS) / 1000)
            lags.append(now_us - stamp)
    pipeline.set_state(Gst.State.NULL)
    print(f"frames={frames} without_stamp={no_stamp} without_ntp={no_ntp} compared={len(diffs)}")
    if not diffs:
        return 1
    d = np.array(diffs)
    pct = lambda a, q: np.percentile(a, q)
    print(
        f"stamp - ntp (us): min={d.min():.1f} p50={pct(d, 50):.1f} p95={pct(d, 95):.1f} "
        f"max={d.max():.1f} mean={d.mean():.1f}"
    )
    lag = np.array(lags) / 1000
    print(f"decoded - stamp (ms): p50={pct(lag, 50):.2f} p95={pct(lag, 95):.2f} max={lag.max():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
