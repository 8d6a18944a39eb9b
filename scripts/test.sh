#!/usr/bin/env bash
# Set up and run the test suite: fast tests on a tiny offline BERT, then the slow ones on
# the real offline checkpoints; GPU tests skip without CUDA, data-set tests without the
# data sets (docs/datasets.md). Arguments go to pytest, e.g. -m "not slow" for the fast
# tests only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "[test] python -m pytest $*"
exec bash scripts/run_tests.sh "$@"
