// Shuffle fetch benchmark driven by Spark's own client.
//
// `gen` writes sort-shuffle output exactly as an executor does: one index file (numReducers + 1
// cumulative big-endian longs) and one data file per map, placed by Spark's own
// ExecutorDiskUtils.getFilePath (String.hashCode over local dirs and sub-dirs).
//
// `run` registers one executor with each target service through ExternalBlockStoreClient, then
// fetches every block with fetchBlocks the way a reducer's ShuffleBlockFetcherIterator does:
// each reducer's blocks from one executor are cut into requests of about maxBytesInFlight / 5,
// and a fixed number of requests are kept in flight. Rounds alternate between the targets so
// neither benefits from going second; each round is a warm-up pass then a measured pass.
// Server CPU comes from /proc/<pid>/stat (utime + stime), peak RSS from VmHWM.

import java.io.DataOutputStream;
import java.io.BufferedOutputStream;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.spark.network.buffer.ManagedBuffer;
import org.apache.spark.network.sasl.SecretKeyHolder;
import org.apache.spark.network.shuffle.BlockFetchingListener;
import org.apache.spark.network.shuffle.ExecutorDiskUtils;
import org.apache.spark.network.shuffle.ExternalBlockStoreClient;
import org.apache.spark.network.shuffle.protocol.ExecutorShuffleInfo;
import org.apache.spark.network.util.MapConfigProvider;
import org.apache.spark.network.util.TransportConf;

public class ShuffleBench {
  static final int SUB_DIRS = 64;
  static final int SHUFFLE_ID = 0;
  static final String SORT = "org.apache.spark.shuffle.sort.SortShuffleManager";

  public static void main(String[] args) throws Exception {
    Map<String, String> o = new HashMap<>();
    for (int i = 1; i + 1 < args.length; i += 2) {
      o.put(args[i].replaceFirst("^--", ""), args[i + 1]);
    }
    if (args.length > 0 && args[0].equals("gen")) {
      gen(o);
    } else if (args.length > 0 && args[0].equals("run")) {
      run(o);
    } else if (args.length > 0 && args[0].equals("register")) {
      register(o);
    } else {
      System.err.println("usage: ShuffleBench gen --dirs D1,D2 --maps M --reducers R --block-size B\n"
          + "       ShuffleBench run --case NAME --dirs D1,D2 --maps M --reducers R --inflight K"
          + " --rounds N --targets name:port:pid,name:port:pid\n"
          + " [--auth none|sasl|ctr --secret S]\n"
          + "       ShuffleBench register --port P --root R --apps A --executors E");
      System.exit(2);
    }
  }

  static String need(Map<String, String> o, String k) {
    String v = o.get(k);
    if (v == null) {
      throw new IllegalArgumentException("missing --" + k);
    }
    return v;
  }

  static void gen(Map<String, String> o) throws IOException {
    String[] dirs = need(o, "dirs").split(",");
    int maps = Integer.parseInt(need(o, "maps"));
    int reducers = Integer.parseInt(need(o, "reducers"));
    int blockSize = Integer.parseInt(need(o, "block-size"));
    Random rnd = new Random(42);
    byte[] block = new byte[blockSize];
    for (int m = 0; m < maps; m++) {
      String base = "shuffle_" + SHUFFLE_ID + "_" + m + "_0";
      File data = new File(ExecutorDiskUtils.getFilePath(dirs, SUB_DIRS, base + ".data"));
      File index = new File(ExecutorDiskUtils.getFilePath(dirs, SUB_DIRS, base + ".index"));
      data.getParentFile().mkdirs();
      index.getParentFile().mkdirs();
      try (DataOutputStream d = new DataOutputStream(
               new BufferedOutputStream(new FileOutputStream(data), 1 << 20));
           DataOutputStream ix = new DataOutputStream(
               new BufferedOutputStream(new FileOutputStream(index)))) {
        long off = 0;
        ix.writeLong(0);
        for (int r = 0; r < reducers; r++) {
          rnd.nextBytes(block);
          d.write(block);
          off += blockSize;
          ix.writeLong(off);
        }
      }
    }
  }

  /** A block manager dir name as Spark makes them (blockmgr-UUID), numbered. */
  static String blockManagerDir(String root, int n) {
    return root + "/blockmgr-" + String.format("00000000-0000-0000-0000-%012x", n);
  }

