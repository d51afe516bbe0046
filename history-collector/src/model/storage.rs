//! Cached RDDs and the executors' block accounting, as Spark's `AppStatusListener` keeps them
//! (`LiveRDD`, `LiveRDDPartition`, `LiveRDDDistribution`): an RDD appears when a stage using
//! it with a valid storage level is submitted, its partitions and per-executor usage follow
//! `SparkListenerBlockUpdated` (logged only with `spark.eventLog.logBlockUpdates.enabled`),
//! and it disappears on `SparkListenerUnpersistRDD`. Broadcast blocks count towards the
//! executors' memory and disk use.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Executor;

/// A `StorageLevel` as the event log spells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Level {
    pub use_disk: bool,
    pub use_memory: bool,
    pub use_off_heap: bool,
    pub deserialized: bool,
    pub replication: i64,
}

impl Level {
    fn parse(v: Option<&Value>) -> Level {
        let b = |k: &str| {
            v.and_then(|x| x.get(k))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        Level {
            use_disk: b("Use Disk"),
            use_memory: b("Use Memory"),
            use_off_heap: b("Use Off Heap"),
            deserialized: b("Deserialized"),
            replication: v
                .and_then(|x| x.get("Replication"))
                .and_then(Value::as_i64)
                .unwrap_or(0),
        }
    }

    pub fn is_valid(&self) -> bool {
        (self.use_memory || self.use_disk) && self.replication > 0
    }

    /// `StorageLevel.description`.
    pub fn description(&self) -> String {
        let mut s = String::new();
        if self.use_disk {
            s.push_str("Disk ");
        }
        if self.use_memory {
            s.push_str(if self.use_off_heap {
                "Memory (off heap) "
            } else {
                "Memory "
            });
        }
        s.push_str(if self.deserialized {
            "Deserialized "
        } else {
            "Serialized "
        });
        s.push_str(&format!("{}x Replicated", self.replication));
        s
    }
}

/// One cached partition (block) of an RDD.
#[derive(Clone, Debug)]
pub struct Partition {
    pub block_name: String,
    pub memory_used: i64,
    pub disk_used: i64,
    pub executors: Vec<String>,
}

/// What the API shows of an RDD's use of one executor, as Spark snapshots it.
#[derive(Clone, Debug, PartialEq)]
pub struct DistSnapshot {
    pub address: String,
    pub memory_used: i64,
    pub memory_remaining: i64,
    pub disk_used: i64,
    pub on_heap_memory_used: Option<i64>,
    pub off_heap_memory_used: Option<i64>,
    pub on_heap_memory_remaining: Option<i64>,
    pub off_heap_memory_remaining: Option<i64>,
}

#[derive(Clone, Debug)]
struct Dist {
    executor: String,
    memory_used: i64,
    disk_used: i64,
    on_heap_used: i64,
    off_heap_used: i64,
    /// Spark caches the API view of a distribution until it changes; the executor figures
    /// in it are those of that moment.
    last: Option<DistSnapshot>,
}

/// One RDD with a valid storage level.
#[derive(Clone, Debug)]
pub struct Rdd {
    pub id: i64,
    pub name: String,
    pub num_partitions: i64,
    pub level: Level,
    pub memory_used: i64,
    pub disk_used: i64,
    /// In the order blocks were first reported.
    pub partitions: Vec<Partition>,
    dists: Vec<Dist>,
}

impl Rdd {
    /// The per-executor distributions, in Spark's (hash map) order; `None` when there are
    /// none, as Spark reports it.
    pub fn distributions(
        &self,
        scala: super::scala_order::ScalaVersion,
    ) -> Option<Vec<DistSnapshot>> {
        if self.dists.is_empty() {
            return None;
        }
        let hashes: Vec<i32> = self
            .dists
            .iter()
            .map(|d| super::scala_order::java_string_hash(&d.executor))
            .collect();
        Some(
            super::scala_order::mutable_order(&hashes, scala)
                .into_iter()
                .filter_map(|i| self.dists[i].last.clone())
                .collect(),
        )
    }

    fn partition(&mut self, block: &str) -> usize {
        match self.partitions.iter().position(|p| p.block_name == block) {
            Some(i) => i,
            None => {
                self.partitions.push(Partition {
                    block_name: block.to_string(),
                    memory_used: 0,
                    disk_used: 0,
                    executors: Vec::new(),
                });
                self.partitions.len() - 1
            }
        }
    }

    fn dist(&mut self, exec: &str) -> &mut Dist {
        let i = match self.dists.iter().position(|d| d.executor == exec) {
            Some(i) => i,
            None => {
                self.dists.push(Dist {
                    executor: exec.to_string(),
                    memory_used: 0,
                    disk_used: 0,
                    on_heap_used: 0,
                    off_heap_used: 0,
                    last: None,
                });
                self.dists.len() - 1
            }
        };
        &mut self.dists[i]
    }

