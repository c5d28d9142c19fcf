#!/bin/sh
# readme_test.sh - README's "First five minutes" as a newcomer runs it:
# every command of its console blocks, in order, against the real server
# (and, for the block that needs it, the real agent) started here, with
# the output each prints compared to what README shows ("…" in README
# stands for text that differs between runs and hosts; a line of "…" for
# any number of lines). The commands run in a directory whose bin/ holds
# the binaries under test, with 127.0.0.1:7070 in them replaced by this
# server's address and SMOLDER_SERVER_URL set for bin/smolder. The agent's
# block needs root and BTF: without them the other blocks still run and
# the test reports itself skipped, saying so. Cleans up on any exit.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
CLI=${SMOLDER_CLI:-bin/smolder}
AGENT=${SMOLDER_AGENT:-bin/smolder-agent}
README=$(cd "$(dirname "$0")/../.." && pwd)/README.md
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"

for b in "$SERVER" "$CLI" "$AGENT"; do
	[ -x "$b" ] || fail "$b is not an executable (build it first)"
done
command -v go >/dev/null || fail "go is not installed (make deps: golang-go)"

start_server 127.0.0.1:0
mkdir -p "$tmp/work/bin" "$tmp/home"
for b in "$SERVER" "$CLI" "$AGENT"; do
	ln -s "$(cd "$(dirname "$b")" && pwd)/$(basename "$b")" "$tmp/work/bin/$(basename "$b")"
done

agent=0
if [ "$(id -u)" = 0 ] && [ -r /sys/kernel/btf/vmlinux ]; then
	# as make run starts it: the default 10 s interval README speaks of
	"$AGENT" --server "$base" >"$tmp/agent.out" 2>"$tmp/agent.err" &
	apid=$!
	i=0
	while ! grep -q 'smolder-agent: sampling' "$tmp/agent.err"; do
		kill -0 "$apid" 2>/dev/null || fail "agent exited at start"
		i=$((i + 1)); [ "$i" -le 100 ] || fail "agent did not start sampling within 10 s"
		sleep 0.1
	done
	agent=1
fi

# Debian's python3 first: the one README's readers have (a pyenv shim on
# PATH would run under another comm)
rc=0
SMOLDER_BASE=$base SMOLDER_AGENT_ON=$agent SMOLDER_WORK=$tmp/work HOME=$tmp/home \
	GOCACHE=$tmp/home/gocache PATH=/usr/bin:/bin:$PATH \
	/usr/bin/python3 - "$README" <<'PY' || rc=$?
import os, re, subprocess, sys

base = os.environ["SMOLDER_BASE"]
agent_on = os.environ["SMOLDER_AGENT_ON"] == "1"
text = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r"^## First five minutes\n(.*?)(?=^## )", text, re.S | re.M)
assert m, "README has no '## First five minutes' section"
section = m.group(1)

# console blocks, each flagged when the comment before it says it needs the agent
blocks = []
for b in re.finditer(r"(<!-- walkthrough: needs the agent -->\n)?```console\n(.*?)```", section, re.S):
    blocks.append((bool(b.group(1)), b.group(2).splitlines()))
assert blocks, "no console block in the section"

def steps(lines):
    """(command, [expected lines]) in order"""
    out = []
    for l in lines:
        if l.startswith("$ "):
            out.append((l[2:], []))
        else:
            assert out, "output before any command: %r" % l
            out[-1][1].append(l)
    return out

def pattern(expected):
    rx = ""
    for l in expected:
        l = l.rstrip()
        if l == "…":
            rx += r"(?:[^\n]*\n)*?"
        else:
            rx += "[^\n]*".join(re.escape(p) for p in l.split("…")) + r"\n"
    return re.compile(rx)

n = skipped = 0
for needs_agent, lines in blocks:
    for cmd, expected in steps(lines):
        if needs_agent and not agent_on:
            skipped += 1
            continue
        run = cmd.replace("http://127.0.0.1:7070", base)
        env = dict(os.environ, SMOLDER_SERVER_URL=base)
        r = subprocess.run(["sh", "-c", run], cwd=os.environ["SMOLDER_WORK"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=180)
        got = "".join(l.rstrip() + "\n" for l in r.stdout.splitlines())
        if not pattern(expected).fullmatch(got):
            print("FAIL: README's command\n  $ %s\nprinted\n%s\nbut README shows\n%s" % (
                cmd, "".join("  | " + l + "\n" for l in got.splitlines()),
                "".join("  | " + l + "\n" for l in expected)))
            sys.exit(1)
        n += 1
        print("ok - $ %s" % (cmd if len(cmd) < 90 else cmd[:87] + "..."))
print("readme_test: %d commands printed what README shows%s" % (
    n, "; %d of the agent's block not run" % skipped if skipped else ""))
sys.exit(3 if skipped else 0)
PY
case $rc in
0) ;;
3) skip readme_test.sh "README's agent block needs root and /sys/kernel/btf/vmlinux" \
	"(uid $(id -u)); its other commands passed" ;;
*) fail "README's walk-through" ;;
esac
