#!/bin/sh
# compose_test.sh - `make test-compose`: docker-compose.yml for real.
# Starts Debian's Docker engine when none runs, makes sure the base image
# exists (tests/compose/base_image.sh: debootstrap when no registry
# answers), builds the image from the Dockerfile, brings server and agent
# up as docker-compose.yml says (host network, server on loopback, on a
# free port; tests/compose/fast-agent.yml only makes the agent push every
# 2 s), waits for the server's health check, and asserts
# that this host's processes are sampled, stored and queryable, that the
# server runs unprivileged and its data outlives a restart, and that
# `down` leaves no BPF program behind. Everything it started is removed on
# any exit. Then the same again with docker-compose.clickhouse.yml over
# them (README, "More than one machine"): ClickHouse from Debian's package
# in a third container, whose loopback ports 8123, 9000 and 9009 must be
# free, as the server's store, which its status must say; the server's
# image is the one built before. A Debian archive out of reach is a loud
# skip; any other failure fails.
set -u
cd "$(dirname "$0")/../.."
here=tests/compose

# exit 77: counted as skipped by the Makefile, never as passed
skip() {
	echo "################################################################"
	echo "SKIP compose_test.sh: $*"
	echo "################################################################"
	[ -z "${SMOLDER_SKIP_FILE:-}" ] || echo "compose_test.sh: $*" >>"$SMOLDER_SKIP_FILE"
	exit 77
}
fail() {
	echo "FAIL: $*" >&2
	if [ -n "${compose:-}" ]; then
		$compose logs --no-color --tail 40 >&2 2>&1 || true
	fi
	[ -s "${tmp:-/nonexistent}/dockerd.log" ] && tail -20 "$tmp/dockerd.log" >&2
	exit 1
}
checks=0
ok() {
	checks=$((checks + 1))
	echo "ok $checks - $*"
}
# healthy CONTAINER WHEN: waits up to 60 s for its health check to pass
healthy() {
	i=0
	until [ "$(docker inspect -f '{{.State.Health.Status}}' "$1")" = healthy ]; do
		i=$((i + 1))
		[ "$i" -le 120 ] || fail "server not healthy within 60 s$2"
		sleep 0.5
	done
}

[ "$(id -u)" = 0 ] || skip "needs root to run the Docker engine and the agent (uid $(id -u))"
[ -r /sys/kernel/btf/vmlinux ] || skip "the agent needs /sys/kernel/btf/vmlinux, which this kernel lacks"

tmp=$(mktemp -d /tmp/smolder-compose.XXXXXX)
dockerd_pid=""
compose=""
busy_pid=""
project=smoldertest$$
export SMOLDER_IMAGE="smolder:test$$"
export SMOLDER_CH_IMAGE="smolder-clickhouse:test$$"
cleanup() {
	[ -n "$busy_pid" ] && kill -KILL "$busy_pid" 2>/dev/null
	if [ -n "$compose" ]; then
		$compose down -v --remove-orphans -t 20 >/dev/null 2>&1 || true
		docker image rm -f "$SMOLDER_IMAGE" "$SMOLDER_CH_IMAGE" >/dev/null 2>&1 || true
		# the build stage's images (the base image stays, as a cache)
		docker image prune -f --filter label=org.smolder.stage=build >/dev/null 2>&1 || true
	fi
	if [ -n "$dockerd_pid" ]; then
		kill -TERM "$dockerd_pid" 2>/dev/null
		i=0
		while kill -0 "$dockerd_pid" 2>/dev/null && [ "$i" -lt 100 ]; do
			sleep 0.2; i=$((i + 1))
		done
		kill -KILL "$dockerd_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# --- the engine: the one running, else Debian's dockerd started here ---
command -v docker >/dev/null || fail "no docker client (make deps installs docker.io)"
if ! docker info >/dev/null 2>&1; then
	command -v dockerd >/dev/null || fail "no Docker engine runs and dockerd is not installed (make deps installs docker.io)"
	dockerd >"$tmp/dockerd.log" 2>&1 &
	dockerd_pid=$!
	i=0
	until docker info >/dev/null 2>&1; do
		kill -0 "$dockerd_pid" 2>/dev/null || fail "dockerd exited at start"
		i=$((i + 1))
		[ "$i" -le 300 ] || fail "dockerd did not answer within 60 s"
		sleep 0.2
	done
	echo "started dockerd ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
fi
ok "a Docker engine answers"

# --- the base image ---
sh "$here/base_image.sh"
case $? in
0) ;;
2) skip "the Debian archive cannot be reached to build the base image" ;;
*) fail "the base image debian:bookworm-slim could not be made" ;;
esac
ok "base image debian:bookworm-slim"

# --- compose v2 plugin when there is one, else Debian's docker-compose ---
if docker compose version >/dev/null 2>&1; then
	compose="docker compose"
elif command -v docker-compose >/dev/null; then
	compose="docker-compose"
else
	fail "neither 'docker compose' nor docker-compose (make deps installs docker-compose)"
fi
# a free port on loopback for the server
port=""
for p in $(shuf -i 20000-45000 -n 20); do
	if ! ss -Htln "sport = :$p" | grep -q .; then port=$p; break; fi
done
[ -n "$port" ] || fail "no free port found"
export SMOLDER_PORT=$port
compose_cmd="$compose -p $project"
base="http://127.0.0.1:$port"

