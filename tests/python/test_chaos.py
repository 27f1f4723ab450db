"""A short run of tools/chaos.py: SIGKILL the broker at random moments while
confirmed publishers, manual-ack consumers and a topology churner run, then
check that nothing confirmed was lost, nothing unpublished was delivered,
redeliveries are flagged and confirmed topology survived.

Starts its own broker (WARREN_BIN, --shards $WARREN_SHARDS as in conftest),
so it is marked needs_warren_process. Fixed seed; about 35 s.
"""

import importlib.util
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))

pytestmark = pytest.mark.needs_warren_process


def load_chaos():
    spec = importlib.util.spec_from_file_location(
        "warren_chaos", os.path.join(REPO_ROOT, "tools", "chaos.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.timeout(150)
def test_chaos_short_run():
    chaos = load_chaos()
    b = chaos.default_bin()
    if not os.path.exists(b):
        pytest.fail("broker binary not found: %s (set WARREN_BIN)" % b, pytrace=False)
    args = chaos.parser().parse_args([
        "--bin", b,
        "--shards", os.environ.get("WARREN_SHARDS", "3"),
        "--cycles", "12",
        "--seed", "20261201",
        "--min-up", "1.0",
        "--max-up", "3.0",
        "--rate", "100",
    ])
    s = chaos.run(args, out=lambda _line: None)
    report = chaos.format_summary(s)
    assert s["violations"] == {}, report
    assert s["lost_confirmed"] == 0, report
    # The run must have exercised something, or "no violations" means nothing.
    assert s["broker_starts"] >= 12 + 2, report
    assert s["confirmed"] > 500, report
    assert s["deliveries"] >= s["confirmed"], report
    assert s["duplicates"] > 0, report   # requeues and crashes redeliver
