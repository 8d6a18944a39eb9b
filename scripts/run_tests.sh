#!/usr/bin/env bash
# Run pytest offline with the given arguments; a run that collects no test fails
# (pytest's exit status 5), so a typo in a test path or -k expression cannot pass.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
"${PYTHON:-python}" -m pytest -q -p no:cacheprovider "$@"
status=$?
if [ "$status" -eq 5 ]; then
    echo "run_tests: no test was collected (pytest exit status 5); check the paths and -k/-m expressions: $*" >&2
    exit 1
fi
exit "$status"
