#!/usr/bin/env bash
# Checks that src/codec/methods.rs is exactly what tools/codegen_methods.py
# generates from the AMQP spec (piped through rustfmt).
#   tools/check-codegen.sh [extra codegen_methods.py options, e.g. --spec PATH]
# Exit status: 0 up to date, 1 differs (a diff head is printed),
# 2 spec file or rustfmt missing.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${PYTHON:-python3}" tools/codegen_methods.py --check "$@"
