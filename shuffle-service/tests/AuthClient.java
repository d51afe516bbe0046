// Spark's own shuffle client (ExternalBlockStoreClient from the pyspark wheel's jars) against a
// shuffle service, with one of Spark's authentication settings: registers an executor, fetches
// blocks, and prints one line per block ("BLOCK <id> <size> <crc32>") then "OK", or "FAILED"
// with the exception chain. Used by tests/spark_client.rs.
//
//   java -cp "$SPARK_HOME/jars/*:classes" AuthClient PORT MODE SECRET APP EXEC DIR BLOCK...
//
// MODE: none | sasl | sasl-conf | ctr | ctr-v2 | gcm | gcm-v2

import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.zip.CRC32;

import org.apache.spark.network.buffer.ManagedBuffer;
import org.apache.spark.network.sasl.SecretKeyHolder;
import org.apache.spark.network.shuffle.BlockFetchingListener;
import org.apache.spark.network.shuffle.ExternalBlockStoreClient;
import org.apache.spark.network.shuffle.protocol.ExecutorShuffleInfo;
import org.apache.spark.network.util.MapConfigProvider;
import org.apache.spark.network.util.TransportConf;

public class AuthClient {
  public static void main(String[] a) throws Exception {
    int port = Integer.parseInt(a[0]);
    String mode = a[1];
    String secret = a[2];
    String app = a[3];
    String exec = a[4];
    String dir = a[5];
    String[] blocks = new String[a.length - 6];
    System.arraycopy(a, 6, blocks, 0, blocks.length);

    Map<String, String> conf = new HashMap<>();
    conf.put("spark.shuffle.io.maxRetries", "0");
    conf.put("spark.network.auth.rpcTimeout", "20s");
    boolean auth = !mode.equals("none");
    switch (mode) {
      case "sasl-conf":
        conf.put("spark.authenticate.enableSaslEncryption", "true");
        break;
      case "ctr":
      case "ctr-v2":
      case "gcm":
      case "gcm-v2":
        conf.put("spark.network.crypto.enabled", "true");
        // a failed AuthEngine handshake must fail, not quietly fall back to SASL
        conf.put("spark.network.crypto.saslFallback", "false");
        conf.put("spark.network.crypto.cipher",
            mode.startsWith("gcm") ? "AES/GCM/NoPadding" : "AES/CTR/NoPadding");
        conf.put("spark.network.crypto.authEngineVersion", mode.endsWith("-v2") ? "2" : "1");
        break;
      default:
        break;
    }
    TransportConf tc = new TransportConf("shuffle", new MapConfigProvider(conf));
    SecretKeyHolder keys = new SecretKeyHolder() {
      public String getSaslUser(String appId) { return "sparkSaslUser"; }
      public String getSecretKey(String appId) { return secret; }
    };
    ExternalBlockStoreClient client =
        new ExternalBlockStoreClient(tc, auth ? keys : null, auth, 20_000);
    client.init(app);
    try {
      ExecutorShuffleInfo info = new ExecutorShuffleInfo(new String[] {dir}, 64,
          "org.apache.spark.shuffle.sort.SortShuffleManager");
      client.registerWithShuffleServer("127.0.0.1", port, exec, info);
      if (blocks.length > 0) {
        CountDownLatch done = new CountDownLatch(blocks.length);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        StringBuffer out = new StringBuffer();
        client.fetchBlocks("127.0.0.1", port, exec, blocks, new BlockFetchingListener() {
          @Override
          public void onBlockFetchSuccess(String blockId, ManagedBuffer data) {
            try {
              byte[] b = new byte[(int) data.size()];
              data.nioByteBuffer().get(b);
              CRC32 crc = new CRC32();
              crc.update(b);
              out.append("BLOCK " + blockId + " " + b.length + " " + crc.getValue() + "\n");
            } catch (Exception e) {
              failure.compareAndSet(null, e);
            }
            done.countDown();
          }

          @Override
          public void onBlockFetchFailure(String blockId, Throwable e) {
            failure.compareAndSet(null, e);
            done.countDown();
          }
        }, null);
        if (!done.await(60, TimeUnit.SECONDS)) {
          throw new RuntimeException("fetch timed out");
        }
        if (failure.get() != null) {
          throw new RuntimeException("fetch failed", failure.get());
        }
        System.out.print(out);
      }
      System.out.println("OK");
    } catch (Throwable t) {
      System.out.println("FAILED");
      for (Throwable c = t; c != null; c = c.getCause()) {
        System.out.println("  " + c);
      }
    } finally {
      client.close();
    }
    System.exit(0);
  }
}
