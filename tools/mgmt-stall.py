#!/usr/bin/env python3
"""Does serving the management API stall a shard's reactor? One command.

    tools/mgmt-stall.py                      # 1 shard, 5,000 queues, 20 s per phase
    tools/mgmt-stall.py --queues 10000 --seconds 30 --out bench-results/X

Starts Warren (release build) with one shard, so the shard that serves
HTTP is the one that serves AMQP, declares --queues queues, and measures
AMQP publish-to-deliver latency with tools/warren-perf at a fixed 1,000
msg/s in two phases:
  idle:   nobody uses the HTTP API;
  loaded: a client asks, every --pause seconds (0.1), for the whole queue
          list (GET /api/queues), the overview and /metrics/per-object
          (20x what an open page and a scrape ask).
A stall of the reactor shows as a higher p99.9 and max in the loaded phase.
Writes stall.json and stall.md to --out (default: prints only).
"""
import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def port_open(p):
    try:
        socket.create_connection(("127.0.0.1", p), timeout=0.2).close()
        return True
    except OSError:
        return False


AUTH = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}


def http(url, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=AUTH)
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()


class Hammer(threading.Thread):
    def __init__(self, urls, pause):
        super().__init__(daemon=True)
        self.urls, self.stop, self.count, self.times = urls, threading.Event(), 0, []
        self.pause = pause

    def run(self):
        while not self.stop.is_set():
            for u in self.urls:
                t = time.monotonic()
                http(u)
                self.times.append((u, time.monotonic() - t))
                self.count += 1
                # On a 2-core machine a client asking back to back takes a
                # core from the broker and the load generator: the pause
                # keeps this a measure of the broker's stalls.
                self.stop.wait(self.pause)


def perf(perf_bin, port, seconds, out):
    cmd = [perf_bin, "--uri", f"amqp://guest:guest@127.0.0.1:{port}/%2F", "--producers", "1",
           "--consumers", "1", "--size", "16", "--rate", "1000", "--duration", str(seconds),
           "--queue-pattern", "stall-%d", "--cleanup", "--json", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(Path(out).read_text())["latency_us"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queues", type=int, default=5000)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--out")
    p.add_argument("--pause", type=float, default=0.1,
                   help="seconds between the hammer's requests (0.1)")
    p.add_argument("--paths", default="/api/queues,/api/overview,prometheus",
                   help="what the hammer asks, comma-separated ('prometheus': "
                        "/metrics/per-object)")
    a = p.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "--bin", "warren", "-p", "warren",
                    "-p", "warren-perf"], cwd=ROOT, check=True)
    warren = ROOT / "target" / "release" / "warren"
    perf_bin = ROOT / "target" / "release" / "warren-perf"
    data = tempfile.mkdtemp(prefix="warren-stall-")
    port, mport, prom_port = free_port(), free_port(), free_port()
    cmd = [str(warren), "serve", "--shards", "1", "--bind", "127.0.0.1", "--port", str(port),
           "--management-port", str(mport), "--prometheus-port", str(prom_port),
           "--data-dir", data, "--log", "warn"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not port_open(port):
            time.sleep(0.05)
        base = f"http://127.0.0.1:{mport}"
        for i in range(a.queues):
            http(f"{base}/api/queues/%2F/stall-q-{i}", "PUT", {"durable": False})
        urls = [f"http://127.0.0.1:{prom_port}/metrics/per-object" if p == "prometheus"
                else base + p for p in a.paths.split(",")]
        tmp = Path(data) / "perf"
        tmp.mkdir()
        idle = perf(perf_bin, port, a.seconds, tmp / "idle.json")
        h = Hammer(urls, a.pause)
        h.start()
        loaded = perf(perf_bin, port, a.seconds, tmp / "loaded.json")
        h.stop.set()
        h.join(timeout=120)
        per_url = {}
        for u, t in h.times:
            per_url.setdefault(u.replace(base, ""), []).append(t * 1000)
        result = {
            "command": " ".join([sys.argv[0], *sys.argv[1:]]),
            "broker": " ".join(cmd),
            "queues": a.queues,
            "idle_latency_us": idle,
            "loaded_latency_us": loaded,
            "http_requests": h.count,
            "http_ms_median": {u: sorted(v)[len(v) // 2] for u, v in per_url.items()},
            "http_ms_max": {u: max(v) for u, v in per_url.items()},
        }
        lines = [f"# Management API against a shard's reactor ({a.queues} queues, 1 shard)", "",
                 f"`{result['command']}`", "",
                 "| phase | p50 µs | p99 µs | p99.9 µs | max µs |", "|---|---|---|---|---|"]
        for name, lat in (("idle API", idle), ("API loaded", loaded)):
            lines.append(f"| {name} | {lat['p50']:.0f} | {lat['p99']:.0f} | "
                         f"{lat['p99_9']:.0f} | {lat['max']:.0f} |")
        lines += ["", f"{h.count} HTTP requests in the loaded phase ({a.pause} s apart); "
                  "median / max ms per request:"]
        for u in per_url:
            lines.append(f"- `{u}`: {result['http_ms_median'][u]:.1f} / "
                         f"{result['http_ms_max'][u]:.1f}")
        text = "\n".join(lines) + "\n"
        print(text)
        if a.out:
            out = Path(a.out)
            out.mkdir(parents=True, exist_ok=True)
            tag = a.paths.replace("/", "_").replace(",", "+").strip("_")
            (out / f"stall-{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
            (out / f"stall-{tag}.md").write_text(text)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
