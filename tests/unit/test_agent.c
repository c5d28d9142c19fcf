/* test_agent.c - unit tests of the agent's user-space parts, without BPF:
 * kernel symbols from a kallsyms file, a process read from a /proc tree
 * the test builds (labels, cgroup and container ID, executable mappings,
 * build IDs by libelf and the content-hash fallback), and a drained
 * interval turned into a wire batch (offsets, kernel names, stack IDs,
 * unmapped frames counted) that the server's decoder accepts, off-CPU
 * counters in a batch of their own; debug-info
 * uploads against a scripted HTTP server (which files go up, in which
 * order, within which budget). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sys/sysmacros.h>
#include <sys/mman.h>

#include <cmocka.h>

#include <bpf/bpf.h>
#include <linux/types.h>

#include "base/text.h"
#include "agent/agent.h"
#include "bpf/profile.h"

static char tmpdir[512];

static void put_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	const char *base = getenv("SMOLDER_TEST_TMP");
	snprintf(tmpdir, sizeof(tmpdir), "%s/agent.XXXXXX", base ? base : "/tmp");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- ksyms ---- */

static void test_ksyms(void **state)
{
	(void)state;
	char path[600];
	snprintf(path, sizeof(path), "%s/kallsyms", tmpdir);
	put_file(path,
	         "ffffffff81000000 T _stext\n"
	         "ffffffff81001000 t do_one\n"
	         "ffffffff81002000 D some_data\n"      /* data: not a function */
	         "ffffffff81003000 W weak_fn\n"
	         "ffffffffc0001000 t mod_fn\t[ext4]\n"
	         "garbage line\n");
	ag_ksyms *k;
	assert_int_equal(ag_ksyms_load(path, &k), 0);
	assert_int_equal(ag_ksyms_count(k), 4);
	assert_null(ag_ksyms_find(k, 0xffffffff80ffffffULL));
	assert_string_equal(ag_ksyms_find(k, 0xffffffff81000000ULL), "_stext");
	assert_string_equal(ag_ksyms_find(k, 0xffffffff81001fffULL), "do_one");
	assert_string_equal(ag_ksyms_find(k, 0xffffffff81002004ULL), "do_one");
	assert_string_equal(ag_ksyms_find(k, 0xffffffff81003010ULL), "weak_fn");
	assert_string_equal(ag_ksyms_find(k, 0xffffffffc0001234ULL), "mod_fn");
	ag_ksyms_free(k);

	/* kptr_restrict: every address reads 0 */
	put_file(path, "0000000000000000 T _stext\n0000000000000000 t do_one\n");
	assert_int_equal(ag_ksyms_load(path, &k), -EPERM);
	assert_null(k);
	snprintf(path, sizeof(path), "%s/missing", tmpdir);
	assert_int_equal(ag_ksyms_load(path, &k), -ENOENT);
}

/* ---- objects ---- */

/* The fallback build ID of the file open as fd, read whole. */
static void fallback_of(int fd, uint8_t want[WIRE_FALLBACK_BUILD_ID_LEN])
{
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	uint8_t *all = malloc((size_t)st.st_size);
	assert_int_equal(pread(fd, all, (size_t)st.st_size, 0), st.st_size);
	wire_fallback_build_id(all, (size_t)st.st_size, want);
	free(all);
}

static void test_build_ids(void **state)
{
	(void)state;
	uint8_t id[WIRE_MAX_BUILD_ID];
	int fd = open("/proc/self/exe", O_RDONLY);
	assert_true(fd >= 0);
	int n = ag_elf_build_id(fd, id);
	close(fd);
	assert_int_equal(n, 20);  /* gcc on Debian links with --build-id=sha1 */

	/* not ELF */
	char path[600];
	snprintf(path, sizeof(path), "%s/text", tmpdir);
	put_file(path, "hello, not an ELF file\n");
	fd = open(path, O_RDONLY);
	assert_true(ag_elf_build_id(fd, id) < 0);
	close(fd);

	/* an ELF file without a build-id note gets the content hash */
	char cmd[1400];
	snprintf(path, sizeof(path), "%s/nobid", tmpdir);
	snprintf(cmd, sizeof(cmd), "objcopy --remove-section .note.gnu.build-id /proc/%d/exe '%s'",
	         getpid(), path);
	assert_int_equal(system(cmd), 0);
	fd = open(path, O_RDONLY);
	assert_int_equal(ag_elf_build_id(fd, id), 0);
	uint8_t want[WIRE_FALLBACK_BUILD_ID_LEN];
	fallback_of(fd, want);
	ag_objs *objs;
	assert_int_equal(ag_objs_new(&objs), 0);
	ag_obj *o = ag_objs_get(objs, fd, "/opt/nobid");  /* takes fd over */
	assert_non_null(o);
	assert_int_equal(o->build_id_len, WIRE_FALLBACK_BUILD_ID_LEN);
	assert_memory_equal(o->build_id, want, WIRE_FALLBACK_BUILD_ID_LEN);
	/* the same file again is the same object, whatever the name */
	fd = open(path, O_RDONLY);
	assert_ptr_equal(ag_objs_get(objs, fd, "/other/name"), o);
	assert_int_equal(ag_objs_count(objs), 1);
	/* not ELF: no object, and the descriptor is closed */
	snprintf(path, sizeof(path), "%s/text", tmpdir);
	fd = open(path, O_RDONLY);
	assert_null(ag_objs_get(objs, fd, "text"));
	assert_int_equal(fcntl(fd, F_GETFD), -1);
	ag_objs_free(objs);
}

/* The agent names files by wire/buildid.h's rule, as the server and the
 * CLI do (tests/tools/mkbid.sh's files): a note over 64 bytes is no ID,
 * the file goes by its content; sections win over segments. */
static void test_build_id_rule(void **state)
{
	(void)state;
	char dir[600], cmd[700], path[700];
	snprintf(dir, sizeof(dir), "%s/bid", tmpdir);
	snprintf(cmd, sizeof(cmd), "sh tests/tools/mkbid.sh '%s'", dir);
	assert_int_equal(system(cmd), 0);
	ag_objs *objs;
	assert_int_equal(ag_objs_new(&objs), 0);

	snprintf(path, sizeof(path), "%s/bid_long", dir);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	uint8_t want[WIRE_FALLBACK_BUILD_ID_LEN];
	fallback_of(fd, want);
	ag_obj *o = ag_objs_get(objs, fd, path);
	assert_non_null(o);
	assert_int_equal(o->build_id_len, WIRE_FALLBACK_BUILD_ID_LEN);
	assert_memory_equal(o->build_id, want, WIRE_FALLBACK_BUILD_ID_LEN);

	snprintf(path, sizeof(path), "%s/bid_differ", dir);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	o = ag_objs_get(objs, fd, path);
	assert_non_null(o);
	uint8_t cd[20];
	memset(cd, 0xcd, sizeof(cd));
	assert_int_equal(o->build_id_len, sizeof(cd));
	assert_memory_equal(o->build_id, cd, sizeof(cd));
	ag_objs_free(objs);
}

/* ---- a fake /proc with one process ---- */

typedef struct fakeproc {
	char root[600];
	char exe[600];     /* a real ELF file, mapped at 0x400000 */
	ag_objs *objs;
	ag_procs *procs;
} fakeproc;

#define PID 4242
#define CID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void mk_fakeproc(fakeproc *f)
{
	char p[800], cmd[1600];
	snprintf(f->root, sizeof(f->root), "%s/proc", tmpdir);
	snprintf(p, sizeof(p), "%s/%d", f->root, PID);
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", p);
	assert_int_equal(system(cmd), 0);
	/* the process' root is the real one, so its paths resolve */
	snprintf(p, sizeof(p), "%s/%d/root", f->root, PID);
	assert_int_equal(symlink("/", p), 0);
	snprintf(f->exe, sizeof(f->exe), "%s/app", tmpdir);
	snprintf(cmd, sizeof(cmd), "cp /proc/%d/exe '%s'", getpid(), f->exe);
	assert_int_equal(system(cmd), 0);
	snprintf(p, sizeof(p), "%s/%d/exe", f->root, PID);
	assert_int_equal(symlink(f->exe, p), 0);
	snprintf(p, sizeof(p), "%s/%d/comm", f->root, PID);
	put_file(p, "app\n");
	snprintf(p, sizeof(p), "%s/%d/cgroup", f->root, PID);
	put_file(p, "0::/system.slice/docker-" CID ".scope\n");
	char maps[4096];
	snprintf(maps, sizeof(maps),
	         "00400000-00401000 r--p 00000000 08:01 1234 %s\n"
	         "00401000-00403000 r-xp 00001000 08:01 1234 %s\n"
	         "7f0000000000-7f0000001000 rwxp 00000000 00:00 0 \n"
	         "7fff00000000-7fff00002000 r-xp 00000000 00:00 0 [vdso]\n",
	         f->exe, f->exe);
	snprintf(p, sizeof(p), "%s/%d/maps", f->root, PID);
	put_file(p, maps);
	assert_int_equal(ag_objs_new(&f->objs), 0);
	ag_procs_opts po = {f->root, f->objs};
	assert_int_equal(ag_procs_new(&po, &f->procs), 0);
}

