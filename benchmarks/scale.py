"""Docs/s for many documents: `nlp.pipe`, the `apply` local engine, and the Ray engine
with 1 and 2 workers, on SST-2 (and ChnSentiCorp) train texts, run interleaved
(A, B, C, D, A, B, ...) so a busy machine slows them alike; where Ray's time goes
(startup, the model's own time in the actors, the rest), for actor calls of the model
batch (64 rows, the default) and of larger calls (--rows-per-call); then a
projection for N workers from the measured per-worker rate and startup cost.

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


def timed_predictor(log_file: Path):
    """A Predictor that appends to `log_file` when it is ready (pipeline loaded) and
    the start, end and rows of each call, so that a run's time splits into startup,
    the model's own time and Ray's share around it."""
    from spacy_cls.scale.predict import Predictor

    class TimedPredictor(Predictor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            with open(log_file, "a", encoding="utf8") as f:
                f.write(f"ready {time.time()}\n")

        def predict(self, batch):
            start = time.time()
            out = super().predict(batch)
            with open(log_file, "a", encoding="utf8") as f:
                f.write(f"call {start} {time.time()} {batch.num_rows}\n")
            return out

    return TimedPredictor


def read_phases(log_file: Path, start: float, end: float, n: int) -> Dict[str, float]:
    ready, calls = [], []
    for line in log_file.read_text().split("\n"):
        parts = line.split()
        if parts and parts[0] == "ready":
            ready.append(float(parts[1]))
        elif parts and parts[0] == "call":
            calls.append((float(parts[1]), float(parts[2]), int(parts[3])))
    first = min(ready)
    model = sum(b - a for a, b, _ in calls)
    return {
        "startup_s": first - start,
        "steady_docs_per_s": n / max(end - first, 1e-9),
        "first_call_after_ready_s": min(a for a, _, _ in calls) - first,
        "after_last_call_s": end - max(b for _, b, _ in calls),
        "model_s": model,
        "model_docs_per_s": sum(k for _, _, k in calls) / max(model, 1e-9),
        "calls": len(calls),
        "rows_per_call": sum(k for _, _, k in calls) / max(len(calls), 1),
    }


def texts_for(lang: str, n: int) -> List[str]:
    if os.environ.get("SPACY_CLS_DATA"):
        _common.SHARED_DATA = Path(os.environ["SPACY_CLS_DATA"])
    rows = read_sst2("train") if lang == "en" else read_chnsenticorp("train")
    return [text for text, _ in rows[:n]]


def measure(lang: str, n: int, rounds: int, batch_size: int, work: Path, rows_per_call: List[int]) -> Dict:
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

    ray_systems = {f"apply ray, 1 worker, {k} rows a call": (1, k) for k in rows_per_call}
    ray_systems[f"apply ray, 2 workers, {rows_per_call[-1]} rows a call"] = (2, rows_per_call[-1])
    phases: Dict[str, List[Dict[str, float]]] = {name: [] for name in ray_systems}

    def ray_run(name, workers, per_call):
        def run():
            log_file = work / f"calls_{lang}_{counter['i'] + 1}"
            start = time.time()
            sum(write_parts(shards, fresh(), pipeline, text_col="text", id_col="id", vectors=False,
                            batch_size=batch_size, workers=workers, gpus_per_worker=0, component=None,
                            shard_rows=SHARD_ROWS, predictor_cls=timed_predictor(log_file),
                            rows_per_call=per_call))
            phases[name].append(read_phases(log_file, start, time.time(), n))
        return run

    runs = {
        "nlp.pipe": lambda: list(nlp.pipe(texts, batch_size=batch_size)),
        "apply local": lambda: run_local(shards, fresh(), predictor, text_col="text", id_col="id", progress=False),
    }
    runs.update({name: ray_run(name, *spec) for name, spec in ray_systems.items()})
    load_before = os.getloadavg()
    seconds = interleaved(runs, rounds)
    load_after = os.getloadavg()
    for path in work.glob(f"out_{lang}_*"):
        shutil.rmtree(path, ignore_errors=True)
    return {"n_docs": n, "rounds": rounds, "batch_size": batch_size, "rows_per_call": rows_per_call,
            "seconds": seconds, "ray_phases": phases,
            "load_before": load_before, "load_after": load_after}


def report(results: Dict[str, Dict], ray_start_seconds: float) -> str:
    parts = []
    for lang, r in results.items():
        n = r["n_docs"]
        med = {name: median(values) for name, values in r["seconds"].items()}
        rate = {name: n / s for name, s in med.items()}
        phase = {name: {key: median([p[key] for p in runs]) for key in runs[0]}
                 for name, runs in r["ray_phases"].items() if runs}
        rows = [[name, f"{med[name]:.1f}", f"{rate[name]:.1f}", ", ".join(f"{v:.1f}" for v in r["seconds"][name])]
                for name in r["seconds"]]
        parts.append(f"## {LANGUAGES[lang].dataset.split()[0]} train, first {n:,} texts ({lang})\n")
        parts.append(f"Load average before / after: {' '.join(f'{x:.1f}' for x in r['load_before'])} / "
                     f"{' '.join(f'{x:.1f}' for x in r['load_after'])}\n")
        parts.append("Measured, end to end (median of the interleaved rounds; every round in the last column):\n")
        parts.append(markdown_table(["system", "median s", "docs/s", "rounds (s)"], rows))
        breakdown = []
        for name, p in phase.items():
            steady_s = n / p["steady_docs_per_s"]
            breakdown.append([name, f"{p['startup_s']:.1f}", f"{p['steady_docs_per_s']:.1f}",
                              f"{p['model_docs_per_s']:.1f}", f"{p['calls']:.0f}", f"{p['rows_per_call']:.0f}",
                              f"{p['first_call_after_ready_s']:.2f}", f"{p['after_last_call_s']:.2f}",
                              f"{100 * (1 - p['model_s'] / max(steady_s, 1e-9)):.0f}%"])
        parts.append("\nWhere Ray's time goes (medians over the rounds). Startup: from the call to the first actor "
                     "holding a loaded pipeline. Steady: rows over the time after it. Model: rows over the time "
                     "inside the actor's calls (summed over actors). Outside the model: the steady time the "
                     "actors were not computing (waiting for blocks, Arrow, dispatch, writing):\n")
        parts.append(markdown_table(["system", "startup s", "steady docs/s", "model docs/s", "calls", "rows a call",
                                     "first call after ready s", "after last call s", "outside the model"],
                                    breakdown))
        ratios = [["apply local / nlp.pipe", f"{rate['apply local'] / rate['nlp.pipe']:.2f}", ">= 0.9"]]
        one_worker = [name for name in phase if ", 1 worker," in name]
        for name in one_worker:
            ratios.append([f"{name} / apply local, end to end (startup included)",
                           f"{rate[name] / rate['apply local']:.2f}", ">= 0.8"])
            ratios.append([f"{name} / apply local, steady rate", f"{phase[name]['steady_docs_per_s'] / rate['apply local']:.2f}", ""])
        two = [name for name in phase if ", 2 workers," in name]
        if two and one_worker:
            ratios.append(["ray 2 workers / ray 1 worker, steady rates",
                           f"{phase[two[0]]['steady_docs_per_s'] / phase[one_worker[-1]]['steady_docs_per_s']:.2f}", ""])
        parts.append("\nRatios (measured):\n")
        parts.append(markdown_table(["ratio", "value", "target"], ratios))
        best = phase[one_worker[-1]]
        per_worker, startup = best["steady_docs_per_s"], best["startup_s"]
        proj = [[k, f"{per_worker * k:,.0f}", f"{(startup + PROJECTED_DOCS / (per_worker * k)) / 3600:.2f}"]
                for k in PROJECTED_WORKERS]
        parts.append(
            f"\nProjected (not measured): {PROJECTED_DOCS:,} docs with N workers of one CPU thread each, "
            f"from the measured per-worker steady rate ({per_worker:.1f} docs/s, {one_worker[-1]}) and the measured "
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
    parser.add_argument("--rows-per-call", type=int, nargs="+", default=[64, 1024],
                        help="rows per Ray actor call to compare (64: the model batch, as before; the last one also "
                             "runs with 2 workers)")
    parser.add_argument("--name", default="scale", help="results file name under benchmarks/results/")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    from spacy_cls.cpus import usable_cpus
    from spacy_cls.scale.ray_engine import start_local_ray

    work = Path(tempfile.mkdtemp(prefix="spacy_cls_scale_"))
    started = time.perf_counter()
    start_local_ray(num_cpus=usable_cpus(), object_store_memory=500 * 1024**2, _temp_dir=str(work / "ray"),
                    log_to_driver=False)
    ray_start = time.perf_counter() - started
    ray.data.DataContext.get_current().enable_progress_bars = False
    results: Dict[str, Dict] = {}
    try:
        for lang, n in zip(args.langs, args.n):
            results[lang] = measure(lang, n, args.rounds, args.batch_size, work, args.rows_per_call)
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
