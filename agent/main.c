/* main.c - smolder-agent: samples every CPU with the BPF program, drains
 * the counts every --interval, and pushes them to the server. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <linux/types.h>

#include "agent/agent.h"
#include "bpf/profile.h"
#include "wire/auth.h"

#define PROFILE_TYPE "process_cpu:samples:count:cpu:nanoseconds:delta"
/* nanoseconds threads spent blocked, per stack (bpf/offcpu.bpf.h) */
#define OFFCPU_TYPE "off_cpu:time:nanoseconds:time:nanoseconds:delta"
#define MAX_EXTRA_LABELS 32
/* At SIGTERM the queue is delivered for at most this long: below the
 * 10 s that docker and systemd wait before SIGKILL. */
#define STOP_DELIVERY_NS (8 * 1000000000LL)

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: smolder-agent [--server URL] [--frequency HZ] [--interval SECONDS]\n"
	        "                     [--label KEY=VALUE]... [options]\n"
	        "\n"
	        "Samples every CPU of this host with eBPF and pushes the stacks to a\n"
	        "smolder-server. Needs root (or CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN).\n"
	        "\n"
	        "  --server URL         the server (default http://127.0.0.1:7070)\n"
	        "  --token-file FILE    send FILE's first line as \"Authorization: Bearer\"\n"
	        "                       (the server's --auth-token-file)\n"
	        "  --frequency HZ       samples per second per CPU (default 19, at most 1000)\n"
	        "  --interval SECONDS   how often to drain and push (default 10)\n"
	        "  --label KEY=VALUE    a label on every series of this host (service,\n"
	        "                       version, ...); may be repeated\n"
	        "  --pid-label          label series with the process ID too (more series:\n"
	        "                       see docs/architecture.md)\n"
	        "  --pid PID            profile one process only\n"
	        "  --no-kernel-stacks   user stacks only\n"
	        "  --no-unwind          walk user stacks by frame pointers only, not by the\n"
	        "                       objects' .eh_frame unwind tables\n"
	        "  --no-python          show CPython's interpreter frames as native code, not\n"
	        "                       the Python functions they run\n"
	        "  --unwind-table-mb MB kernel memory for unwind tables (default 64: about\n"
	        "                       4 million rows; libc takes ~20 000)\n"
	        "  --perf-map-max-mb MB memory for one process' perf map (/tmp/perf-PID.map,\n"
	        "                       which names JIT code; default 16)\n"
	        "  --no-perf-maps       do not read perf maps: JIT frames stay [jit] 0xADDR\n"
	        "  --off-cpu            also record where threads wait (blocked off the CPU),\n"
	        "                       as the profile type " OFFCPU_TYPE "\n"
	        "  --off-cpu-min MS     record blocks of at least MS milliseconds (default 1)\n"
	        "  --off-cpu-sample P   record each block with probability P, 0 < P <= 1,\n"
	        "                       values scaled by 1/P (default 1)\n"
	        "  --off-cpu-entries N  room for N distinct off-CPU stacks per interval\n"
	        "                       (default 1024)\n"
	        "  --buffer-mb MB       backlog kept while the server is away (default 64)\n"
	        "  --no-upload          do not upload debug info\n"
	        "  --upload-max-mb MB   skip uploading files larger (default 256); at most\n"
	        "                       64 MB go up per interval\n"
	        "  --upload-max-mb-per-day MB\n"
	        "                       upload at most this much in any 24 hours (default\n"
	        "                       1024; 0: no daily bound); the rest waits\n"
	        "  --hostname NAME      the hostname label (default: this host's)\n"
	        "  --config FILE        relabel rules for processes' labels (YAML, Prometheus'\n"
	        "                       relabel_configs; docs/protocol.md, \"Process labels\")\n"
	        "  --exit-after SECONDS stop after this long (tests, benchmarks)\n"
	        "  --verbose, -v        say what happens each interval; twice: libbpf's\n"
	        "                       debug log too (the verifier's)\n");
}

static int label_name_ok(const char *s, size_t n)
{
	if (!n || n > 128 || (s[0] == '_' && n > 1 && s[1] == '_'))
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		      (i && c >= '0' && c <= '9')))
			return 0;
	}
	return 1;
}