static void rm_fakeproc(fakeproc *f)
{
	ag_procs_free(f->procs);
	ag_objs_free(f->objs);
}

static void test_procs(void **state)
{
	(void)state;
	fakeproc f;
	mk_fakeproc(&f);
	ag_proc *pr = ag_procs_get(f.procs, PID, NULL);
	assert_non_null(pr);
	assert_string_equal(pr->comm, "app");
	assert_string_equal(pr->exe, f.exe);
	assert_string_equal(pr->cgroup, "/system.slice/docker-" CID ".scope");
	assert_string_equal(pr->container, CID);
	assert_int_equal(strlen(pr->build_id_hex), 40);
	/* only executable mappings, sorted */
	assert_int_equal(pr->nmaps, 3);
	const ag_mapping *m = ag_proc_find(pr, 0x401800);
	assert_non_null(m);
	assert_int_equal(m->kind, AG_MAP_FILE);
	assert_int_equal(m->pgoff, 0x1000);
	assert_null(ag_proc_find(pr, 0x400800));  /* r--p: not executable */
	assert_int_equal(ag_proc_find(pr, 0x7f0000000010)->kind, AG_MAP_ANON);
	assert_int_equal(ag_proc_find(pr, 0x7fff00000010)->kind, AG_MAP_VDSO);
	assert_null(ag_proc_find(pr, 0x10));
	assert_ptr_equal(ag_procs_get(f.procs, PID, "ignored"), pr);
	assert_int_equal(ag_procs_count(f.procs), 1);

	/* a process gone before we looked */
	ag_proc *gone = ag_procs_get(f.procs, 999999, "ghost");
	assert_non_null(gone);
	assert_true(gone->gone);
	assert_string_equal(gone->comm, "ghost");
	assert_int_equal(ag_procs_refresh(f.procs, gone, 1), -ESRCH);
	/* exit marks; the sweep frees the gone one at once, the exited one
	 * two drains later (samples of its teardown still need its maps) */
	ag_procs_event(f.procs, 3, PID, NULL);
	assert_true(pr->exited);
	ag_procs_sweep(f.procs, 1);
	assert_int_equal(ag_procs_count(f.procs), 1);
	/* announced again while the kernel tears it down (its /proc entry
	 * already gone): what it had is kept */
	char mp[800];
	snprintf(mp, sizeof(mp), "%s/%d/maps", f.root, PID);
	assert_int_equal(unlink(mp), 0);
	ag_procs_event(f.procs, 1, PID, "again");
	assert_true(pr->exited);
	assert_ptr_equal(ag_procs_get(f.procs, PID, NULL), pr);
	assert_int_equal(pr->nmaps, 3);
	ag_procs_sweep(f.procs, 2);
	assert_int_equal(ag_procs_count(f.procs), 1);
	ag_procs_sweep(f.procs, 3);
	assert_int_equal(ag_procs_count(f.procs), 0);
	rm_fakeproc(&f);
}

static int g_on_maps;

static void count_on_maps(void *arg, const ag_proc *pr)
{
	(void)arg;
	(void)pr;
	g_on_maps++;
}

/* /proc/PID/maps as the hand parser reads it: a file larger than the
 * first read buffer (the executable lines last), a name with spaces, a
 * line without a name, lines of other shapes skipped; a reread that finds
 * the same mappings does not call on_maps again, one that finds a new
 * mapping does. */
static void test_procs_maps(void **state)
{
	(void)state;
	fakeproc f;
	mk_fakeproc(&f);
	ag_procs_free(f.procs);
	ag_procs_opts po = {f.root, f.objs, .on_maps = count_on_maps};
	assert_int_equal(ag_procs_new(&po, &f.procs), 0);
	char path[800];
	snprintf(path, sizeof(path), "%s/%d/maps", f.root, PID);
	size_t cap = 1 << 20, n = 0;
	char *maps = malloc(cap);
	assert_non_null(maps);
	for (int i = 0; i < 2000; i++)   /* ~200 KiB of data mappings */
		n += (size_t)snprintf(maps + n, cap - n,
		                      "%012llx-%012llx rw-p 00000000 08:01 99 /usr/lib/some/long/path/"
		                      "to/a/data/file/number/%04d/with/more/words/in/it.dat\n",
		                      0x100000000ULL + i * 0x1000ULL, 0x100001000ULL + i * 0x1000ULL, i);
	const char *tail =
	    "00401000-00403000 r-xp 00001000 08:01 1234                       %s\n"
	    "7f0000000000-7f0000001000 rwxp 00000000 00:00 0\n"
	    "7f1000000000-7f1000001000 r-xp 00000000 08:01 77 /no such/dir with spaces/lib.so\n"
	    "7f2000000000-7f2000001000 r-xp zz000000 08:01 77 /bad/pgoff\n"
	    "7f3000000000 r-xp 00000000 08:01 77 /no/end\n"
	    "7f4000000000-7f4000001000 r-xp 00000000 08:01\n"
	    "7f5000000000-7f5000001000 r-xp 00000000 08:01 12x /bad/inode\n"
	    "7fff00000000-7fff00002000 r-xp 00000000 00:00 0 [vdso]\n";
	n += (size_t)snprintf(maps + n, cap - n, tail, f.exe);
	put_file(path, maps);
	g_on_maps = 0;
	ag_proc *pr = ag_procs_get(f.procs, PID, NULL);
	assert_non_null(pr);
	assert_int_equal(g_on_maps, 1);
	assert_int_equal(pr->nmaps, 4);
	const ag_mapping *m = ag_proc_find(pr, 0x401800);
	assert_non_null(m);
	assert_int_equal(m->kind, AG_MAP_FILE);
	assert_int_equal(m->pgoff, 0x1000);
	assert_int_equal(m->ino, 1234);
	assert_int_equal(m->dev, 8u << 20 | 1);
	assert_int_equal(strlen(pr->build_id_hex), 40);
	assert_int_equal(ag_proc_find(pr, 0x7f0000000010)->kind, AG_MAP_ANON);
	/* a file that is not there: an executable mapping without object */
	m = ag_proc_find(pr, 0x7f1000000010);
	assert_non_null(m);
	assert_int_equal(m->ino, 77);
	assert_int_equal(ag_proc_find(pr, 0x7fff00000010)->kind, AG_MAP_VDSO);
	assert_null(ag_proc_find(pr, 0x7f2000000010));
	assert_null(ag_proc_find(pr, 0x7f5000000010));
	assert_null(ag_proc_find(pr, 0x100000010));    /* rw-p */
	/* the same mappings again: nothing for the hook */
	assert_int_equal(ag_procs_refresh(f.procs, pr, 5), 0);
	assert_int_equal(g_on_maps, 1);
	assert_int_equal(pr->nmaps, 4);
	/* one more (a dlopen) */
	n += (size_t)snprintf(maps + n, cap - n,
	                      "7f6000000000-7f6000001000 r-xp 00000000 00:00 0\n");
	put_file(path, maps);
	assert_int_equal(ag_procs_refresh(f.procs, pr, 6), 0);
	assert_int_equal(g_on_maps, 2);
	assert_int_equal(pr->nmaps, 5);
	assert_non_null(ag_proc_find(pr, 0x7f6000000010));
	free(maps);
	rm_fakeproc(&f);
}

/* ---- one interval to a batch ---- */

