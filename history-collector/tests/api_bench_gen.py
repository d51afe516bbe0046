"""Writes a synthetic, valid Spark event log of a given size for the history-collector
benchmark, by repeating real events (taken from a log Spark wrote) with fresh ids and times.

Usage: python api_bench_gen.py <real-uncompressed-log> <out-file> <target> [tasks-per-stage]

<target> is a size in bytes (stop once the log is that big) or `tasks=N` (stop after N tasks).

Task events are written lean, as a plain RDD job logs them with
`spark.eventLog.includeTaskMetricsAccumulators=false` (Spark 4): no accumulables, and
without the optional parts older Sparks never wrote and the History Server does not need
(`Task Executor Metrics`, push-based shuffle metrics). Spark still writes every metrics group
(shuffle read and write, input, output) for every task, so a task start and end take about
1.5 KB together: a 1 GiB log holds about 715,000 tasks, and a million tasks take about 1.5 GB.
"""
import json
import sys

src, out, spec = sys.argv[1], sys.argv[2], sys.argv[3]
if spec.startswith("tasks="):
    target, max_tasks = float("inf"), int(spec[len("tasks="):])
else:
    target, max_tasks = int(spec), float("inf")
per_stage = int(sys.argv[4]) if len(sys.argv) > 4 else 1000

def parse(path):
    """Every whole event of the log; a torn last line (an `.inprogress` log) is left out."""
    for line in open(path):
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            pass


events = list(parse(src))
head = [e for e in events if e["Event"] in (
    "SparkListenerLogStart", "SparkListenerResourceProfileAdded", "SparkListenerEnvironmentUpdate",
    "SparkListenerApplicationStart", "SparkListenerExecutorAdded", "SparkListenerBlockManagerAdded")]
# a job with one stage whose task ended in success, as templates
task_end = next(e for e in events if e["Event"] == "SparkListenerTaskEnd"
                and e["Task End Reason"]["Reason"] == "Success" and e["Task Type"] == "ResultTask")
stage_id0 = task_end["Stage ID"]
task_start = next(e for e in events if e["Event"] == "SparkListenerTaskStart" and e["Stage ID"] == stage_id0)
stage_sub = next(e for e in events if e["Event"] == "SparkListenerStageSubmitted" and e["Stage Info"]["Stage ID"] == stage_id0)
stage_done = next(e for e in events if e["Event"] == "SparkListenerStageCompleted" and e["Stage Info"]["Stage ID"] == stage_id0)
job_start = next(e for e in events if e["Event"] == "SparkListenerJobStart" and stage_id0 in e["Stage IDs"])
job_end = next(e for e in events if e["Event"] == "SparkListenerJobEnd" and e["Job ID"] == job_start["Job ID"])
app_end = next(e for e in events if e["Event"] == "SparkListenerApplicationEnd")

for tmpl in (task_start, task_end):
    tmpl["Task Info"]["Accumulables"] = []
task_end.pop("Task Executor Metrics", None)
task_end["Task Metrics"].get("Shuffle Read Metrics", {}).pop("Push Based Shuffle", None)
task_end["Task Metrics"].pop("Updated Blocks", None)

t0 = next(e for e in head if e["Event"] == "SparkListenerApplicationStart")["Timestamp"]
written = 0
tasks = 0
with open(out, "w") as f:
    def w(e):
        global written
        line = json.dumps(e, separators=(",", ":")) + "\n"
        f.write(line)
        written += len(line)
    for e in head:
        w(e)
    job = 0
    t = t0 + 1000
    while written < target and tasks < max_tasks:
        si = dict(stage_sub["Stage Info"], **{"Stage ID": job, "Number of Tasks": per_stage, "Submission Time": t})
        si.pop("Completion Time", None)
        w(dict(job_start, **{"Job ID": job, "Submission Time": t, "Stage IDs": [job], "Stage Infos": [si]}))
        w(dict(stage_sub, **{"Stage Info": si}))
        for k in range(int(min(per_stage, max_tasks - tasks))):
            tid = tasks
            tasks += 1
            ti = dict(task_start["Task Info"], **{"Task ID": tid, "Index": k, "Partition ID": k, "Launch Time": t + k})
            w(dict(task_start, **{"Stage ID": job, "Task Info": ti}))
            te = dict(task_end["Task Info"], **{"Task ID": tid, "Index": k, "Partition ID": k,
                                                "Launch Time": t + k, "Finish Time": t + k + 5})
            w(dict(task_end, **{"Stage ID": job, "Task Info": te}))
        t += per_stage + 10
        w(dict(stage_done, **{"Stage Info": dict(si, **{"Completion Time": t})}))
        w(dict(job_end, **{"Job ID": job, "Completion Time": t}))
        job += 1
        t += 10
    w(dict(app_end, Timestamp=t + 100))
print(f"{written} bytes, {job} jobs, {tasks} tasks")
