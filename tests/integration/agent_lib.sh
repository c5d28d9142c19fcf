# agent_lib.sh - sourced after lib.sh by the scripts that run the real
# agent (agent_test.sh, symbolize_test.sh, unwind_test.sh): the loud skip where BPF cannot
# load, the agent stopped before lib.sh's cleanup on any exit (so its BPF
# programs are detached even when a check fails), starting the agent, and
# waiting for a process' samples to be stored. Scripts set $SERVER and
# $AGENT first.

# need_bpf NAME: skips (lib.sh's skip: exit 77, counted as skipped) unless
# root with BTF
need_bpf() {
	if [ "$(id -u)" != 0 ] || [ ! -r /sys/kernel/btf/vmlinux ]; then
		skip "$1" "needs root and /sys/kernel/btf/vmlinux to load the BPF sampler;" \
			"this host has uid $(id -u) and BTF: $(ls /sys/kernel/btf/vmlinux 2>&1)"
	fi
}

apid=""
stop_all() {
	if [ -n "$apid" ] && kill -0 "$apid" 2>/dev/null; then
		kill -KILL "$apid" 2>/dev/null || true
		wait "$apid" 2>/dev/null || true
	fi
	cleanup
}
trap stop_all EXIT

# start_agent FLAGS...: pushing to $base every 2 s; sets $apid once it samples
start_agent() {
	"$AGENT" --server "$base" --interval 2 "$@" >"$tmp/agent.out" 2>"$tmp/agent.err" &
	apid=$!
	i=0
	while ! grep -q 'smolder-agent: sampling' "$tmp/agent.err"; do
		kill -0 "$apid" 2>/dev/null || fail "agent exited at start"
		i=$((i + 1))
		[ "$i" -le 100 ] || fail "agent did not start sampling within 10 s"
		sleep 0.1
	done
}

# total COMM: samples stored for that comm in the last hour; a label
# matcher instead of COMM (pid="123") selects by it
total() {
	case $1 in *=*) m=$1 ;; *) m="comm=\"$1\"" ;; esac
	curl -sf "$base/api/v1/query?format=folded&from=now-1h" --data-urlencode \
		"query=process_cpu:samples:count:cpu:nanoseconds:delta{$m}" -G |
		awk '{n += $NF} END {print n + 0}'
}

# settle COMM [STABLE [POLLS]]: waits until COMM's (or the matcher's) stored total is above
# zero and has not changed for STABLE polls in a row (default 5; polls are
# 0.5 s apart and the agent pushes every 2 s), failing after POLLS polls
# (default 80)
settle() {
	last=-1; same=0; i=0
	while [ "$same" -lt "${2:-5}" ]; do
		n=$(total "$1" || echo -1)
		if [ "$n" = "$last" ] && [ "$n" -gt 0 ]; then same=$((same + 1)); else same=0; fi
		last=$n
		i=$((i + 1))
		[ "$i" -le "${3:-80}" ] ||
			fail "samples of $1 still changing (or none) after $((${3:-80} / 2)) s: $n"
		sleep 0.5
	done
}
