"""metrics_wait.py — a server's moe:* metric families summed over their
labels (every rank's series), polled until a condition holds: the ranks'
counters reach /metrics with their next heartbeat, so a test or a bench
waits for the figure it expects instead of sleeping."""
import time
import urllib.request


def summed(url, prefix):
    """{family: sum of its series} for the families whose names start with prefix."""
    m = {}
    for line in urllib.request.urlopen(f"{url}/metrics").read().decode().splitlines():
        if line.startswith(prefix):
            name, val = line.rsplit(" ", 1)
            fam = name.split("{")[0]
            m[fam] = m.get(fam, 0) + float(val)
    return m


def wait(url, prefix, done, timeout=30.0):
    """summed() once done(it) holds, or after timeout seconds (the caller checks)."""
    deadline = time.monotonic() + timeout
    while True:
        m = summed(url, prefix)
        if done(m) or time.monotonic() > deadline:
            return m
        time.sleep(0.05)