static void test_batch(void **state)
{
	(void)state;
	fakeproc f;
	mk_fakeproc(&f);
	char path[600];
	snprintf(path, sizeof(path), "%s/kallsyms", tmpdir);
	put_file(path, "ffffffff81000000 T entry_SYSCALL_64\nffffffff81001000 t do_sys_read\n");
	ag_ksyms *ks;
	assert_int_equal(ag_ksyms_load(path, &ks), 0);

	const uint64_t user1[] = {0x401234, 0x401010, 0x7fff00000100};
	const uint64_t user2[] = {0x401234, 0x999999};  /* the second in no mapping */
	const uint64_t kern[] = {0xffffffff81001010ULL, 0xffffffff81000020ULL};
	const ag_count counts[] = {
		{PID, user1, 3, kern, 2, 5, AG_KIND_CPU, false},
		{PID, user1, 3, NULL, 0, 7, AG_KIND_CPU, false},
		{PID, user2, 2, NULL, 0, 2, AG_KIND_CPU, false},
		{PID, NULL, 0, NULL, 0, 1, AG_KIND_CPU, false},  /* no stack at all */
		{PID, user1, 3, NULL, 0, 4, AG_KIND_CPU, true},  /* the walk stopped short */
	};
	const wire_label extra[] = {{"service", "api"}, {"comm", "overridden"}};
	ag_batch_ctx ctx = {.agent_id = "m1", .hostname = "h1",
	                    .profile_type = "process_cpu:samples:count:cpu:nanoseconds:delta",
	                    .period_ns = 52631578, .extra_labels = extra, .nextra = 2,
	                    .procs = f.procs, .ksyms = ks, .drain = 1};
	ag_batch *b;
	assert_int_equal(ag_batch_build(&ctx, counts, 5, 7, 1000, 2000, &b), 0);
	const wire_batch *w = ag_batch_wire(b);
	assert_int_equal(w->seq, 7);
	assert_int_equal(w->nprocesses, 1);
	assert_int_equal(w->nobjects, 1);
	assert_int_equal(w->nstacks, 5);
	assert_int_equal(w->nrows, 5);
	assert_int_equal(ctx.samples_no_mapping, 2);

	/* labels: built-ins, then --label values overriding a built-in name */
	const wire_process *wp = &w->processes[0];
	const char *want[][2] = {{"hostname", "h1"}, {"exe", f.exe},
	                         {"container_id", CID}, {"service", "api"}, {"comm", "overridden"}};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		bool found = false;
		for (uint32_t k = 0; k < wp->nlabels; k++)
			if (!strcmp(wp->labels[k].name, want[i][0])) {
				assert_false(found);
				assert_string_equal(wp->labels[k].value, want[i][1]);
				found = true;
			}
		assert_true(found);
	}

	/* stack 0: kernel leaf first, then user frames as file offsets */
	const wire_stack *s0 = &w->stacks[0];
	assert_int_equal(s0->nframes, 5);
	assert_int_equal(s0->frames[0].kind, WIRE_FRAME_KERNEL);
	assert_string_equal(s0->frames[0].name, "do_sys_read");
	assert_string_equal(s0->frames[1].name, "entry_SYSCALL_64");
	assert_int_equal(s0->frames[2].kind, WIRE_FRAME_USER);
	assert_int_equal(s0->frames[2].offset, 0x401234 - 0x401000 + 0x1000);
	/* a caller's frame is its return address minus one (inside the call) */
	assert_int_equal(s0->frames[3].offset, 0x1010 - 1);
	assert_int_equal(s0->frames[4].kind, WIRE_FRAME_NAMED);
	assert_string_equal(s0->frames[4].name, "[vdso]");
	assert_true(s0->id == wire_stack_id(w->objects, w->nobjects, s0->frames, s0->nframes));
	assert_string_equal(w->stacks[2].frames[1].name, "[unknown]");
	assert_int_equal(w->stacks[3].nframes, 1);
	/* a truncated walk: user1's frames, then the marker outermost, so a
	 * different stack than the whole one */
	const wire_stack *s4 = &w->stacks[4];
	assert_int_equal(s4->nframes, 4);
	assert_int_equal(s4->frames[3].kind, WIRE_FRAME_NAMED);
	assert_string_equal(s4->frames[3].name, WIRE_TRUNCATED_FRAME);
	assert_true(s4->id != w->stacks[1].id);
	assert_int_equal(w->rows[0].count, 5);
	assert_true(w->rows[0].stack_id == s0->id);
	assert_int_equal(w->rows[0].ts_ns, 1000);

	/* the same interval twice gives the same IDs (stable), and the server's
	 * decoder takes the encoded batch */
	ag_batch *b2;
	assert_int_equal(ag_batch_build(&ctx, counts, 5, 8, 2000, 3000, &b2), 0);
	for (uint32_t i = 0; i < 5; i++)
		assert_true(ag_batch_wire(b2)->stacks[i].id == w->stacks[i].id);
	const wire_counter c[] = {{"samples", 15}};
	assert_int_equal(ag_batch_set_counters(b, c, 1), 0);
	uint8_t *body;
	size_t len;
	base_err e;
	assert_int_equal(wire_encode(w, &body, &len, &e), 0);
	wire_decoded *d;
	int rc = wire_decode(body, len, &d, &e);
	if (rc)
		fail_msg("decode: %s", e.msg);
	assert_int_equal(wire_decoded_batch(d)->nstacks, 5);
	assert_int_equal(wire_decoded_batch(d)->counters[0].value, 15);
	wire_decoded_free(d);
	free(body);
	size_t nobj;
	ag_obj *const *objs = ag_batch_objects(b, &nobj);
	assert_int_equal(nobj, 1);
	assert_string_equal(objs[0]->name, f.exe);
	assert_true(ag_batch_bytes(b) > 0);
	ag_batch_free(b);
	ag_batch_free(b2);
	ag_ksyms_free(ks);
	rm_fakeproc(&f);
}

/* Off-CPU counters go into a batch of their own kind only, their kernel
 * stacks start where the thread waits (the BPF program's frame and the
 * tracepoint's glue before __schedule are left out), and their values,
 * nanoseconds, are not counted as samples. */
static void test_batch_offcpu(void **state)
{
	(void)state;
	fakeproc f;
	mk_fakeproc(&f);
	char path[600];
	snprintf(path, sizeof(path), "%s/kallsyms", tmpdir);
	put_file(path, "ffffffff81000000 T entry_SYSCALL_64\n"
	               "ffffffff81002000 t __schedule\n"
	               "ffffffff81003000 T bpf_trace_run1\n"
	               "ffffffff81004000 T __traceiter_sched_exit_tp\n"
	               "ffffffffc0000000 t bpf_prog_0123456789abcdef_other\n");
	ag_ksyms *ks;
	assert_int_equal(ag_ksyms_load(path, &ks), 0);
	/* our program (named after the one before it), the glue, then the wait */
	const uint64_t kern[] = {0xffffffffc0001234ULL, 0xffffffff81003010ULL,
	                         0xffffffff81004010ULL, 0xffffffff81002040ULL,
	                         0xffffffff81000020ULL};
	const uint64_t user1[] = {0x401234, 0x999999};  /* the second in no mapping */
	const ag_count counts[] = {
		{PID, user1, 2, kern, 5, 3, AG_KIND_CPU},
		{PID, user1, 2, kern, 5, 2500000000ULL, AG_KIND_OFFCPU},
		{PID, user1, 2, kern + 3, 2, 7000000, AG_KIND_OFFCPU},
	};
	ag_batch_ctx ctx = {.agent_id = "m1", .hostname = "h1",
	                    .profile_type = "off_cpu:time:nanoseconds:time:nanoseconds:delta",
	                    .period_ns = 1, .kind = AG_KIND_OFFCPU, .procs = f.procs, .ksyms = ks,
	                    .drain = 1};
	ag_batch *b;
	assert_int_equal(ag_batch_build(&ctx, counts, 3, 1, 1000, 2000, &b), 0);
	const wire_batch *w = ag_batch_wire(b);
	assert_int_equal(w->nrows, 2);
	/* both off-CPU rows have one stack: the glue left out of the first */
	assert_int_equal(w->nstacks, 1);
	assert_true(w->rows[0].stack_id == w->rows[1].stack_id);
	assert_int_equal(w->rows[0].count, 2500000000ULL);
	const wire_stack *st = &w->stacks[0];
	assert_int_equal(st->nframes, 4);
	assert_string_equal(st->frames[0].name, "__schedule");
	assert_string_equal(st->frames[1].name, "entry_SYSCALL_64");
	/* an unmapped frame of a time is not a sample without a mapping */
	assert_int_equal(ctx.samples_no_mapping, 0);
	ag_batch_free(b);

	/* the CPU batch of the same drain takes the sample alone, whole */
	ctx.kind = AG_KIND_CPU;
	ctx.profile_type = "process_cpu:samples:count:cpu:nanoseconds:delta";
	assert_int_equal(ag_batch_build(&ctx, counts, 3, 2, 1000, 2000, &b), 0);
	w = ag_batch_wire(b);
	assert_int_equal(w->nrows, 1);
	assert_int_equal(w->rows[0].count, 3);
	assert_int_equal(w->stacks[0].nframes, 7);
	assert_int_equal(ctx.samples_no_mapping, 3);
	ag_batch_free(b);
	ag_ksyms_free(ks);
	rm_fakeproc(&f);
}

/* Label values the store would refuse (bytes that are not UTF-8, control
 * characters) are mended, never sent as they are. */
static void test_batch_utf8(void **state)
{
	(void)state;
	fakeproc f;
	mk_fakeproc(&f);
	const wire_label extra[] = {{"bad", "a\xff" "b\x01" "c\xc3\xa4\xe2\x82"}};
	ag_batch_ctx ctx = {.agent_id = "m1", .hostname = "h1", .profile_type = "t",
	                    .extra_labels = extra, .nextra = 1, .procs = f.procs, .drain = 1};
	const ag_count counts[] = {{PID, NULL, 0, NULL, 0, 1}};
	ag_batch *b;
	assert_int_equal(ag_batch_build(&ctx, counts, 1, 1, 0, 1, &b), 0);
	const wire_process *wp = &ag_batch_wire(b)->processes[0];
	bool seen = false;
	for (uint32_t k = 0; k < wp->nlabels; k++)
		if (!strcmp(wp->labels[k].name, "bad")) {
			assert_string_equal(wp->labels[k].value, "a?b?c\xc3\xa4??");
			seen = true;
		}
	assert_true(seen);
	ag_batch_free(b);
	rm_fakeproc(&f);
}

/* ---- debug-info uploads ---- */

/* A scripted HTTP server on a loopback port: answers request k with
 * script[k] (status, extra header lines), and records each request's
 * method and body size. Requests past the script get 500. */
typedef struct fake_resp {
	int status;
	const char *headers;   /* "Name: value\r\n"... */
} fake_resp;

#define FAKE_MAX 8
typedef struct fake {
	int lfd, port;
	const fake_resp *script;
	size_t nscript, n;
	char method[FAKE_MAX][8];
	uint64_t bytes[FAKE_MAX];
	volatile int stop;
	pthread_t th;
} fake;

