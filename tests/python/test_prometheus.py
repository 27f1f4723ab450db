"""The Prometheus endpoint (port 15692) as RabbitMQ 3.10.8's
rabbitmq_prometheus plugin serves it.

Observed on RabbitMQ 3.10.8 with

    WARREN_TEST_URL=amqp://guest:guest@127.0.0.1:5672/%2F pytest test_prometheus.py

/metrics is aggregated (no per-object labels), /metrics/per-object has one
series per queue ({vhost, queue}) and per channel/connection. Values
computed from RabbitMQ's statistics (queue depths) are refreshed every
5 s, so they are polled with a bounded wait. The warren_shard_* families
are Warren's own and are checked only against a Warren the tests started.
"""

import os
import time
import urllib.request

import pika
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mgmt_util import wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
OVERVIEW_METRICS = os.path.join(HERE, "fixtures", "grafana_overview_metrics.txt")
STATS_WAIT_S = 15.0

# prometheus_client's parser reads "# TYPE x untyped" as "unknown"
PARSER_TYPE = {"gauge": "gauge", "counter": "counter", "untyped": "unknown"}


def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, r.headers, r.read().decode("utf-8")


class Scrape:
    """One scrape: samples by sample name -> [(labels, value)], and the
    type of the family each sample name belongs to."""

    def __init__(self, text):
        self.samples = {}
        self.types = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                self.samples.setdefault(s.name, []).append((s.labels, s.value))
                self.types[s.name] = fam.type

    def value(self, name, **labels):
        """The value of the one series of `name` whose labels include `labels`."""
        got = [v for ls, v in self.samples.get(name, [])
               if all(ls.get(k) == val for k, val in labels.items())]
        assert len(got) <= 1, (name, labels, got)
        return got[0] if got else None

    def total(self, name):
        return sum(v for _, v in self.samples.get(name, []))


def scrape(broker, path="/metrics"):
    status, _, text = fetch(broker.prom_url + path)
    assert status == 200
    return Scrape(text)


def overview_metrics():
    out = []
    with open(OVERVIEW_METRICS) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                name, kind = line.split()
                out.append((name, kind))
    return out


def test_content_type(broker):
    status, headers, text = fetch(broker.prom_url + "/metrics")
    assert status == 200
    assert headers.get("content-type") == "text/plain; version=0.0.4"
    assert "# TYPE rabbitmq_connections gauge\n" in text
    assert "# HELP rabbitmq_connections " in text


@pytest.mark.parametrize("path", ["/metrics", "/metrics/per-object"])
def test_grafana_overview_metrics_present(broker, channel, path):
    """Every metric the RabbitMQ-Overview dashboard queries, with its type.
    (Per object, the channel metrics have a series per channel, so none
    without a channel: the test holds one open.)"""
    seen = {}

    def complete():
        seen["s"] = scrape(broker, path)
        seen["missing"] = [n for n, _ in overview_metrics() if n not in seen["s"].samples]
        return not seen["missing"]
    deadline = time.monotonic() + STATS_WAIT_S
    while not complete() and time.monotonic() < deadline:
        time.sleep(0.25)
    assert seen["missing"] == [], seen["missing"]
    s = seen["s"]
    wrong = [(n, s.types[n], k) for n, k in overview_metrics()
             if s.types[n] != PARSER_TYPE[k]]
    assert wrong == [], wrong
    for name, _ in overview_metrics():
        for _, v in s.samples[name]:
            assert v >= 0, (name, v)


def test_identity_and_build_info(broker):
    s = scrape(broker)
    [(labels, value)] = s.samples["rabbitmq_identity_info"]
    assert value == 1
    assert labels["rabbitmq_node"] and labels["rabbitmq_cluster"]
    assert "@" in labels["rabbitmq_node"]
    [(labels, value)] = s.samples["rabbitmq_build_info"]
    assert value == 1
    assert labels["rabbitmq_version"] and labels["erlang_version"]
    if broker.external:         # versions are the broker's own
        assert labels["rabbitmq_version"].startswith("3.10.")
        assert labels["prometheus_plugin_version"] == labels["rabbitmq_version"]


def test_global_counter_labels(broker):
    s = scrape(broker)
    for name in ("rabbitmq_global_messages_received_total",
                 "rabbitmq_global_messages_routed_total",
                 "rabbitmq_global_messages_confirmed_total",
                 "rabbitmq_global_messages_unroutable_dropped_total"):
        assert [ls for ls, _ in s.samples[name]] == [{"protocol": "amqp091"}], name
    # the delivery counters are per queue type
    types = {ls["queue_type"] for ls, _ in
             s.samples["rabbitmq_global_messages_delivered_consume_manual_ack_total"]}
    assert "rabbit_classic_queue" in types
    assert all(ls["protocol"] == "amqp091" for ls, _ in
               s.samples["rabbitmq_global_messages_acknowledged_total"])


