"""Per-round Warren/RabbitMQ ratios of the paired runs, and their medians."""
import json, statistics, sys
from pathlib import Path

out = Path(sys.argv[1])
rows = {}
for d in sorted(out.glob("r*-*")):
    if not d.is_dir():
        continue
    rnd, which = d.name.split("-")
    for sc in ("S1", "S2", "S6"):
        try:
            w = json.loads((d / "raw" / f"{sc}-warren-r1.json").read_text())
            q = json.loads((d / "raw" / f"{sc}-rabbitmq-r1.json").read_text())
        except FileNotFoundError:
            continue
        key = "confirm_rate" if sc == "S2" else "publish_rate"
        for metric in (key, "consume_rate"):
            ratio = w[metric] / q[metric]
            rows.setdefault((sc, metric, which), []).append((rnd, ratio, w[metric], q[metric]))
print("| scenario | metric | before: per-round ratios | median | after: per-round ratios | median | change |")
print("|---|---|---|---|---|---|---|")
for sc in ("S1", "S2", "S6"):
    for metric in ("publish_rate", "confirm_rate", "consume_rate"):
        b, a = rows.get((sc, metric, "before")), rows.get((sc, metric, "after"))
        if not b or not a:
            continue
        mb = statistics.median(r for _, r, _, _ in b)
        ma = statistics.median(r for _, r, _, _ in a)
        fb = " ".join(f"{r:.2f}" for _, r, _, _ in b)
        fa = " ".join(f"{r:.2f}" for _, r, _, _ in a)
        print(f"| {sc} | {metric.split('_')[0]} | {fb} | {mb:.2f}x | {fa} | {ma:.2f}x | {100*(ma/mb-1):+.1f}% |")
