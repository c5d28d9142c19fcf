# Smolder's one Makefile. `make` builds optimized binaries into bin/ (objects
# in build/); `make test` builds again under ASan/UBSan into build/asan and
# runs every test; `make deps` installs the Debian packages all of it needs.
.DELETE_ON_ERROR:
.SUFFIXES:

V ?= 0
ifeq ($(V),0)
Q := @
msg = @printf '  %-6s %s\n' $(1) $(2);
else
Q :=
msg =
endif

CC ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif
FUZZ_CC ?= clang
SANITIZE ?=
BUILD ?= build

# Debian packages, by what needs them. `make deps` is a quick no-op when all
# are present.
DEB_BUILD := build-essential pkg-config clang llvm libclang-rt-14-dev \
	liblz4-dev libxxhash-dev libsqlite3-dev libpcre2-dev libisal-dev \
	libprotobuf-c-dev protobuf-c-compiler zlib1g-dev \
	libuv1-dev node-llhttp libcurl4-openssl-dev libelf-dev \
	libbpf-dev bpftool libdw-dev libiberty-dev libgsl-dev libyaml-dev libjansson-dev
DEB_TEST := libcmocka-dev sqlite3 python3 curl golang-go
# --debuginfod-url (libdebuginfod); its test runs Debian's debuginfod server
DEB_BUILD += libdebuginfod-dev
DEB_TEST += debuginfod
# the UI's browser tests (tests/ui): Debian's Chromium driven by
# playwright-core from npm; Node.js >= 20 with npm (NodeSource's nodejs
# package, which this machine kind has, provides both)
DEB_TEST += chromium nodejs
# docker-compose.yml's test (tests/compose): Debian's Docker engine and
# compose, debootstrap for the base image where no registry answers
DEB_TEST += docker.io docker-compose debootstrap
# the unwinder's test compares with perf record --call-graph dwarf and
# readelf --debug-dump=frames (binutils), on xz and gzip
DEB_TEST += linux-perf binutils xz-utils gzip
# bench/agent_ab --syscalls counts the agent's system calls
DEB_TEST += strace
# ClickHouse as the store (tests/integration/clickhouse_test.sh starts two
# of Debian's servers as the shards of a cluster; bench/clickhouse)
DEB_TEST += clickhouse-server
# the Python walk's test runs Debian's own interpreter (/usr/bin/python3.11)
DEB_TEST += python3.11
# JIT runtimes named through their perf maps (tests/integration/jit_test.sh):
# Node.js (above) and the JDK (java, javac, jcmd)
DEB_TEST += openjdk-17-jdk-headless
DEB_ALL := $(DEB_BUILD) $(DEB_TEST)

# Generated sources are the same for every build variant: one place.
GEN := build/gen
CFLAGS_BASE := -std=gnu11 -g -O2 -Wall -Wextra -Werror -Wshadow \
	-Wno-missing-field-initializers -D_GNU_SOURCE -fno-omit-frame-pointer \
	-I. -I$(GEN) -MMD -MP
ifneq ($(SANITIZE),)
CFLAGS_BASE += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
LDFLAGS_SAN := -fsanitize=$(SANITIZE)
endif
CFLAGS ?=
CFLAGS_ALL := $(CFLAGS_BASE) $(CFLAGS)
LDLIBS_STORAGE := -llz4 -lxxhash -lsqlite3 -lpcre2-8 -lisal -lcurl -lpthread -lm

