#!/usr/bin/env python3
"""Baseline (b): the careful Python stack. A PyGObject GStreamer pipeline does what roadsightd's
capture does (small jitter buffer, RTCP capture times, letterbox scale to the model's input in
one videoconvertscale pass, newest frame only), and Python pulls each frame, hands the mapped
buffer to ONNX Runtime as a numpy view (no copy) and publishes it with one XADD.

`ts` is the frame's `timestamp/x-ntp` reference meta (the camera's RTCP clock), converted to µs
since the Unix epoch, `clock` = `ntp`; before the first sender report it is the arrival time at
the appsink, `clock` = `arrival`, as in the daemon. The fps cap is a pad probe on the decoder's
output that drops frames above the cap by stream time before they are scaled (the daemon's rule;
not videorate, which holds a frame back to choose). See README.md.
"""
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
from gi.repository import Gst, GstApp  # noqa: E402  (after require_version)

import numpy as np  # noqa: E402

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import common  # noqa: E402

NTP_TO_UNIX_NS = 2_208_988_800 * 1_000_000_000
PULL_TIMEOUT_NS = 100_000_000


def build(url, size):
    h, w = size
    line = (
        f"rtspsrc name=src location={url} latency=50 add-reference-timestamp-meta=true protocols=tcp "
        "! rtph264depay ! h264parse ! avdec_h264 name=dec ! videoconvertscale name=scale add-borders=true "
        f"! video/x-raw,format=RGB,width={w},height={h},pixel-aspect-ratio=1/1 "
        "! appsink name=sink max-buffers=1 drop=true sync=false emit-signals=false"
    )
    return Gst.parse_launch(line)


class FpsCap:
    """Drops decoded frames above the cap (by PTS) before the scaler, counting what it sees;
    with no cap (0) it only counts."""

    def __init__(self, fps):
        self.limiter = common.RateLimiter(fps)
        self.decoded = self.dropped = 0
        self.lock = threading.Lock()

    def probe(self, _pad, info):
        buf = info.get_buffer()
        with self.lock:
            self.decoded += 1
            at = buf.pts / 1e9 if buf is not None and buf.pts != Gst.CLOCK_TIME_NONE else 0.0
            if self.limiter.admit(at):
                return Gst.PadProbeReturn.OK
            self.dropped += 1
        return Gst.PadProbeReturn.DROP


def capture_time(buf, ntp_caps, arrival_us):
    meta = buf.get_reference_timestamp_meta(ntp_caps)
    if meta is not None and meta.timestamp >= NTP_TO_UNIX_NS:
        return (meta.timestamp - NTP_TO_UNIX_NS) // 1000, "ntp"
    return arrival_us, "arrival"


def source_size(scale):
    caps = scale.get_static_pad("sink").get_current_caps()
    s = caps.get_structure(0) if caps is not None else None
    if s is None:
        return None
    return s.get_value("width"), s.get_value("height")


def main():
    args = common.parse_args(__doc__.splitlines()[0])
    Gst.init(None)
    labels = common.read_labels(args.labels)
    session, input_name, size = common.open_session(args.model, args.threads, args.tuned)
    client = common.open_redis(args.redis)
    stopper = common.Stopper(args.seconds)

    pipeline = build(args.url, size)
    cap = FpsCap(args.fps)
    pipeline.get_by_name("dec").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, cap.probe)
    sink = pipeline.get_by_name("sink")
    scale = pipeline.get_by_name("scale")
    bus = pipeline.get_bus()
    ntp_caps = Gst.Caps.from_string("timestamp/x-ntp")
    shape = (1, size[0], size[1], 3)

    pulled = processed = published = ntp_frames = 0
    placement = src = None
    ended, code = "time", 0
    started = time.monotonic()
    pipeline.set_state(Gst.State.PLAYING)
    try:
        while not stopper.stop():
            msg = bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.EOS)
            if msg is not None:
                if msg.type == Gst.MessageType.ERROR:
                    err, debug = msg.parse_error()
                    print(f"gst_appsink: {msg.src.get_path_string()}: {err.message} ({debug})", file=sys.stderr)
                ended = "error" if msg.type == Gst.MessageType.ERROR else "stream ended"
                code = 69 if pulled == 0 else 1  # never got a frame: the camera is unavailable
                break
            sample = sink.try_pull_sample(PULL_TIMEOUT_NS)
            if sample is None:
                continue
            arrival = common.unix_us()
            pulled += 1
            buf = sample.get_buffer()
            ts, clock = capture_time(buf, ntp_caps, arrival)
            ntp_frames += clock == "ntp"
            size_now = source_size(scale)
            if size_now is None:
                continue
            if size_now != src:
                src = size_now
                placement = common.letterbox_placement(src[0], src[1], size[1], size[0])
            ok, mapped = buf.map(Gst.MapFlags.READ)
            if not ok:
                continue
            try:
                # RGB rows of 512 pixels need no padding (GStreamer pads rows to 4 bytes).
                tensor = np.frombuffer(mapped.data, dtype=np.uint8).reshape(shape)
                t0 = time.perf_counter()
                (out,) = session.run(None, {input_name: tensor})
                inf_us = int((time.perf_counter() - t0) * 1e6)
                del tensor  # the view must go before the memory is unmapped
            finally:
                buf.unmap(mapped)
            dets = common.postprocess(out, len(labels), placement, src[0], src[1])
            processed += 1
            fields = {
                "seq": processed, "ts": ts, "clock": clock, "w": src[0], "h": src[1],
                "inf": inf_us, "n": len(dets), "det": common.det_json(dets, labels),
            }
            common.xadd(client, args.key, fields)
            published += 1
    finally:
        pipeline.set_state(Gst.State.NULL)
    if stopper.signalled:
        ended = stopper.signalled
    elapsed = time.monotonic() - started
    print(
        f"gst_appsink: read={cap.decoded} dropped_fps={cap.dropped} stale={max(cap.decoded - cap.dropped - pulled, 0)} "
        f"processed={processed} published={published} ntp={ntp_frames} seconds={elapsed:.1f} "
        f"fps={processed / max(elapsed, 1e-9):.2f} ended={ended}",
        flush=True,
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
