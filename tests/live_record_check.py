#!/usr/bin/env python3
"""The recorder across a live placement change (tests/live_test.sh streams):

  live_record_check.py FILE EXPERTS STEP

FILE is a per_token record (moe-worker --record) of a 2-rank job whose
placement changed before STEP from the contiguous one (experts below
EXPERTS/2 on rank 0) to odd experts on rank 0 and even on rank 1.  Every
pick before STEP ran where the old placement puts it and every pick from
STEP on where the new one does; prints each side's rank balancedness
(mean/max of the ranks' picks), which the job's log line states too."""
import sys

import numpy as np

path, experts, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
h = np.fromfile(path, "<u4", 16)
r = np.fromfile(path, np.dtype([("step", "<u4"), ("token", "<i4"), ("pos", "<i4"), ("layer", "<u2"), ("home", "<u2"),
                                ("req", "<i8"), ("experts", "<i2", h[7]), ("ranks", "<u2", h[7]),
                                ("weights", "<f4", h[7])]), offset=64)
if h[3] != 2 or len(r) == 0:
    sys.exit("not a per_token record with rows")
before, after = r[r["step"] < step], r[r["step"] >= step]
if len(before) == 0 or len(after) == 0:
    sys.exit("no rows on one side of step %d (steps %d..%d)" % (step, r["step"].min(), r["step"].max()))
old = (before["experts"] >= experts // 2).astype(np.uint16)   # contiguous: upper half on rank 1
new = (after["experts"] % 2 == 0).astype(np.uint16)           # odd on rank 0, even on rank 1
if not np.array_equal(before["ranks"], old):
    sys.exit("a pick before step %d ran off the old placement" % step)
if not np.array_equal(after["ranks"], new):
    sys.exit("a pick from step %d on ran off the new placement" % step)


def balancedness(rows):
    load = np.bincount(rows["ranks"].ravel(), minlength=2)
    return load.mean() / load.max()


print("recorder: %d rows before step %d on the old placement, rank balancedness %.4f; %d rows from it on the new one, %.4f"
      % (len(before), step, balancedness(before), len(after), balancedness(after)))
