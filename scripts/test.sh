#!/usr/bin/env bash
# Set up and run the whole test suite (fast tests on a tiny offline BERT, then the
# slow ones on the real offline checkpoints). GPU tests skip without CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
python -m pytest -q -p no:cacheprovider "$@"
