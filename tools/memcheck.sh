#!/usr/bin/env bash
# Run the compiled kernels under valgrind memcheck and report errors in fastbp's code.
#   bash tools/memcheck.sh            (uses the fastbp importable from the current python)
# Needs valgrind (apt-get install valgrind). Takes a few minutes: valgrind is ~50x slower.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG=${LOG:-${TMPDIR:-/tmp}/fastbp-memcheck.log}
PYTHONMALLOC=malloc OMP_NUM_THREADS=2 valgrind --tool=memcheck --error-limit=no \
    --errors-for-leak-kinds=definite --leak-check=full --num-callers=30 \
    --log-file="$LOG" python3 tools/memcheck_workload.py
# count the error records whose stack passes through fastbp's extension modules
python3 - "$LOG" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
records = re.split(r"\n==\d+== \n", text)
ours = [r for r in records if ("Invalid" in r or "uninitialised" in r or "definitely lost" in r)
        and re.search(r"fastbp/_(engine|kernels|blas)", r)]
print(f"valgrind: {len(ours)} error records in fastbp's compiled code (log: {sys.argv[1]})")
for r in ours[:5]:
    print(r[:2000])
sys.exit(1 if ours else 0)
PY
