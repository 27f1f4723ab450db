#!/usr/bin/env bash
# Warren's full test suite: Rust tests (1 and 3 shards) + Python/pika
# compatibility tests (1 and 3 shards).  Needs only Rust and Python >= 3.8.
#
#   tools/test.sh                # everything
#   tools/test.sh --quick        # shards=3 only
#   tools/test.sh --python-only  # skip cargo test (still builds the binary)
#   tools/test.sh --rust-only    # skip the Python suite
#   tools/test.sh -- -k routing  # extra arguments after -- go to pytest
#
# Environment: PYTHON (interpreter used to create the venv, default python3),
# PYTEST_TIMEOUT (per-test timeout in seconds, default 60).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

QUICK=0
RUN_RUST=1
RUN_PY=1
PYTEST_EXTRA=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --python-only) RUN_RUST=0 ;;
        --rust-only) RUN_PY=0 ;;
        --) shift; PYTEST_EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "tools/test.sh: unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done
if [[ $RUN_RUST -eq 0 && $RUN_PY -eq 0 ]]; then
    echo "tools/test.sh: --python-only and --rust-only together run nothing" >&2
    exit 2
fi

if [[ $QUICK -eq 1 ]]; then SHARDS_LIST=(3); else SHARDS_LIST=(1 3); fi
PYTHON="${PYTHON:-python3}"
PYTEST_TIMEOUT="${PYTEST_TIMEOUT:-60}"
VENV="$ROOT/tests/python/.venv"

RESULTS=()
FAILED=0
record() {  # record NAME STATUS
    RESULTS+=("$(printf '%-34s %s' "$1" "$2")")
    if [[ "$2" != PASS ]]; then FAILED=1; fi
}
summary() {
    echo
    echo "================ tools/test.sh summary ================"
    local r
    for r in "${RESULTS[@]+"${RESULTS[@]}"}"; do echo "  $r"; done
    if [[ $FAILED -eq 0 ]]; then echo "  RESULT: ALL PASSED"; else echo "  RESULT: FAILED"; fi
    echo "======================================================="
}
trap 'rc=$?; if [[ $rc -ne 0 && ${#RESULTS[@]} -eq 0 ]]; then echo "tools/test.sh: aborted (exit $rc)" >&2; fi' EXIT

step() { echo; echo "==> $*"; }

# --- layout checks ------------------------------------------------------
step "tools/check-module-cycles.py (no import circles between top-level modules)"
if "$PYTHON" tools/check-module-cycles.py --self-test >/dev/null && "$PYTHON" tools/check-module-cycles.py; then
    record "module cycles" PASS
else
    record "module cycles" FAIL
fi
step "tools/check-codegen.sh (src/codec/methods.rs regenerates byte for byte)"
SPEC="$ROOT/../shared/spec/amqp0-9-1.extended.xml"
if [[ ! -f "$SPEC" ]]; then
    # A checkout without the shared spec beside it (CI has it): say so.
    echo "tools/test.sh: no AMQP spec at $SPEC: codegen check not run"
    RESULTS+=("$(printf '%-34s %s' "codegen reproducible" "SKIPPED (no spec beside the checkout)")")
elif PYTHON="$PYTHON" tools/check-codegen.sh --spec "$SPEC"; then
    record "codegen reproducible" PASS
else
    record "codegen reproducible" FAIL
fi

# --- build --------------------------------------------------------------
step "cargo build --release --bins"
if cargo build --release --bins; then
    record "cargo build --release" PASS
else
    record "cargo build --release" FAIL
    summary
    exit 1
fi

# The TLS tests (tests/amqp_tls.rs, test_tls.py) make throwaway
# certificates with openssl (tests/fixtures/make-test-certs.sh); a minimal
# Debian machine may lack the command. As root with apt-get, install it.
ensure_openssl() {
    command -v openssl >/dev/null 2>&1 && return 0
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        step "installing openssl (the TLS tests make their certificates with it)"
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssl; } \
            || echo "tools/test.sh: could not install openssl; the TLS tests will fail" >&2
    else
        echo "tools/test.sh: no openssl command: install it, or the TLS tests fail" >&2
    fi
}
ensure_openssl

# --- Rust tests -----------------------------------------------------------
if [[ $RUN_RUST -eq 1 ]]; then
    for shards in "${SHARDS_LIST[@]}"; do
        step "cargo test --release (WARREN_TEST_SHARDS=$shards)"
        if WARREN_TEST_SHARDS=$shards cargo test --release; then
            record "cargo test (shards=$shards)" PASS
        else
            record "cargo test (shards=$shards)" FAIL
        fi
    done
