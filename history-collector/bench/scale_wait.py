"""Waits until a History-Server-compatible API lists every application, then prints
`<seconds since start> <peak RSS kB> <CPU seconds>` of the server process.

Usage: python scale_wait.py <base url> <pid> <start epoch s> <N> <oldest end ms>

The time is when the last byte of the whole list arrived (parsing it here takes about a second
for 100,000 applications, the same for either server, and is not counted).
Asking for the whole list of N applications costs a server a lot, so it is asked only once
the oldest application (the last one either server reads: both read the newest logs first)
is listed, which a query bounded by end date answers cheaply; then the whole list is asked
until it holds all N.
"""
import datetime
import json
import os
import sys
import time
import urllib.request

base, pid, start, n, oldest = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
until = datetime.datetime.fromtimestamp(oldest / 1000 + 1, datetime.timezone.utc)
bound = until.strftime("%Y-%m-%dT%H:%M:%S.000GMT")


def get(path):
    """The answer to `path`, parsed, and when its last byte arrived (the server has answered
    then; the time this script takes to parse it is not the server's)."""
    try:
        with urllib.request.urlopen(base + path, timeout=600) as r:
            body = r.read()
        at = time.time()
        return json.loads(body), at
    except Exception:
        return None, None


def alive():
    return os.path.exists(f"/proc/{pid}")


def stats():
    hwm = 0
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return hwm, cpu


while True:
    if not alive():
        sys.exit(f"the server (pid {pid}) exited")
    got, _ = get(f"/api/v1/applications?maxEndDate={bound}&limit=1")
    if got:
        break
    time.sleep(0.1)
while True:
    if not alive():
        sys.exit(f"the server (pid {pid}) exited")
    got, at = get("/api/v1/applications")
    if got is not None and len(got) >= n:
        done = at
        break
    time.sleep(0.5)
hwm, cpu = stats()
print(f"{done - start:.2f} {hwm} {cpu:.1f} {len(got)}")
