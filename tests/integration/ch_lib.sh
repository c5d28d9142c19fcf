# ch_lib.sh - two Debian clickhouse-server processes on loopback as the two
# shards of one cluster "smolder" (remote_servers, no ZooKeeper), for
# clickhouse_test.sh and bench/clickhouse. Sourced after lib.sh (or
# anything that sets $tmp and defines fail). Sets http1 tcp1 http2 tcp2;
# ch_start N sets chpidN; the caller kills them on exit.

# ports: two per ClickHouse node (HTTP, native), bound at once so they differ
set -- $(python3 -c 'import socket
s = [socket.socket() for _ in range(4)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')
http1=$1; tcp1=$2; http2=$3; tcp2=$4

# ch_config N HTTP TCP: node N's config; both nodes name the same cluster
ch_config() {
	d=$tmp/ch$1
	mkdir -p "$d"
	cat >"$d/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$d/log</log><errorlog>$d/err.log</errorlog></logger>
  <http_port>$2</http_port>
  <tcp_port>$3</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>$d/data/</path>
  <tmp_path>$d/tmp/</tmp_path>
  <user_files_path>$d/user_files/</user_files_path>
  <format_schema_path>$d/format_schemas/</format_schema_path>
  <mark_cache_size>67108864</mark_cache_size>
  <users_config>$d/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <remote_servers>
    <smolder>
      <shard><replica><host>127.0.0.1</host><port>$tcp1</port></replica></shard>
      <shard><replica><host>127.0.0.1</host><port>$tcp2</port></replica></shard>
    </smolder>
  </remote_servers>
</yandex>
EOF
	cat >"$d/users.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <profiles><default/></profiles>
  <users><default><password/><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default/></quotas>
</yandex>
EOF
}

# ch_start N: starts node N and waits until it answers
ch_start() {
	eval "port=\$http$1"
	clickhouse-server --config-file="$tmp/ch$1/config.xml" >"$tmp/ch$1/out" 2>&1 &
	eval "chpid$1=\$!"
	i=0
	until [ "$(curl -s --max-time 2 "http://127.0.0.1:$port/?query=SELECT%201" || true)" = 1 ]; do
		i=$((i + 1))
		[ "$i" -le 300 ] || fail "ClickHouse node $1 did not answer within 30 s: $(tail -5 "$tmp/ch$1/err.log" 2>/dev/null)"
		sleep 0.1
	done
}
# chq N SQL: node N's answer (TSV)
chq() {
	eval "port=\$http$1"
	curl -sS --max-time 120 "http://127.0.0.1:$port/" --data-binary "$2"
}
ch_config 1 "$http1" "$tcp1"
ch_config 2 "$http2" "$tcp2"
