"""A short run of tools/fuzz-stateful.py against the session's broker:
random but well-formed method sequences on several connections and
channels, checked against the fuzzer's model (outcomes and error codes,
deliveries, redelivered flags, counts at checkpoints, no hangs).

Fixed seed, about 30 s of operations. Runs the fuzzer as a subprocess so
that its hang watchdog (exit status 3) cannot take pytest down with it.
Works against an external broker too (WARREN_TEST_URL); the model follows
RabbitMQ 3.10.
"""

import ast
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FUZZER = os.path.join(REPO_ROOT, "tools", "fuzz-stateful.py")

SEED = 20261201
DURATION_S = 30


@pytest.mark.timeout(DURATION_S + 60)
def test_stateful_fuzz(broker):
    cmd = [sys.executable, FUZZER, "--url", broker.url, "--seed", str(SEED),
           "--duration", str(DURATION_S)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=DURATION_S + 50, cwd=REPO_ROOT)
    out = r.stdout
    assert r.returncode == 0, "fuzzer exit status %d (3: a hang)\n%s" % (r.returncode, out[-12000:])
    assert "\nok: " in out, out[-12000:]
    # It must have done real work, or passing means nothing.
    figures = ast.literal_eval(out.split("\nfigures: ", 1)[1].splitlines()[0])
    assert figures.get("published", 0) > 500, out[-3000:]
    assert figures.get("deliveries", 0) > 200, out[-3000:]
    assert figures.get("checkpoints", 0) >= 5, out[-3000:]
    assert broker.alive(), broker.describe_exit() if not broker.external else ""
