"""Waits until a History-Server-compatible API lists every application, then prints
`<seconds since start> <peak RSS kB> <CPU seconds>` of the server process.

Usage: python scale_wait.py <base url> <pid> <start epoch s> <N> <oldest end ms>

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
    try:
        with urllib.request.urlopen(base + path, timeout=600) as r:
            return json.load(r)
    except Exception:
        return None


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
    got = get(f"/api/v1/applications?maxEndDate={bound}&limit=1")
    if got:
        break
    time.sleep(0.1)
while True:
    if not alive():
        sys.exit(f"the server (pid {pid}) exited")
    got = get("/api/v1/applications")
    if got is not None and len(got) >= n:
        done = time.time()
        break
    time.sleep(0.5)
hwm, cpu = stats()
print(f"{done - start:.2f} {hwm} {cpu:.1f} {len(got)}")