# base/: the ground floor every module may include (errors, the buffer,
# text, the hash map, clocks); it includes nothing of ours. libbase.a goes
# last on every link line.
BASE_SRC := $(wildcard base/*.c)
BASE_OBJ := $(BASE_SRC:%.c=$(BUILD)/%.o)
BASE_LIB := $(BUILD)/libbase.a

STORAGE_SRC := $(wildcard storage/*.c)
STORAGE_OBJ := $(STORAGE_SRC:%.c=$(BUILD)/%.o)
QUERY_SRC := $(wildcard query/*.c)
QUERY_OBJ := $(QUERY_SRC:%.c=$(BUILD)/%.o)

# llhttp's C sources as Debian's node-llhttp ships them, compiled from
# there (not copied into the repo) into the server.
LLHTTP_INC := /usr/share/include/llhttp
LLHTTP_DIR := /usr/share/llhttp
LLHTTP_OBJ := $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o $(BUILD)/llhttp/llhttp.o

# wire/: the native batch format, shared by agent and server; it needs
# only lz4 and xxHash (LDLIBS_WIRE).
WIRE_OBJ := $(BUILD)/wire/wire.o $(BUILD)/wire/auth.o
LDLIBS_WIRE := -llz4 -lxxhash
# wire/buildid.c: the build ID that names an ELF file, for agent, server
# and CLI alike; wire/gopclntab.c: Go's .gopclntab, read by the server's
# symbolizer and the agent's unwind tables; apart from WIRE_OBJ because
# they need libdw and libelf
WIRE_ELF_OBJ := $(BUILD)/wire/buildid.o $(BUILD)/wire/gopclntab.o
LDLIBS_WIRE_ELF := -ldw -lelf

# The server: main.c is the program, the rest is what unit tests link.
SERVER_SRC := $(filter-out server/main.c,$(wildcard server/*.c))
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o) $(WIRE_OBJ) $(WIRE_ELF_OBJ)
LDLIBS_SERVER := -luv -lpthread -ldw -lelf -liberty
# bin/ for the optimized build, build/asan/bin/ for the sanitizer one.
BINDIR := $(if $(filter build,$(BUILD)),bin,$(BUILD)/bin)
SERVER_BIN := $(BINDIR)/smolder-server
# The command-line client: server/cli/smolder.c alone (not in SERVER_SRC's
# wildcard), a client of the HTTP API only (libelf reads the build IDs of
# the files `smolder debuginfo upload` sends, by wire/buildid.c).
CLI_BIN := $(BINDIR)/smolder
# server/debuginfod.c: --debuginfod-url
LDLIBS_SERVER += -ldebuginfod

# The agent: agent/*.c with the BPF program embedded through a bpftool
# skeleton. vmlinux.h comes from this machine's BTF; CO-RE relocates the
# object to whatever kernel runs it, so it is generated, never committed.
AGENT_SRC := $(wildcard agent/*.c)
AGENT_OBJ := $(AGENT_SRC:%.c=$(BUILD)/%.o)
AGENT_BIN := $(BINDIR)/smolder-agent
BPF_VMLINUX := $(GEN)/bpf/vmlinux.h
BPF_OBJ := $(GEN)/bpf/profile.bpf.o
BPF_SKEL := $(GEN)/bpf/profile.skel.h
# relabel rules: the config in YAML (libyaml), regexes (PCRE2); containers'
# label files are JSON (jansson)
LDLIBS_LABELS := -lyaml -lpcre2-8 -ljansson
LDLIBS_AGENT := -lbpf -ldw -lelf -lcurl -lz $(LDLIBS_LABELS) $(LDLIBS_WIRE)
BPF_ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')

INTEG_SRC := $(wildcard tests/integration/*_test.sh)

WIRE_PROTO_SRC := $(GEN)/wire/profile.pb-c.c
WIRE_PROTO_HDR := $(GEN)/wire/profile.pb-c.h
WIRE_PROTO_OBJ := $(BUILD)/gen/wire/profile.pb-c.o
# GSL: the distributions behind a diff's significance (query/signif.c)
LDLIBS_QUERY := -lprotobuf-c -lz -lgsl -lgslcblas

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
FUZZ_BASE_OBJ := $(BASE_SRC:%.c=build/fuzz/%.o)
FUZZ_STORAGE_OBJ := $(FUZZ_BASE_OBJ) $(STORAGE_SRC:%.c=build/fuzz/%.o) $(QUERY_SRC:%.c=build/fuzz/%.o) \
	build/fuzz/gen/wire/profile.pb-c.o build/fuzz/server/pprof_in.o build/fuzz/wire/wire.o \
	build/fuzz/server/pyroscope.o

BENCH_BIN := $(BUILD)/bench/bench_storage

.PHONY: all deps deps-build test-compose test test-unit test-integration test-tsan test-ui ui-deps screenshots test-fuzz fuzz-build \
	bench bench-smoke clean run
all: $(SERVER_BIN) $(AGENT_BIN) $(BASE_LIB) $(BUILD)/libstorage.a $(BUILD)/libquery.a $(BENCH_BIN) $(BUILD)/bench/fsync_bench \
	$(BUILD)/bench/query_bench $(CLI_BIN) $(BUILD)/bench/cpu_load

deps:
	$(Q).ci/deps.sh $(DEB_ALL)

# what building alone needs (the Dockerfile's build stage)
deps-build:
	$(Q).ci/deps.sh $(DEB_BUILD)

# Server and agent on this host, data in ./data (.ci/run-local.sh).
run: deps all
	$(Q).ci/run-local.sh

$(BUILD)/%.o: %.c
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

# Third-party code: its unused callback parameters are not ours to fix.
$(BUILD)/llhttp/%.o: $(LLHTTP_DIR)/%.c
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -Wno-unused-parameter -I$(LLHTTP_INC) -c $< -o $@
$(BUILD)/server/%.o: CFLAGS_ALL += -I$(LLHTTP_INC)

# server/ uses query/ and storage/ (docs/architecture.md): libraries last.
$(SERVER_BIN): $(BUILD)/server/main.o $(SERVER_OBJ) $(LLHTTP_OBJ) $(BUILD)/libquery.a \
		$(BUILD)/libstorage.a $(BASE_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) $^ -o $@ $(LDFLAGS_SAN) $(LDLIBS_SERVER) $(LDLIBS_QUERY) \
		$(LDLIBS_STORAGE)

$(CLI_BIN): $(BUILD)/server/cli/smolder.o $(BUILD)/wire/auth.o $(WIRE_ELF_OBJ) $(BASE_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) $^ -o $@ $(LDFLAGS_SAN) -lcurl $(LDLIBS_WIRE_ELF) -lxxhash

$(BPF_VMLINUX):
	$(call msg,BTF,$@)
	@mkdir -p $(@D)
	$(Q)bpftool btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@
$(BPF_OBJ): bpf/profile.bpf.c bpf/profile.h bpf/offcpu.bpf.h $(BPF_VMLINUX)
	$(call msg,BPF,$@)
	$(Q)clang -g -O2 -target bpf -D__TARGET_ARCH_$(BPF_ARCH) -I$(GEN)/bpf -Ibpf \
		-Wall -Werror -c $< -o $@
$(BPF_SKEL): $(BPF_OBJ)
	$(call msg,SKEL,$@)
	$(Q)bpftool gen skeleton $< name profile_bpf > $@.tmp && mv $@.tmp $@
$(AGENT_OBJ): | $(BPF_SKEL)
$(BUILD)/agent/%.o: CFLAGS_ALL += -I$(GEN)/bpf

# The integration tests' profiling subject: frame pointers in every
# function (-O0: gcc 12 drops the frame of a leaf at -O1 even with
# -fno-omit-frame-pointer), no sanitizer, it is not ours under test.
FP_BUSY_BIN := $(BUILD)/tests/fp_busy
$(FP_BUSY_BIN): tests/programs/fp_busy.c
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)gcc -O0 -g -fno-omit-frame-pointer $< -o $@

# The off-CPU test's subject: blocks in known functions and measures
# itself (tests/programs/offcpu_prog.c); frame pointers, no sanitizer.
OFFCPU_PROG_BIN := $(BUILD)/tests/offcpu_prog
$(OFFCPU_PROG_BIN): tests/programs/offcpu_prog.c
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)gcc -O2 -g -fno-omit-frame-pointer -Wall -Wextra -Werror -pthread $< -o $@

# The unwinder's test subjects (tests/programs/unw_*): unw_nofp and its
# library libunwlib.so without frame pointers (-O2 -fomit-frame-pointer,
# like most of Debian), unw_fp with them; DWARF for the names. The library
# is found beside the program ($ORIGIN), so the tests may copy both.
UNW_DIR := $(BUILD)/tests/unw
UNW_CFLAGS := -O2 -g -Wall -Wextra -Werror
UNW_SUBJECTS := $(UNW_DIR)/libunwlib.so $(UNW_DIR)/unw_nofp $(UNW_DIR)/unw_fp
$(UNW_DIR)/libunwlib.so: tests/programs/unw_lib.c tests/programs/unw_lib.h
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)gcc $(UNW_CFLAGS) -fomit-frame-pointer -fPIC -shared $< -o $@
$(UNW_DIR)/unw_nofp: tests/programs/unw_prog.c tests/programs/unw_lib.h $(UNW_DIR)/libunwlib.so
	$(call msg,CC,$@)
	$(Q)gcc $(UNW_CFLAGS) -fomit-frame-pointer $< -o $@ -L$(UNW_DIR) -lunwlib \
		-Wl,-rpath,'$$ORIGIN'
$(UNW_DIR)/unw_fp: tests/programs/unw_prog.c tests/programs/unw_lib.h $(UNW_DIR)/libunwlib.so
	$(call msg,CC,$@)
	$(Q)gcc $(UNW_CFLAGS) -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer $< -o $@ \
		-L$(UNW_DIR) -lunwlib -Wl,-rpath,'$$ORIGIN'

# The Python walk's bad-input subjects (tests/programs/py_fake*): a
# program spinning in a library named libpython3.11.so.1.0 that is no
# CPython, and one whose libpython3.99.so exports the interpreter's
# symbols for a version the agent does not know. Plain gcc, DWARF, never
# sanitized; each library beside its program ($ORIGIN).
PYFAKE_DIR := $(BUILD)/tests/pyfake
PYFAKE_SUBJECTS := $(PYFAKE_DIR)/not/py_fake_not $(PYFAKE_DIR)/unknown/py_fake_unknown
$(PYFAKE_DIR)/not/libpython3.11.so.1.0: tests/programs/py_fake_lib.c tests/programs/py_fake.h
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)gcc -O1 -g -fPIC -shared -Wl,-soname,libpython3.11.so.1.0 $< -o $@
$(PYFAKE_DIR)/unknown/libpython3.99.so: tests/programs/py_fake_lib.c tests/programs/py_fake.h
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)gcc -O1 -g -fPIC -shared -DCPYTHON_SYMBOLS -Wl,-soname,libpython3.99.so $< -o $@
$(PYFAKE_DIR)/not/py_fake_not: tests/programs/py_fake.c $(PYFAKE_DIR)/not/libpython3.11.so.1.0
	$(call msg,CC,$@)
	$(Q)gcc -O1 -g $< -o $@ $(@D)/libpython3.11.so.1.0 -Wl,-rpath,'$$ORIGIN'
$(PYFAKE_DIR)/unknown/py_fake_unknown: tests/programs/py_fake.c $(PYFAKE_DIR)/unknown/libpython3.99.so
	$(call msg,CC,$@)
	$(Q)gcc -O1 -g $< -o $@ $(@D)/libpython3.99.so -Wl,-rpath,'$$ORIGIN'
# The JVM subject of jit_test.sh (tests/programs/JitBurn.java), compiled
# by the JDK's javac; the Node.js one (jit_hot.js) runs as it is.
JIT_DIR := $(BUILD)/tests/jit
JIT_SUBJECTS := $(JIT_DIR)/JitBurn.class
$(JIT_DIR)/JitBurn.class: tests/programs/JitBurn.java
	$(call msg,JAVAC,$@)
	@mkdir -p $(@D)
	$(Q)javac -d $(JIT_DIR) $<

# The symbolizer's test subjects (tests/programs/sym_*), built into
# $(SYM_DIR) with plain gcc/g++, DWARF and frame pointers, never sanitized
# (they are subjects, not code under test): sym_c at -O2 as a PIE and as a
# non-PIE, both linked against libsymlib.so beside them ($ORIGIN); sym_cpp
# at -O1; and libsymlib.so stripped, its DWARF in libsymlib.debug (same
# build ID, .gnu_debuglink). The tests find them through SMOLDER_SYM_DIR.
SYM_DIR := $(BUILD)/tests/sym
SYM_CFLAGS := -g -fno-omit-frame-pointer -Wall -Wextra -Werror
SYM_SUBJECTS := $(SYM_DIR)/libsymlib.so $(SYM_DIR)/sym_c_pie $(SYM_DIR)/sym_c_nopie \
	$(SYM_DIR)/sym_cpp $(SYM_DIR)/libsymlib_stripped.so $(SYM_DIR)/libsymlib.debug
$(SYM_DIR)/libsymlib.so: tests/programs/sym_lib.c tests/programs/sym_lib.h
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)gcc -O2 $(SYM_CFLAGS) -fPIC -shared $< -o $@
$(SYM_DIR)/sym_c_pie: tests/programs/sym_c.c tests/programs/sym_lib.h $(SYM_DIR)/libsymlib.so
	$(call msg,CC,$@)
	$(Q)gcc -O2 $(SYM_CFLAGS) -fPIE -pie $< -o $@ -L$(SYM_DIR) -lsymlib -Wl,-rpath,'$$ORIGIN'
$(SYM_DIR)/sym_c_nopie: tests/programs/sym_c.c tests/programs/sym_lib.h $(SYM_DIR)/libsymlib.so
	$(call msg,CC,$@)
	$(Q)gcc -O2 $(SYM_CFLAGS) -fno-pie -no-pie $< -o $@ -L$(SYM_DIR) -lsymlib \
		-Wl,-rpath,'$$ORIGIN'
$(SYM_DIR)/sym_cpp: tests/programs/sym_cpp.cpp
	$(call msg,CXX,$@)
	@mkdir -p $(@D)
	$(Q)g++ -O1 $(SYM_CFLAGS) $< -o $@
$(SYM_DIR)/libsymlib.debug: $(SYM_DIR)/libsymlib.so
	$(call msg,DEBUG,$@)
	$(Q)objcopy --only-keep-debug $< $@
$(SYM_DIR)/libsymlib_stripped.so: $(SYM_DIR)/libsymlib.so $(SYM_DIR)/libsymlib.debug
	$(call msg,STRIP,$@)
	$(Q)strip --strip-debug --strip-unneeded $< -o $@.tmp && \
		objcopy --add-gnu-debuglink=$(SYM_DIR)/libsymlib.debug $@.tmp $@ && rm -f $@.tmp

# The Go subject of the .gopclntab reader (tests/programs/go_busy.go),
# built with Debian's golang-go: go_busy_stripped with -ldflags='-s -w'
# (no .symtab, no DWARF: what Go binaries are often shipped as), go_busy
# its unstripped twin for the unit test's oracles (go tool nm, objdump,
# DWARF). Pure Go, internally linked; the build cache under $(BUILD).
GO_BUILD = GOCACHE=$(abspath $(BUILD))/gocache GOFLAGS= CGO_ENABLED=0 go build
SYM_SUBJECTS += $(SYM_DIR)/go_busy $(SYM_DIR)/go_busy_stripped
$(SYM_DIR)/go_busy: tests/programs/go_busy.go
	$(call msg,GO,$@)
	@mkdir -p $(@D)
	$(Q)$(GO_BUILD) -o $@ $<
$(SYM_DIR)/go_busy_stripped: tests/programs/go_busy.go
	$(call msg,GO,$@)
	@mkdir -p $(@D)
	$(Q)$(GO_BUILD) -ldflags='-s -w' -o $@ $<

# agent/ uses bpf/ and wire/ only (docs/architecture.md).
$(AGENT_BIN): $(AGENT_OBJ) $(WIRE_OBJ) $(WIRE_ELF_OBJ) $(BASE_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) $^ -o $@ $(LDFLAGS_SAN) $(LDLIBS_AGENT)

$(BASE_LIB): $(BASE_OBJ)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/libstorage.a: $(STORAGE_OBJ)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/libquery.a: $(QUERY_OBJ) $(WIRE_PROTO_OBJ)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

# pprof's profile.proto, compiled with Debian's protoc-c.
$(WIRE_PROTO_SRC): wire/profile.proto
	$(call msg,PROTOC,$<)
	@mkdir -p $(@D)
	$(Q)protoc-c --proto_path=wire --c_out=$(GEN)/wire wire/profile.proto
$(WIRE_PROTO_HDR): $(WIRE_PROTO_SRC)
$(WIRE_PROTO_OBJ): $(WIRE_PROTO_SRC)
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(filter-out -Werror -Wshadow,$(CFLAGS_ALL)) -c $< -o $@
# query/ renders pprof, the server decodes it: their objects need the
# generated header first (or a parallel build races it)
$(QUERY_OBJ) $(SERVER_OBJ) $(BUILD)/server/main.o: | $(WIRE_PROTO_HDR)

# Every unit test links the query and storage libraries, plus what its own
# module needs: TEST_<name>_OBJ (objects, also prerequisites), TEST_<name>_LIBS.
TEST_server_OBJ = $(SERVER_OBJ) $(LLHTTP_OBJ)
TEST_server_LIBS := -lcurl $(LDLIBS_SERVER)
TEST_wire_OBJ = $(WIRE_OBJ) $(WIRE_ELF_OBJ)
TEST_wire_LIBS := $(LDLIBS_WIRE_ELF)
# api_metrics.c reads the store, the symbolizer and the agents' table
TEST_metrics_OBJ = $(SERVER_OBJ) $(LLHTTP_OBJ)
TEST_metrics_LIBS = $(TEST_server_LIBS)
# the agent's parts without the BPF program: main.c and sampler.c stay out
# (unwind.c's test makes its own BPF map, hence libbpf)
TEST_agent_OBJ = $(filter-out $(BUILD)/agent/main.o $(BUILD)/agent/sampler.o,$(AGENT_OBJ)) \
	$(WIRE_OBJ) $(WIRE_ELF_OBJ)
TEST_agent_LIBS := -lbpf -ldw -lelf -lcurl $(LDLIBS_LABELS)
# processes' own labels and the relabel rules: the same parts
TEST_labels_OBJ = $(TEST_agent_OBJ)
TEST_labels_LIBS = $(TEST_agent_LIBS)
# the CPython part (agent/python.c) with the agent's other parts
TEST_python_OBJ = $(TEST_agent_OBJ)
TEST_python_LIBS = $(TEST_agent_LIBS)
# the sampler with its BPF program, against the real kernel (root)
TEST_sampler_OBJ = $(filter-out $(BUILD)/agent/main.o,$(AGENT_OBJ)) $(WIRE_OBJ) $(WIRE_ELF_OBJ)
TEST_sampler_LIBS := $(LDLIBS_AGENT)
# the unwind table builder alone, against real files and readelf (binutils)
TEST_unwind_OBJ = $(BUILD)/agent/unwind_table.o $(BUILD)/wire/gopclntab.o
TEST_unwind_LIBS := -ldw -lelf
# its subjects, found beside the test binary: fp_busy.c without
# asynchronous unwind tables (its own functions in .debug_frame, crt's in
# .eh_frame), never sanitized; and the C++ symbolizer subject
UNW_DFRAME_BIN := $(BUILD)/tests/unw_dframe
$(UNW_DFRAME_BIN): tests/programs/fp_busy.c
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)gcc -O1 -g -fno-omit-frame-pointer -fno-asynchronous-unwind-tables $< -o $@
$(BUILD)/tests/test_unwind: $(UNW_DFRAME_BIN) $(SYM_DIR)/sym_cpp $(UNW_DIR)/unw_nofp $(SYM_DIR)/go_busy \
	$(SYM_DIR)/go_busy_stripped
# the symbolizer alone, against the subjects in $(SYM_DIR)
# (debuginfod.c for its background pass, and debuginfo.c which that uses)
SYM_OBJ = $(BUILD)/server/symbolize.o $(BUILD)/server/symbolize_go.o $(BUILD)/server/debuginfod.o \
	$(BUILD)/server/debuginfo.o $(WIRE_ELF_OBJ)
LDLIBS_SYM := -ldw -lelf -liberty -ldebuginfod -lxxhash -lpthread
TEST_symbolize_OBJ = $(SYM_OBJ)
TEST_symbolize_LIBS := $(LDLIBS_SYM)
# the .gopclntab reader, against go tool nm/objdump of $(SYM_DIR)/go_busy
TEST_gopclntab_OBJ = $(SYM_OBJ)
TEST_gopclntab_LIBS := $(LDLIBS_SYM)
.SECONDEXPANSION:
$(BUILD)/tests/test_%: tests/unit/test_%.c $(BUILD)/libquery.a $(BUILD)/libstorage.a $(BASE_LIB) \
		$$(TEST_$$*_OBJ)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) $< -o $@ $(TEST_$*_OBJ) $(BUILD)/libquery.a $(BUILD)/libstorage.a $(BASE_LIB) \
		$(LDFLAGS_SAN) -lcmocka $(TEST_$*_LIBS) $(LDLIBS_QUERY) $(LDLIBS_STORAGE)

# Makes native batches for the integration scripts (valid, broken in
# chosen ways) and prints fallback build IDs: no hand-made bytes in tests.
MKBATCH_BIN := $(BUILD)/tests/mkbatch
$(MKBATCH_BIN): tests/tools/mkbatch.c $(WIRE_OBJ) $(BASE_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) $< -o $@ $(WIRE_OBJ) $(BASE_LIB) $(LDFLAGS_SAN) $(LDLIBS_WIRE)

# Simulated agents pushing unique batches through kill -9s (crash_test.sh).
PUSHER_BIN := $(BUILD)/tests/pusher
$(PUSHER_BIN): tests/tools/pusher.c $(WIRE_OBJ) $(BASE_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) $< -o $@ $(WIRE_OBJ) $(BASE_LIB) $(LDFLAGS_SAN) -lcurl -lpthread \
		$(LDLIBS_WIRE)

# Fetches one build ID through server/debuginfod.c, for debuginfod_test.sh.
DBGD_FETCH_BIN := $(BUILD)/tests/dbgd_fetch
$(DBGD_FETCH_BIN): tests/tools/dbgd_fetch.c $(BUILD)/server/debuginfod.o \
		$(BUILD)/server/debuginfo.o $(WIRE_ELF_OBJ) $(BUILD)/libstorage.a $(BASE_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) $^ -o $@ $(LDFLAGS_SAN) -ldebuginfod $(LDLIBS_WIRE_ELF) $(LDLIBS_STORAGE)

$(BENCH_BIN): bench/storage_bench.c $(BUILD)/libstorage.a $(WIRE_PROTO_OBJ) $(BASE_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -I$(GEN)/wire $< -o $@ $(WIRE_PROTO_OBJ) \
		$(BUILD)/libstorage.a $(BASE_LIB) $(LDFLAGS_SAN) -lprotobuf-c -lz $(LDLIBS_STORAGE)

$(BUILD)/bench/query_bench: bench/query_bench.c $(BUILD)/libquery.a $(BUILD)/libstorage.a \
		$(BASE_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) $< -o $@ $(BUILD)/libquery.a $(BUILD)/libstorage.a $(BASE_LIB) \
		$(LDFLAGS_SAN) $(LDLIBS_QUERY) $(LDLIBS_STORAGE)

# bench/symbolize: the symbolizer alone, on files with DWARF
SYMBOLIZE_BENCH := $(BUILD)/bench/symbolize_bench
$(SYMBOLIZE_BENCH): bench/symbolize_bench.c $(SYM_OBJ) $(BUILD)/libquery.a $(BUILD)/libstorage.a $(BASE_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) $< -o $@ $(SYM_OBJ) $(BUILD)/libquery.a $(BUILD)/libstorage.a $(BASE_LIB) \
		$(LDFLAGS_SAN) $(LDLIBS_SYM) $(LDLIBS_STORAGE)

# bench/agent_overhead's workload: plain -O2, frame pointers for perf's sake.
$(BUILD)/bench/cpu_load: bench/cpu_load.c
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) -O2 -g -fno-omit-frame-pointer -pthread $< -o $@

# bench/load: simulated agents and users over HTTP (libcurl)
LOAD_BENCH := $(BUILD)/bench/load_bench
$(LOAD_BENCH): bench/load_bench.c $(WIRE_OBJ) $(BASE_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) $< -o $@ $(WIRE_OBJ) $(BASE_LIB) $(LDFLAGS_SAN) -lcurl -lpthread \
		$(LDLIBS_WIRE)

$(BUILD)/bench/fsync_bench: bench/fsync_bench.c $(BASE_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) $< -o $@ $(BASE_LIB) $(LDFLAGS_SAN)

# libFuzzer targets: clang, separate objects. `make test` replays the
# committed corpora; `make fuzz-build` and then build/fuzz/fuzz_X CORPUS_DIR
# fuzzes for real.
build/fuzz/%.o: %.c
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(CFLAGS_BASE) -fsanitize=fuzzer-no-link,address,undefined \
		-fno-sanitize-recover=all -c $< -o $@
build/fuzz/gen/wire/profile.pb-c.o: $(WIRE_PROTO_SRC)
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(filter-out -Werror -Wshadow,$(CFLAGS_BASE)) \
		-fsanitize=fuzzer-no-link,address,undefined -c $< -o $@
$(QUERY_SRC:%.c=build/fuzz/%.o) build/fuzz/server/pprof_in.o: | $(WIRE_PROTO_HDR)
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_STORAGE_OBJ)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(CFLAGS_BASE) -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all $< $(FUZZ_STORAGE_OBJ) -o $@ $(LDLIBS_QUERY) $(LDLIBS_STORAGE)
fuzz-build: $(FUZZ_BIN)
# the agent's /proc readers: agent objects, not the storage ones
FUZZ_AGENT_OBJ := build/fuzz/agent/procs.o build/fuzz/agent/objects.o \
	build/fuzz/agent/labels.o build/fuzz/agent/relabel.o build/fuzz/agent/perfmap.o \
	build/fuzz/wire/wire.o build/fuzz/wire/buildid.o $(FUZZ_BASE_OBJ)
build/fuzz/fuzz_procs: tests/fuzz/fuzz_procs.c $(FUZZ_AGENT_OBJ)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(CFLAGS_BASE) -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all $< $(FUZZ_AGENT_OBJ) -o $@ $(LDLIBS_WIRE_ELF) $(LDLIBS_LABELS) $(LDLIBS_WIRE)
# the agent's config and its processes' labels (environment, container files)
build/fuzz/fuzz_labels: tests/fuzz/fuzz_labels.c $(FUZZ_AGENT_OBJ)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(CFLAGS_BASE) -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all $< $(FUZZ_AGENT_OBJ) -o $@ $(LDLIBS_WIRE_ELF) $(LDLIBS_LABELS) $(LDLIBS_WIRE)
# the CPython code-object reader (agent/python.c) on hostile memory
FUZZ_PY_OBJ := build/fuzz/agent/python.o $(FUZZ_AGENT_OBJ)
build/fuzz/fuzz_python: tests/fuzz/fuzz_python.c $(FUZZ_PY_OBJ)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(CFLAGS_BASE) -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all $< $(FUZZ_PY_OBJ) -o $@ -lbpf $(LDLIBS_WIRE_ELF) $(LDLIBS_LABELS) $(LDLIBS_WIRE)
# the symbolizer's ELF and DWARF reading: storage for the symbols table's
# functions it links against, elfutils and libiberty
FUZZ_SYM_OBJ := build/fuzz/server/symbolize.o build/fuzz/server/symbolize_go.o \
	build/fuzz/server/debuginfod.o build/fuzz/server/debuginfo.o build/fuzz/query/names.o \
	build/fuzz/wire/buildid.o build/fuzz/wire/gopclntab.o $(STORAGE_SRC:%.c=build/fuzz/%.o) \
	$(FUZZ_BASE_OBJ)
build/fuzz/fuzz_elf: tests/fuzz/fuzz_elf.c $(FUZZ_SYM_OBJ)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(CFLAGS_BASE) -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all $< $(FUZZ_SYM_OBJ) -o $@ $(LDLIBS_SYM) $(LDLIBS_STORAGE)
# the .gopclntab reader (wire/gopclntab.c) on hostile tables
# and the agent's unwind rows from it (agent/unwind_table.c)
build/fuzz/fuzz_gopclntab: tests/fuzz/fuzz_gopclntab.c $(FUZZ_SYM_OBJ) build/fuzz/agent/unwind_table.o
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(CFLAGS_BASE) -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all $< $(FUZZ_SYM_OBJ) build/fuzz/agent/unwind_table.o -o $@ \
		$(LDLIBS_SYM) $(LDLIBS_STORAGE)
# the unwind table builder (agent/unwind_table.c, with the .gopclntab
# reader it shares) on hostile ELF files
FUZZ_UNW_OBJ := build/fuzz/agent/unwind_table.o build/fuzz/wire/gopclntab.o $(FUZZ_BASE_OBJ)
build/fuzz/fuzz_unwind: tests/fuzz/fuzz_unwind.c $(FUZZ_UNW_OBJ)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(CFLAGS_BASE) -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all $< $(FUZZ_UNW_OBJ) -o $@ \
		-ldw -lelf
# the expression recogniser of the same file, against a DWARF stack machine
build/fuzz/fuzz_cfa: tests/fuzz/fuzz_cfa.c $(FUZZ_UNW_OBJ)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(CFLAGS_BASE) -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all $< $(FUZZ_UNW_OBJ) -o $@ \
		-ldw -lelf
# the perf-map reader (agent/perfmap.c, among the agent objects above) on
# hostile maps
build/fuzz/fuzz_perfmap: tests/fuzz/fuzz_perfmap.c $(FUZZ_AGENT_OBJ)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(CFLAGS_BASE) -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all $< $(FUZZ_AGENT_OBJ) -o $@ $(LDLIBS_WIRE_ELF) $(LDLIBS_LABELS) $(LDLIBS_WIRE)
.SECONDARY: $(FUZZ_STORAGE_OBJ) $(FUZZ_AGENT_OBJ) $(FUZZ_SYM_OBJ) $(FUZZ_UNW_OBJ) \
	build/fuzz/agent/python.o

# Where a skipped test says why (tests/integration/lib.sh's skip, the
# compose test's, the unit tests' SKIP lines): make test's summary prints it.
export SMOLDER_SKIP_FILE := $(CURDIR)/build/skipped.txt
# A test script's exit status 77 means skipped (automake's convention).
run_script = sh $(1) || { r=$$?; [ $$r = 77 ] || exit $$r; }

# The test command README gives. Everything runs under ASan/UBSan.
# Its last lines count unit tests plus the fuzz-corpus replays, the
# benchmark smoke run, each integration script, the ThreadSanitizer crash
# test, the browser tests and the compose test as passed, failed and
# skipped (a skipped script or unit test is never counted as passed), then
# say why each skip happened; any failure stops it before that line.
test: deps
	$(Q)mkdir -p build && rm -f build/unit.count $(SMOLDER_SKIP_FILE) && touch $(SMOLDER_SKIP_FILE)
	$(Q)SMOLDER_COUNT_FILE=build/unit.count $(MAKE) --no-print-directory \
		SANITIZE=address,undefined BUILD=build/asan test-unit
	$(Q)$(MAKE) --no-print-directory test-fuzz
	$(Q)$(MAKE) --no-print-directory SANITIZE=address,undefined BUILD=build/asan bench-smoke
	$(Q)$(MAKE) --no-print-directory SANITIZE=address,undefined BUILD=build/asan test-integration
	$(Q)$(MAKE) --no-print-directory SANITIZE=thread BUILD=build/tsan test-tsan
	$(Q)$(MAKE) --no-print-directory SANITIZE=address,undefined BUILD=build/asan test-ui
	$(Q)$(MAKE) --no-print-directory test-compose
	$(Q)read p f k < build/unit.count; \
		s=$$(grep -v -c '^test_' $(SMOLDER_SKIP_FILE) || true); \
		echo "test: $$((p + $(words $(FUZZ_BIN)) + 1 + $(words $(INTEG_SRC)) + 3 - s)) passed, $$f failed, $$((k + s)) skipped"; \
		sed 's/^/skipped: /' $(SMOLDER_SKIP_FILE)

test-unit: $(UNIT_BIN) $(SYM_SUBJECTS)
	$(Q)SMOLDER_SYM_DIR=$(SYM_DIR) .ci/run-tests.sh $(UNIT_BIN)

# Scripts that start real processes and talk to them over loopback; each
# gets the binaries it tests through the environment.
test-integration: $(SERVER_BIN) $(CLI_BIN) $(BENCH_BIN) $(MKBATCH_BIN) $(AGENT_BIN) \
		$(FP_BUSY_BIN) $(DBGD_FETCH_BIN) $(SYM_SUBJECTS) $(PUSHER_BIN) $(UNW_SUBJECTS) \
		$(PYFAKE_SUBJECTS) $(JIT_SUBJECTS) $(OFFCPU_PROG_BIN)
	$(Q)set -e; for t in $(INTEG_SRC); do echo "== $$t"; \
		SMOLDER_SERVER=$(SERVER_BIN) SMOLDER_CLI=$(CLI_BIN) SMOLDER_BENCH=$(BENCH_BIN) \
		SMOLDER_MKBATCH=$(MKBATCH_BIN) SMOLDER_AGENT=$(AGENT_BIN) SMOLDER_PUSHER=$(PUSHER_BIN) \
		SMOLDER_FP_BUSY=$(FP_BUSY_BIN) SMOLDER_DBGD_FETCH=$(DBGD_FETCH_BIN) \
		SMOLDER_SYM_DIR=$(SYM_DIR) SMOLDER_UNW_DIR=$(UNW_DIR) SMOLDER_PYFAKE_DIR=$(PYFAKE_DIR) \
		SMOLDER_JIT_DIR=$(JIT_DIR) SMOLDER_OFFCPU_PROG=$(OFFCPU_PROG_BIN) \
		$(call run_script,$$t); done

# The crash test again with the server and the simulated agents under
# ThreadSanitizer (make SANITIZE=thread BUILD=build/tsan test-tsan): a data
# race between ingest and maintenance fails it.
test-tsan: $(SERVER_BIN) $(PUSHER_BIN)
	$(Q)echo "== tests/integration/crash_test.sh (ThreadSanitizer)"
	$(Q)SMOLDER_SERVER=$(SERVER_BIN) SMOLDER_PUSHER=$(PUSHER_BIN) \
		TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1" sh tests/integration/crash_test.sh

# The web UI in headless Debian Chromium against the real server
# (tests/ui/ui_test.mjs). playwright-core comes from the npm registry
# (tests/ui/package-lock.json); it never downloads a browser.
UI_NODE_MODULES := tests/ui/node_modules/playwright-core/package.json
ui-deps:
	$(Q)[ -x /usr/bin/chromium ] || .ci/deps.sh chromium
	$(Q)command -v node >/dev/null || .ci/deps.sh nodejs
	$(Q)node -e 'process.exit(parseInt(process.versions.node) < 20 ? 1 : 0)' || \
		{ echo "test-ui: Node.js >= 20 needed, this is $$(node --version)" >&2; exit 1; }
	$(Q)if [ ! -f $(UI_NODE_MODULES) ]; then \
		command -v npm >/dev/null || .ci/deps.sh npm; \
		echo "test-ui: npm ci --prefix tests/ui (playwright-core from the npm registry)"; \
		PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/ui --no-audit --no-fund --fetch-timeout=60000 || \
		{ echo "test-ui: FAILED: npm ci could not install playwright-core (is the npm registry reachable?)" >&2; \
		  exit 1; }; fi

test-ui: ui-deps $(SERVER_BIN) $(MKBATCH_BIN)
	$(Q)echo "== tests/ui/ui_test.mjs"
	$(Q)SMOLDER_SERVER=$(SERVER_BIN) SMOLDER_MKBATCH=$(MKBATCH_BIN) node tests/ui/ui_test.mjs

# docs/screenshot-main.png and docs/screenshot-diff.png (1280x800) from the
# real UI over the browser tests' data
screenshots: ui-deps $(SERVER_BIN) $(MKBATCH_BIN)
	$(Q)SMOLDER_SERVER=$(SERVER_BIN) SMOLDER_MKBATCH=$(MKBATCH_BIN) \
		node tests/ui/ui_test.mjs --screenshots docs

# docker-compose.yml and the Dockerfile for real, then the same with
# docker-compose.clickhouse.yml over it (tests/compose/compose_test.sh):
# images built, server and agent up, this host's samples queried, down.
test-compose:
	$(Q)echo "== tests/compose/compose_test.sh"
	$(Q)$(call run_script,tests/compose/compose_test.sh)

test-fuzz: $(FUZZ_BIN)
	$(Q)set -e; for f in $(FUZZ_BIN); do n=$${f##*/fuzz_}; \
		echo "replaying corpus tests/fuzz/corpus/$$n"; \
		$$f -runs=0 tests/fuzz/corpus/$$n >build/fuzz/$$n.log 2>&1 || \
			{ tail -40 build/fuzz/$$n.log; exit 1; }; done

# The benchmark must keep running: a tiny fleet, under the sanitizers.
bench-smoke: $(BENCH_BIN) $(SYMBOLIZE_BENCH) $(SYM_SUBJECTS) $(LOAD_BENCH) $(SERVER_BIN) \
		$(BUILD)/bench/query_bench
	$(Q)SMOLDER_SERVER=$(SERVER_BIN) SMOLDER_LOAD_BENCH=$(LOAD_BENCH) bench/load --smoke >/dev/null
	$(Q)$(BENCH_BIN) --smoke >/dev/null
	$(Q)SMOLDER_BENCH_PREBUILT=1 BUILD=$(BUILD) bench/query --smoke >/dev/null
	$(Q)$(SYMBOLIZE_BENCH) --smoke $(SYM_DIR)/sym_c_pie $(SYM_DIR)/sym_cpp $(SYM_DIR)/libsymlib.so \
		>/dev/null

bench: $(BENCH_BIN)
	$(Q)bench/storage

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
