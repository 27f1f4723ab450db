#!/bin/bash
# remote.sh BIN: one S2 run at 2 shards whose publisher is remote to the queue (retried until so).
BIN=$1; PERF=${PERF:-target/release/warren-perf}
ARGS="--producers 1 --consumers 1 --size 16 --confirm 1000 --multi-ack-every 100 --prefetch 1000"
for try in $(seq 1 12); do
  D=$(mktemp -d); PORT=$((20000 + RANDOM % 20000)); PP=$((PORT+1))
  $BIN serve --port $PORT --bind 127.0.0.1 --shards 2 --data-dir $D --log warn --management-port 0 --prometheus-port $PP >/dev/null 2>&1 &
  PID=$!; sleep 1
  $PERF --uri amqp://guest:guest@127.0.0.1:$PORT/%2F $ARGS --duration 10 > /tmp/remote.out 2>&1 &
  CL=$!; sleep 2
  M=$(curl -s http://127.0.0.1:$PP/metrics)
  REM=$(echo "$M" | grep -E '^warren_shard_messages_routed_remote_total\{shard="1"\}' | awk '{print $2}')
  C=$(echo "$M" | grep -E "^warren_shard_connections" | awk '{printf "%s ", $2}')
  if [ "${REM:-0}" != "0" ]; then
    wait $CL; kill $PID; wait $PID 2>/dev/null; rm -rf $D
    echo "$(basename $(dirname $(dirname $(dirname $BIN)))) conns=[$C] $(grep -oE '\([0-9]+ msg/s\)' /tmp/remote.out | tail -1)"
    exit 0
  fi
  kill $CL; wait $CL 2>/dev/null; kill $PID; wait $PID 2>/dev/null; rm -rf $D
done
echo "no remote placement"
