#!/bin/bash
# S2 at 2 shards, before/after alternating, with the placement class from Prometheus.
BEFORE=${BEFORE:-/tmp/before-target/release/warren}; AFTER=${AFTER:-target/release/warren}; PERF=${PERF:-target/release/warren-perf}
ARGS="--producers 1 --consumers 1 --size 16 --confirm 1000 --multi-ack-every 100 --prefetch 1000"
for round in $(seq 1 ${ROUNDS:-8}); do
  for which in before after; do
    D=$(mktemp -d); PORT=$((20000 + RANDOM % 20000)); PP=$((PORT+1))
    if [ $which = before ]; then BIN=$BEFORE; else BIN=$AFTER; fi
    $BIN serve --port $PORT --bind 127.0.0.1 --shards 2 --data-dir $D --log warn --management-port 0 --prometheus-port $PP >/dev/null 2>&1 &
    PID=$!; sleep 1
    $PERF --uri amqp://guest:guest@127.0.0.1:$PORT/%2F $ARGS --duration 8 > /tmp/ab3.out 2>&1 &
    CL=$!; sleep 4
    C=$(curl -s http://127.0.0.1:$PP/metrics | grep -E "^warren_shard_connections" | sed -E "s/warren_shard_connections\{shard=\"([0-9])\"\} /conn\1=/" | tr "\n" " ")
    wait $CL
    R=$(grep -oE "\([0-9]+ msg/s\)" /tmp/ab3.out | tail -1)
    M=$(curl -s http://127.0.0.1:$PP/metrics | grep -E "^warren_shard_messages_routed_(local|remote)_total" | sed -E "s/warren_shard_messages_routed_([a-z]+)_total\{shard=\"([0-9])\"\} /\1\2=/" | tr "\n" " ")
    echo "round=$round $which $R $C $M"
    kill $PID; wait $PID 2>/dev/null; rm -rf $D
  done
done
