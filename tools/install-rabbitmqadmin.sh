#!/bin/sh
# Install rabbitmqadmin (the management HTTP API's command-line client)
# without installing or starting a RabbitMQ server.
#
# Debian's rabbitmq-server package ships it as /usr/bin/rabbitmqadmin, a
# Python 3 script. If `rabbitmqadmin` is already on PATH this does nothing;
# otherwise it downloads the package with `apt-get download` (no install,
# no maintainer scripts), unpacks it with `dpkg-deb -x` into a temporary
# directory and copies only the script to $DEST (default /usr/local/bin).
#
#   tools/install-rabbitmqadmin.sh            # -> /usr/local/bin/rabbitmqadmin
#   DEST=/some/dir tools/install-rabbitmqadmin.sh
#
# Quiet on success; exit status non-zero with a message on failure.
set -eu

DEST="${DEST:-/usr/local/bin}"

if command -v rabbitmqadmin >/dev/null 2>&1; then
    exit 0
fi
if [ -x "$DEST/rabbitmqadmin" ]; then
    exit 0
fi
for tool in apt-get dpkg-deb python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-rabbitmqadmin: $tool not found (a Debian/Ubuntu system is needed)" >&2
        exit 1
    fi
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT INT TERM

# apt-get download writes into the current directory and needs the package
# lists; refresh them once if the first attempt fails.
if ! (cd "$tmp" && apt-get download -q=2 rabbitmq-server >/dev/null 2>&1); then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q=2 >/dev/null 2>&1 || true
    fi
    if ! (cd "$tmp" && apt-get download -q=2 rabbitmq-server >/dev/null 2>&1); then
        echo "install-rabbitmqadmin: 'apt-get download rabbitmq-server' failed" >&2
        exit 1
    fi
fi

deb="$(ls "$tmp"/rabbitmq-server_*.deb 2>/dev/null | head -n 1)"
if [ -z "$deb" ]; then
    echo "install-rabbitmqadmin: no rabbitmq-server .deb downloaded" >&2
    exit 1
fi
dpkg-deb -x "$deb" "$tmp/root"
src="$tmp/root/usr/bin/rabbitmqadmin"
if [ ! -f "$src" ]; then
    # Some packagings keep it only among the plugin's files.
    src="$(find "$tmp/root" -type f -name rabbitmqadmin | head -n 1)"
fi
if [ -z "$src" ] || [ ! -f "$src" ]; then
    echo "install-rabbitmqadmin: rabbitmqadmin not found in $(basename "$deb")" >&2
    exit 1
fi
mkdir -p "$DEST"
cp "$src" "$DEST/rabbitmqadmin.tmp.$$"
chmod 0755 "$DEST/rabbitmqadmin.tmp.$$"
mv -f "$DEST/rabbitmqadmin.tmp.$$" "$DEST/rabbitmqadmin"