static void fake_serve(fake *f, int c)
{
	char req[8192];
	size_t len = 0;
	char *end = NULL;
	while (!end && len < sizeof(req) - 1) {
		ssize_t k = read(c, req + len, sizeof(req) - 1 - len);
		if (k <= 0)
			return;
		len += (size_t)k;
		req[len] = 0;
		end = strstr(req, "\r\n\r\n");
	}
	if (!end)
		return;
	uint64_t clen = 0, got = len - (size_t)(end + 4 - req);
	const char *cl = strcasestr(req, "\r\nContent-Length:");
	if (cl && cl < end)
		clen = strtoull(cl + 17, NULL, 10);
	if (strcasestr(req, "\r\nExpect: 100-continue"))
		(void)!write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	char buf[65536];
	while (got < clen) {
		ssize_t k = read(c, buf, sizeof(buf));
		if (k <= 0)
			break;
		got += (uint64_t)k;
	}
	size_t i = f->n++;
	const fake_resp *r = i < f->nscript ? &f->script[i] : &(fake_resp){500, ""};
	if (i < FAKE_MAX) {
		snprintf(f->method[i], sizeof(f->method[i]), "%.*s", (int)strcspn(req, " "), req);
		f->bytes[i] = got;
	}
	char resp[512];
	int n = snprintf(resp, sizeof(resp), "HTTP/1.1 %d X\r\nContent-Length: 0\r\n"
	                 "Connection: close\r\n%s\r\n", r->status, r->headers);
	(void)!write(c, resp, (size_t)n);
}

static void *fake_main(void *arg)
{
	fake *f = arg;
	while (!f->stop) {
		struct pollfd pfd = {f->lfd, POLLIN, 0};
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		int c = accept(f->lfd, NULL, NULL);
		if (c < 0)
			continue;
		fake_serve(f, c);
		close(c);
	}
	return NULL;
}

static void fake_start(fake *f, const fake_resp *script, size_t n)
{
	*f = (fake){.script = script, .nscript = n};
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(f->lfd >= 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(f->lfd, 8), 0);
	assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &al), 0);
	f->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(fake *f)
{
	f->stop = 1;
	pthread_join(f->th, NULL);
	close(f->lfd);
}

/* --upload-max-mb-per-day for run_upload (0: none), and how many flushes
 * it runs (0 taken as 1) */
static uint64_t g_day_bytes;
static int g_flushes;

/* One flush's uploads of this test program's own file (it has a build
 * ID) against script; with_debug puts a copy of it where the host's debug
 * file for that build ID would be. Fills the fake's record, the stats
 * and whether the object is done. */
static void run_upload(const fake_resp *script, size_t n, bool with_debug, uint64_t budget,
                       fake *f, ag_push_stats *st, bool *done, uint64_t *size)
{
	char dir[600], path[1400], cmd[3000], hex[2 * WIRE_MAX_BUILD_ID + 1];
	ag_objs *objs;
	assert_int_equal(ag_objs_new(&objs), 0);
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	ag_obj *o = ag_objs_get(objs, fd, "/self");
	assert_non_null(o);
	base_hex(o->build_id, o->build_id_len, hex);
	snprintf(dir, sizeof(dir), "%s/debug", tmpdir);
	if (with_debug) {
		snprintf(path, sizeof(path), "%s/.build-id/%.2s", dir, hex);
		snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && cp /proc/%d/exe '%s/%s.debug'", path,
		         getpid(), path, hex + 2);
		assert_int_equal(system(cmd), 0);
	}
	fake_start(f, script, n);
	char server[64];
	snprintf(server, sizeof(server), "http://127.0.0.1:%d", f->port);
	ag_push_opts po = {.server = server, .buffer_bytes = 1 << 20, .upload = true,
	                   .upload_max_bytes = 1ull << 30, .upload_budget = budget,
	                   .upload_max_day_bytes = g_day_bytes, .debug_dir = dir};
	ag_push *p;
	assert_int_equal(ag_push_new(&po, &p), 0);
	for (int i = 0; i < (g_flushes ? g_flushes : 1); i++)
		ag_push_upload(p, objs);
	ag_push_get_stats(p, st);
	*done = o->uploaded;
	*size = o->size;
	ag_push_free(p);
	fake_stop(f);
	ag_objs_free(objs);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_upload(void **state)
{
	(void)state;
	fake f;
	ag_push_stats st;
	bool done;
	uint64_t size;
	const uint64_t big = 1ull << 30;

	/* nothing on the server, a debug file on the host: the binary, then
	 * (the server saying it lacks DWARF) the debug file */
	static const fake_resp s1[] = {
		{404, ""}, {201, ""},
		{200, "X-Smolder-Debuginfo: binary\r\nX-Smolder-Debuginfo-Dwarf: no\r\n"},
		{201, ""},
	};
	run_upload(s1, 4, true, big, &f, &st, &done, &size);
	assert_int_equal(f.n, 4);
	assert_string_equal(f.method[0], "HEAD");
	assert_string_equal(f.method[1], "PUT");
	assert_string_equal(f.method[2], "HEAD");
	assert_string_equal(f.method[3], "PUT");
	assert_int_equal(f.bytes[1], size);
	assert_int_equal(f.bytes[3], size);   /* the copy: same size */
	assert_true(done);
	assert_int_equal(st.uploads, 2);
	assert_int_equal(st.upload_bytes, 2 * size);

	/* the server has the binary without DWARF: only the debug file */
	static const fake_resp s2[] = {
		{200, "X-Smolder-Debuginfo: binary\r\nX-Smolder-Debuginfo-Dwarf: no\r\n"},
		{201, ""},
	};
	run_upload(s2, 2, true, big, &f, &st, &done, &size);
	assert_int_equal(f.n, 2);
	assert_string_equal(f.method[1], "PUT");
	assert_true(done);
	assert_int_equal(st.uploads, 1);

	/* the server has DWARF already, or a debug file: nothing is sent */
	static const fake_resp s3[] = {
		{200, "X-Smolder-Debuginfo: binary\r\nX-Smolder-Debuginfo-Dwarf: yes\r\n"},
	};
	run_upload(s3, 1, true, big, &f, &st, &done, &size);
	assert_int_equal(f.n, 1);
	assert_true(done);
	assert_int_equal(st.uploads, 0);
	static const fake_resp s4[] = {
		{200, "X-Smolder-Debuginfo: debug\r\nX-Smolder-Debuginfo-Dwarf: yes\r\n"},
	};
	run_upload(s4, 1, true, big, &f, &st, &done, &size);
	assert_int_equal(f.n, 1);
	assert_true(done);

	/* a file bigger than a whole flush's budget goes when it is the
	 * flush's first, or it would never go */
	run_upload(s2, 2, true, 1000, &f, &st, &done, &size);
	assert_true(size > 1000);
	assert_int_equal(f.n, 2);
	assert_true(done);
	assert_int_equal(st.uploads, 1);
	/* the binary uses up the budget: the debug file waits for the next
	 * flush, and the object is not done (that flush asks again) */
	run_upload(s1, 4, true, size + 1, &f, &st, &done, &size);
	assert_int_equal(f.n, 3);
	assert_string_equal(f.method[2], "HEAD");
	assert_false(done);
	assert_int_equal(st.uploads, 1);

	/* no debug file on the host: the binary alone, as before */
	static const fake_resp s5[] = {{404, ""}, {201, ""}};
	run_upload(s5, 2, false, big, &f, &st, &done, &size);
	assert_int_equal(f.n, 2);
	assert_true(done);
	assert_int_equal(st.uploads, 1);
	run_upload(s2, 1, false, big, &f, &st, &done, &size);
	assert_int_equal(f.n, 1);
	assert_true(done);

	/* the server refuses the debug file: counted, and the object is done */
	static const fake_resp s6[] = {
		{200, "X-Smolder-Debuginfo: binary\r\nX-Smolder-Debuginfo-Dwarf: no\r\n"},
		{400, ""},
	};
	run_upload(s6, 2, true, big, &f, &st, &done, &size);
	assert_int_equal(f.n, 2);
	assert_true(done);
	assert_int_equal(st.upload_refused, 1);

	/* the server had what it can use: counted as on the server */
	run_upload(s3, 1, true, big, &f, &st, &done, &size);
	assert_int_equal(st.upload_on_server, 1);
	assert_int_equal(st.uploads, 0);

	/* the server fetched it from debuginfod on that HEAD: nothing goes up,
	 * though the host has a debug file */
	static const fake_resp s7[] = {
		{200, "X-Smolder-Debuginfo: debug\r\nX-Smolder-Debuginfo-Dwarf: yes\r\n"
		      "X-Smolder-Debuginfo-Source: debuginfod\r\n"},
	};
	run_upload(s7, 1, true, big, &f, &st, &done, &size);
	assert_int_equal(f.n, 1);
	assert_true(done);
	assert_int_equal(st.upload_debuginfod, 1);
	assert_int_equal(st.uploads, 0);
	/* the server is asking debuginfod: wait, send nothing, ask again later */
	static const fake_resp s8[] = {{404, "X-Smolder-Debuginfod: pending\r\n"}};
	run_upload(s8, 1, true, big, &f, &st, &done, &size);
	assert_int_equal(f.n, 1);
	assert_false(done);
	assert_int_equal(st.uploads, 0);
}

