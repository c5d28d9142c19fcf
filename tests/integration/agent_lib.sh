# agent_lib.sh - sourced after lib.sh by the scripts that run the real
# agent (agent_test.sh, symbolize_test.sh): the loud skip where BPF cannot
# load, the agent stopped before lib.sh's cleanup on any exit (so its BPF
# programs are detached even when a check fails), and starting the agent. Scripts set $SERVER and $AGENT first.

# need_bpf NAME: exits 0 with a loud message unless root with BTF
need_bpf() {
	if [ "$(id -u)" != 0 ] || [ ! -r /sys/kernel/btf/vmlinux ]; then
		echo "################################################################"
		echo "SKIP $1: needs root and /sys/kernel/btf/vmlinux to load the BPF"
		echo "sampler; this host has uid $(id -u) and BTF: $(ls /sys/kernel/btf/vmlinux 2>&1)"
		echo "################################################################"
		exit 0
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