  /**
   * Registers apps x executors executors, one RPC at a time; each app's executors share one
   * block manager dir under `root` (a dir belongs to one application).
   */
  static void register(Map<String, String> o) throws Exception {
    int port = Integer.parseInt(need(o, "port"));
    String root = need(o, "root");
    int apps = Integer.parseInt(need(o, "apps"));
    int execs = Integer.parseInt(need(o, "executors"));
    TransportConf tc = new TransportConf("shuffle", MapConfigProvider.EMPTY);
    long t0 = System.nanoTime();
    for (int a = 0; a < apps; a++) {
      String dir = blockManagerDir(root, a);
      new File(dir).mkdirs();
      ExecutorShuffleInfo info = new ExecutorShuffleInfo(new String[] {dir}, SUB_DIRS, SORT);
      ExternalBlockStoreClient client = new ExternalBlockStoreClient(tc, null, false, 10_000);
      client.init(String.format("app-restore-%04d", a));
      for (int e = 0; e < execs; e++) {
        client.registerWithShuffleServer("127.0.0.1", port, String.valueOf(e), info);
      }
      client.close();
    }
    System.err.printf("registered %d executors in %.1f s%n", apps * execs,
        (System.nanoTime() - t0) / 1e9);
  }

  /** One fetchBlocks call: some of one reducer's blocks. */
  record Req(String[] ids, long bytes) {}

  static List<Req> plan(int maps, int reducers, long blockSize) {
    // ShuffleBlockFetcherIterator: targetRemoteRequestSize = max(maxBytesInFlight / 5, 1),
    // with spark.reducer.maxSizeInFlight = 48m; a request is closed once it reaches the target.
    long target = 48L * 1024 * 1024 / 5;
    List<Req> reqs = new ArrayList<>();
    for (int r = 0; r < reducers; r++) {
      List<String> cur = new ArrayList<>();
      long size = 0;
      for (int m = 0; m < maps; m++) {
        cur.add("shuffle_" + SHUFFLE_ID + "_" + m + "_" + r);
        size += blockSize;
        if (size >= target) {
          reqs.add(new Req(cur.toArray(new String[0]), size));
          cur = new ArrayList<>();
          size = 0;
        }
      }
      if (!cur.isEmpty()) {
        reqs.add(new Req(cur.toArray(new String[0]), size));
      }
    }
    return reqs;
  }

  record Target(String name, int port, int pid) {}

  record Pass(long blocks, long bytes, double seconds, double serverCpu, double clientCpu) {}

  static double cpuSeconds(String pid) throws IOException {
    String s = Files.readString(Paths.get("/proc/" + pid + "/stat"));
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    String[] f = s.substring(s.lastIndexOf(')') + 2).split(" ");
    return (Long.parseLong(f[11]) + Long.parseLong(f[12])) / 100.0;
  }

  static long vmHwmKib(int pid) throws IOException {
    for (String line : Files.readAllLines(Paths.get("/proc/" + pid + "/status"))) {
      if (line.startsWith("VmHWM:")) {
        return Long.parseLong(line.replaceAll("[^0-9]", ""));
      }
    }
    return -1;
  }

  static Pass pass(ExternalBlockStoreClient client, Target t, String execId, List<Req> reqs,
      int inflight) throws Exception {
    Semaphore slots = new Semaphore(inflight);
    AtomicLong blocks = new AtomicLong();
    AtomicLong bytes = new AtomicLong();
    AtomicReference<Throwable> failure = new AtomicReference<>();
    double cpu0 = cpuSeconds(String.valueOf(t.pid()));
    double self0 = cpuSeconds("self");
    long t0 = System.nanoTime();
    for (Req req : reqs) {
      slots.acquire();
      if (failure.get() != null) {
        break;
      }
      AtomicInteger left = new AtomicInteger(req.ids().length);
      client.fetchBlocks("127.0.0.1", t.port(), execId, req.ids(), new BlockFetchingListener() {
        @Override
        public void onBlockFetchSuccess(String blockId, ManagedBuffer data) {
          blocks.incrementAndGet();
          bytes.addAndGet(data.size());
          if (left.decrementAndGet() == 0) {
            slots.release();
          }
        }

        @Override
        public void onBlockFetchFailure(String blockId, Throwable e) {
          failure.compareAndSet(null, new RuntimeException(blockId + " from " + t.name(), e));
          if (left.decrementAndGet() == 0) {
            slots.release();
          }
        }
      }, null);
    }
    slots.acquire(inflight);
    double secs = (System.nanoTime() - t0) / 1e9;
    if (failure.get() != null) {
      throw new RuntimeException("fetch failed", failure.get());
    }
    double cpu = cpuSeconds(String.valueOf(t.pid())) - cpu0;
    double self = cpuSeconds("self") - self0;
    return new Pass(blocks.get(), bytes.get(), secs, cpu, self);
  }