/* --upload-max-mb-per-day: what does not fit the last 24 h waits; a file
 * over the whole bound never goes; a used-up bound costs not even a HEAD. */
static void test_upload_daily(void **state)
{
	(void)state;
	fake f;
	ag_push_stats st;
	bool done;
	uint64_t size;
	const uint64_t big = 1ull << 30;
	static const fake_resp s1[] = {
		{404, ""}, {201, ""},
		{200, "X-Smolder-Debuginfo: binary\r\nX-Smolder-Debuginfo-Dwarf: no\r\n"},
		{201, ""}, {500, ""},
	};
	/* measure the file: no bound */
	g_day_bytes = 0;
	run_upload(s1, 4, true, big, &f, &st, &done, &size);
	assert_int_equal(st.uploads, 2);

	/* room for the binary, not for its debug file: that waits, counted
	 * once; the next flush asks nothing (the bound is used up) */
	g_day_bytes = size;
	g_flushes = 2;
	run_upload(s1, 5, true, big, &f, &st, &done, &size);
	assert_int_equal(f.n, 3);
	assert_string_equal(f.method[1], "PUT");
	assert_string_equal(f.method[2], "HEAD");
	assert_false(done);
	assert_int_equal(st.uploads, 1);
	assert_int_equal(st.upload_bytes, size);
	assert_int_equal(st.upload_deferred_daily, 1);

	/* a file over the whole daily bound: never, said and counted */
	g_day_bytes = size - 1;
	g_flushes = 1;
	run_upload(s1, 4, true, big, &f, &st, &done, &size);
	assert_int_equal(f.n, 1);
	assert_int_equal(st.upload_too_big, 1);
	assert_int_equal(st.uploads, 0);
	g_day_bytes = 0;
}

/* ---- unwind.c: this very process' tables, into a real BPF map ---- */

__attribute__((noinline)) static int unw_marker(int x)
{
	return x * 3 + 1;
}

/* The unwinder's maps as the BPF program declares them, the rows array
 * `cap` rows: the per-process entries, the rows, the tables by file and
 * the mappings the walker found. Skips the test where maps cannot be
 * created (not root). */
typedef struct unwmaps {
	int procs, rows, files, found;
} unwmaps;

static void unwmaps_new(unwmaps *m, uint32_t cap, const char *test)
{
	m->procs = bpf_map_create(BPF_MAP_TYPE_HASH, "unw_test", sizeof(uint32_t),
	                          sizeof(struct sm_unw_proc), 16,
	                          &(struct bpf_map_create_opts){.sz = sizeof(struct bpf_map_create_opts),
	                                                         .map_flags = BPF_F_NO_PREALLOC});
	if (m->procs < 0) {
		fprintf(stderr, "SKIP %s: cannot create a BPF map (%s): needs root\n", test,
		        strerror(errno));
		skip();
	}
	m->rows = bpf_map_create(BPF_MAP_TYPE_ARRAY, "unw_rows_t", sizeof(uint32_t),
	                         sizeof(struct sm_unw_row), cap,
	                         &(struct bpf_map_create_opts){
	                             .sz = sizeof(struct bpf_map_create_opts),
	                             .map_flags = BPF_F_MMAPABLE});
	m->files = bpf_map_create(BPF_MAP_TYPE_HASH, "unw_files_t", sizeof(struct sm_unw_file_key),
	                          sizeof(struct sm_unw_file), 256, NULL);
	m->found = bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "unw_found_t", sizeof(uint32_t),
	                          sizeof(struct sm_unw_found), 16, NULL);
	assert_true(m->rows >= 0 && m->files >= 0 && m->found >= 0);
}

static void unwmaps_close(const unwmaps *m)
{
	close(m->procs);
	close(m->rows);
	close(m->files);
	close(m->found);
}

static void test_unwind_entries(void **state)
{
	(void)state;
	enum { CAP = 1 << 20 };
	unwmaps um;
	unwmaps_new(&um, CAP, "test_unwind_entries");
	int fd = um.procs, rows_fd = um.rows, files_fd = um.files;
	ag_objs *objs;
	ag_procs *procs;
	ag_unw *u;
	assert_int_equal(ag_objs_new(&objs), 0);
	ag_unw_opts uo = {.rows_fd = rows_fd, .rows_cap = CAP, .procs_fd = fd,
	                  .files_fd = files_fd, .found_fd = um.found, .proc_root = "/proc"};
	assert_int_equal(ag_unw_new(&uo, &u), 0);
	/* the hook as main.c wires it */
	ag_procs_opts po = {.proc_root = "/proc", .objs = objs,
	                    .on_maps = (void (*)(void *, const ag_proc *))(void *)ag_unw_proc,
	                    .hook_arg = u};
	assert_int_equal(ag_procs_new(&po, &procs), 0);
	pid_t me = getpid();
	ag_proc *pr = ag_procs_get(procs, me, "test_agent");
	assert_non_null(pr);
	/* the builder thread finishes; the entry is completed as tables come */
	for (int i = 0; ag_unw_tick(u) > 0; i++) {
		assert_true(i < 3000);
		usleep(10000);
	}
	struct sm_unw_proc e;
	uint32_t key = (uint32_t)me;
	assert_int_equal(bpf_map_lookup_elem(fd, &key, &e), 0);
	/* what the kernel holds, read back (the agent itself keeps no mapping
	 * of it) */
	const struct sm_unw_row *rows = mmap(NULL, CAP * sizeof(*rows), PROT_READ, MAP_SHARED,
	                                     rows_fd, 0);
	assert_true(rows != MAP_FAILED);
	assert_true(e.n > 0 && e.n <= SM_UNW_MAX_MAPS);
	/* sorted, and the one holding this function has rows that cover it
	 * with a CFA rule (not a gap) */
	uint64_t pc = (uint64_t)(uintptr_t)unw_marker;
	const struct sm_unw_map *hit = NULL;
	for (uint32_t i = 0; i < e.n; i++) {
		if (i)
			assert_true(e.maps[i].start >= e.maps[i - 1].end);
		if (pc >= e.maps[i].start && pc < e.maps[i].end)
			hit = &e.maps[i];
	}
	assert_non_null(hit);
	assert_true(hit->rows_len > 0);
	assert_true(hit->rows_start + hit->rows_len <= CAP);
	uint64_t va = pc - hit->bias;
	const struct sm_unw_row *r = NULL;
	for (uint32_t i = hit->rows_start; i < hit->rows_start + hit->rows_len; i++)
		if (rows[i].pc <= va)
			r = &rows[i];
	assert_non_null(r);
	assert_true(r->cfa_kind == SM_CFA_SP || r->cfa_kind == SM_CFA_FP);
	/* the bucket index after the rows names the row covering va's bucket
	 * start, at or before r, within the same bucket range */
	uint32_t b = (uint32_t)(va >> SM_UNW_BUCKET_SHIFT) - hit->idx_base;
	assert_true(b < hit->idx_len);
	assert_int_equal(hit->idx_start, hit->rows_start + hit->rows_len);
	const uint32_t *idx = (const uint32_t *)&rows[hit->idx_start];
	assert_true(idx[b] < hit->rows_len);
	const struct sm_unw_row *first = &rows[hit->rows_start + idx[b]];
	assert_true(first <= r);
	assert_true(first->pc <= ((uint64_t)(hit->idx_base + b) << SM_UNW_BUCKET_SHIFT) ||
	            idx[b] == 0);
	assert_int_equal(r->ra_kind, SM_REG_CFA_OFF);
	assert_int_equal(unw_marker(1), 4);
	/* the table of this test's own file, by the inode the kernel maps it
	 * from (/proc/PID/maps' device and inode, the file's size) */
	const ag_mapping *mm = ag_proc_find(pr, pc);
	assert_non_null(mm);
	assert_non_null(mm->obj);
	struct sm_unw_file_key fk = {.dev = mm->dev, .ino = mm->ino, .size = mm->obj->size};
	struct stat fst;
	assert_int_equal(stat("/proc/self/exe", &fst), 0);
	assert_int_equal(fk.ino, fst.st_ino);
	assert_int_equal(fk.dev, major(fst.st_dev) << 20 | minor(fst.st_dev));
	struct sm_unw_file uf;
	assert_int_equal(bpf_map_lookup_elem(files_fd, &fk, &uf), 0);
	assert_int_equal(uf.rows_start, hit->rows_start);
	assert_int_equal(uf.rows_len, hit->rows_len);
	assert_true(uf.nloads >= 1);
	ag_unw_stats st;
	ag_unw_get_stats(u, &st);
	assert_true(st.built >= 2);          /* this test and libc at least */
	assert_int_equal(st.procs, 1);
	/* a second process with the same objects takes no new rows */
	uint64_t used = st.rows_used;
	ag_proc copy = *pr;
	copy.pid = me + 1000000;          /* no such pid: only the entry matters */
	assert_int_equal(ag_unw_proc(u, &copy), 0);
	while (ag_unw_tick(u) > 0)
		usleep(10000);
	ag_unw_get_stats(u, &st);
	assert_int_equal(st.rows_used, used);
	assert_int_equal(st.procs, 2);
	/* forgetting removes the entries */
	ag_unw_proc_gone(u, copy.pid);
	ag_unw_proc_gone(u, me);
	assert_int_not_equal(bpf_map_lookup_elem(fd, &key, &e), 0);
	ag_unw_get_stats(u, &st);
	assert_int_equal(st.procs, 0);
	ag_procs_free(procs);
	ag_unw_free(u);
	ag_objs_free(objs);
	munmap((void *)rows, CAP * sizeof(*rows));
	unwmaps_close(&um);
}


