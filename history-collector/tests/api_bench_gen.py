"""Writes a synthetic, valid Spark event log of a given size for the history-collector
benchmark, by repeating real events (taken from a log Spark wrote) with fresh ids and times.

Usage: python api_bench_gen.py <real-uncompressed-log> <out-file> <target-bytes> [tasks-per-stage]

Task events are written lean, as a plain RDD job logs them with
`spark.eventLog.includeTaskMetricsAccumulators=false` (Spark 4): no accumulables, and
without the optional parts older Sparks never wrote and the History Server does not need
(`Task Executor Metrics`, push-based shuffle metrics). That keeps a task near 1 KB, so a
1 GiB log holds about a million tasks, as the benchmark asks.
"""
import json
import sys

src, out, target = sys.argv[1], sys.argv[2], int(sys.argv[3])
per_stage = int(sys.argv[4]) if len(sys.argv) > 4 else 1000

events = [json.loads(l) for l in open(src) if l.strip()]
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
    while written < target:
        si = dict(stage_sub["Stage Info"], **{"Stage ID": job, "Number of Tasks": per_stage, "Submission Time": t})
        si.pop("Completion Time", None)
        w(dict(job_start, **{"Job ID": job, "Submission Time": t, "Stage IDs": [job], "Stage Infos": [si]}))
        w(dict(stage_sub, **{"Stage Info": si}))
        for k in range(per_stage):
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