static int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* A decimal number in [min, max]: "1", "0.25". */
static int parse_double(const char *s, double min, double max, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= min && v <= max))
		return -EINVAL;
	*out = v;
	return 0;
}

static void read_machine_id(char *out, size_t cap, const char *fallback)
{
	FILE *f = fopen("/etc/machine-id", "re");
	out[0] = 0;
	if (f) {
		if (fgets(out, (int)cap, f))
			out[strcspn(out, "\n")] = 0;
		fclose(f);
	}
	if (!out[0])
		snprintf(out, cap, "%s", fallback);
}

typedef struct agent {
	ag_sampler *sampler;
	ag_procs *procs;
	ag_labeler *labeler;
	ag_objs *objs;
	ag_ksyms *ksyms;
	ag_push *push;
	ag_unw *unw;            /* NULL: --no-unwind, or no tables on this arch */
	ag_py *py;              /* NULL: --no-python, or no table walker */
	ag_pmaps *pmaps;        /* NULL: --no-perf-maps */
	ag_batch_ctx ctx;
	bool offcpu;            /* --off-cpu: a second batch per drain */
	uint64_t period_ns;     /* of a CPU sample */
	uint64_t seq;
	int64_t last_drain_ns;
	bool verbose;
} agent;

static void on_event(void *arg, int kind, pid_t pid, const char *comm, int64_t mono_ns)
{
	agent *a = arg;
	if (a->unw)
		ag_unw_event(a->unw, pid, mono_ns);
	/* an exec replaces the interpreter (or removes it): its names go
	 * before the new image's mappings are read */
	if (a->py && kind == SM_EV_EXEC)
		ag_py_proc_gone(a->py, pid, true);
	ag_procs_event(a->procs, kind, pid, comm);
}

static void on_py_code(void *arg, pid_t pid, uint64_t code, uint32_t fingerprint)
{
	agent *a = arg;
	if (a->py)
		ag_py_code_seen(a->py, pid, code, fingerprint);
}

static void on_maps(void *arg, const ag_proc *pr)
{
	agent *a = arg;
	if (a->unw)
		ag_unw_proc(a->unw, pr);
	if (a->py)
		ag_py_proc(a->py, pr);
}

static void on_forget(void *arg, pid_t pid)
{
	agent *a = arg;
	if (a->unw)
		ag_unw_proc_gone(a->unw, pid);
	if (a->py)
		ag_py_proc_gone(a->py, pid, false);
}