/* ---- perfmap.c: /tmp/perf-PID.map in a process' root ---- */

/* A fake /proc with one process (pid 77, 5 in its own namespace) whose
 * root is a directory of the test's, and an anonymous executable
 * mapping at 0x7f0000000000 (JIT code). */
typedef struct fakejit {
	char proc[600];
	char map[800];          /* ROOT/tmp/perf-5.map */
	ag_pmaps *ps;
	ag_pmap *pm;
	uint64_t drain;
} fakejit;

#define JPID 77

static void mk_fakejit(fakejit *f, size_t max_bytes)
{
	char p[800], cmd[2000];
	snprintf(f->proc, sizeof(f->proc), "%s/jproc", tmpdir);
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/%d' '%s/jroot/tmp'", f->proc, JPID, tmpdir);
	assert_int_equal(system(cmd), 0);
	snprintf(p, sizeof(p), "%s/%d/status", f->proc, JPID);
	put_file(p, "Name:\tjit\nUid:\t0\t0\t0\t0\nNSpid:\t77\t5\n");
	snprintf(p, sizeof(p), "%s/%d/comm", f->proc, JPID);
	put_file(p, "jit\n");
	snprintf(p, sizeof(p), "%s/%d/maps", f->proc, JPID);
	put_file(p, "7f0000000000-7f0000100000 r-xp 00000000 00:00 0 \n");
	char root[700];
	snprintf(root, sizeof(root), "%s/jroot", tmpdir);
	snprintf(p, sizeof(p), "%s/%d/root", f->proc, JPID);
	assert_int_equal(symlink(root, p), 0);
	snprintf(f->map, sizeof(f->map), "%s/tmp/perf-5.map", root);
	ag_pmaps_opts o = {.proc_root = f->proc, .max_bytes = max_bytes};
	assert_int_equal(ag_pmaps_new(&o, &f->ps), 0);
	f->pm = NULL;
	f->drain = 1;
}

static void rm_fakejit(fakejit *f)
{
	ag_pmap_free(f->ps, f->pm);
	ag_pmaps_stats st;
	ag_pmaps_get_stats(f->ps, &st);
	assert_int_equal(st.files, 0);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.bytes, 0);
	ag_pmaps_free(f->ps);
}

static void jit_append(fakejit *f, const char *text, size_t n)
{
	FILE *fp = fopen(f->map, "a");
	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, n, fp), n);
	fclose(fp);
}
#define JIT_APPEND(f, s) jit_append((f), (s), strlen(s))

/* the name at addr, the map read again first (a new drain) */
static const char *jit_name(fakejit *f, uint64_t addr)
{
	return ag_pmap_lookup(f->ps, &f->pm, JPID, addr, ++f->drain);
}

static ag_pmaps_stats jit_stats(fakejit *f)
{
	ag_pmaps_stats st;
	ag_pmaps_get_stats(f->ps, &st);
	return st;
}

/* Tables that finish together and do not all fit: one installed in a
 * tick is not evicted by the next one of that tick while the processes
 * waiting for it have not taken it yet (their entries would name freed
 * memory). A rows array too small for this test's own objects, every
 * build finished before the one tick that installs them. */
static void test_unwind_tick_eviction(void **state)
{
	(void)state;
	enum { CAP = 1 << 15 };
	unwmaps um;
	unwmaps_new(&um, CAP, "test_unwind_tick_eviction");
	ag_objs *objs;
	ag_procs *procs;
	ag_unw *u;
	assert_int_equal(ag_objs_new(&objs), 0);
	ag_unw_opts uo = {.rows_fd = um.rows, .rows_cap = CAP, .procs_fd = um.procs,
	                  .files_fd = um.files, .found_fd = um.found, .proc_root = "/proc"};
	assert_int_equal(ag_unw_new(&uo, &u), 0);
	ag_procs_opts po = {.proc_root = "/proc", .objs = objs,
	                    .on_maps = (void (*)(void *, const ag_proc *))(void *)ag_unw_proc,
	                    .hook_arg = u};
	assert_int_equal(ag_procs_new(&po, &procs), 0);
	pid_t me = getpid();
	assert_non_null(ag_procs_get(procs, me, "test_agent"));
	/* every build done (the builder thread, smallest file first), then
	 * one tick installs them all */
	for (int i = 0; !ag_unw_builds_finished(u); i++) {
		assert_true(i < 3000);
		usleep(10000);
	}
	ag_unw_stats st;
	while (ag_unw_tick(u) > 0)
		usleep(10000);
	ag_unw_get_stats(u, &st);
	assert_true(st.no_space > 0);         /* they did not all fit */
	assert_int_equal(st.evicted, 0);      /* nothing this process waited for */
	struct sm_unw_proc e;
	uint32_t key = (uint32_t)me;
	assert_int_equal(bpf_map_lookup_elem(um.procs, &key, &e), 0);
	uint32_t with_rows = 0;
	for (uint32_t i = 0; i < e.n; i++) {
		if (!e.maps[i].rows_len)
			continue;
		with_rows++;
		assert_true(e.maps[i].rows_start + e.maps[i].rows_len <= CAP);
	}
	assert_true(with_rows > 0);
	ag_unw_get_stats(u, &st);
	assert_true(st.rows_used <= CAP);
	ag_procs_free(procs);
	ag_unw_free(u);
	ag_objs_free(objs);
	unwmaps_close(&um);
}

