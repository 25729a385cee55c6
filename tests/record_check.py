#!/usr/bin/env python3
"""Reads an expert distribution record with numpy exactly as docs/routing.md
shows, and checks it (tests/routed_test.sh recorder):

  record_check.py FILE MODE PAIRS TOP_K [TRACE]

MODE stat: the counts of all windows and layers sum to PAIRS x TOP_K;
per_token: PAIRS records, each with TOP_K ascending experts, and with TRACE
(moe-worker --trace of the same run) the same (layer, request, position)
rows with the same experts, ranks and weights."""
import sys

import numpy as np

path, mode, pairs, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

# --- as in docs/routing.md ---
h = np.fromfile(path, "<u4", 16)   # magic[2] version mode layers first_layer experts top_k ranks window records[2] ...
if h[3] == 1:
    c = np.fromfile(path, "<u8", offset=64).reshape(-1, h[4], h[6])   # stat: [window][layer][expert]
else:
    r = np.fromfile(path, np.dtype([("step", "<u4"), ("token", "<i4"), ("pos", "<i4"), ("layer", "<u2"), ("home", "<u2"),
                                    ("req", "<i8"), ("experts", "<i2", h[7]), ("ranks", "<u2", h[7]),
                                    ("weights", "<f4", h[7])]), offset=64)
# ---

if h[0:2].tobytes() != b"MOEEXPD\0" or h[2] != 1:
    sys.exit("bad magic or version: %s" % h[:3])
if h[7] != k:
    sys.exit("top_k %d, want %d" % (h[7], k))
if mode == "stat":
    if h[3] != 1:
        sys.exit("mode %d, want stat" % h[3])
    if c.shape[0] != h[10]:
        sys.exit("%d windows, the header says %d" % (c.shape[0], h[10]))
    if int(c.sum()) != pairs * k:
        sys.exit("stat: %d picks, want %d (token, layer) pairs x top-%d = %d" % (c.sum(), pairs, k, pairs * k))
    print("stat: %d windows of %d steps, %d picks = %d pairs x top-%d" % (c.shape[0], h[9], c.sum(), pairs, k))
else:
    if h[3] != 2:
        sys.exit("mode %d, want per_token" % h[3])
    if len(r) != pairs:
        sys.exit("per_token: %d rows, want %d (token, layer) pairs" % (len(r), pairs))
    if not (np.diff(r["experts"].astype(int), axis=1) > 0).all():
        sys.exit("experts not ascending")
    if len(sys.argv) > 5:
        want = {}
        for line in open(sys.argv[5]):
            layer, req, pos, home, ids, ws, ranks = line.split()
            want[(int(layer), int(req), int(pos))] = (home, ids, ranks, [np.float32(x) for x in ws.split(',')])
        got = {}
        for x in r:
            got[(int(x["layer"]), int(x["req"]), int(x["pos"]))] = (
                str(x["home"]), ",".join(str(v) for v in x["experts"]), ",".join(str(v) for v in x["ranks"]),
                list(x["weights"]))
        if got.keys() != want.keys():
            sys.exit("per_token rows differ from the trace's: %d vs %d" % (len(got), len(want)))
        for key in want:
            if got[key] != want[key]:
                sys.exit("row %s: %s recorded, %s traced" % (key, got[key], want[key]))
        print("per_token: %d rows equal to the trace's (experts, ranks, weights)" % len(r))
    else:
        print("per_token: %d rows = %d (token, layer) pairs" % (len(r), pairs))