# stack STORE: the stack up (embedded: docker-compose.yml as README says;
# clickhouse: with docker-compose.clickhouse.yml), this host sampled,
# queried, kept over a restart, down
stack() {
	if [ "$1" = clickhouse ]; then
		for p in 8123 9000 9009; do
			! ss -Htln "sport = :$p" | grep -q . || fail "port $p, which ClickHouse's container takes, is in use"
		done
		compose="$compose_cmd -f docker-compose.yml -f docker-compose.clickhouse.yml -f $here/fast-agent.yml"
		echo "compose up -d with docker-compose.clickhouse.yml: building $SMOLDER_CH_IMAGE (Debian's clickhouse-server)"
	else
		compose="$compose_cmd -f docker-compose.yml -f $here/fast-agent.yml"
		# README's command: `up -d` builds the image, since $SMOLDER_IMAGE is new
		echo "compose up -d: building $SMOLDER_IMAGE (make inside debian:bookworm-slim; minutes on a fresh machine)"
	fi
	t0=$(date +%s)
	$compose up -d >"$tmp/up.log" 2>&1 || { tail -60 "$tmp/up.log" >&2; fail "compose up"; }
	docker image inspect "$SMOLDER_IMAGE" >/dev/null 2>&1 || fail "no image $SMOLDER_IMAGE after up"
	if [ "$1" = clickhouse ]; then
		docker image inspect "$SMOLDER_CH_IMAGE" >/dev/null 2>&1 || fail "no image $SMOLDER_CH_IMAGE after up"
		ok "[clickhouse] ClickHouse's image built from Dockerfile.clickhouse, the three services created ($(($(date +%s) - t0)) s)"
	else
		ok "image built from the Dockerfile and both services created ($(($(date +%s) - t0)) s)"
	fi
	server_c=$($compose ps -q server)
	agent_c=$($compose ps -q agent)
	[ -n "$server_c" ] && [ -n "$agent_c" ] || fail "compose up did not start both services"
	healthy "$server_c" ""
	ok "[$1] server healthy (docker health check)"

	if [ "$1" = clickhouse ]; then
		b=$(curl -fsS "$base/api/v1/status" | sed -n 's/.*"backend":"\([a-z]*\)".*/\1/p')
		[ "$b" = clickhouse ] || fail "the server's store is '$b', not ClickHouse"
		ok "[clickhouse] the server keeps its data in the ClickHouse container"
	fi

	uid=$(docker exec "$server_c" id -u)
	[ "$uid" != 0 ] || fail "server runs as root"
	ok "server runs as uid $uid ($(docker exec "$server_c" id -un))"

	# --- a busy process on the host, with a name nothing else has ---
	comm=smco$$
	[ "$1" = embedded ] || comm=smch$$
	cp "$(command -v yes)" "$tmp/$comm"
	"$tmp/$comm" >/dev/null &
	busy_pid=$!

	q="process_cpu:samples:count:cpu:nanoseconds:delta{comm=\"$comm\",hostname=\"$(hostname)\"}"
	total() {
		curl -sf -G "$base/api/v1/query?format=folded&from=now-1h" --data-urlencode "query=$q" |
			awk '{n += $NF} END {print n + 0}'
	}
	n=0
	i=0
	while [ "$n" -lt 200 ]; do
		i=$((i + 1))
		[ "$i" -le 90 ] || fail "fewer than 200 samples of $comm after 45 s: $n"
		sleep 0.5
		n=$(total)
	done
	ok "the agent in its container samples this host's $comm: $n samples, hostname label $(hostname)"

	curl -sf -G "$base/api/v1/top" --data-urlencode "query=$q" -d from=now-1h >"$tmp/top.json" ||
		fail "GET /api/v1/top"
	grep -q '"name"' "$tmp/top.json" || fail "top has no functions: $(head -c 300 "$tmp/top.json")"
	curl -sf "$base/" | grep -qi '<html' || fail "the UI's page is not served at /"
	ok "top and the UI answer"

	kill -KILL "$busy_pid"
	wait "$busy_pid" 2>/dev/null
	busy_pid=""
	sleep 3            # the agent's last pushes of it (it pushes every 2 s)
	before=$(total)

	# --- the data dir is the named volume: a restart keeps what was stored ---
	$compose restart -t 20 server >/dev/null 2>&1 || fail "compose restart server"
	healthy "$server_c" " of its restart"
	after=$(total)
	[ "$after" -ge "$before" ] && [ "$after" -gt 0 ] ||
		fail "samples after the server's restart: $after, before: $before"
	ok "[$1] the named volume keeps the data over a restart ($before samples before, $after after)"

	# --- down: the agent detaches; no BPF program of it stays in the kernel ---
	agent_pid=$(docker inspect -f '{{.State.Pid}}' "$agent_c")
	progs=$(grep -h '^prog_id:' /proc/"$agent_pid"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -u)
	[ -n "$progs" ] || fail "the agent's process holds no BPF program"
	$compose down -v --remove-orphans -t 20 >"$tmp/down.log" 2>&1 || { cat "$tmp/down.log" >&2; fail "compose down"; }
	for id in $progs; do
		[ ! -e "/proc/$agent_pid" ] || fail "agent process still there after down"
		if command -v bpftool >/dev/null && bpftool prog show id "$id" >/dev/null 2>&1; then
			fail "BPF program $id still loaded after down"
		fi
	done
	ok "[$1] down stops them; the agent's BPF programs ($(echo $progs | tr '\n' ' ')) are gone"
}

stack embedded
stack clickhouse
echo "compose_test.sh: $checks checks passed"
