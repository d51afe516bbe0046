"""Waits until a History-Server-compatible API lists every application, then prints
`<seconds since start> <peak RSS kB> <CPU seconds>` of the server process.

Usage: python scale_wait.py <base url> <pid> <start epoch s> <N> <oldest end ms>

The time is when the last byte of the whole list arrived (parsing it here takes about a second
for 100,000 applications, the same for either server, and is not counted).
Asking for the whole list of N applications costs a server a lot, so it is asked only once
the oldest application (the last one either server reads: both read the newest logs first)
is listed, which a query bounded by end date answers cheaply; then the whole list is asked
until it holds all N. Between tries it waits 2% of the time elapsed so far (at least 10 ms,
at most 0.1 s before the oldest is listed and 0.5 s after), so polling adds about the same
share to either server's time however fast it is; a whole list is counted by its ids before
it is parsed.
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


def fetch(path):
    """The answer to `path`, as bytes, and when its last byte arrived (the server has answered
    then; the time this script takes to look at it is not the server's)."""
    try:
        with urllib.request.urlopen(base + path, timeout=600) as r:
            body = r.read()
        return body, time.time()
    except Exception:
        return None, None


def get(path):
    """The answer to `path`, parsed, and when its last byte arrived."""
    body, at = fetch(path)
    try:
        return (json.loads(body), at) if body is not None else (None, None)
    except ValueError:
        return None, None


def pause(most):
    """Waits 2% of the time elapsed since start, at least 10 ms and at most `most` seconds."""
    time.sleep(min(most, max(0.01, 0.02 * (time.time() - start))))


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
    pause(0.1)
while True:
    if not alive():
        sys.exit(f"the server (pid {pid}) exited")
    body, at = fetch("/api/v1/applications")
    # both servers lay the list out as Jackson does: one `"id" : ` per application
    if body is not None and body.count(b'"id" : ') >= n:
        got = json.loads(body)
        if len(got) >= n:
            done = at
            break
    pause(0.5)
hwm, cpu = stats()
print(f"{done - start:.2f} {hwm} {cpu:.1f} {len(got)}")