static void test_perfmap_parse(void **state)
{
	(void)state;
	static const struct {
		const char *line;
		int rc;
		uint64_t start, size;
		const char *name;
	} cases[] = {
		{"7fd364005b80 128 JS:^hotAlpha /tmp/hot.js:3:18", 1, 0x7fd364005b80, 0x128,
		 "JS:^hotAlpha /tmp/hot.js:3:18"},
		/* HotSpot's jcmd Compiler.perfmap: 0x and 16 digits */
		{"0x00007fce08ecdc00 0x00000000000003b8 long JitBurn.hotAlpha(int)", 1,
		 0x7fce08ecdc00, 0x3b8, "long JitBurn.hotAlpha(int)"},
		{"1000\t10\tname\r", 1, 0x1000, 0x10, "name"},
		{"ABCDEF 1a  two  blanks ", 1, 0xabcdef, 0x1a, "two  blanks "},
		{"", 0, 0, 0, NULL},
		{"1000 0 empty code", 0, 0, 0, NULL},
		{"1000 10", -1, 0, 0, NULL},             /* no name */
		{"1000 10 ", -1, 0, 0, NULL},
		{"1000", -1, 0, 0, NULL},
		{"zz 10 name", -1, 0, 0, NULL},
		{"1000 zz name", -1, 0, 0, NULL},
		{"1000zz 10 name", -1, 0, 0, NULL},      /* no blank after START */
		{"0x 10 name", -1, 0, 0, NULL},
		{"10000000000000000 10 name", -1, 0, 0, NULL},  /* 17 digits */
		{"ffffffffffffffff 2 wraps", -1, 0, 0, NULL},
		{"fffffffffffffff0 10 past the top", -1, 0, 0, NULL},
		{"fffffffffffffff0 f up to the top", 1, 0xfffffffffffffff0, 0xf, "up to the top"},
		{" 1000 10 leading blank", -1, 0, 0, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t start = 0, size = 0;
		const char *name = NULL;
		size_t nlen = 0;
		int rc = ag_pmap_parse_line(cases[i].line, strlen(cases[i].line), &start, &size,
		                            &name, &nlen);
		if (rc != cases[i].rc)
			fail_msg("%s: %d, want %d", cases[i].line, rc, cases[i].rc);
		if (rc == 1) {
			assert_true(start == cases[i].start);
			assert_true(size == cases[i].size);
			assert_int_equal(nlen, strlen(cases[i].name));
			assert_memory_equal(name, cases[i].name, nlen);
		}
	}
	/* a NUL byte cannot be in a name */
	uint64_t a, b;
	const char *n;
	size_t nl;
	assert_int_equal(ag_pmap_parse_line("1000 10 a\0b", 11, &a, &b, &n, &nl), -1);
}

/* The file appears late, grows, ends in an unfinished line, repeats
 * addresses (a later entry wins), and holds garbage and huge lines. */
static void test_perfmap_file(void **state)
{
	(void)state;
	fakejit f;
	mk_fakejit(&f, 0);
	/* no map yet: nothing, and no complaint */
	assert_null(jit_name(&f, 0x7f0000000010));
	assert_int_equal(jit_stats(&f).refused, 0);
	JIT_APPEND(&f, "7f0000000000 100 JS:*first /a.js:1:1\n7f0000000100 80 JS:*second");
	assert_string_equal(jit_name(&f, 0x7f00000000ff), "JS:*first /a.js:1:1");
	/* the unfinished line is not used until its newline comes */
	assert_null(jit_name(&f, 0x7f0000000100));
	JIT_APPEND(&f, " /a.js:2:1\n");
	assert_string_equal(jit_name(&f, 0x7f0000000100), "JS:*second /a.js:2:1");
	assert_null(jit_name(&f, 0x7f0000000180));  /* past its end */
	/* within one drain the map is read once */
	JIT_APPEND(&f, "7f0000000200 10 later\n");
	assert_null(ag_pmap_lookup(f.ps, &f.pm, JPID, 0x7f0000000200, f.drain));
	assert_string_equal(jit_name(&f, 0x7f0000000200), "later");

	/* the same address again (code replaced): the later entry wins; one
	 * inside an older entry splits it; one over two older ones cuts both */
	JIT_APPEND(&f, "7f0000000000 100 JS:*first-again\n"
	           "7f0000000040 10 inner\n"
	           "7f00000000f0 20 across\n");
	assert_string_equal(jit_name(&f, 0x7f0000000000), "JS:*first-again");
	assert_string_equal(ag_pmap_lookup(f.ps, &f.pm, JPID, 0x7f0000000045, f.drain), "inner");
	assert_string_equal(ag_pmap_lookup(f.ps, &f.pm, JPID, 0x7f0000000050, f.drain),
	                    "JS:*first-again");
	assert_string_equal(ag_pmap_lookup(f.ps, &f.pm, JPID, 0x7f00000000f5, f.drain), "across");
	assert_string_equal(ag_pmap_lookup(f.ps, &f.pm, JPID, 0x7f000000010f, f.drain), "across");
	assert_string_equal(ag_pmap_lookup(f.ps, &f.pm, JPID, 0x7f0000000110, f.drain),
	                    "JS:*second /a.js:2:1");
	/* and within one read */
	JIT_APPEND(&f, "7f0000000300 10 old\n7f0000000300 10 new\n");
	assert_string_equal(jit_name(&f, 0x7f0000000308), "new");
	assert_int_equal(jit_stats(&f).bad_lines, 0);

	/* garbage among good lines: counted, the good ones kept */
	JIT_APPEND(&f, "not a perf map line\n7f0000000400 10 good\n\n\x01\x02\x03\n"
	           "7f0000000500 zz bad size\n7f0000000410 10 also good\n");
	assert_string_equal(jit_name(&f, 0x7f0000000400), "good");
	assert_string_equal(ag_pmap_lookup(f.ps, &f.pm, JPID, 0x7f0000000410, f.drain), "also good");
	assert_int_equal(jit_stats(&f).bad_lines, 3);

	/* a huge line, written in two parts: skipped once, the next one read */
	char *huge = malloc(3 * AG_PMAP_MAX_LINE);
	assert_non_null(huge);
	memset(huge, 'x', 3 * AG_PMAP_MAX_LINE);
	memcpy(huge, "7f0000000600 10 ", 16);
	jit_append(&f, huge, 2 * AG_PMAP_MAX_LINE);
	assert_null(jit_name(&f, 0x7f0000000600));
	assert_int_equal(jit_stats(&f).huge_lines, 1);
	jit_append(&f, huge, AG_PMAP_MAX_LINE);
	JIT_APPEND(&f, "\n7f0000000700 10 after huge\n");
	assert_string_equal(jit_name(&f, 0x7f0000000700), "after huge");
	assert_null(ag_pmap_lookup(f.ps, &f.pm, JPID, 0x7f0000000600, f.drain));
	assert_int_equal(jit_stats(&f).huge_lines, 1);
	/* a long but allowed line: its name cut to what the store takes,
	 * bytes that are not UTF-8 mended (the stack ID is hashed from it) */
	huge[AG_PMAP_MAX_LINE - 1] = '\n';
	memcpy(huge, "7f0000000800 10 \xff", 17);
	jit_append(&f, huge, AG_PMAP_MAX_LINE);
	const char *cut = jit_name(&f, 0x7f0000000800);
	assert_non_null(cut);
	assert_int_equal(strlen(cut), AG_PMAP_MAX_NAME);
	assert_int_equal(cut[0], '?');
	free(huge);
	ag_pmaps_stats st = jit_stats(&f);
	assert_int_equal(st.files, 1);
	assert_true(st.entries >= 10);
	assert_true(st.bytes > 0);
	assert_int_equal(st.rewrites, 0);

	/* rewritten from the start (jcmd Compiler.perfmap): read again whole,
	 * the old entries gone */
	FILE *fp = fopen(f.map, "w");
	assert_non_null(fp);
	fputs("7f0000000900 10 rewritten\n", fp);
	fclose(fp);
	assert_string_equal(jit_name(&f, 0x7f0000000900), "rewritten");
	assert_null(ag_pmap_lookup(f.ps, &f.pm, JPID, 0x7f0000000000, f.drain));
	assert_int_equal(jit_stats(&f).rewrites, 1);
	assert_int_equal(jit_stats(&f).entries, 1);
	/* whole lines nobody asked for yet are not an unfinished one */
	JIT_APPEND(&f, "7f0000000a00 10 never read\n");
	ag_pmap_free(f.ps, f.pm);
	f.pm = NULL;
	assert_int_equal(jit_stats(&f).truncated, 0);
	/* the process ends with an unfinished line: counted when it is dropped */
	JIT_APPEND(&f, "7f0000000b00 10 never fini");
	assert_string_equal(jit_name(&f, 0x7f0000000a00), "never read");
	assert_null(jit_name(&f, 0x7f0000000b00));
	ag_pmap_free(f.ps, f.pm);
	f.pm = NULL;
	assert_int_equal(jit_stats(&f).truncated, 1);
	rm_fakejit(&f);
}

/* Random entries, appended over several drains, against the rule: an
 * address belongs to the latest entry covering it. */
static void test_perfmap_model(void **state)
{
	(void)state;
	fakejit f;
	mk_fakejit(&f, 0);
	enum { N = 600, SPACE = 4096 };
	static uint32_t start[N], len[N];
	unsigned seed = 12345;
	char line[128];
	for (int round = 0, n = 0; n < N; round++) {
		int k = 1 + (int)(rand_r(&seed) % 80);
		for (int i = 0; i < k && n < N; i++, n++) {
			start[n] = rand_r(&seed) % SPACE;
			len[n] = 1 + rand_r(&seed) % (rand_r(&seed) % 4 ? 16 : 400);
			snprintf(line, sizeof(line), "%" PRIx64 " %x e%d\n",
			         (uint64_t)0x7f0000000000 + start[n], len[n], n);
			JIT_APPEND(&f, line);
		}
		f.drain++;
		for (uint32_t a = 0; a < SPACE + 512; a++) {
			int want = -1;
			for (int j = 0; j < n; j++)
				if (a >= start[j] && a < start[j] + len[j])
					want = j;
			const char *got = ag_pmap_lookup(f.ps, &f.pm, JPID, 0x7f0000000000 + a, f.drain);
			if (want < 0) {
				if (got)
					fail_msg("round %d: 0x%x named %s, no entry covers it", round, a, got);
				continue;
			}
			snprintf(line, sizeof(line), "e%d", want);
			if (!got || strcmp(got, line))
				fail_msg("round %d: 0x%x named %s, want %s", round, a, got ? got : "nothing",
				         line);
		}
	}
	rm_fakejit(&f);
}

/* The bound per process, and files that are not read. */
static void test_perfmap_refused(void **state)
{
	(void)state;
	fakejit f;
	/* room for a few entries: the rest is counted and stays unnamed */
	mk_fakejit(&f, 4096);
	char line[128];
	for (int i = 0; i < 400; i++) {
		snprintf(line, sizeof(line), "%" PRIx64 " 10 JS:*function_number_%d\n",
		         (uint64_t)0x7f0000000000 + 16 * (uint64_t)i, i);
		JIT_APPEND(&f, line);
	}
	assert_string_equal(jit_name(&f, 0x7f0000000000), "JS:*function_number_0");
	assert_null(ag_pmap_lookup(f.ps, &f.pm, JPID, 0x7f0000000000 + 16 * 399, f.drain));
	ag_pmaps_stats st = jit_stats(&f);
	assert_int_equal(st.over_limit, 1);
	assert_true(st.entries > 10 && st.entries < 400);
	/* code written over the same addresses again and again fits: the
	 * names nothing refers to go */
	ag_pmap_free(f.ps, f.pm);
	f.pm = NULL;
	assert_int_equal(unlink(f.map), 0);
	for (int i = 0; i < 2000; i++) {
		snprintf(line, sizeof(line), "%" PRIx64 " 10 JS:*version_%d\n",
		         (uint64_t)0x7f0000000000 + 16 * (uint64_t)(i % 8), i);
		JIT_APPEND(&f, line);
	}
	assert_string_equal(jit_name(&f, 0x7f0000000000 + 16 * 7), "JS:*version_1999");
	assert_int_equal(jit_stats(&f).over_limit, 1);

	/* a symlink, another user's file, a directory: refused, said once */
	assert_int_equal(unlink(f.map), 0);
	ag_pmap_free(f.ps, f.pm);
	f.pm = NULL;
	assert_int_equal(symlink("/etc/passwd", f.map), 0);
	assert_null(jit_name(&f, 0x7f0000000000));
	assert_null(jit_name(&f, 0x7f0000000000));
	assert_int_equal(jit_stats(&f).refused, 1);
	assert_int_equal(unlink(f.map), 0);
	assert_int_equal(mkdir(f.map, 0700), 0);
	ag_pmap_free(f.ps, f.pm);
	f.pm = NULL;
	assert_null(jit_name(&f, 0x7f0000000000));
	assert_int_equal(jit_stats(&f).refused, 2);
	assert_int_equal(rmdir(f.map), 0);
	/* /tmp itself a symlink to the host's: resolved inside the root */
	char p[800], cmd[2600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s/jroot/tmp' && mkdir -p '%s/host' && ln -s '%s/host' "
	         "'%s/jroot/tmp'", tmpdir, tmpdir, tmpdir, tmpdir);
	assert_int_equal(system(cmd), 0);
	snprintf(p, sizeof(p), "%s/host/perf-5.map", tmpdir);
	put_file(p, "7f0000000000 10 from outside the root\n");
	ag_pmap_free(f.ps, f.pm);
	f.pm = NULL;
	assert_null(jit_name(&f, 0x7f0000000000));
	assert_int_equal(jit_stats(&f).refused, 3);  /* inside the root, /tmp loops */
	snprintf(cmd, sizeof(cmd), "rm '%s/jroot/tmp' && mkdir '%s/jroot/tmp'", tmpdir, tmpdir);
	assert_int_equal(system(cmd), 0);
	if (geteuid() == 0) {
		put_file(f.map, "7f0000000000 10 someone else's\n");
		assert_int_equal(chown(f.map, 4321, 4321), 0);
		ag_pmap_free(f.ps, f.pm);
		f.pm = NULL;
		assert_null(jit_name(&f, 0x7f0000000000));
		assert_int_equal(jit_stats(&f).refused, 4);
		assert_int_equal(unlink(f.map), 0);
	}
	/* left by an earlier process with the same PID: older than this one */
	put_file(f.map, "7f0000000000 10 stale\n");
	snprintf(p, sizeof(p), "%s/stat", f.proc);
	snprintf(cmd, sizeof(cmd), "cpu 1 2 3\nbtime %lld\nprocesses 9\n", (long long)time(NULL));
	put_file(p, cmd);
	snprintf(p, sizeof(p), "%s/%d/stat", f.proc, JPID);
	snprintf(cmd, sizeof(cmd), "%d (a (b) c) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %ld 0 0\n",
	         JPID, 3600 * sysconf(_SC_CLK_TCK));
	put_file(p, cmd);
	ag_pmap_free(f.ps, f.pm);
	f.pm = NULL;
	assert_null(jit_name(&f, 0x7f0000000000));
	/* and a process that started before the file was written reads it */
	snprintf(cmd, sizeof(cmd), "%d (a (b) c) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 0 0 0\n",
	         JPID);
	put_file(p, cmd);
	assert_string_equal(jit_name(&f, 0x7f0000000000), "stale");
	rm_fakejit(&f);
}

/* JIT frames in a batch: named from the map, else "[jit] 0xADDR". */
static void test_batch_jit(void **state)
{
	(void)state;
	fakejit f;
	mk_fakejit(&f, 0);
	ag_objs *objs;
	ag_procs *procs;
	assert_int_equal(ag_objs_new(&objs), 0);
	ag_procs_opts po = {.proc_root = f.proc, .objs = objs, .pmaps = f.ps};
	assert_int_equal(ag_procs_new(&po, &procs), 0);
	JIT_APPEND(&f, "7f0000000000 100 JS:*leaf\n7f0000000100 100 JS:*caller\n");
	/* reading its mappings opens the map of a process with JIT code, so a
	 * process gone by the drain (its root with it) is still named */
	assert_non_null(ag_procs_get(procs, JPID, NULL));
	assert_int_equal(jit_stats(&f).files, 1);
	char root[700];
	snprintf(root, sizeof(root), "%s/%d/root", f.proc, JPID);
	assert_int_equal(unlink(root), 0);
	const uint64_t user[] = {0x7f0000000010, 0x7f0000000150, 0x7f0000000401};
	const ag_count counts[] = {{JPID, user, 3, NULL, 0, 4}};
	ag_batch_ctx ctx = {.agent_id = "m1", .hostname = "h1", .profile_type = "t",
	                    .procs = procs, .pmaps = f.ps, .drain = 1};
	ag_batch *b;
	assert_int_equal(ag_batch_build(&ctx, counts, 1, 1, 1000, 2000, &b), 0);
	const wire_stack *s = &ag_batch_wire(b)->stacks[0];
	assert_int_equal(s->nframes, 3);
	assert_int_equal(s->frames[0].kind, WIRE_FRAME_NAMED);
	assert_string_equal(s->frames[0].name, "JS:*leaf");
	assert_string_equal(s->frames[1].name, "JS:*caller");
	/* a caller's frame is its return address minus one, as for native code */
	assert_string_equal(s->frames[2].name, "[jit] 0x7f0000000400");
	assert_int_equal(ctx.jit_frames, 12);
	assert_int_equal(ctx.jit_frames_named, 8);
	ag_batch_free(b);
	/* the process gone: its map goes with it */
	ag_procs_event(procs, 3, JPID, NULL);
	ag_procs_sweep(procs, 10);
	ag_procs_sweep(procs, 12);
	assert_int_equal(ag_procs_count(procs), 0);
	assert_int_equal(jit_stats(&f).files, 0);
	ag_procs_free(procs);
	ag_objs_free(objs);
	rm_fakejit(&f);
}

/* JIT frames carry the language of the runtime the process maps, as
 * Python frames carry theirs: V8's node, HotSpot's libjvm.so; none for a
 * runtime the agent does not know. */
static void test_batch_jit_lang(void **state)
{
	(void)state;
	static const struct {
		const char *file;   /* the runtime's file in the process' root */
		const char *lang;   /* NULL: no tag */
	} cases[] = {
		{"/usr/bin/node", "js"},
		{"/usr/lib/jvm/java-17/lib/server/libjvm.so", "java"},
		{"/usr/lib/libluajit-5.1.so.2", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fakejit f;
		mk_fakejit(&f, 0);
		char p[1600], cmd[4000];
		snprintf(p, sizeof(p), "%s/jroot%s", tmpdir, cases[i].file);
		snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\" && cp /proc/%d/exe '%s'", p,
		         getpid(), p);
		assert_int_equal(system(cmd), 0);
		snprintf(cmd, sizeof(cmd),
		         "00400000-00401000 r-xp 00000000 08:01 1234 %s\n"
		         "7f0000000000-7f0000100000 r-xp 00000000 00:00 0 \n",
		         cases[i].file);
		snprintf(p, sizeof(p), "%s/%d/maps", f.proc, JPID);
		put_file(p, cmd);
		JIT_APPEND(&f, "7f0000000000 100 hot\n");
		ag_objs *objs;
		ag_procs *procs;
		assert_int_equal(ag_objs_new(&objs), 0);
		ag_procs_opts po = {.proc_root = f.proc, .objs = objs, .pmaps = f.ps};
		assert_int_equal(ag_procs_new(&po, &procs), 0);
		ag_proc *pr = ag_procs_get(procs, JPID, NULL);
		assert_non_null(pr);
		assert_int_equal(ag_proc_find(pr, 0x400010)->kind, AG_MAP_FILE);
		const uint64_t user[] = {0x7f0000000010, 0x7f0000000401};
		const ag_count counts[] = {{JPID, user, 2, NULL, 0, 1}};
		ag_batch_ctx ctx = {.agent_id = "m1", .hostname = "h1", .profile_type = "t",
		                    .procs = procs, .pmaps = f.ps, .drain = 1};
		ag_batch *b;
		assert_int_equal(ag_batch_build(&ctx, counts, 1, 1, 1000, 2000, &b), 0);
		const wire_stack *s = &ag_batch_wire(b)->stacks[0];
		assert_int_equal(s->nframes, 2);
		assert_string_equal(s->frames[0].name, "hot");
		assert_string_equal(s->frames[1].name, "[jit] 0x7f0000000400");
		for (int k = 0; k < 2; k++) {
			if (cases[i].lang)
				assert_string_equal(s->frames[k].lang, cases[i].lang);
			else
				assert_null(s->frames[k].lang);
		}
		ag_batch_free(b);
		ag_procs_free(procs);
		ag_objs_free(objs);
		rm_fakejit(&f);
		snprintf(cmd, sizeof(cmd), "rm -rf '%s/jroot' '%s'", tmpdir, f.proc);
		assert_int_equal(system(cmd), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ksyms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_build_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_build_id_rule, setup, teardown),
		cmocka_unit_test_setup_teardown(test_procs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_procs_maps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_utf8, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_offcpu, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upload_daily, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unwind_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unwind_tick_eviction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_perfmap_parse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_perfmap_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_perfmap_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_perfmap_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_jit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_jit_lang, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
