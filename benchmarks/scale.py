"""Docs/s for many documents: `nlp.pipe`, the `apply` local engine, and the Ray engine
with 1 and 2 workers, on SST-2 (and ChnSentiCorp) train texts, run interleaved
(A, B, C, D, A, B, ...) so a busy machine slows them alike; then a projection for N
workers from the measured per-worker rate and startup cost.

    python benchmarks/scale.py --langs en zh --n 4000 800 --rounds 3

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
SHARD_ROWS = 500


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


def timed_predictor(ready_file: Path):
    """A Predictor that appends the time it is ready (pipeline loaded) to `ready_file`."""
    from spacy_cls.scale.predict import Predictor

    class TimedPredictor(Predictor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            with open(ready_file, "a", encoding="utf8") as f:
                f.write(f"{time.time()}\n")

    return TimedPredictor


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
    from spacy_cls.scale.ray_engine import write_parts

    torch.set_num_threads(1)
    pipeline = build_pipeline(lang, work / f"pipeline_{lang}")
    texts = texts_for(lang, n)
    data = work / f"{lang}.jsonl"
    data.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)),
                    encoding="utf8")
    shards = inputs.plan_shards(inputs.describe_files(data, "text"), SHARD_ROWS)
    nlp = spacy.load(pipeline)
    predictor = Predictor(pipeline, batch_size=batch_size, num_threads=1)
    counter = {"i": 0}

    def fresh() -> Path:
        counter["i"] += 1
        out = work / f"out_{lang}_{counter['i']}"
        output.prepare(out, {"run": counter["i"]}, overwrite=True)
        return out

    phases: Dict[str, List[Dict[str, float]]] = {"apply ray, 1 worker": [], "apply ray, 2 workers": []}

    def ray_run(workers):
        name = f"apply ray, {workers} worker{'s' * (workers > 1)}"

        def run():
            # startup: until the first actor has loaded the pipeline (each actor notes
            # the time in a file); steady: all rows over the time after it.
            ready_file = work / f"ready_{lang}_{counter['i'] + 1}"
            start = time.time()
            sum(write_parts(shards, fresh(), pipeline, text_col="text", id_col="id", vectors=False,
                            batch_size=batch_size, workers=workers, gpus_per_worker=0, component=None,
                            shard_rows=SHARD_ROWS, predictor_cls=timed_predictor(ready_file)))
            end = time.time()
            ready = min(float(x) for x in ready_file.read_text().split())
            phases[name].append({"startup_s": ready - start, "steady_docs_per_s": n / max(end - ready, 1e-9)})
        return run

    runs = {
        "nlp.pipe": lambda: list(nlp.pipe(texts, batch_size=batch_size)),
        "apply local": lambda: run_local(shards, fresh(), predictor, text_col="text", id_col="id", progress=False),
        "apply ray, 1 worker": ray_run(1),
        "apply ray, 2 workers": ray_run(2),
    }
    load_before = os.getloadavg()
    seconds = interleaved(runs, rounds)
    load_after = os.getloadavg()
    for path in work.glob(f"out_{lang}_*"):
        shutil.rmtree(path, ignore_errors=True)
    return {"n_docs": n, "rounds": rounds, "batch_size": batch_size, "seconds": seconds, "ray_phases": phases,
            "load_before": load_before, "load_after": load_after}


def report(results: Dict[str, Dict], ray_start_seconds: float) -> str:
    parts = []
    for lang, r in results.items():
        n = r["n_docs"]
        med = {name: median(values) for name, values in r["seconds"].items()}
        rate = {name: n / s for name, s in med.items()}
        phase = {name: (median([p["startup_s"] for p in runs]), median([p["steady_docs_per_s"] for p in runs]))
                 for name, runs in r["ray_phases"].items()}
        startup = phase["apply ray, 1 worker"][0]
        steady = {1: phase["apply ray, 1 worker"][1], 2: phase["apply ray, 2 workers"][1]}
        rows = [[name, f"{med[name]:.1f}", f"{rate[name]:.1f}",
                 f"{phase[name][0]:.1f} s, then {phase[name][1]:.1f} docs/s" if name in phase else "-",
                 ", ".join(f"{v:.1f}" for v in r["seconds"][name])] for name in r["seconds"]]
        parts.append(f"## {LANGUAGES[lang].dataset.split()[0]} train, first {n:,} texts ({lang})\n")
        parts.append(f"Load average before / after: {' '.join(f'{x:.1f}' for x in r['load_before'])} / "
                     f"{' '.join(f'{x:.1f}' for x in r['load_after'])}\n")
        parts.append("Measured (median of the interleaved rounds; every round in the last column):\n")
        parts.append(markdown_table(["system", "median s", "docs/s", "Ray: startup, then steady rate", "rounds (s)"], rows))
        ratios = [
            ["apply local / nlp.pipe", f"{rate['apply local'] / rate['nlp.pipe']:.2f}", ">= 0.9"],
            ["ray 1 worker / apply local (end to end, startup included)",
             f"{rate['apply ray, 1 worker'] / rate['apply local']:.2f}", ">= 0.8"],
            ["ray 1 worker steady rate / apply local", f"{steady[1] / rate['apply local']:.2f}", ">= 0.8"],
            ["ray 2 workers / ray 1 worker, steady rates", f"{steady[2] / steady[1]:.2f}", ""],
        ]
        parts.append("\nRatios (measured):\n")
        parts.append(markdown_table(["ratio", "value", "target"], ratios))
        per_worker = steady[1]
        proj = [[k, f"{per_worker * k:,.0f}", f"{(startup + PROJECTED_DOCS / (per_worker * k)) / 3600:.2f}"]
                for k in PROJECTED_WORKERS]
        parts.append(
            f"\nProjected (not measured): {PROJECTED_DOCS:,} docs with N workers of one CPU thread each, "
            f"from the measured per-worker steady rate ({per_worker:.1f} docs/s) and the measured "
            f"startup ({startup:.1f} s: Ray Data's plan, the actor started, the pipeline loaded), assuming linear scaling "
            f"(one core per worker, reading and writing not the bottleneck):\n"
        )
        parts.append(markdown_table(["workers", "docs/s", "hours"], proj))
        parts.append("")
    parts.append(f"Starting the local Ray cluster itself (once, before the rounds): {ray_start_seconds:.1f} s.")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--langs", nargs="+", default=["en", "zh"], choices=sorted(LANGUAGES))
    parser.add_argument("--n", type=int, nargs="+", default=[4000, 800], help="texts per language, in --langs order")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--name", default="scale", help="results file name under benchmarks/results/")
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
    results: Dict[str, Dict] = {}
    try:
        for lang, n in zip(args.langs, args.n):
            results[lang] = measure(lang, n, args.rounds, args.batch_size, work)
            # written after each language, so that a long run keeps what it measured
            body = report(results, ray_start)
            print(body, flush=True)
            write_results(args.name, "Many documents: nlp.pipe, apply local, apply on Ray", body,
                          {"results": results, "ray_start_seconds": ray_start,
                           "projection": {"workers": PROJECTED_WORKERS, "docs": PROJECTED_DOCS}},
                          notes="The head is initialised, not trained: the same computation as a trained head. "
                                "Torch runs on one thread in every system (one per Ray worker).")
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