    fn remove_dist(&mut self, exec: &str) -> bool {
        let before = self.dists.len();
        self.dists.retain(|d| d.executor != exec);
        self.dists.len() != before
    }

    /// What Spark does when it writes the RDD to its store: snapshot every distribution
    /// that changed since the last write.
    fn write(&mut self, executors: &BTreeMap<String, Executor>) {
        for d in &mut self.dists {
            if d.last.is_some() {
                continue;
            }
            let Some(e) = executors.get(&d.executor) else {
                continue;
            };
            let mem_info = e.total_on_heap >= 0;
            d.last = Some(DistSnapshot {
                address: e
                    .host_port
                    .clone()
                    .or_else(|| e.host.clone())
                    .unwrap_or_default(),
                memory_used: d.memory_used,
                memory_remaining: e.max_memory - e.memory_used,
                disk_used: d.disk_used,
                on_heap_memory_used: mem_info.then_some(d.on_heap_used),
                off_heap_memory_used: mem_info.then_some(d.off_heap_used),
                on_heap_memory_remaining: mem_info.then_some(e.total_on_heap - e.used_on_heap),
                off_heap_memory_remaining: mem_info.then_some(e.total_off_heap - e.used_off_heap),
            });
        }
    }
}

/// The storage side of an application.
#[derive(Clone, Debug, Default)]
pub struct StorageState {
    pub rdds: BTreeMap<i64, Rdd>,
}

fn add(old: i64, delta: i64) -> i64 {
    (old + delta).max(0)
}

fn live<'a>(executors: &'a mut BTreeMap<String, Executor>, id: &str) -> Option<&'a mut Executor> {
    executors.get_mut(id).filter(|e| e.is_active)
}

/// `rdd_<rdd>_<split>` -> rdd id.
fn rdd_block(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("rdd_")?;
    let (rdd, split) = rest.split_once('_')?;
    split.parse::<i64>().ok()?;
    rdd.parse().ok()
}

impl StorageState {
    /// Applies a storage-related event. `executors` are seen as they were before the core
    /// bookkeeping applied the same event.
    pub fn apply(&mut self, kind: &str, ev: &Value, executors: &mut BTreeMap<String, Executor>) {
        match kind {
            "SparkListenerStageSubmitted" => {
                let infos = ev
                    .get("Stage Info")
                    .and_then(|s| s.get("RDD Info"))
                    .and_then(Value::as_array);
                for info in infos.into_iter().flatten() {
                    let level = Level::parse(info.get("Storage Level"));
                    let Some(id) = info.get("RDD ID").and_then(Value::as_i64) else {
                        continue;
                    };
                    if level.is_valid() {
                        self.rdds.entry(id).or_insert_with(|| Rdd {
                            id,
                            name: info
                                .get("Name")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                            num_partitions: info
                                .get("Number of Partitions")
                                .and_then(Value::as_i64)
                                .unwrap_or(0),
                            level,
                            memory_used: 0,
                            disk_used: 0,
                            partitions: Vec::new(),
                            dists: Vec::new(),
                        });
                    }
                }
            }
            "SparkListenerUnpersistRDD" => {
                let Some(id) = ev.get("RDD ID").and_then(Value::as_i64) else {
                    return;
                };
                let Some(rdd) = self.rdds.remove(&id) else {
                    return;
                };
                for p in &rdd.partitions {
                    for e in &p.executors {
                        if let Some(x) = live(executors, e) {
                            x.rdd_blocks -= 1;
                        }
                    }
                }
                for d in &rdd.dists {
                    if let Some(x) = live(executors, &d.executor) {
                        if x.total_on_heap >= 0 {
                            if rdd.level.use_off_heap {
                                x.used_off_heap = add(x.used_off_heap, -d.off_heap_used);
                            } else {
                                x.used_on_heap = add(x.used_on_heap, -d.on_heap_used);
                            }
                        }
                        x.memory_used = add(x.memory_used, -d.memory_used);
                        x.disk_used = add(x.disk_used, -d.disk_used);
                    }
                }
            }
            "SparkListenerBlockManagerAdded" => {
                // SPARK-30594: a (re-)registered block manager reports all its blocks again
                let id = ev
                    .get("Block Manager ID")
                    .and_then(|b| b.get("Executor ID"))
                    .and_then(Value::as_str);
                if ev.get("Maximum Onheap Memory").is_some() {
                    if let Some(x) = id.and_then(|id| executors.get_mut(id)) {
                        x.used_on_heap = 0;
                        x.used_off_heap = 0;
                    }
                }
            }
            "SparkListenerExecutorRemoved" => {
                let Some(id) = ev.get("Executor ID").and_then(Value::as_str) else {
                    return;
                };
                if live(executors, id).is_none() {
                    return;
                }
                for rdd in self.rdds.values_mut() {
                    if rdd.remove_dist(id) {
                        rdd.write(executors);
                    }
                }
                for rdd in self.rdds.values_mut() {
                    let mut k = 0;
                    while k < rdd.partitions.len() {
                        let p = &mut rdd.partitions[k];
                        if !p.executors.iter().any(|e| e == id) {
                            k += 1;
                            continue;
                        }
                        let n = p.executors.len() as i64;
                        if n == 1 {
                            let (m, d) = (p.memory_used, p.disk_used);
                            rdd.partitions.remove(k);
                            rdd.memory_used = add(rdd.memory_used, -m);
                            rdd.disk_used = add(rdd.disk_used, -d);
                            continue;
                        }
                        let (m, d) = (p.memory_used / n, p.disk_used / n);
                        rdd.memory_used = add(rdd.memory_used, -m);
                        rdd.disk_used = add(rdd.disk_used, -d);
                        p.executors.retain(|e| e != id);
                        p.memory_used = add(p.memory_used, -m);
                        p.disk_used = add(p.disk_used, -d);
                        k += 1;
                    }
                    rdd.write(executors);
                }
            }
            "SparkListenerBlockUpdated" => self.block_updated(ev, executors),
            _ => {}
        }
    }