def test_gauges_sane(broker):
    s = scrape(broker)
    assert s.value("rabbitmq_process_open_fds") > 0
    assert s.value("rabbitmq_process_max_fds") >= s.value("rabbitmq_process_open_fds")
    assert s.value("rabbitmq_process_resident_memory_bytes") > 0
    assert s.value("rabbitmq_resident_memory_limit_bytes") > 0
    assert s.value("rabbitmq_disk_space_available_bytes") > 0
    assert s.value("rabbitmq_alarms_memory_used_watermark") == 0
    assert s.value("rabbitmq_alarms_free_disk_space_watermark") == 0
    assert s.types["rabbitmq_alarms_memory_used_watermark"] == "unknown"


def test_aggregated_has_no_per_queue_series(broker, channel, unique, cleanup):
    name = cleanup.queue(unique("prom"))
    channel.queue_declare(name)
    s = scrape(broker)
    for metric in ("rabbitmq_queue_messages", "rabbitmq_queue_messages_ready"):
        assert [ls for ls, _ in s.samples[metric]] == [{}], metric


def test_per_object_queue_messages(broker, conn, unique, cleanup):
    ch = conn.channel()
    ch.confirm_delivery()
    name = cleanup.queue(unique("prom"))
    ch.queue_declare(name)
    for i in range(3):
        ch.basic_publish("", name, b"m%d" % i)

    def depth(want_ready, want_unacked):
        def check():
            s = scrape(broker, "/metrics/per-object")
            got = (s.value("rabbitmq_queue_messages", vhost="/", queue=name),
                   s.value("rabbitmq_queue_messages_ready", vhost="/", queue=name),
                   s.value("rabbitmq_queue_messages_unacked", vhost="/", queue=name))
            return got == (want_ready + want_unacked, want_ready, want_unacked) and s
        return wait_for(check, timeout=STATS_WAIT_S,
                        what="queue depth %d+%d" % (want_ready, want_unacked))
    s = depth(3, 0)
    [(labels, _)] = [x for x in s.samples["rabbitmq_queue_messages"]
                     if x[0].get("queue") == name]
    assert labels == {"vhost": "/", "queue": name}
    assert s.types["rabbitmq_queue_messages"] == "gauge"
    assert s.value("rabbitmq_queue_consumers", vhost="/", queue=name) == 0
    ch.basic_get(name)                  # one unacked
    depth(2, 1)


def test_counters_increase(broker, unique, cleanup):
    before = scrape(broker)
    c = broker.connect()
    try:
        ch = c.channel()
        ch.confirm_delivery()
        name = cleanup.queue(unique("prom"))
        ch.queue_declare(name)
        for _ in range(5):
            ch.basic_publish("", name, b"x")
        ch.basic_publish("", "nobody-" + unique("nq"), b"x")      # dropped

        def grown():
            s = scrape(broker)
            d = lambda n: s.total(n) - before.total(n)
            return (d("rabbitmq_global_messages_received_total") >= 6
                    and d("rabbitmq_global_messages_routed_total") >= 5
                    and d("rabbitmq_global_messages_confirmed_total") >= 6
                    and d("rabbitmq_global_messages_unroutable_dropped_total") >= 1
                    and d("rabbitmq_connections_opened_total") >= 1
                    and d("rabbitmq_channels_opened_total") >= 1
                    and d("rabbitmq_queues_declared_total") >= 1
                    and d("rabbitmq_queues_created_total") >= 1
                    and s.value("rabbitmq_connections") >= 1
                    and s.value("rabbitmq_channels") >= 1)
        wait_for(grown, timeout=STATS_WAIT_S, what="counters grown")
    finally:
        c.close()


def test_unknown_path_404(broker):
    try:
        fetch(broker.prom_url + "/metrics/no-such-thing")
        status = 200
    except urllib.error.HTTPError as e:
        status = e.code
    assert status == 404


# ---------------------------------------------------------------------------
# Warren's own: one series per shard
# ---------------------------------------------------------------------------

WARREN_SHARD_METRICS = [
    ("warren_shard_connections", "gauge"),
    ("warren_shard_queues", "gauge"),
    ("warren_shard_messages_routed_local_total", "counter"),
    ("warren_shard_messages_routed_remote_total", "counter"),
    ("warren_shard_mesh_batches_sent_total", "counter"),
    ("warren_shard_reactor_busy_seconds_total", "counter"),
]


@pytest.mark.needs_warren_process
def test_warren_shard_metrics(broker, conn):
    conn.channel()
    s = scrape(broker)
    shards = int(broker.shards)
    for name, kind in WARREN_SHARD_METRICS:
        assert name in s.samples, name
        assert s.types[name] == kind, (name, s.types[name])
        labels = [ls for ls, _ in s.samples[name]]
        assert all(set(ls) == {"shard"} for ls in labels), (name, labels)
        assert sorted(ls["shard"] for ls in labels) == sorted(
            str(i) for i in range(shards)), (name, labels)
        assert all(v >= 0 for _, v in s.samples[name]), name
    assert sum(v for _, v in s.samples["warren_shard_connections"]) >= 1
