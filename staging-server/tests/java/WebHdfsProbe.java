// Drives Hadoop's own WebHDFS client (from a Spark distribution's jars) against a server, one
// command per line on stdin, so one JVM runs a whole test scenario. Each command answers one
// line on stdout: "OK <result>" or "ERR <exception class> <message>" (with -Dprobe.timing=true,
// "OK <result> ms=<milliseconds>", for the benchmark). Configuration comes from -D system
// properties with the prefix "hadoop." (hadoop.dfs.webhdfs.oauth2.enabled=true, ...).
//
// Commands (paths are full URIs or paths on the default file system given as args[0]):
//   put LOCAL REMOTE          FileSystem.copyFromLocalFile(false, true, ...), as Spark's upload
//   mkdirs REMOTE             FileSystem.mkdirs
//   stat REMOTE               type, length, permission of FileSystem.getFileStatus
//   ls REMOTE                 FileSystem.listStatus: name:type:length, comma separated, sorted
//   get REMOTE LOCAL          FileSystem.open, whole file copied to LOCAL
//   pread REMOTE OFF LEN LOCAL  positioned read of LEN bytes at OFF into LOCAL
//   seekread REMOTE OFF LEN LOCAL  seek(OFF), then read LEN bytes (sequential stream) into LOCAL
//   rm REMOTE                 FileSystem.delete(path, false)
//   rmr REMOTE                FileSystem.delete(path, true)
//   rename FROM TO            FileSystem.rename
//   home                      FileSystem.getHomeDirectory
//   exists REMOTE             FileSystem.exists
import java.io.*;
import java.net.URI;
import java.util.*;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.*;

public class WebHdfsProbe {
  public static void main(String[] args) throws Exception {
    Configuration conf = new Configuration(false);
    for (String k : System.getProperties().stringPropertyNames()) {
      if (k.startsWith("hadoop.")) conf.set(k.substring(7), System.getProperty(k));
    }
    URI base = URI.create(args[0]);
    FileSystem fs = FileSystem.get(base, conf);
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, "UTF-8"));
    boolean timing = Boolean.getBoolean("probe.timing");
    String line;
    while ((line = in.readLine()) != null) {
      if (line.isEmpty()) continue;
      String[] a = line.split("\t");
      try {
        long t0 = System.nanoTime();
        String result = run(fs, a);
        long ms = (System.nanoTime() - t0) / 1_000_000;
        System.out.println("OK " + result + (timing ? " ms=" + ms : ""));
      } catch (Throwable t) {
        String msg = String.valueOf(t.getMessage()).replace('\n', ' ');
        if (msg.length() > 2000) msg = msg.substring(0, 2000) + "...";
        System.out.println("ERR " + t.getClass().getName() + " " + msg);
      }
      System.out.flush();
    }
    fs.close();
  }

  static String run(FileSystem fs, String[] a) throws Exception {
    switch (a[0]) {
      case "put":
        fs.copyFromLocalFile(false, true, new Path(a[1]), new Path(a[2]));
        return "";
      case "mkdirs":
        return String.valueOf(fs.mkdirs(new Path(a[1])));
      case "stat": {
        FileStatus s = fs.getFileStatus(new Path(a[1]));
        return (s.isDirectory() ? "dir" : "file") + ":" + s.getLen() + ":" + s.getPermission();
      }
      case "ls": {
        List<String> out = new ArrayList<>();
        for (FileStatus s : fs.listStatus(new Path(a[1]))) {
          out.add(s.getPath().getName() + ":" + (s.isDirectory() ? "dir" : "file") + ":" + s.getLen());
        }
        Collections.sort(out);
        return String.join(",", out);
      }
      case "get": {
        long n = 0;
        try (InputStream is = fs.open(new Path(a[1])); OutputStream os = new FileOutputStream(a[2])) {
          byte[] buf = new byte[1 << 16];
          int r;
          while ((r = is.read(buf)) > 0) { os.write(buf, 0, r); n += r; }
        }
        return String.valueOf(n);
      }
      case "pread": {
        long off = Long.parseLong(a[2]);
        int len = Integer.parseInt(a[3]);
        byte[] buf = new byte[len];
        try (FSDataInputStream is = fs.open(new Path(a[1]))) {
          is.readFully(off, buf);
        }
        try (OutputStream os = new FileOutputStream(a[4])) { os.write(buf); }
        return String.valueOf(len);
      }
      case "seekread": {
        long off = Long.parseLong(a[2]);
        int len = Integer.parseInt(a[3]);
        byte[] buf = new byte[len];
        try (FSDataInputStream is = fs.open(new Path(a[1]))) {
          is.seek(off);
          int got = 0;
          while (got < len) {
            int r = is.read(buf, got, len - got);
            if (r < 0) throw new EOFException("EOF after " + got + " bytes");
            got += r;
          }
        }
        try (OutputStream os = new FileOutputStream(a[4])) { os.write(buf); }
        return String.valueOf(len);
      }
      case "rm":
        return String.valueOf(fs.delete(new Path(a[1]), false));
      case "rmr":
        return String.valueOf(fs.delete(new Path(a[1]), true));
      case "rename":
        return String.valueOf(fs.rename(new Path(a[1]), new Path(a[2])));
      case "home":
        return fs.getHomeDirectory().toString();
      case "exists":
        return String.valueOf(fs.exists(new Path(a[1])));
      default:
        throw new IllegalArgumentException("unknown command " + a[0]);
    }
  }
}