  static void run(Map<String, String> o) throws Exception {
    String name = need(o, "case");
    String[] dirs = need(o, "dirs").split(",");
    int maps = Integer.parseInt(need(o, "maps"));
    int reducers = Integer.parseInt(need(o, "reducers"));
    long blockSize = Long.parseLong(need(o, "block-size"));
    int inflight = Integer.parseInt(need(o, "inflight"));
    int rounds = Integer.parseInt(need(o, "rounds"));
    List<Target> targets = new ArrayList<>();
    for (String t : need(o, "targets").split(",")) {
      String[] p = t.split(":");
      targets.add(new Target(p[0], Integer.parseInt(p[1]), Integer.parseInt(p[2])));
    }
    List<Req> reqs = plan(maps, reducers, blockSize);
    long expectBlocks = (long) maps * reducers;

    Map<String, String> conf = new HashMap<>();
    // Failures must surface, not be retried away.
    conf.put("spark.shuffle.io.maxRetries", "0");
    // spark.authenticate on the client: SASL (auth), or the AuthEngine with AES/CTR.
    String auth = o.getOrDefault("auth", "none");
    String secret = o.getOrDefault("secret", "");
    if (auth.equals("ctr")) {
      conf.put("spark.network.crypto.enabled", "true");
      conf.put("spark.network.crypto.saslFallback", "false");
    } else if (!auth.equals("none") && !auth.equals("sasl")) {
      throw new IllegalArgumentException("--auth none|sasl|ctr, not " + auth);
    }
    TransportConf tc = new TransportConf("shuffle", new MapConfigProvider(conf));
    SecretKeyHolder keys = new SecretKeyHolder() {
      public String getSaslUser(String appId) { return "sparkSaslUser"; }
      public String getSecretKey(String appId) { return secret; }
    };
    boolean authOn = !auth.equals("none");
    ExternalBlockStoreClient client =
        new ExternalBlockStoreClient(tc, authOn ? keys : null, authOn, 10_000);
    String appId = "app-bench-" + name;
    client.init(appId);
    String execId = "1";
    ExecutorShuffleInfo info = new ExecutorShuffleInfo(dirs, SUB_DIRS, SORT);
    for (Target t : targets) {
      client.registerWithShuffleServer("127.0.0.1", t.port(), execId, info);
    }

    Map<String, List<Pass>> results = new HashMap<>();
    for (int round = 0; round < rounds; round++) {
      for (Target t : targets) {
        pass(client, t, execId, reqs, inflight); // warm-up: page cache, JIT, connections
        Pass p = pass(client, t, execId, reqs, inflight);
        if (p.blocks() != expectBlocks || p.bytes() != expectBlocks * blockSize) {
          throw new IllegalStateException(t.name() + ": fetched " + p.blocks() + " blocks / "
              + p.bytes() + " bytes, expected " + expectBlocks + " / " + expectBlocks * blockSize);
        }
        results.computeIfAbsent(t.name(), k -> new ArrayList<>()).add(p);
        System.err.printf("%s %s round %d: %.0f blocks/s %.1f MB/s server cpu %.2fs%n",
            name, t.name(), round, p.blocks() / p.seconds(), p.bytes() / p.seconds() / 1e6,
            p.serverCpu());
      }
    }
    client.close();

    // One tab-separated line per target, median round by throughput.
    for (Target t : targets) {
      List<Pass> ps = results.get(t.name());
      ps.sort((a, b) -> Double.compare(a.seconds(), b.seconds()));
      Pass m = ps.get(ps.size() / 2);
      System.out.printf("%s\t%s\t%d\t%d\t%.3f\t%.0f\t%.1f\t%.2f\t%.1f\t%.2f\t%d%n",
          name, t.name(), m.blocks(), m.bytes(), m.seconds(), m.blocks() / m.seconds(),
          m.bytes() / m.seconds() / 1e6, m.serverCpu(),
          m.serverCpu() * 1e6 / m.blocks(), m.clientCpu(), vmHwmKib(t.pid()));
    }
  }
}
