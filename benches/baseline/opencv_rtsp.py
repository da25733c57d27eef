#!/usr/bin/env python3
"""Baseline (a): the common Python stack. cv2.VideoCapture (FFmpeg backend) reads the RTSP
stream; each frame is letterboxed with cv2 (resize + copyMakeBorder, BGR → RGB), run through
ONNX Runtime on the CPU and published with one XADD, all in one sequential loop, the way the
usual tutorials write it. Whatever OpenCV and FFmpeg buffer is part of what this measures.

The capture time `ts` comes from the test camera's pixel stamp (roadsight-testcam --stamp),
read from the decoded full-size frame: OpenCV cannot see RTCP. A frame without a stamp falls
back to its arrival time (`clock` = `arrival`). See README.md.
"""
import sys
import time

import cv2
import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import common


def letterbox(frame, size):
    """BGR frame → RGB model input of `size` (h, w), aspect kept, centred on black borders."""
    src_h, src_w = frame.shape[:2]
    dst_h, dst_w = size
    cw, ch, px, py = placement = common.letterbox_placement(src_w, src_h, dst_w, dst_h)
    resized = cv2.resize(frame, (cw, ch), interpolation=cv2.INTER_LINEAR)
    padded = cv2.copyMakeBorder(resized, py, dst_h - ch - py, px, dst_w - cw - px, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return cv2.cvtColor(padded, cv2.COLOR_BGR2RGB), placement


def main():
    args = common.parse_args(__doc__.splitlines()[0])
    labels = common.read_labels(args.labels)
    session, input_name, size = common.open_session(args.model, args.threads, args.tuned)
    client = common.open_redis(args.redis)
    stopper = common.Stopper(args.seconds)
    limiter = common.RateLimiter(args.fps)

    cap = cv2.VideoCapture(args.url, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        print(f"opencv_rtsp: cannot open {args.url}", file=sys.stderr)
        return 69
    read = skipped = processed = published = unstamped = 0
    started = time.monotonic()
    ended = "time"
    while not stopper.stop():
        ok, frame = cap.read()
        if not ok:
            ended = "stream ended"
            break
        arrival = common.unix_us()
        read += 1
        if not limiter.admit(time.monotonic()):
            skipped += 1
            continue
        ts = common.read_stamp(frame)
        clock = "stamp"
        if ts is None:
            ts, clock = arrival, "arrival"
            unstamped += 1
        src_h, src_w = frame.shape[:2]
        tensor, placement = letterbox(frame, size)
        t0 = time.perf_counter()
        (out,) = session.run(None, {input_name: tensor[np.newaxis]})
        inf_us = int((time.perf_counter() - t0) * 1e6)
        dets = common.postprocess(out, len(labels), placement, src_w, src_h)
        processed += 1
        fields = {
            "seq": processed, "ts": ts, "clock": clock, "w": src_w, "h": src_h,
            "inf": inf_us, "n": len(dets), "det": common.det_json(dets, labels),
        }
        common.xadd(client, args.key, fields)
        published += 1
    cap.release()
    if stopper.signalled:
        ended = stopper.signalled
    elapsed = time.monotonic() - started
    print(
        f"opencv_rtsp: read={read} skipped_fps={skipped} processed={processed} published={published} "
        f"unstamped={unstamped} seconds={elapsed:.1f} fps={processed / max(elapsed, 1e-9):.2f} ended={ended}",
        flush=True,
    )
    return 1 if ended == "stream ended" else 0


if __name__ == "__main__":
    sys.exit(main())