    fn block_updated(&mut self, ev: &Value, executors: &mut BTreeMap<String, Executor>) {
        let Some(info) = ev.get("Block Updated Info") else {
            return;
        };
        let Some(exec_id) = info
            .get("Block Manager ID")
            .and_then(|b| b.get("Executor ID"))
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return;
        };
        let block = info
            .get("Block ID")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let level = Level::parse(info.get("Storage Level"));
        let size = |k: &str| info.get(k).and_then(Value::as_i64).unwrap_or(0);
        let disk_delta = size("Disk Size") * if level.use_disk { 1 } else { -1 };
        let mem_delta = size("Memory Size") * if level.use_memory { 1 } else { -1 };
        let account = |x: &mut Executor| {
            if x.total_on_heap >= 0 {
                if level.use_off_heap {
                    x.used_off_heap = add(x.used_off_heap, mem_delta);
                } else {
                    x.used_on_heap = add(x.used_on_heap, mem_delta);
                }
            }
            x.memory_used = add(x.memory_used, mem_delta);
            x.disk_used = add(x.disk_used, disk_delta);
        };
        if block.starts_with("broadcast_") {
            if let Some(x) = live(executors, &exec_id) {
                account(x);
            }
            return;
        }
        let Some(rdd_id) = rdd_block(block) else {
            return;
        };
        let exec_live = live(executors, &exec_id).is_some();
        if let Some(x) = live(executors, &exec_id) {
            account(x);
        }
        let mut blocks_delta = 0;
        let tracked = self.rdds.contains_key(&rdd_id);
        if let Some(rdd) = self.rdds.get_mut(&rdd_id) {
            let pi = rdd.partition(block);
            let p = &mut rdd.partitions[pi];
            let execs = if level.is_valid() {
                if !p.executors.contains(&exec_id) {
                    blocks_delta = 1;
                    p.executors.push(exec_id.clone());
                }
                p.executors.clone()
            } else {
                blocks_delta = -1;
                p.executors.retain(|e| *e != exec_id);
                p.executors.clone()
            };
            if execs.is_empty() {
                rdd.partitions.remove(pi);
            } else {
                p.memory_used = add(p.memory_used, mem_delta);
                p.disk_used = add(p.disk_used, disk_delta);
            }
            if exec_live {
                let (blocks, mem_info) = executors
                    .get(&exec_id)
                    .map(|x| (x.rdd_blocks, x.total_on_heap >= 0))
                    .unwrap_or((0, false));
                if blocks + blocks_delta > 0 {
                    let d = rdd.dist(&exec_id);
                    d.memory_used = add(d.memory_used, mem_delta);
                    d.disk_used = add(d.disk_used, disk_delta);
                    if mem_info {
                        if level.use_off_heap {
                            d.off_heap_used = add(d.off_heap_used, mem_delta);
                        } else {
                            d.on_heap_used = add(d.on_heap_used, mem_delta);
                        }
                    }
                    d.last = None;
                } else {
                    rdd.remove_dist(&exec_id);
                }
            }
            rdd.memory_used = add(rdd.memory_used, mem_delta);
            rdd.disk_used = add(rdd.disk_used, disk_delta);
        }
        if exec_live && tracked {
            // other RDDs cached on this executor see its new free memory
            for (id, other) in self.rdds.iter_mut() {
                if *id == rdd_id {
                    continue;
                }
                if let Some(d) = other.dists.iter_mut().find(|d| d.executor == exec_id) {
                    d.last = None;
                    other.write(executors);
                }
            }
        }
        if let Some(rdd) = self.rdds.get_mut(&rdd_id) {
            rdd.write(executors);
        }
        if let Some(x) = live(executors, &exec_id) {
            x.rdd_blocks += blocks_delta;
        }
    }

    /// Snapshots what changed since the last write, as the History Server's final flush does.
    pub fn finish_replay(&mut self, executors: &BTreeMap<String, Executor>) {
        for rdd in self.rdds.values_mut() {
            rdd.write(executors);
        }
    }
}
