#!/usr/bin/env bash
# Creates the SetFit environment of the few-shot benchmark (benchmarks/fewshot.py):
# SetFit, latest on PyPI, beside a CPU build of torch. It is a benchmark-only
# environment, never a dependency of spacy_cls.
#
#   bash benchmarks/setup_setfit_venv.sh [VENV]      (default: .venv-setfit in the project)
#
# torch is pinned (SETFIT_TORCH, default 2.13.0, the project's own) and installed before
# SetFit, which is then installed under that pin: an unpinned torch would pull a
# multi-gigabyte CUDA build and its nvidia-* wheels. Where the pinned release resolves
# to a CUDA build (plain PyPI on Linux), name the CPU wheels' index:
#   SETFIT_TORCH_INDEX=https://download.pytorch.org/whl/cpu bash benchmarks/setup_setfit_venv.sh
# The script stops before installing anything that would bring nvidia-* packages.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-setfit}"
PYTHON="${PYTHON:-python3}"
TORCH="${SETFIT_TORCH:-2.13.0}"
SETFIT="${SETFIT_VERSION:-}"   # empty: the latest release

"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip)
CONSTRAINTS="$VENV/setfit-constraints.txt"
echo "torch==$TORCH" > "$CONSTRAINTS"

refuse_cuda() {
    # $1: what is being installed; the rest: pip arguments. Stops when pip would install nvidia-* wheels.
    local what="$1"; shift
    local report="$VENV/dry-run-$what.json"
    "${PIP[@]}" install --quiet --dry-run --ignore-installed --report "$report" "$@" >/dev/null
    local cuda
    cuda="$("$VENV/bin/python" - "$report" <<'PY'
import json, sys
items = json.load(open(sys.argv[1], encoding="utf8"))["install"]
names = sorted({i["metadata"]["name"] for i in items if i["metadata"]["name"].lower().startswith("nvidia")})
torch = [i["metadata"]["version"] for i in items if i["metadata"]["name"].lower() == "torch"]
if names or any("+cu" in v for v in torch):
    print(", ".join(names + [f"torch {v}" for v in torch]))
PY
)"
    if [ -n "$cuda" ]; then
        echo "Installing $what would pull a CUDA build of torch ($cuda)." >&2
        echo "Set SETFIT_TORCH_INDEX to the CPU wheels' index (https://download.pytorch.org/whl/cpu) and run again." >&2
        exit 1
    fi
}

TORCH_ARGS=("torch==$TORCH")
if [ -n "${SETFIT_TORCH_INDEX:-}" ]; then
    TORCH_ARGS+=(--extra-index-url "$SETFIT_TORCH_INDEX")
fi
refuse_cuda torch "${TORCH_ARGS[@]}"
"${PIP[@]}" install "${TORCH_ARGS[@]}"

SETFIT_ARGS=("setfit${SETFIT:+==$SETFIT}" -c "$CONSTRAINTS")
refuse_cuda setfit "${SETFIT_ARGS[@]}"
"${PIP[@]}" install "${SETFIT_ARGS[@]}"
# scikit-learn for the scores; setfit installs it, named here so that a change there does not break the runner.
"${PIP[@]}" install scikit-learn -c "$CONSTRAINTS"

"$VENV/bin/python" - <<'PY'
from importlib.metadata import version
import torch
print("SetFit environment ready:", ", ".join(
    f"{name} {version(name)}" for name in ("setfit", "sentence-transformers", "transformers", "torch")),
    "| CUDA build" if torch.version.cuda else "| CPU build")
PY
