"""What both Python baselines share, so they differ only in how frames reach the model.

- the command line (`parse_args`), ONNX Runtime session (`open_session`), Redis (`open_redis`),
- the model's output → detections in source pixels (`postprocess`): confidence threshold,
  class-wise NMS and the letterbox mapping, as roadsightd does (src/infer/decode.rs, nms.rs,
  letterbox.rs), and the `det` JSON of the daemon's schema (`det_json`),
- the test camera's pixel stamp (`read_stamp`, layout in README.md and src/testcam/stamp.rs),
- the fps cap rule (`RateLimiter`, the daemon's src/capture/rate.rs), stop on SIGTERM/SIGINT.
"""
import argparse
import json
import signal
import sys
import time

import numpy as np

CONFIDENCE = 0.35  # roadsightd's model.confidence default
NMS_IOU = 0.45  # roadsightd's model.nms_iou default
MAXLEN = 250_000  # roadsightd's publish.maxlen default (XADD MAXLEN ~)


def parse_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--url", required=True, help="rtsp://host:port/path of the camera")
    p.add_argument("--redis", default="redis://127.0.0.1:6379", help="redis://host:port or unix:///path.sock")
    p.add_argument("--key", default="baseline:detections", help="stream key to XADD to")
    p.add_argument("--model", default="models/centernet_mnv3_coco_512_u8.onnx")
    p.add_argument("--labels", default="models/coco80.names")
    p.add_argument("--fps", type=float, default=0.0, help="cap on processed frames per second (0: none)")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long, exit 0 (0: run until a signal)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    p.add_argument(
        "--tuned",
        action="store_true",
        help="ONNX Runtime as roadsightd sets it up: intra-op threads do not spin between runs, "
        "no memory pattern (the default keeps both on)",
    )
    return p.parse_args()


def open_session(path, threads, tuned=False):
    """A CPU session; returns (session, input name, (height, width)) for a uint8 NHWC model.
    With `tuned`, the two session options roadsightd changes from ONNX Runtime's defaults."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads > 0:
        opts.intra_op_num_threads = threads
    if tuned:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.enable_mem_pattern = False
    session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    _, height, width, channels = inp.shape
    if inp.type != "tensor(uint8)" or channels != 3:
        raise SystemExit(f"{path}: expected a uint8 NHWC RGB input, got {inp.type} {inp.shape}")
    return session, inp.name, (height, width)


def open_redis(url):
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as e:
        print(f"redis {url}: {e}", file=sys.stderr)
        sys.exit(69)
    return client


def read_labels(path):
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def content_size(src_w, src_h, dst_w, dst_h):
    """Size of the scaled frame inside the model input, as videoconvertscale add-borders=true
    computes it (integer floor on the padded axis; see src/infer/letterbox.rs)."""
    to_h = dst_w * src_h // src_w
    if to_h <= dst_h:
        return dst_w, to_h
    return dst_h * src_w // src_h, dst_h


def letterbox_placement(src_w, src_h, dst_w, dst_h):
    """(content width, content height, left pad, top pad): centred, odd pixel right/bottom."""
    cw, ch = content_size(src_w, src_h, dst_w, dst_h)
    return cw, ch, (dst_w - cw) // 2, (dst_h - ch) // 2


def iou(a, b):
    area = lambda r: max(r[2] - r[0], 0.0) * max(r[3] - r[1], 0.0)
    aa, ab = area(a), area(b)
    if aa <= 0 or ab <= 0:
        return 0.0
    inter = area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = aa + ab - inter
    return inter / union if union > 0 else 0.0


def postprocess(output, num_classes, placement, src_w, src_h):
    """[1, N, 6] (x1 y1 x2 y2 score class, model pixels) → [(class, score, box in source
    pixels)], highest score first: threshold, class-wise NMS, then back through the letterbox."""
    rows = np.asarray(output, dtype=np.float32).reshape(-1, 6)
    cls = np.rint(rows[:, 5])
    keep = (rows[:, 4] >= CONFIDENCE) & (cls >= 0) & (cls < num_classes) & np.isfinite(rows[:, :4]).all(axis=1)
    cands = [(int(c), float(r[4]), r[:4].tolist()) for r, c in zip(rows[keep], cls[keep])]
    cands.sort(key=lambda d: -d[1])  # stable, like the daemon's merge sort
    kept = []
    for c in cands:
        if not any(k[0] == c[0] and iou(k[2], c[2]) > NMS_IOU for k in kept):
            kept.append(c)
    cw, ch, px, py = placement
    out = []
    for c, score, (x1, y1, x2, y2) in kept:
        fx = lambda v: min(max((v - px) * src_w / cw, 0.0), float(src_w))
        fy = lambda v: min(max((v - py) * src_h / ch, 0.0), float(src_h))
        box = [fx(x1), fy(y1), fx(x2), fy(y2)]
        if box[2] > box[0] and box[3] > box[1]:
            out.append((c, score, box))
    return out


def det_json(dets, labels):
    """The daemon's `det` field: [{"cls","id","conf" (3 decimals),"box" (1 decimal)}]."""
    items = [
        '{"cls":%s,"id":%d,"conf":%.3f,"box":[%.1f,%.1f,%.1f,%.1f]}'
        % (json.dumps(labels[c] if c < len(labels) else "?"), c, score, *box)
        for c, score, box in dets
    ]
    return "[" + ",".join(items) + "]"


