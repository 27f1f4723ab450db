#!/bin/bash
# Warren alone, 1 shard (no placement lottery): before this issue (605b88a),
# after with the HTTP listeners off, and after with them on while a poller
# asks what an open overview page and a Prometheus scrape ask, every second
# (5x the page's rate). S1 and S2 loads, 8 s each, variants alternating.
BEFORE=${BEFORE:-/tmp/before-target/release/warren}
AFTER=${AFTER:-target/release/warren}
PERF=${PERF:-target/release/warren-perf}
ROUNDS=${ROUNDS:-8}
poll() {  # poll MGMT PROM: the page's requests, once a second
  while true; do
    curl -s -u guest:guest "http://127.0.0.1:$1/api/overview?lengths_age=600&lengths_incr=5&msg_rates_age=600&msg_rates_incr=5" >/dev/null
    curl -s -u guest:guest "http://127.0.0.1:$1/api/nodes" >/dev/null
    curl -s -u guest:guest "http://127.0.0.1:$1/api/queues?page=1&page_size=100&pagination=true" >/dev/null
    curl -s "http://127.0.0.1:$2/metrics" >/dev/null
    sleep 1
  done
}
for round in $(seq 1 $ROUNDS); do
  for sc in S1 S2; do
    if [ $sc = S1 ]; then ARGS="--producers 1 --consumers 1 --size 16"; else
      ARGS="--producers 1 --consumers 1 --size 16 --confirm 1000 --multi-ack-every 100 --prefetch 1000"; fi
    for which in before off on; do
      D=$(mktemp -d); PORT=$((20000 + RANDOM % 20000)); MP=$((PORT + 1)); PP=$((PORT + 2))
      if [ $which = before ]; then
        $BEFORE serve --port $PORT --bind 127.0.0.1 --shards 1 --data-dir $D --log warn >/dev/null 2>&1 &
      elif [ $which = off ]; then
        $AFTER serve --port $PORT --bind 127.0.0.1 --shards 1 --data-dir $D --log warn --management-port 0 --prometheus-port 0 >/dev/null 2>&1 &
      else
        $AFTER serve --port $PORT --bind 127.0.0.1 --shards 1 --data-dir $D --log warn --management-port $MP --prometheus-port $PP >/dev/null 2>&1 &
      fi
      PID=$!; sleep 1
      POLLER=
      if [ $which = on ]; then poll $MP $PP & POLLER=$!; fi
      R=$($PERF --uri amqp://guest:guest@127.0.0.1:$PORT/%2F $ARGS --duration 8 2>&1 | grep -oE "received [0-9]+ \([0-9]+ msg/s\)" | tail -1)
      [ -n "$POLLER" ] && kill $POLLER
      echo "round=$round $sc $which $R"
      kill $PID; wait $PID 2>/dev/null; rm -rf $D
    done
  done
done
