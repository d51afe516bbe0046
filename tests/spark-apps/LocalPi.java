// A JVM Spark job for the Kubernetes tests (the pyspark wheel ships no examples jar): estimates
// pi from `slices * 100000` random points, as Spark's SparkPi example does, and prints
// "Pi is roughly <value>".
import java.util.ArrayList;
import java.util.List;

import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;

public class LocalPi {
    public static void main(String[] args) {
        // the name comes from spark-submit --name (the executors are labelled with it)
        SparkSession spark = SparkSession.builder().getOrCreate();
        JavaSparkContext sc = new JavaSparkContext(spark.sparkContext());
        int slices = args.length > 0 ? Integer.parseInt(args[0]) : 2;
        int n = 100000 * slices;
        List<Integer> points = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            points.add(i);
        }
        long inside = sc.parallelize(points, slices).filter(i -> {
            double x = Math.random() * 2 - 1;
            double y = Math.random() * 2 - 1;
            return x * x + y * y <= 1;
        }).count();
        System.out.println("Pi is roughly " + 4.0 * inside / n);
        spark.stop();
    }
}