def xadd(client, key, fields):
    return client.xadd(key, fields, id="*", maxlen=MAXLEN, approximate=True)


# --- the test camera's pixel stamp (roadsight-testcam --stamp) ---------------------------------
STAMP_MAGIC = 0x52
STAMP_COLUMNS, STAMP_ROWS, STAMP_BYTES = 40, 2, 10


def crc8(data):
    """CRC-8/SMBUS: polynomial 0x07, initial 0, MSB first, no final XOR."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def stamp_block(width, height):
    """Block side for a frame of this size, or None if the code does not fit."""
    block = 16 if width >= 1280 else 8
    if width < STAMP_COLUMNS * block or height < STAMP_ROWS * block:
        return None
    return block


def read_stamp(frame, full_range=True):
    """Capture time (µs since the Unix epoch) drawn by the test camera into a full-size frame
    (H×W grey/luma or H×W×C), or None when the frame carries no intact stamp. `full_range`:
    the pixels are 0–255 RGB/grey (OpenCV's BGR); False for video-range luma (16–235)."""
    height, width = frame.shape[:2]
    block = stamp_block(width, height)
    if block is None:
        return None
    grid = frame[height - STAMP_ROWS * block:, : STAMP_COLUMNS * block]
    grid = grid.reshape(STAMP_ROWS, block, STAMP_COLUMNS, block, -1)
    q = block // 4
    means = grid[:, q : block - q, :, q : block - q, :].mean(axis=(1, 3, 4))
    bits = (means >= (127.5 if full_range else 125.5)).reshape(-1)
    code = np.packbits(bits).tobytes()  # MSB first, row 0 then row 1
    if code[0] != STAMP_MAGIC or code[9] != crc8(code[:9]):
        return None
    return int.from_bytes(code[1:9], "big")


class RateLimiter:
    """At most `fps` frames per second of `now` (seconds), with a quarter period of tolerance
    so a source running exactly at the cap keeps every frame (src/capture/rate.rs)."""

    def __init__(self, fps):
        self.period = 1.0 / fps if fps > 0 else None
        self.next = None

    def admit(self, now):
        p = self.period
        if p is None:
            return True
        if self.next is not None and now + p / 4 < self.next:
            return False
        if self.next is None or now > self.next + p:
            self.next = now + p
        else:
            self.next += p
        return True


class Stopper:
    """Set on SIGTERM/SIGINT or when --seconds ran out; the read loops check it."""

    def __init__(self, seconds):
        self.signalled = None
        self.deadline = time.monotonic() + seconds if seconds > 0 else None
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum, _frame):
        self.signalled = signal.Signals(signum).name

    def stop(self):
        return self.signalled is not None or (self.deadline is not None and time.monotonic() >= self.deadline)


def unix_us():
    return time.time_ns() // 1000
