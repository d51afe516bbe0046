// A Spark job in Java for the history-collector parity logs: what PySpark cannot produce.
// Compiled by api_gen_eventlogs.py against the Spark under test ("$SPARK_HOME/jars/*") and
// submitted to a standalone cluster whose two workers have different host names, because
// Spark launches a speculative copy of a task only on another host, and node exclusion
// needs hosts. Each job below makes one rare case happen on purpose:
//   1. named accumulators (long, double, collection; one unnamed, which Spark never shows)
//      updated in a map stage and a result stage;
//   2. a straggler: partition 3's first attempt sleeps until killed, its speculative copy
//      on the other host wins, and the first attempt ends KILLED;
//   3. exclude-on-failure: every task fails on executor "0", so that executor (and its
//      node) is excluded for the stage and then for the application, while the retries on
//      the other executor succeed;
//   4. tasks still running when the application ends: SparkContext.stop() while a job's
//      tasks sleep; the scheduler stops before they can report, so the log never ends them.
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import org.apache.spark.SparkConf;
import org.apache.spark.SparkEnv;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaPairRDD;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.util.CollectionAccumulator;
import org.apache.spark.util.DoubleAccumulator;
import org.apache.spark.util.LongAccumulator;

import scala.Tuple2;

public final class ParityJob {
    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new RuntimeException("interrupted", e);
        }
    }

    private static void waitFor(String what, java.util.function.BooleanSupplier cond) {
        long deadline = System.currentTimeMillis() + 120_000;
        while (!cond.getAsBoolean()) {
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException("timed out waiting for " + what);
            }
            sleep(100);
        }
    }

    public static void main(String[] args) throws Exception {
        SparkConf conf = new SparkConf().setAppName("parity-java-cluster");
        JavaSparkContext jsc = new JavaSparkContext(conf);
        // both executors (driver + 2), so that tasks spread over the two hosts
        waitFor("two executors", () -> jsc.sc().statusTracker().getExecutorInfos().length >= 3);

        // 1. named accumulators
        LongAccumulator records = jsc.sc().longAccumulator("parity.records");
        DoubleAccumulator weight = jsc.sc().doubleAccumulator("parity.weight");
        CollectionAccumulator<String> tags = jsc.sc().collectionAccumulator("parity.tags");
        LongAccumulator reduced = jsc.sc().longAccumulator("parity.reduced \"quoted\" <b>");
        LongAccumulator unnamed = new LongAccumulator();
        jsc.sc().register(unnamed);
        jsc.setJobDescription("named accumulators");
        List<Integer> nums = new ArrayList<>();
        for (int i = 0; i < 400; i++) {
            nums.add(i);
        }
        JavaPairRDD<Integer, Integer> pairs = jsc.parallelize(nums, 4).mapToPair(x -> {
            records.add(1);
            weight.add(x * 0.5);
            unnamed.add(1);
            if (x % 100 == 0) {
                tags.add("p" + TaskContext.getPartitionId());
            }
            return new Tuple2<>(x % 7, x);
        });
        List<Tuple2<Integer, Integer>> sums = pairs.reduceByKey(Integer::sum, 3).map(t -> {
            reduced.add(t._2());
            return t;
        }).collect();
        if (sums.size() != 7 || records.value() != 400) {
            throw new IllegalStateException("accumulator job: " + sums.size() + " " + records.value());
        }

        // 2. speculation: the first attempt of partition 3 waits to be killed
        jsc.setJobDescription("a straggler and its speculative copy");
        long n = jsc.parallelize(Arrays.asList(0, 1, 2, 3), 4).map(x -> {
            TaskContext ctx = TaskContext.get();
            if (ctx.partitionId() == 3 && ctx.attemptNumber() == 0) {
                sleep(100_000);
            } else {
                sleep(300);
            }
            return x;
        }).count();
        if (n != 4) {
            throw new IllegalStateException("speculation job counted " + n);
        }

        // 3. exclude-on-failure: executor "0" fails every task it is given
        jsc.setJobDescription("tasks that fail on one executor and succeed on the other");
        long m = jsc.parallelize(Arrays.asList(0, 1, 2, 3, 4, 5), 6).map(x -> {
            if ("0".equals(SparkEnv.get().executorId())) {
                throw new IllegalStateException("planned failure on executor 0");
            }
            sleep(500);
            return x;
        }).count();
        if (m != 6) {
            throw new IllegalStateException("exclusion job counted " + m);
        }
        jsc.setJobDescription(null);
        jsc.parallelize(Arrays.asList(1, 2, 3), 3).map(x -> x + 1).collect();

        // 4. tasks still running when the application ends
        Thread bg = new Thread(() -> {
            try {
                jsc.setJobDescription("running when the application ended");
                jsc.parallelize(Arrays.asList(0, 1), 2).map(x -> {
                    if (x == 1) {
                        sleep(100_000);
                    }
                    return x;
                }).collect();
            } catch (Exception expected) {
                // cancelled by stop()
            }
        });
        bg.setDaemon(true);
        bg.start();
        // until partition 0 has finished and partition 1 runs
        waitFor("a running task", () -> {
            for (int id : jsc.sc().statusTracker().getActiveStageIds()) {
                var info = jsc.sc().statusTracker().getStageInfo(id);
                if (info.isDefined() && info.get().numActiveTasks() == 1
                        && info.get().numCompletedTasks() == 1) {
                    return true;
                }
            }
            return false;
        });
        jsc.stop();
        System.out.println("parity job done");
        System.exit(0);
    }
}
