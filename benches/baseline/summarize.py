#!/usr/bin/env python3
"""Summarises one pipeline's stream the way the benchmark measures every pipeline: latency =
entry ID ms × 1000 − `ts` (µs), over the entries of the last --seconds (0: all), skipping the
first --warmup seconds of the stream. Prints one line: entries, fps, latency p50/p95/p99/max
in ms, share of entries per `clock`, and inference p50 when entries carry `inf`.

    summarize.py --redis unix:///tmp/r.sock --key baseline:detections [--warmup 5]
"""
import argparse
import collections
import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import common


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--redis", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--warmup", type=float, default=5.0, help="seconds at the start of the stream to skip")
    args = p.parse_args()
    client = common.open_redis(args.redis)
    entries = client.xrange(args.key, "-", "+")
    if not entries:
        print(f"{args.key}: no entries")
        return 1
    first_ms = int(entries[0][0].split(b"-")[0])
    lat, inf, clocks, ids = [], [], collections.Counter(), []
    for eid, f in entries:
        ms = int(eid.split(b"-")[0])
        if ms < first_ms + args.warmup * 1000:
            continue
        ids.append(ms)
        lat.append(ms * 1000 - int(f[b"ts"]))
        clocks[f.get(b"clock", b"?").decode()] += 1
        if b"inf" in f:
            inf.append(int(f[b"inf"]))
    if len(ids) < 2:
        print(f"{args.key}: too few entries after the warm-up")
        return 1
    lat = np.array(lat) / 1000
    fps = (len(ids) - 1) / ((ids[-1] - ids[0]) / 1000)
    # Nearest rank, as the benchmark computes it (benches/pipeline/measure.rs).
    q = lambda a, p: np.percentile(a, p, method="inverted_cdf")
    share = " ".join(f"{k}={v / len(ids):.0%}" for k, v in sorted(clocks.items()))
    line = (
        f"{args.key}: entries={len(ids)} fps={fps:.2f} latency_ms p50={q(lat, 50):.1f} p95={q(lat, 95):.1f} "
        f"p99={q(lat, 99):.1f} max={lat.max():.1f} clock: {share}"
    )
    if inf:
        line += f" inf_ms p50={q(np.array(inf), 50) / 1000:.1f}"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
