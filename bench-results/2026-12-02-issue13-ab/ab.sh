#!/bin/bash
# Warren alone at one shard (no placement lottery): before this issue
# (51d854b) against after, S1, S2 and S6 loads, 8 s each, alternating.
BEFORE=${BEFORE:-/tmp/before-target/release/warren}
AFTER=${AFTER:-target/release/warren}
PERF=${PERF:-target/release/warren-perf}
ROUNDS=${ROUNDS:-4}
for round in $(seq 1 $ROUNDS); do
  for sc in S1 S2 S6; do
    case $sc in
      S1) ARGS="--producers 1 --consumers 1 --size 16" ;;
      S2) ARGS="--producers 1 --consumers 1 --size 16 --confirm 1000 --multi-ack-every 100 --prefetch 1000" ;;
      S6) ARGS="--producers 4 --consumers 4 --queues 4 --size 16" ;;
    esac
    for which in before after; do
      D=$(mktemp -d); PORT=$((20000 + RANDOM % 20000))
      if [ $which = before ]; then BIN=$BEFORE; else BIN=$AFTER; fi
      $BIN serve --port $PORT --bind 127.0.0.1 --shards 1 --data-dir $D --log warn --management-port 0 --prometheus-port 0 >/dev/null 2>&1 &
      PID=$!; sleep 1
      R=$($PERF --uri amqp://guest:guest@127.0.0.1:$PORT/%2F $ARGS --duration 8 2>&1 | grep -oE "received [0-9]+ \([0-9]+ msg/s\)" | tail -1)
      echo "round=$round $sc $which $R"
      kill $PID; wait $PID 2>/dev/null; rm -rf $D
    done
  done
done