static int drain(agent *a)
{
	const ag_count *counts;
	size_t n;
	/* events first: a process announced before the flip has its samples
	 * in the set drained now, and its mappings must be read by then */
	ag_sampler_poll(a->sampler, 0);
	int rc = ag_sampler_drain(a->sampler, &counts, &n);
	if (rc)
		return rc;
	int64_t now = ag_now_ns();
	a->ctx.drain++;
	ag_batch *b, *ob = NULL;
	a->ctx.kind = AG_KIND_CPU;
	a->ctx.profile_type = PROFILE_TYPE;
	a->ctx.period_ns = a->period_ns;
	rc = ag_batch_build(&a->ctx, counts, n, ++a->seq, a->last_drain_ns, now, &b);
	if (!rc && a->offcpu) {
		/* the same processes, labels and stacks, another type: one
		 * nanosecond a unit */
		a->ctx.kind = AG_KIND_OFFCPU;
		a->ctx.profile_type = OFFCPU_TYPE;
		a->ctx.period_ns = 1;
		rc = ag_batch_build(&a->ctx, counts, n, a->seq + 1, a->last_drain_ns, now, &ob);
		if (rc)
			ag_batch_free(b);
		else if (!ag_batch_wire(ob)->nrows) {
			ag_batch_free(ob);
			ob = NULL;
		} else {
			a->seq++;
		}
	}
	a->last_drain_ns = now;
	if (rc)
		return rc;
	uint64_t st[AG_STAT_N];
	ag_sampler_stats(a->sampler, st);
	ag_push_stats ps;
	ag_push_get_stats(a->push, &ps);
	ag_unw_stats us = {0};
	if (a->unw)
		ag_unw_get_stats(a->unw, &us);
	ag_label_stats ls;
	ag_labeler_stats(a->labeler, &ls);
	ag_py_stats pys = {0};
	if (a->py) {
		ag_py_get_stats(a->py, &pys);
		ag_py_tick(a->py);
	}
	ag_pmaps_stats pm = {0};
	if (a->pmaps)
		ag_pmaps_get_stats(a->pmaps, &pm);
	const wire_counter c[] = {
		{"samples", st[AG_STAT_SAMPLES]},
		{"samples_dropped_map_full", st[AG_STAT_COUNT_FULL]},
		{"stacks_dropped_map_full", st[AG_STAT_STACK_FULL]},
		{"user_stack_errors", st[AG_STAT_USTACK_ERR]},
		{"kernel_stack_errors", st[AG_STAT_KSTACK_ERR]},
		{"process_events_lost", st[AG_STAT_EVENTS_LOST]},
		{"samples_without_mapping", a->ctx.samples_no_mapping},
		{"samples_process_gone", a->ctx.samples_no_process},
		{"kernel_frames_unknown", a->ctx.kernel_unknown},
		{"batches_dropped", ps.batches_dropped},
		{"batches_rejected", ps.batches_rejected},
		{"debuginfo_uploads", ps.uploads},
		{"debuginfo_upload_bytes", ps.upload_bytes},
		{"debuginfo_skipped_too_big", ps.upload_too_big},
		{"debuginfo_skipped_refused", ps.upload_refused},
		{"debuginfo_skipped_debuginfod", ps.upload_debuginfod},
		{"debuginfo_skipped_on_server", ps.upload_on_server},
		{"debuginfo_waiting_daily_bound", ps.upload_deferred_daily},
		{"unwind_samples", st[AG_STAT_UNW_SAMPLES]},
		{"unwind_complete", st[AG_STAT_UNW_COMPLETE]},
		{"unwind_truncated", st[AG_STAT_UNW_TRUNCATED]},
		{"unwind_no_fde", st[AG_STAT_UNW_NO_FDE]},
		{"unwind_unsupported", st[AG_STAT_UNW_UNSUPPORTED]},
		{"unwind_read_errors", st[AG_STAT_UNW_READ_ERR]},
		{"unwind_frame_pointer_stops", st[AG_STAT_UNW_FP_STOP]},
		{"unwind_tail_call_failures", st[AG_STAT_UNW_TAIL_FAIL]},
		{"unwind_fp_jit", st[AG_STAT_UNW_FP_JIT]},
		{"unwind_fp_no_fde", st[AG_STAT_UNW_FP_NO_FDE]},
		{"unwind_fp_no_table", st[AG_STAT_UNW_FP_NO_TABLE]},
		{"unwind_mappings_looked_up", st[AG_STAT_UNW_FOUND]},
		{"unwind_tables", us.tables},
		{"unwind_tables_failed", us.build_failed},
		{"unwind_tables_evicted", us.evicted},
		{"unwind_tables_expired", us.expired},
		{"unwind_tables_no_space", us.no_space},
		{"unwind_rows_used", us.rows_used},
		{"unwind_processes", us.procs},
		{"label_values_cut", ls.env_values_cut},
		{"label_environ_truncated", ls.env_truncated},
		{"labels_invalid", ls.labels_invalid},
		{"labels_over_limit", ls.labels_over_limit},
		{"labels_dropped_cardinality", ls.labels_dropped_cardinality},
		{"relabel_processes_dropped", ls.processes_dropped},
		{"relabel_samples_dropped", ls.samples_dropped},
		{"relabel_regex_limit", ls.regex_limit},
		{"python_samples", st[AG_STAT_PY_SAMPLES]},
		{"python_frames", st[AG_STAT_PY_FRAMES]},
		{"python_threads_without_state", st[AG_STAT_PY_NO_THREAD]},
		{"python_thread_state_mismatch", st[AG_STAT_PY_BAD_THREAD]},
		{"python_read_errors", st[AG_STAT_PY_READ_ERR]},
		{"python_bad_code", st[AG_STAT_PY_BAD_CODE]},
		{"python_truncated", st[AG_STAT_PY_TRUNCATED]},
		{"python_frames_lost", st[AG_STAT_PY_LOST]},
		{"python_processes", pys.processes},
		{"python_unknown_version", pys.unknown_version},
		{"python_not_cpython", pys.not_cpython},
		{"python_setup_failed", pys.setup_failed},
		{"python_code_objects", pys.codes_read},
		{"python_unnamed", pys.unnamed},
		{"python_stale", pys.stale},
		{"jit_frames", a->ctx.jit_frames},
		{"jit_frames_named", a->ctx.jit_frames_named},
		{"perf_maps", pm.files},
		{"perf_map_entries", pm.entries},
		{"perf_map_bytes", pm.bytes},
		{"perf_map_bad_lines", pm.bad_lines},
		{"perf_map_huge_lines", pm.huge_lines},
		{"perf_map_truncated", pm.truncated},
		{"perf_map_over_limit", pm.over_limit},
		{"perf_map_refused", pm.refused},
		{"perf_map_rewrites", pm.rewrites},
		{"offcpu_blocks", st[AG_STAT_OFF_BLOCKS]},
		{"offcpu_blocks_short", st[AG_STAT_OFF_SHORT]},
		{"offcpu_blocks_unsampled", st[AG_STAT_OFF_UNSAMPLED]},
		{"offcpu_dropped_map_full", st[AG_STAT_OFF_COUNT_FULL]},
		{"offcpu_threads_no_storage", st[AG_STAT_OFF_NO_STORAGE]},
		{"offcpu_values_clamped", ag_sampler_offcpu_clamped(a->sampler)},
	};
	/* a batch with more does not encode (every push of it would fail) */
	_Static_assert(sizeof(c) / sizeof(c[0]) <= WIRE_MAX_COUNTERS, "counters over the wire's limit");
	/* both batches carry the counters: the server keeps the last one's */
	rc = ag_batch_set_counters(b, c, sizeof(c) / sizeof(c[0]));
	if (!rc && ob)
		rc = ag_batch_set_counters(ob, c, sizeof(c) / sizeof(c[0]));
	if (rc) {
		ag_batch_free(b);
		ag_batch_free(ob);
		return rc;
	}
	if (a->verbose)
		fprintf(stderr, "smolder-agent: interval %" PRIu64 ": %zu counters, %u processes, "
		        "%u stacks, %" PRIu64 " samples so far, %zu processes known, %zu objects, "
		        "%zu batches queued\n", a->seq, n, ag_batch_wire(b)->nprocesses,
		        ag_batch_wire(b)->nstacks, st[AG_STAT_SAMPLES], ag_procs_count(a->procs),
		        ag_objs_count(a->objs), ps.queued + 1);
	if (a->verbose && a->unw)
		fprintf(stderr, "smolder-agent: unwinding: %" PRIu64 " user stacks by tables (%" PRIu64
		        " CPU samples; off-CPU blocks too), %" PRIu64 " complete, %" PRIu64 " truncated, %" PRIu64 " no FDE, "
		        "%" PRIu64 " unsupported, %" PRIu64 " read errors, %" PRIu64 " frame-pointer "
		        "stops, %" PRIu64 " tail-call failures, %" PRIu64 " mappings looked up; frames "
		        "by frame pointer: %" PRIu64 " JIT, %" PRIu64 " no FDE, %" PRIu64 " no table; %"
		        PRIu64 " tables (%" PRIu64 " rows of %" PRIu64 ", %" PRIu64
		        " failed), %" PRIu64 " processes, build %.1f ms max; ready %.1f ms after a "
		        "process' first sample (mean of %" PRIu64 "), %.1f ms max\n",
		        st[AG_STAT_UNW_SAMPLES], st[AG_STAT_SAMPLES], st[AG_STAT_UNW_COMPLETE],
		        st[AG_STAT_UNW_TRUNCATED], st[AG_STAT_UNW_NO_FDE], st[AG_STAT_UNW_UNSUPPORTED],
		        st[AG_STAT_UNW_READ_ERR], st[AG_STAT_UNW_FP_STOP], st[AG_STAT_UNW_TAIL_FAIL],
		        st[AG_STAT_UNW_FOUND], st[AG_STAT_UNW_FP_JIT], st[AG_STAT_UNW_FP_NO_FDE],
		        st[AG_STAT_UNW_FP_NO_TABLE], us.tables, us.rows_used,
		        us.rows_cap, us.build_failed, us.procs, (double)us.build_ns_max / 1e6,
		        us.ready ? (double)us.ready_ns / (double)us.ready / 1e6 : 0.0, us.ready,
		        (double)us.ready_ns_max / 1e6);
	if (a->verbose && a->ctx.jit_frames)
		fprintf(stderr, "smolder-agent: JIT frames: %" PRIu64 ", %" PRIu64 " named by perf "
		        "maps; %" PRIu64 " maps open, %" PRIu64 " entries, %" PRIu64 " bytes, %" PRIu64
		        " bad lines, %" PRIu64 " over the bound\n", a->ctx.jit_frames,
		        a->ctx.jit_frames_named, pm.files, pm.entries, pm.bytes,
		        pm.bad_lines + pm.huge_lines, pm.over_limit);
	if (a->verbose && a->offcpu)
		fprintf(stderr, "smolder-agent: off-CPU: %" PRIu64 " blocks recorded, %" PRIu64
		        " shorter than the minimum, %" PRIu64 " not sampled, %" PRIu64 " dropped "
		        "(map full); %u rows this interval\n", st[AG_STAT_OFF_BLOCKS],
		        st[AG_STAT_OFF_SHORT], st[AG_STAT_OFF_UNSAMPLED], st[AG_STAT_OFF_COUNT_FULL],
		        ob ? ag_batch_wire(ob)->nrows : 0);
	ag_push_enqueue(a->push, b);
	if (ob)
		ag_push_enqueue(a->push, ob);
	ag_procs_sweep(a->procs, a->ctx.drain);
	if (a->unw)
		ag_unw_expire(a->unw, ag_mono_ns());
	return 0;
}

