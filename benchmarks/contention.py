"""Docs/s of spacy_cls against the bare Hugging Face path (benchmarks/inference.py's
`Bare`) on SST-2 dev, on a quiet machine and beside busy loops (processes that spin
on a CPU each, as other jobs on a shared machine do), run interleaved.

    python benchmarks/contention.py --busy 0 2 --rounds 3

Each condition starts its busy loops, waits a second for them to take their CPUs,
runs bare and spacy_cls in turn `--rounds` times, and stops the loops (which also
stop by themselves after --busy-seconds). Torch runs on --threads threads in both
(default: what spacy_cls's own cap gives: the CPUs this process may use).
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import interleaved, markdown_table, median, read_sst2, write_results  # noqa: E402

TARGET = 0.9
SPIN = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


def busy_loops(n: int, seconds: float) -> List[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=seconds)]) for _ in range(n)]


def stop(loops: List[subprocess.Popen]) -> None:
    for loop in loops:
        loop.kill()
    for loop in loops:
        loop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 2], help="busy loops per condition")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--busy-seconds", type=float, default=900.0, help="a busy loop's own time limit")
    parser.add_argument("--pass-costs", type=int, nargs="*", default=[],
                        help="also run spacy_cls with these pass costs (word pieces a forward pass is worth "
                             "when texts are grouped by length; default: 32 a thread)")
    parser.add_argument("--name", default="contention")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    import inference
    from spacy_cls.cpus import cap_torch_threads, usable_cpus

    inference.quiet()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = cap_torch_threads()
    texts = [text for text, _ in read_sst2("dev")]
    bare = inference.Bare("en")
    nlp = inference.spacy_cls_pipeline("en")
    encoder = nlp.get_pipe("cls_classifier").encoder

    def ours(pass_cost=None):
        def run():
            encoder.attrs["pass_cost"] = pass_cost
            return [doc._.cls_vector for doc in nlp.pipe(texts, batch_size=inference.BATCH_SIZE)]
        return run

    runs = {"bare HF": lambda: bare(texts), "spacy_cls": ours()}
    for cost in args.pass_costs:
        runs[f"spacy_cls, pass cost {cost}"] = ours(cost)
    for run in runs.values():  # warm-up
        run()
    results: Dict[str, Dict] = {}
    rows = []
    for n_busy in args.busy:
        loops = busy_loops(n_busy, args.busy_seconds)
        try:
            time.sleep(1.0 if n_busy else 0.0)
            load_before = os.getloadavg()
            seconds = interleaved(runs, args.rounds)
            load_after = os.getloadavg()
        finally:
            stop(loops)
        rate = {name: len(texts) / median(values) for name, values in seconds.items()}
        ratio = rate["spacy_cls"] / rate["bare HF"]
        results[str(n_busy)] = {"seconds": seconds, "docs_per_s": rate, "ratio": ratio,
                                "load_before": load_before, "load_after": load_after}
        for name in runs:
            rows.append([n_busy, name, f"{rate[name]:.1f}", f"{rate[name] / rate['bare HF']:.2f}",
                         ", ".join(f"{len(texts) / s:.0f}" for s in seconds[name]),
                         f"{load_before[0]:.1f} / {load_after[0]:.1f}"])
            print(rows[-1], flush=True)
    body = [
        f"SST-2 dev ({len(texts)} texts), batch {inference.BATCH_SIZE}, torch threads {threads} "
        f"(usable CPUs {usable_cpus()}), {args.rounds} interleaved rounds per condition.\n",
        markdown_table(["busy loops", "system", "docs/s (median)", "x bare", "rounds (docs/s)",
                        "load avg before / after"], rows),
        "",
        "Verdicts (target: spacy_cls / bare >= 0.9 in every condition):",
    ]
    body += [f"- {n} busy loops: {r['ratio']:.2f} ({'met' if r['ratio'] >= TARGET else 'missed'})"
             for n, r in results.items()]
    text = "\n".join(body)
    print(text)
    write_results(args.name, "spacy_cls against bare Hugging Face, quiet and beside busy loops", text,
                  {"threads": threads, "usable_cpus": usable_cpus(), "n_texts": len(texts), "results": results})


if __name__ == "__main__":
    main()