fi

# --- Python compatibility tests ------------------------------------------
ensure_venv() {
    if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import pika, pytest, pytest_timeout' 2>/dev/null \
        && [[ "$VENV/.requirements.stamp" -nt "$ROOT/tests/python/requirements.txt" ]]; then
        return 0
    fi
    step "creating Python venv at tests/python/.venv"
    if ! "$PYTHON" -m venv "$VENV" 2>/tmp/warren-venv-err.$$; then
        cat /tmp/warren-venv-err.$$ >&2
        rm -rf "$VENV"
        if grep -qiE 'ensurepip|python3-venv' /tmp/warren-venv-err.$$; then
            echo "tools/test.sh: '$PYTHON -m venv' failed: ensurepip is missing (Debian/Ubuntu ship it in python3-venv)." >&2
            if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
                local pyver
                pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
                echo "tools/test.sh: running as root: installing python3-venv via apt-get" >&2
                apt-get update -q || return 1
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv \
                    || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "python${pyver}-venv" \
                    || return 1
                "$PYTHON" -m venv "$VENV" || return 1
            else
                echo "tools/test.sh: install it (e.g. 'sudo apt-get install python3-venv') and re-run." >&2
                rm -f /tmp/warren-venv-err.$$
                return 1
            fi
        else
            rm -f /tmp/warren-venv-err.$$
            return 1
        fi
    fi
    rm -f /tmp/warren-venv-err.$$
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
    # (set -e does not apply inside a function called from `if`: check explicitly)
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -r "$ROOT/tests/python/requirements.txt" || return 1
    touch "$VENV/.requirements.stamp"
}

# test_loopback.py makes a network namespace with iproute2's `ip`; a clean
# Debian machine may not have it. As root with apt-get, install it (else
# that test says why it is skipped).
ensure_ip() {
    command -v ip >/dev/null 2>&1 && return 0
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        step "installing iproute2 (test_loopback.py needs ip netns)"
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2; } \
            || echo "tools/test.sh: could not install iproute2; test_loopback.py will be skipped" >&2
    fi
}

# test_web_page.py drives headless Chromium (Debian's chromium and
# chromium-driver); tools/install-browser.sh installs them when missing.
ensure_browser() {
    command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && return 0
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        step "installing chromium and chromium-driver (test_web_page.py)"
        "$ROOT/tools/install-browser.sh" \
            || echo "tools/test.sh: tools/install-browser.sh failed; test_web_page.py will fail" >&2
    else
        echo "tools/test.sh: no chromium/chromedriver: run tools/install-browser.sh as root, or test_web_page.py fails" >&2
    fi
}

# test_rabbitmqadmin.py runs RabbitMQ's own rabbitmqadmin script against
# Warren; tools/install-rabbitmqadmin.sh takes it from Debian's package
# without installing a RabbitMQ server.
ensure_rabbitmqadmin() {
    command -v rabbitmqadmin >/dev/null 2>&1 && return 0
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        step "installing rabbitmqadmin (test_rabbitmqadmin.py)"
        "$ROOT/tools/install-rabbitmqadmin.sh" \
            || echo "tools/test.sh: tools/install-rabbitmqadmin.sh failed; test_rabbitmqadmin.py will fail" >&2
    else
        echo "tools/test.sh: no rabbitmqadmin: run tools/install-rabbitmqadmin.sh as root, or test_rabbitmqadmin.py fails" >&2
    fi
}

if [[ $RUN_PY -eq 1 ]]; then
    ensure_ip
    ensure_browser
    ensure_rabbitmqadmin
    if ensure_venv; then
        record "python venv" PASS
        for shards in "${SHARDS_LIST[@]}"; do
            step "pytest tests/python (WARREN_SHARDS=$shards)"
            if env -u WARREN_TEST_URL \
                WARREN_BIN="$ROOT/target/release/warren" WARREN_SHARDS="$shards" \
                "$VENV/bin/python" -m pytest "$ROOT/tests/python" -q \
                    --timeout="$PYTEST_TIMEOUT" \
                    "${PYTEST_EXTRA[@]+"${PYTEST_EXTRA[@]}"}"; then
                record "pytest (shards=$shards)" PASS
            else
                record "pytest (shards=$shards)" FAIL
            fi
        done
    else
        record "python venv" FAIL
    fi
fi

summary
exit "$FAILED"