int main(int argc, char **argv)
{
	int rc = 1;
	unsigned long freq = 19, interval = 10, buffer_mb = 64, upload_max_mb = 256, pid = 0,
	              exit_after = 0;
	unsigned long unwind_mb = 64, pmap_mb = 16, offcpu_entries = 1024, upload_day_mb = 1024;
	double offcpu_min_ms = 1, offcpu_sample = 1;
	bool pid_label = false, kernel = true, upload = true, unwind = true, python = true,
	     pmaps = true, offcpu = false;
	int verbose = 0;
	const char *server = "http://127.0.0.1:7070";
	char hostname[256] = "", machine_id[256];
	wire_label extra[MAX_EXTRA_LABELS];
	uint32_t nextra = 0;
	agent a = {0};
	const char *token_file = NULL, *config = NULL;
	char *token = NULL;
	ag_relabel *rules = NULL;
	enum { O_PIDLABEL = 256, O_NOKERNEL, O_BUFFER, O_NOUPLOAD, O_UPMAX, O_UPDAY, O_HOSTNAME,
	       O_EXIT, O_TOKEN, O_NOUNWIND, O_UNWINDMB, O_CONFIG, O_NOPYTHON, O_PMAPMB, O_NOPMAPS,
	       O_OFFCPU, O_OFFMIN, O_OFFSAMPLE, O_OFFENTRIES };
	static const struct option opts[] = {
		{"server", required_argument, NULL, 's'},
		{"token-file", required_argument, NULL, O_TOKEN},
		{"frequency", required_argument, NULL, 'f'},
		{"interval", required_argument, NULL, 'i'},
		{"label", required_argument, NULL, 'l'},
		{"pid", required_argument, NULL, 'p'},
		{"pid-label", no_argument, NULL, O_PIDLABEL},
		{"no-kernel-stacks", no_argument, NULL, O_NOKERNEL},
		{"no-unwind", no_argument, NULL, O_NOUNWIND},
		{"no-python", no_argument, NULL, O_NOPYTHON},
		{"unwind-table-mb", required_argument, NULL, O_UNWINDMB},
		{"perf-map-max-mb", required_argument, NULL, O_PMAPMB},
		{"no-perf-maps", no_argument, NULL, O_NOPMAPS},
		{"off-cpu", no_argument, NULL, O_OFFCPU},
		{"off-cpu-min", required_argument, NULL, O_OFFMIN},
		{"off-cpu-sample", required_argument, NULL, O_OFFSAMPLE},
		{"off-cpu-entries", required_argument, NULL, O_OFFENTRIES},
		{"buffer-mb", required_argument, NULL, O_BUFFER},
		{"no-upload", no_argument, NULL, O_NOUPLOAD},
		{"upload-max-mb", required_argument, NULL, O_UPMAX},
		{"upload-max-mb-per-day", required_argument, NULL, O_UPDAY},
		{"hostname", required_argument, NULL, O_HOSTNAME},
		{"config", required_argument, NULL, O_CONFIG},
		{"exit-after", required_argument, NULL, O_EXIT},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "s:f:i:l:p:vh", opts, NULL)) != -1) {
		int bad = 0;
		switch (o) {
		case 's': server = optarg; break;
		case 'f': bad = parse_uint(optarg, 1, 1000, &freq); break;
		case 'i': bad = parse_uint(optarg, 1, 3600, &interval); break;
		case 'p': bad = parse_uint(optarg, 1, INT32_MAX, &pid); break;
		case O_BUFFER: bad = parse_uint(optarg, 1, 65536, &buffer_mb); break;
		case O_UPMAX: bad = parse_uint(optarg, 1, 65536, &upload_max_mb); break;
		case O_UPDAY: bad = parse_uint(optarg, 0, 1048576, &upload_day_mb); break;
		case O_EXIT: bad = parse_uint(optarg, 1, 1UL << 31, &exit_after); break;
		case O_TOKEN: token_file = optarg; break;
		case O_CONFIG: config = optarg; break;
		case O_PIDLABEL: pid_label = true; break;
		case O_NOKERNEL: kernel = false; break;
		case O_NOUNWIND: unwind = false; break;
		case O_NOPYTHON: python = false; break;
		case O_UNWINDMB: bad = parse_uint(optarg, 1, 4096, &unwind_mb); break;
		case O_PMAPMB: bad = parse_uint(optarg, 1, 4096, &pmap_mb); break;
		case O_NOPMAPS: pmaps = false; break;
		case O_OFFCPU: offcpu = true; break;
		/* a microsecond to a minute */
		case O_OFFMIN: bad = parse_double(optarg, 0.001, 60000, &offcpu_min_ms); break;
		case O_OFFSAMPLE:
			bad = parse_double(optarg, 0, 1, &offcpu_sample) || offcpu_sample <= 0;
			break;
		case O_OFFENTRIES: bad = parse_uint(optarg, 1, 1 << 20, &offcpu_entries); break;
		case O_NOUPLOAD: upload = false; break;
		case O_HOSTNAME: snprintf(hostname, sizeof(hostname), "%s", optarg); break;
		case 'v': verbose++; break;
		case 'l': {
			char *eq = strchr(optarg, '=');
			if (!eq || !label_name_ok(optarg, (size_t)(eq - optarg)) || !eq[1]) {
				fprintf(stderr, "smolder-agent: --label wants KEY=VALUE with KEY like "
				        "[a-zA-Z_][a-zA-Z0-9_]* (not starting with __) and a value: %s\n",
				        optarg);
				return 2;
			}
			if (nextra == MAX_EXTRA_LABELS) {
				fprintf(stderr, "smolder-agent: at most %d --label flags\n", MAX_EXTRA_LABELS);
				return 2;
			}
			*eq = 0;
			extra[nextra++] = (wire_label){optarg, eq + 1};
			break;
		}
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
		if (bad) {
			fprintf(stderr, "smolder-agent: bad value for --%s: %s\n",
			        o == 'f' ? "frequency" : o == 'i' ? "interval" : o == 'p' ? "pid" :
			        o == O_BUFFER ? "buffer-mb" : o == O_UPMAX ? "upload-max-mb" :
			        o == O_UPDAY ? "upload-max-mb-per-day" :
			        o == O_UNWINDMB ? "unwind-table-mb" : o == O_PMAPMB ? "perf-map-max-mb" :
			        o == O_OFFMIN ? "off-cpu-min" : o == O_OFFSAMPLE ? "off-cpu-sample" :
			        o == O_OFFENTRIES ? "off-cpu-entries" : "exit-after",
			        optarg);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (strncmp(server, "http://", 7) && strncmp(server, "https://", 8)) {
		fprintf(stderr, "smolder-agent: --server wants an http:// or https:// URL: %s\n", server);
		return 2;
	}
	if (token_file) {
		char msg[256];
		if (wire_auth_read_token_file(token_file, &token, NULL, msg, sizeof(msg))) {
			fprintf(stderr, "smolder-agent: %s\n", msg);
			return 2;
		}
	}
	if (config) {
		/* before anything is loaded: a config that does not parse stops
		 * the agent, with the place it went wrong */
		char msg[600];
		int e = ag_relabel_load(config, &rules, msg, sizeof(msg));
		if (e) {
			fprintf(stderr, "smolder-agent: %s\n", msg);
			free(token);
			return 2;
		}
	}
	if (geteuid() != 0)
		fprintf(stderr, "smolder-agent: not running as root: loading BPF needs CAP_BPF and "
		        "CAP_PERFMON, reading other processes' memory maps CAP_SYS_PTRACE\n");
	if (!hostname[0] && gethostname(hostname, sizeof(hostname) - 1))
		snprintf(hostname, sizeof(hostname), "unknown");
	read_machine_id(machine_id, sizeof(machine_id), hostname);

	/* Linux before 5.11 charges BPF maps to RLIMIT_MEMLOCK; later ones to
	 * the memory cgroup, where this is harmless. Descriptors: one kept per
	 * object until its debug info is uploaded. */
	struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
	setrlimit(RLIMIT_MEMLOCK, &rl);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* Large temporary arrays (unwind tables being built, batches) in
	 * their own mappings, returned to the system when freed, instead of
	 * raising glibc's threshold and staying in an arena. */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	int err = ag_labeler_new(rules, &a.labeler);
	rules = NULL;  /* the labeler's now */
	if (!err)
		err = ag_objs_new(&a.objs);
	if (!err && pmaps) {
		ag_pmaps_opts pmo = {.proc_root = "/proc", .max_bytes = (size_t)pmap_mb << 20};
		err = ag_pmaps_new(&pmo, &a.pmaps);
	}
	if (!err) {
		ag_procs_opts po = {.proc_root = "/proc", .objs = a.objs, .pmaps = a.pmaps,
		                    .on_maps = on_maps, .on_forget = on_forget, .hook_arg = &a};
		err = ag_procs_new(&po, &a.procs);
	}
	if (err) {
		fprintf(stderr, "smolder-agent: %s\n", strerror(-err));
		goto out;
	}
	err = ag_ksyms_load("/proc/kallsyms", &a.ksyms);
	if (err)
		fprintf(stderr, "smolder-agent: cannot read kernel symbols from /proc/kallsyms (%s%s); "
		        "kernel frames will show as [unknown]\n", strerror(-err),
		        err == -EPERM ? ": addresses hidden by kernel.kptr_restrict" : "");
	ag_push_opts pu = {.server = server, .buffer_bytes = buffer_mb << 20, .upload = upload,
	                   .upload_max_bytes = (uint64_t)upload_max_mb << 20,
	                   .upload_budget = 64u << 20,
	                   .upload_max_day_bytes = (uint64_t)upload_day_mb << 20,
	                   .verbose = verbose > 0, .token = token};
	err = ag_push_new(&pu, &a.push);
	if (err) {
		fprintf(stderr, "smolder-agent: libcurl: %s\n", strerror(-err));
		goto out;
	}
	if ((err = ag_push_start(a.push))) {
		fprintf(stderr, "smolder-agent: starting the sender thread: %s\n", strerror(-err));
		goto out;
	}
#if !defined(__x86_64__)
	unwind = false;  /* the table walker is x86_64's so far */
#endif
	ag_sampler_opts so = {.frequency = (unsigned)freq, .interval_s = (unsigned)interval,
	                      .kernel_stacks = kernel, .filter_pid = (pid_t)pid, .unwind = unwind,
	                      .python = python,
	                      .unwind_rows = (uint32_t)((unwind_mb << 20) / 16),
	                      .offcpu = offcpu, .offcpu_min_ns = (uint64_t)(offcpu_min_ms * 1e6 + 0.5),
	                      .offcpu_sample = offcpu_sample,
	                      .offcpu_entries = (uint32_t)offcpu_entries,
	                      .verbose = verbose > 1, .on_event = on_event,
	                      .on_py_code = on_py_code, .arg = &a};
	if (ag_sampler_open(&so, &a.sampler))
		goto out;
	a.verbose = verbose > 0;
	if (unwind) {
		ag_unw_opts uo = {.proc_root = "/proc", .verbose = verbose > 1};
		err = ag_sampler_unw_maps(a.sampler, &uo.rows_fd, &uo.rows_cap, &uo.procs_fd, &uo.files_fd,
		                          &uo.found_fd);
		if (!err)
			err = ag_unw_new(&uo, &a.unw);
		if (err) {
			fprintf(stderr, "smolder-agent: unwind tables: %s\n", strerror(-err));
			goto out;
		}
	}
	/* the Python walk rides on the table walker */
	ag_py_opts pyo = {.proc_root = "/proc", .verbose = verbose > 0};
	if (unwind && python && ag_sampler_py_map(a.sampler, &pyo.procs_fd) == 0) {
		err = ag_py_new(&pyo, &a.py);
		if (err) {
			fprintf(stderr, "smolder-agent: python: %s\n", strerror(-err));
			goto out;
		}
	}
	a.offcpu = offcpu;
	a.period_ns = 1000000000 / freq;
	a.ctx = (ag_batch_ctx){.agent_id = machine_id, .hostname = hostname,
	                       .profile_type = PROFILE_TYPE, .period_ns = a.period_ns,
	                       .extra_labels = extra, .nextra = nextra, .pid_label = pid_label,
	                       .verbose = verbose > 0, .labeler = a.labeler,
	                       .procs = a.procs, .ksyms = a.ksyms, .py = a.py,
	                       .pmaps = a.pmaps};
	a.last_drain_ns = ag_now_ns();
	fprintf(stderr, "smolder-agent: sampling %d CPUs at %lu Hz, pushing to %s every %lu s\n",
	        ag_sampler_ncpus(a.sampler), freq, server, interval);
	if (offcpu)
		fprintf(stderr, "smolder-agent: off-CPU time: blocks of %g ms or more, sampled with "
		        "p = %g\n", offcpu_min_ms, offcpu_sample);

	int64_t t0 = ag_mono_ns(), next = t0 + (int64_t)interval * 1000000000;
	int64_t deadline = exit_after ? t0 + (int64_t)exit_after * 1000000000 : INT64_MAX;
	while (!g_stop) {
		int64_t now = ag_mono_ns(), wake = next < deadline ? next : deadline;
		int64_t due = ag_procs_tick(a.procs, now);
		if (due && due < wake)
			wake = due;
		int ms = wake > now ? (int)((wake - now + 999999) / 1000000) : 0;
		/* tables being built: look for them every 10 ms */
		if (a.unw && ag_unw_tick(a.unw) > 0 && ms > 10)
			ms = 10;
		ag_sampler_poll(a.sampler, ms);
		now = ag_mono_ns();
		if (now >= deadline)
			break;
		if (now >= next) {
			next += (int64_t)interval * 1000000000;
			if (next <= now)  /* we fell behind (suspend): start over */
				next = now + (int64_t)interval * 1000000000;
			/* the sender delivers on its own thread: a server that hangs
			 * never holds up the next drain */
			err = drain(&a);
			if (err)
				fprintf(stderr, "smolder-agent: drain failed: %s\n", strerror(-err));
			ag_push_offer(a.push, a.objs);
			ag_objs_expire(a.objs, a.ctx.drain > 6 ? a.ctx.drain - 6 : 0);
		}
	}
	/* the last partial interval, then the whole queue, whatever the
	 * backoff, for a bounded time */
	fprintf(stderr, "smolder-agent: stopping\n");
	err = drain(&a);
	if (err)
		fprintf(stderr, "smolder-agent: drain failed: %s\n", strerror(-err));
	size_t left = ag_push_stop(a.push, STOP_DELIVERY_NS);
	if (left)
		fprintf(stderr, "smolder-agent: %zu batches not delivered\n", left);
	else
		fprintf(stderr, "smolder-agent: every batch delivered\n");
	rc = 0;
out:
	ag_unw_free(a.unw);
	a.unw = NULL;
	ag_py_free(a.py);
	a.py = NULL;
	ag_sampler_close(a.sampler);
	ag_push_free(a.push);
	ag_procs_free(a.procs);  /* before the labeler: processes hold its values; frees
	                          * the processes' perf maps */
	ag_labeler_free(a.labeler);
	ag_relabel_free(rules);
	ag_pmaps_free(a.pmaps);
	ag_objs_free(a.objs);
	ag_ksyms_free(a.ksyms);
	free(token);
	return rc;
}
