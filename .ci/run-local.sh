#!/bin/sh
# run-local.sh - what `make run` does once everything is built: starts
# smolder-server (data in ./data, 127.0.0.1:7070 unless SMOLDER_LISTEN says
# otherwise) and smolder-agent on this host pointed at it, prints the
# address, and stops both on Ctrl-C. The agent needs root; without it the
# server runs alone and says why.
set -eu
LISTEN=${SMOLDER_LISTEN:-127.0.0.1:7070}
DATA=${SMOLDER_DATA:-data}
spid=""; apid=""
stop() {
	trap - INT TERM EXIT
	[ -n "$apid" ] && kill -TERM "$apid" 2>/dev/null && wait "$apid" 2>/dev/null || true
	[ -n "$spid" ] && kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null || true
	exit 0
}
trap stop INT TERM EXIT
# its own session: a Ctrl-C reaches the agent first, whose last batch the
# server must still be there to take; stop() ends the server after it
setsid bin/smolder-server --listen "$LISTEN" --data-dir "$DATA" &
spid=$!
i=0
until curl -sf "http://$LISTEN/healthz" >/dev/null 2>&1; do
	kill -0 "$spid" 2>/dev/null || { echo "smolder-server did not start" >&2; exit 1; }
	i=$((i + 1)); [ "$i" -le 100 ] || { echo "smolder-server did not answer within 10 s" >&2; exit 1; }
	sleep 0.1
done
if [ "$(id -u)" = 0 ]; then
	bin/smolder-agent --server "http://$LISTEN" &
	apid=$!
else
	echo "run-local: not root, so no agent: the BPF sampler needs root (sudo make run)" >&2
fi
echo
echo "Smolder is running: http://$LISTEN/  (data in $DATA/; Ctrl-C stops it)"
echo "  another port or data dir: make run SMOLDER_LISTEN=ADDR:PORT SMOLDER_DATA=DIR"
echo "  first five minutes: README.md; try: bin/smolder top '{}' --from now-5m"
echo
wait "$spid"
