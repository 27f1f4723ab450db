#!/bin/bash
# A/B: the broker before the metrics counters (9469757) and after, alternating,
# S2 (1 producer, 1 consumer, 16 B, confirms, multi-ack) at 1 and 2 shards.
BEFORE=${BEFORE:-/tmp/met-warren-before}
AFTER=${AFTER:-/tmp/met-warren-after}
PERF=${PERF:-/tmp/met-warren-perf}
ROUNDS=${ROUNDS:-3}
for shards in ${SHARDS:-1 2}; do
for round in $(seq 1 $ROUNDS); do
  for which in before after; do
    if [ $which = before ]; then BIN=$BEFORE; else BIN=$AFTER; fi
    D=$(mktemp -d); PORT=$((20000 + RANDOM % 20000))
    $BIN serve --port $PORT --bind 127.0.0.1 --shards $shards --data-dir $D --log warn >/dev/null 2>&1 &
    PID=$!; sleep 1
    R=$($PERF --uri amqp://guest:guest@127.0.0.1:$PORT/%2F --producers 1 --consumers 1 --size 16 --confirm 1000 --multi-ack-every 100 --prefetch 1000 --duration 8 2>&1 | grep -oE "received [0-9]+ \([0-9]+ msg/s\)" | tail -1)
    echo "shards=$shards round=$round $which $R"
    kill $PID; wait $PID 2>/dev/null; rm -rf $D
  done
done; done
