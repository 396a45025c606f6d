#!/usr/bin/env bash
# Build the compiled kernels with AddressSanitizer in a scratch copy of the repository and
# run the whole test suite against them.
#   bash tools/asan.sh [pytest args...]
# Needs gcc's libasan (Debian: libasan8, installed with gcc). Python itself is not
# instrumented, so libasan is preloaded; leak detection is off (CPython keeps memory
# alive at exit by design).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d -t fastbp-asan-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
git -C "$ROOT" ls-files -z | (cd "$ROOT" && xargs -0 cp --parents -t "$WORK")
cd "$WORK"
CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g" LDFLAGS="-fsanitize=address" \
    FASTBP_DEBUG=1 python3 setup.py build_ext --inplace > build.log 2>&1 || { tail -30 build.log; exit 1; }
LIBASAN=$(gcc -print-file-name=libasan.so)
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1
LD_PRELOAD="$LIBASAN" PYTHONPATH="$WORK/src" python3 -m pytest -q -p no:cacheprovider \
    -x "${@:-tests}"
