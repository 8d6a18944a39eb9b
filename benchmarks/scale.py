"""Docs/s for many documents: `nlp.pipe`, the `apply` local engine, and the Ray engine
with 1 and 2 workers, on SST-2 (and ChnSentiCorp) train texts, run interleaved
(A, B, C, D, A, B, ...) so a busy machine slows them alike; then a projection for N
workers from the measured per-worker rate and startup cost.

    python benchmarks/scale.py --langs en zh --n 2000 --rounds 3

The data sets are read from `shared/data` beside the project folder, or from the
folder that SPACY_CLS_DATA names.

The head is initialised, not trained (the same computation as a trained one). Every
engine runs torch on one thread per worker; Ray runs on a local cluster of this
machine's CPUs, started once before the timings (its start is reported apart).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

from _common import LANGUAGES, interleaved, markdown_table, median, read_chnsenticorp, read_sst2, write_results  # noqa: E402

PROJECTED_WORKERS = (1, 2, 4, 8, 16, 32, 64)
PROJECTED_DOCS = 10_000_000


def build_pipeline(lang: str, folder: Path) -> Path:
    import spacy
    from spacy.training import Example

    import spacy_cls  # noqa: F401

    spec = LANGUAGES[lang]
    nlp = spacy.blank(lang)
    nlp.add_pipe("cls_classifier", config={"model": {"name": spec.model_name, "tokenizer_config": spec.tokenizer_config}})
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(i == 0), "NEG": float(i == 1)}})
                for i, t in enumerate(["good", "bad"])]
    nlp.initialize(lambda: examples)
    nlp.to_disk(folder)
    return folder


def texts_for(lang: str, n: int) -> List[str]:
    if os.environ.get("SPACY_CLS_DATA"):
        _common.SHARED_DATA = Path(os.environ["SPACY_CLS_DATA"])
    rows = read_sst2("train") if lang == "en" else read_chnsenticorp("train")
    return [text for text, _ in rows[:n]]


def measure(lang: str, n: int, rounds: int, batch_size: int, work: Path) -> Dict:
    import spacy
    import torch

    from spacy_cls.scale import inputs, output
    from spacy_cls.scale.local import run_local
    from spacy_cls.scale.predict import Predictor
    from spacy_cls.scale.ray_engine import run_ray

    torch.set_num_threads(1)
    pipeline = build_pipeline(lang, work / f"pipeline_{lang}")
    texts = texts_for(lang, n)
    data = work / f"{lang}.jsonl"
    data.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)),
                    encoding="utf8")
    small = work / f"{lang}_small.jsonl"
    small.write_text("".join(data.read_text(encoding="utf8").splitlines(keepends=True)[:16]), encoding="utf8")
    shards = inputs.plan_shards(inputs.describe_files(data, "text"), 1000)
    small_shards = inputs.plan_shards(inputs.describe_files(small, "text"), 1000)
    nlp = spacy.load(pipeline)
    predictor = Predictor(pipeline, batch_size=batch_size, num_threads=1)
    counter = {"i": 0}

    def fresh() -> Path:
        counter["i"] += 1
        out = work / f"out_{lang}_{counter['i']}"
        output.prepare(out, {"run": counter["i"]}, overwrite=True)
        return out

    def ray_run(which, workers):
        return lambda: run_ray(which, fresh(), pipeline, text_col="text", id_col="id", vectors=False,
                               batch_size=batch_size, workers=workers, gpus_per_worker=0, address=None,
                               component=None, shard_rows=1000)

    runs = {
        "nlp.pipe": lambda: list(nlp.pipe(texts, batch_size=batch_size)),
        "apply local": lambda: run_local(shards, fresh(), predictor, text_col="text", id_col="id", progress=False),
        "ray startup (16 docs, 1 worker)": ray_run(small_shards, 1),
        "apply ray, 1 worker": ray_run(shards, 1),
        "apply ray, 2 workers": ray_run(shards, 2),
    }
    load_before = os.getloadavg()
    seconds = interleaved(runs, rounds)
    load_after = os.getloadavg()
    for path in work.glob(f"out_{lang}_*"):
        shutil.rmtree(path, ignore_errors=True)
    return {"n_docs": n, "rounds": rounds, "batch_size": batch_size, "seconds": seconds,
            "load_before": load_before, "load_after": load_after}


def report(results: Dict[str, Dict], ray_start_seconds: float) -> str:
    parts = []
    for lang, r in results.items():
        n = r["n_docs"]
        med = {name: median(values) for name, values in r["seconds"].items()}
        rate = {name: n / s for name, s in med.items() if "startup" not in name}
        startup = med["ray startup (16 docs, 1 worker)"]
        steady = {k: n / max(med[f"apply ray, {k} worker{'s' * (k > 1)}"] - startup, 1e-9) for k in (1, 2)}
        rows = [[name, f"{med[name]:.1f}", f"{rate[name]:.1f}" if name in rate else "-",
                 ", ".join(f"{v:.1f}" for v in r["seconds"][name])] for name in r["seconds"]]
        parts.append(f"## {LANGUAGES[lang].dataset.split()[0]} train, first {n:,} texts ({lang})\n")
        parts.append(f"Load average before / after: {' '.join(f'{x:.1f}' for x in r['load_before'])} / "
                     f"{' '.join(f'{x:.1f}' for x in r['load_after'])}\n")
        parts.append("Measured (median of the interleaved rounds; every round in the last column):\n")
        parts.append(markdown_table(["system", "median s", "docs/s", "rounds (s)"], rows))
        ratios = [
            ["apply local / nlp.pipe", f"{rate['apply local'] / rate['nlp.pipe']:.2f}", ">= 0.9"],
            ["ray 1 worker / apply local (end to end, startup included)",
             f"{rate['apply ray, 1 worker'] / rate['apply local']:.2f}", ">= 0.8"],
            ["ray 1 worker / apply local (startup taken off)", f"{steady[1] / rate['apply local']:.2f}", ""],
            ["ray 2 workers / ray 1 worker (startup taken off)", f"{steady[2] / steady[1]:.2f}", ""],
        ]
        parts.append("\nRatios (measured):\n")
        parts.append(markdown_table(["ratio", "value", "target"], ratios))
        per_worker = steady[1]
        proj = [[k, f"{per_worker * k:,.0f}", f"{(startup + PROJECTED_DOCS / (per_worker * k)) / 3600:.2f}"]
                for k in PROJECTED_WORKERS]
        parts.append(
            f"\nProjected (not measured): {PROJECTED_DOCS:,} docs with N workers of one CPU thread each, "
            f"from the measured per-worker rate ({per_worker:.1f} docs/s, startup taken off) and the measured "
            f"startup ({startup:.1f} s: actors started, pipeline loaded, 16 docs), assuming linear scaling "
            f"(one core per worker, reading and writing not the bottleneck):\n"
        )
        parts.append(markdown_table(["workers", "docs/s", "hours"], proj))
        parts.append("")
    parts.append(f"Starting the local Ray cluster itself (once, before the rounds): {ray_start_seconds:.1f} s.")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--langs", nargs="+", default=["en", "zh"], choices=sorted(LANGUAGES))
    parser.add_argument("--n", type=int, default=2000, help="texts per language")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    from spacy_cls.scale.ray_engine import start_local_ray

    work = Path(tempfile.mkdtemp(prefix="spacy_cls_scale_"))
    started = time.perf_counter()
    start_local_ray(num_cpus=os.cpu_count(), object_store_memory=500 * 1024**2, _temp_dir=str(work / "ray"),
                    log_to_driver=False)
    ray_start = time.perf_counter() - started
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        results = {lang: measure(lang, args.n, args.rounds, args.batch_size, work) for lang in args.langs}
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    body = report(results, ray_start)
    print(body)
    write_results("scale", "Many documents: nlp.pipe, apply local, apply on Ray", body,
                  {"results": results, "ray_start_seconds": ray_start,
                   "projection": {"workers": PROJECTED_WORKERS, "docs": PROJECTED_DOCS}},
                  notes="The head is initialised, not trained: the same computation as a trained head.")


if __name__ == "__main__":
    main()
