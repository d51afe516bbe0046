"""Clones one real Spark event log into N completed applications for the scale benchmark.

Usage: python scale_gen.py <real uncompressed log> <logs dir> <store dir> <N>

Each clone is the whole log Spark wrote (every event, environment and all), with its own
application id and every time in it moved back by a whole number of minutes, so the N
applications started a minute apart and end in that order; the file's modification time is
the application's end. Written twice over the same bytes (hard links):
- `<logs dir>/<app id>`, the event-log directory Spark's History Server reads;
- `<store dir>/eventlogs/<app id>/<app id>`, the object-store layout the collector's agents
  ship logs into (`file://` store), with the SHA-256 extended attribute ingest records.
"""
import hashlib
import os
import re
import sys

src, logs, store, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
text = open(src, "rb").read()
app_id = re.search(rb'"Event":"SparkListenerApplicationStart".*?"App ID":"([^"]+)"', text).group(1)
start = int(re.search(rb'"Event":"SparkListenerApplicationStart".*?"Timestamp":(\d+)', text).group(1))
end = int(re.search(rb'"Event":"SparkListenerApplicationEnd","Timestamp":(\d+)', text).group(1))
assert re.match(rb"local-\d{13}$", app_id), app_id
# every time of this run: epoch milliseconds within an hour of the application's life
window = (start - 3_600_000, end + 3_600_000)
times = re.compile(rb"(?<![0-9])1[0-9]{12}(?![0-9])")
template = text.replace(app_id, b"\0APPID\0")
os.makedirs(logs, exist_ok=True)

for i in range(n):
    delta = -(n - i) * 60_000

    def shift(m):
        v = int(m.group(0))
        return b"%d" % (v + delta) if window[0] <= v <= window[1] else m.group(0)

    new_id = b"local-%d" % (start + delta)
    body = times.sub(shift, template).replace(b"\0APPID\0", new_id)
    name = new_id.decode()
    path = os.path.join(logs, name)
    with open(path, "wb") as f:
        f.write(body)
    t = (end + delta) / 1000
    os.utime(path, (t, t))
    os.setxattr(path, "user.sidecars.sha256", hashlib.sha256(body).hexdigest().encode())
    d = os.path.join(store, "eventlogs", name)
    os.makedirs(d, exist_ok=True)
    os.link(path, os.path.join(d, name))
    if (i + 1) % 10000 == 0:
        print(f"  {i + 1} of {n}", file=sys.stderr, flush=True)
print(f"{n} applications of {len(text)} bytes each ({n * len(text) / 1e9:.2f} GB), from {app_id.decode()}")
