/* test_agent.c - unit tests of the agent's user-space parts, without BPF:
 * kernel symbols from a kallsyms file, a process read from a /proc tree
 * the test builds (labels, cgroup and container ID, executable mappings,
 * build IDs by libelf and the content-hash fallback), and a drained
 * interval turned into a wire batch (offsets, kernel names, stack IDs,
 * unmapped frames counted) that the server's decoder accepts; debug-info
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
#include <unistd.h>

#include <cmocka.h>

#include <bpf/bpf.h>
#include <linux/types.h>

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

static void test_build_ids(void **state)
{
	(void)state;
	uint8_t id[WIRE_MAX_BUILD_ID];
	int fd = open("/proc/self/exe", O_RDONLY);
	assert_true(fd >= 0);
	int n = ag_elf_build_id(fd, id, sizeof(id));
	close(fd);
	assert_int_equal(n, 20);  /* gcc on Debian links with --build-id=sha1 */

	/* not ELF */
	char path[600];
	snprintf(path, sizeof(path), "%s/text", tmpdir);
	put_file(path, "hello, not an ELF file\n");
	fd = open(path, O_RDONLY);
	assert_true(ag_elf_build_id(fd, id, sizeof(id)) < 0);
	close(fd);

	/* an ELF file without a build-id note gets the content hash */
	char cmd[1400];
	snprintf(path, sizeof(path), "%s/nobid", tmpdir);
	snprintf(cmd, sizeof(cmd), "objcopy --remove-section .note.gnu.build-id /proc/%d/exe '%s'",
	         getpid(), path);
	assert_int_equal(system(cmd), 0);
	fd = open(path, O_RDONLY);
	assert_int_equal(ag_elf_build_id(fd, id, sizeof(id)), 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	uint8_t *all = malloc((size_t)st.st_size);
	assert_int_equal(pread(fd, all, (size_t)st.st_size, 0), st.st_size);
	uint8_t want[WIRE_FALLBACK_BUILD_ID_LEN];
	wire_fallback_build_id(all, (size_t)st.st_size, want);
	free(all);
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
		{PID, user1, 3, kern, 2, 5},
		{PID, user1, 3, NULL, 0, 7},
		{PID, user2, 2, NULL, 0, 2},
		{PID, NULL, 0, NULL, 0, 1},  /* no stack at all */
	};
	const wire_label extra[] = {{"service", "api"}, {"comm", "overridden"}};
	ag_batch_ctx ctx = {.agent_id = "m1", .hostname = "h1",
	                    .profile_type = "process_cpu:samples:count:cpu:nanoseconds:delta",
	                    .period_ns = 52631578, .extra_labels = extra, .nextra = 2,
	                    .procs = f.procs, .ksyms = ks, .drain = 1};
	ag_batch *b;
	assert_int_equal(ag_batch_build(&ctx, counts, 4, 7, 1000, 2000, &b), 0);
	const wire_batch *w = ag_batch_wire(b);
	assert_int_equal(w->seq, 7);
	assert_int_equal(w->nprocesses, 1);
	assert_int_equal(w->nobjects, 1);
	assert_int_equal(w->nstacks, 4);
	assert_int_equal(w->nrows, 4);
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
	assert_int_equal(w->rows[0].count, 5);
	assert_true(w->rows[0].stack_id == s0->id);
	assert_int_equal(w->rows[0].ts_ns, 1000);

	/* the same interval twice gives the same IDs (stable), and the server's
	 * decoder takes the encoded batch */
	ag_batch *b2;
	assert_int_equal(ag_batch_build(&ctx, counts, 4, 8, 2000, 3000, &b2), 0);
	for (uint32_t i = 0; i < 4; i++)
		assert_true(ag_batch_wire(b2)->stacks[i].id == w->stacks[i].id);
	const wire_counter c[] = {{"samples", 15}};
	assert_int_equal(ag_batch_set_counters(b, c, 1), 0);
	uint8_t *body;
	size_t len;
	wire_err e;
	assert_int_equal(wire_encode(w, &body, &len, &e), 0);
	wire_decoded *d;
	int rc = wire_decode(body, len, &d, &e);
	if (rc)
		fail_msg("decode: %s", e.msg);
	assert_int_equal(wire_decoded_batch(d)->nstacks, 4);
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
	wire_hex(o->build_id, o->build_id_len, hex);
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

static void test_unwind_entries(void **state)
{
	(void)state;
	int fd = bpf_map_create(BPF_MAP_TYPE_HASH, "unw_test", sizeof(uint32_t),
	                        sizeof(struct sm_unw_proc), 16,
	                        &(struct bpf_map_create_opts){.sz = sizeof(struct bpf_map_create_opts),
	                                                       .map_flags = BPF_F_NO_PREALLOC});
	if (fd < 0) {
		fprintf(stderr, "SKIP test_unwind_entries: cannot create a BPF map (%s): needs root\n",
		        strerror(errno));
		skip();
	}
	enum { CAP = 1 << 20 };
	struct sm_unw_row *rows = calloc(CAP, sizeof(*rows));
	assert_non_null(rows);
	ag_objs *objs;
	ag_procs *procs;
	ag_unw *u;
	assert_int_equal(ag_objs_new(&objs), 0);
	ag_unw_opts uo = {.rows = rows, .rows_cap = CAP, .procs_fd = fd, .proc_root = "/proc"};
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
	free(rows);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ksyms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_build_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_procs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_utf8, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upload_daily, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unwind_entries, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
