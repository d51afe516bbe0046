// --jars class of the staged application: a Spark SQL UDF (run on executors) that the driver
// also calls directly.
import org.apache.spark.sql.api.java.UDF1;

public class StagedUpper implements UDF1<String, String> {
    @Override
    public String call(String s) {
        return "staged-" + s.toUpperCase();
    }
}
