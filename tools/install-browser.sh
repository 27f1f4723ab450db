#!/bin/sh
# Installs headless Chromium and its WebDriver (Debian's chromium and
# chromium-driver packages) for tests/python/test_web_page.py, when missing.
# Idempotent and quiet; needs root or sudo.
set -eu

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser.sh: apt-get not found; install Chromium and chromedriver by hand" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq chromium chromium-driver fonts-dejavu-core >/dev/null

command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1
