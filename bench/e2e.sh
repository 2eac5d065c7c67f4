#!/usr/bin/env bash
# bench/e2e.sh: end-to-end runs of `edgeagent bench` against a real agent
# process (bin/edgeagent serve, persistence on, default detectors) and, in the
# same invocation, against a bare embedded broker. Prints everything; the
# Makefile tees it into bench/results.txt.
#
#   DUR=15s bench/e2e.sh            # duration of each measured run
#   DATA=/dev/shm bench/e2e.sh      # put the database on tmpfs (isolates fsync)
set -euo pipefail

BIN=${BIN:-bin/edgeagent}
DUR=${DUR:-15s}
DATA=${DATA:-}
work=$(mktemp -d ${DATA:+-p "$DATA"})
pid=""
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

# start_agent NAME [extra yaml]: a fresh agent on ephemeral ports; sets pid, MQTT, METRICS.
start_agent() {
	local dir="$work/$1"
	mkdir -p "$dir"
	cat >"$dir/edgeagent.yaml" <<EOF
gateway_id: bench
data_dir: $dir/data
log: {level: info, format: text}
mqtt: {listen: "127.0.0.1:0", max_clients: 4096}
http: {listen: "127.0.0.1:0"}
${2:-}
EOF
	"$BIN" serve --config "$dir/edgeagent.yaml" 2>"$dir/log" &
	pid=$!
	for _ in $(seq 100); do
		if grep -q 'edgeagent started' "$dir/log"; then break; fi
		sleep 0.05
	done
	MQTT=$(grep -o 'mqtt=[0-9.:]*' "$dir/log" | head -1 | cut -d= -f2)
	HTTP=$(grep -o 'http=[0-9.:]*' "$dir/log" | head -1 | cut -d= -f2)
	[ -n "$MQTT" ] && [ -n "$HTTP" ] || { echo "agent did not start:"; cat "$dir/log"; exit 1; }
	METRICS="http://$HTTP/metrics"
	DIR=$dir
}

stop_agent() {
	kill "$pid"; wait "$pid" || true; pid=""
	echo "  database: $(du -k "$DIR/data/edgeagent.db" | cut -f1) KiB after the run"
}

bench() { "$BIN" bench --broker "tcp://$MQTT" --metrics "$METRICS" --pid "$pid" "$@"; }

status() { grep -E "^($1):" "/proc/$pid/status" | tr -s ' \t' ' ' | tr '\n' ' '; echo; }

echo "# edgeagent end-to-end benchmark, $(date -u +%FT%TZ), $(nproc) cores, $(uname -r), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $("$BIN" version); database in ${DATA:-/tmp (disk)}; each run ${DUR}; agent restarted per scenario"

echo
echo "## 1. idle with 1000 known sensors (2 readings each, then idle; Go returns freed heap within ~30 s)"
start_agent idle
bench --sensors 1000 --count 2000 --clients 4 --ws off >/dev/null
sleep 5
echo "  agent idle  5 s: $(status 'VmRSS|RssAnon|RssFile|VmHWM')"
sleep 25
echo "  agent idle 30 s: $(status 'VmRSS|RssAnon|RssFile')"
stop_agent

echo
echo "## 2. QoS 0, as fast as accepted, 8 clients, 1000 sensors (bare broker first, same load), ${ROUNDS:-5} rounds, fresh agent each"
ratios=()
steals=()
for round in $(seq "${ROUNDS:-5}"); do
	echo "### round $round"
	start_agent "qos0-$round"
	out=$(bench --sensors 1000 --clients 8 --rate 0 --duration "$DUR" --compare-bare)
	echo "$out"
	ratios+=("$(echo "$out" | sed -n 's/^RATIO agent\/bare processed=\([0-9.]*\).*/\1/p')")
	steals+=("$(echo "$out" | sed -n 's/^RESULT mode=bare .*steal_pct=\([-0-9.]*\).*/\1/p')/$(echo "$out" | sed -n 's/^RESULT mode=agent .*steal_pct=\([-0-9.]*\).*/\1/p')")
	stop_agent
done
echo "RATIO agent/bare over ${#ratios[@]} rounds: ${ratios[*]}; median $(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')"
echo "  host steal % per round (bare run/agent run: the CPU time other guests of the hypervisor took): ${steals[*]}"

echo
echo "## 3. QoS 1 durable, as fast as accepted, 200 clients (5 sensors each), window 4"
start_agent qos1
bench --sensors 1000 --clients 200 --inflight 4 --qos 1 --rate 0 --duration "$DUR" --compare-bare
stop_agent

echo
echo "## 3b. QoS 1 durable, as fast as accepted, one connection per sensor (1000 clients), window 4"
start_agent qos1c
bench --sensors 1000 --clients 1000 --inflight 4 --qos 1 --rate 0 --duration "$DUR"
stop_agent

echo
echo "## 4. latency at 20,000 readings/s: QoS 1 publish -> PUBACK (= durable), 200 clients"
start_agent lat
bench --sensors 1000 --clients 200 --inflight 4 --qos 1 --rate 20000 --duration "$DUR"
stop_agent

echo
echo "## 5. QoS 0 at 20,000 readings/s: end-to-end latency from the live stream, CPU per reading at a steady rate;"
echo "##    first the bare broker delivering the same load to one subscriber (the issue's baseline; one client takes it at this rate)"
start_agent steady
bench --sensors 1000 --clients 8 --rate 20000 --duration "$DUR" --compare-bare --baseline subscriber
stop_agent

echo
echo "## 6. as 5, with storage.commit_interval: 1s (fewer, larger commits: SD-card wear vs QoS 0 loss window)"
start_agent steady1s "storage: {commit_interval: 1s}"
bench --sensors 1000 --clients 8 --rate 20000 --duration "$DUR"
stop_agent
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
