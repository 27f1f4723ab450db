#!/bin/bash
# Deterministic instruction counts per message (callgrind, one shard): the
# broker runs under valgrind, a warm-up of 10,000 messages, counters zeroed,
# N messages, counters dumped; total Ir / N. Idle polling is included.
# Usage (repo root): bench-results/2026-12-02-issue13-cpu/callgrind.sh BIN LABEL "PERF ARGS"
set -e
BIN=$1; LABEL=$2; ARGS=$3; N=${N:-100000}
PERF=${PERF:-target/release/warren-perf}
D=$(mktemp -d); PORT=$((20000 + RANDOM % 20000))
valgrind --tool=callgrind --callgrind-out-file=$D/cg.out $BIN serve --shards 1 --bind 127.0.0.1 \
  --port $PORT --data-dir $D/data --log warn --management-port 0 --prometheus-port 0 > $D/log 2>&1 &
PID=$!
for i in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.2; done
U=amqp://guest:guest@127.0.0.1:$PORT/%2F
$PERF --uri $U $ARGS --count 10000 -q --cleanup > /dev/null
callgrind_control -z $PID > /dev/null
$PERF --uri $U $ARGS --count $N -q --cleanup > /dev/null
callgrind_control -d $PID > /dev/null
sleep 1
IR=$(cat $D/cg.out* | awk '/^summary:/ {s+=$2} /^totals:/ {t+=$2} END {print (s ? s : t)}')
kill $PID; wait $PID 2>/dev/null || true
echo "$LABEL $(python3 -c "print(round($IR / $N))") instructions/message"
[ -n "$KEEP" ] && cp $(ls -S $D/cg.out* | head -1) $KEEP; rm -rf $D
