/* JitBurn - the JVM subject of tests/integration/jit_test.sh: two hot
 * methods with a 2:1 share of the work, warmed up until HotSpot has
 * compiled them, then (once the test has had the JVM write its perf map
 * and touched the file named by the third argument) run for a while with
 * the main thread's own CPU time measured around each call, which the
 * test compares with the profile's split. Never allocates in the loop,
 * so no GC thread takes samples.
 *
 * usage: java -XX:+PreserveFramePointer JitBurn WARM_S RUN_S GO_FILE */
import java.io.File;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;

public class JitBurn {
    static volatile long sink;

    static long hotAlpha(int n) {
        long s = 0;
        for (int i = 0; i < n; i++)
            s = (s * 31 + i) % 1000003;
        return s;
    }

    static long hotBeta(int n) {
        long s = 1;
        for (int i = 0; i < n; i++)
            s = (s * 7 + i) % 999983;
        return s;
    }

    public static void main(String[] a) throws Exception {
        ThreadMXBean tm = ManagementFactory.getThreadMXBean();
        double warm = Double.parseDouble(a[0]), run = Double.parseDouble(a[1]);
        File go = new File(a[2]);
        long end = System.nanoTime() + (long) (warm * 1e9);
        while (System.nanoTime() < end) {
            sink += hotAlpha(200000);
            sink += hotBeta(100000);
        }
        System.out.println("warm");   /* the test runs jcmd PID Compiler.perfmap */
        System.out.flush();
        while (!go.exists())
            Thread.sleep(10);
        long ca = 0, cb = 0;
        end = System.nanoTime() + (long) (run * 1e9);
        while (System.nanoTime() < end) {
            long t0 = tm.getCurrentThreadCpuTime();
            sink += hotAlpha(2000000);
            long t1 = tm.getCurrentThreadCpuTime();
            sink += hotBeta(1000000);
            long t2 = tm.getCurrentThreadCpuTime();
            ca += t1 - t0;
            cb += t2 - t1;
        }
        System.out.println("cpu_alpha_ns " + ca);
        System.out.println("cpu_beta_ns " + cb);
    }
}
