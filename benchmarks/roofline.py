"""How close each CPU backend of a trained `cls_classifier` comes to this machine's
measured limit.

    python benchmarks/roofline.py --pipeline training/sst2/model-best

1. Peak: the best GFLOP/s (GOP/s for int8) of large matrix products in each number
   format, on 1 and 2 threads: float32 (torch, ONNX Runtime), bfloat16 (torch, where
   the CPU has it), int8 (torch's int8 x int8 product, torch's dynamic int8 linear layer
   that quantize_int8 runs, ONNX Runtime's dynamic int8 MatMul that `optimize --int8`
   runs), at a square 2048 shape and at the encoder's own shapes (the batch's word
   pieces x hidden x feed-forward width).
2. Backends: SST-2 dev through `nlp.pipe(batch_size=64)` on torch float32, torch int8,
   torch bfloat16, ONNX Runtime float32 and ONNX Runtime int8 (with what it keeps in
   float32 varied), interleaved round after round. docs/s; GFLOP/s from the word
   pieces each doc really runs (FLOPs of the encoder's matrix products, formula in
   docs/performance.md); the share of the format's peak; labels against torch float32
   on every dev text, accuracy and the lowest cosine of doc._.cls_vector.

Results: benchmarks/results/roofline.md and .json. The optimized copies are written
under --work and reused.
"""
import argparse
import json
import os
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
from _common import markdown_table, median, read_dev, write_results  # noqa: E402

BATCH_SIZE = 64
SQUARE = 2048
TARGETS = {"onnx": 1.5, "int8": 3.0, "bfloat16": 1.6}
TARGET_ONNX_PEAK = 0.70
TARGET_SAME_LABEL = 99.5
TARGET_ACCURACY_DROP = 0.3


# --- the FLOP count ------------------------------------------------------------------------


def encoder_flops(length: int, hidden: int, intermediate: int, n_layers: int, cls_only_last: bool) -> float:
    """FLOPs (a multiply-add is 2) of one row of `length` word pieces through the
    encoder's matrix products: per full layer the Q, K, V and output projections
    (4 x 2LH^2), the feed-forward block (2 x 2LHI) and the attention's two products
    (2 x 2L^2H); a [CLS]-only last layer computes K and V for every position and the
    rest for one. Embedding lookups, layer norms, softmax and GELU are left out (under
    2% here)."""
    L, H, I = length, hidden, intermediate
    full = 2 * L * (4 * H * H + 2 * H * I) + 4 * L * L * H
    if not cls_only_last:
        return float(n_layers * full)
    last = 2 * L * 2 * H * H + 2 * (2 * H * H + 2 * H * I) + 4 * L * H
    return float((n_layers - 1) * full + last)


def text_flops(nlp, texts: List[str]) -> Tuple[float, int]:
    """Total FLOPs and real word pieces of `texts` through the pipeline's encoder."""
    from spacy_cls.layers.encoder import _use_cls_only, get_hf
    from spacy_cls.layers.windows import encode_texts

    encoder = nlp.get_pipe("cls_classifier").encoder
    hf = get_hf(encoder)
    config = hf.transformer.config
    attrs = encoder.attrs
    batch = encode_texts(hf.tokenizer, texts, attrs["max_length"], attrs["long_text"], attrs["stride"], attrs["max_windows"])
    lengths = batch.attention_mask.sum(axis=1)
    cls_only = _use_cls_only(encoder)
    flops = sum(encoder_flops(int(n), config.hidden_size, config.intermediate_size, config.num_hidden_layers, cls_only)
                for n in lengths)
    return flops, int(lengths.sum())


# --- peaks ---------------------------------------------------------------------------------


def best_rate(run: Callable[[], object], flops: float, min_seconds: float = 0.6) -> float:
    """GFLOP/s of the fastest call, after a warm-up, over at least `min_seconds`."""
    run()
    best, spent = float("inf"), 0.0
    while spent < min_seconds or best == float("inf"):
        start = time.perf_counter()
        run()
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return flops / best / 1e9


def ort_matmul_session(k: int, n: int, threads: int, int8: bool, work: Path):
    """An ONNX Runtime session over one MatMul with a constant (k, n) weight; with
    `int8`, after ONNX Runtime's dynamic quantisation (as `optimize --int8` does)."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy.random.default_rng(0).standard_normal((k, n)).astype("float32")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")], "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = work / f"matmul_{k}x{n}{'_int8' if int8 else ''}.onnx"
    onnx.save(model, str(path))
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = path.with_name(path.stem + "_q.onnx")
        quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8, per_channel=True)
        path = quantized
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def peaks(threads: int, shapes: Dict[str, Tuple[int, int, int]], work: Path) -> Dict[str, Dict[str, float]]:
    """{format/library: {shape name: GFLOP/s}} on `threads` threads."""
    from spacy_cls.layers.encoder import cpu_supports_bfloat16

    torch.set_num_threads(threads)
    rng = torch.Generator().manual_seed(0)
    results: Dict[str, Dict[str, float]] = {}
    for shape_name, (m, k, n) in shapes.items():
        flops = 2.0 * m * k * n
        a = torch.randn(m, k, generator=rng)
        b = torch.randn(k, n, generator=rng)
        rates = {"float32, torch": best_rate(lambda: torch.mm(a, b), flops)}
        if cpu_supports_bfloat16():
            a16, b16 = a.bfloat16(), b.bfloat16()
            rates["bfloat16, torch"] = best_rate(lambda: torch.mm(a16, b16), flops)
        a8 = torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=rng)
        b8 = torch.randint(-127, 128, (k, n), dtype=torch.int8, generator=rng)
        try:
            rates["int8, torch int8 x int8"] = best_rate(lambda: torch._int_mm(a8, b8), flops)
        except (RuntimeError, AttributeError):
            pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            linear = torch.nn.Linear(k, n, bias=False).eval()
            quantized = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear},
                                                               dtype=torch.qint8)
        with torch.inference_mode():
            rates["int8, torch dynamic linear"] = best_rate(lambda: quantized(a), flops)
        x = a.numpy()
        for int8 in (False, True):
            session = ort_matmul_session(k, n, threads, int8, work)
            name = "int8, ONNX Runtime dynamic MatMul" if int8 else "float32, ONNX Runtime"
            rates[name] = best_rate(lambda: session.run(None, {"x": x}), flops)
        for name, rate in rates.items():
            results.setdefault(name, {})[shape_name] = rate
        print(f"[peak {threads} thread(s)] {shape_name}: "
              + ", ".join(f"{name} {rate:.0f}" for name, rate in rates.items()), flush=True)
    return results


# --- backends ------------------------------------------------------------------------------

# name: (label, number format, int8 recipe of the ONNX copy: None for float32)
SYSTEMS = {
    "torch": ("torch float32", "float32", None),
    "torch_int8": ("torch int8 (quantize_int8)", "int8", None),
    "torch_bf16": ("torch bfloat16 (bfloat16_pipeline)", "bfloat16", None),
    "onnx": ("ONNX Runtime float32 (optimize)", "float32", None),
    "onnx_int8": ("ONNX Runtime int8, every layer (optimize --int8)", "int8", {}),
    "onnx_int8_emb": ("ONNX Runtime int8, embeddings in float32", "int8", {"embeddings": False}),
    "onnx_int8_cal": ("ONNX Runtime int8, calibrated (optimize --int8 --calibrate)", "int8", {"calibrate": True}),
}
CALIBRATION_TEXTS = 1000


def calibration_texts() -> List[str]:
    """SST-2 train sentences (never dev, where agreement is measured): every 50th row."""
    from _common import read_sst2

    return [text for text, _ in read_sst2("train")[::50]][:CALIBRATION_TEXTS]


def optimized_copy(pipeline: Path, work: Path, name: str, recipe: Optional[Dict]) -> Path:
    from spacy_cls.models.onnx import Int8Recipe
    from spacy_cls.pipeline.optimize import Int8Calibration, optimize_to_disk

    target = work / name
    if not (target / "config.cfg").exists():
        recipe = dict(recipe) if recipe is not None else None
        calibration = None
        if recipe is not None and recipe.pop("calibrate", False):
            calibration = Int8Calibration(texts=calibration_texts(), target=TARGET_SAME_LABEL)
        done = optimize_to_disk(pipeline, target, int8=recipe is not None,
                                int8_recipe=Int8Recipe(**recipe) if recipe is not None else None,
                                calibration=calibration)
        for item in done:
            if item.calibration is not None:
                print(f"[{name}] {item.calibration.summary()}; one layer int8 at a time: "
                      + ", ".join(f"layer {k} {v:.2f}%" for k, v in item.calibration.sensitivity.items()), flush=True)
    return target


def make_system(name: str, pipeline: Path, work: Path, threads: int):
    import spacy

    import spacy_cls  # noqa: F401
    from spacy_cls.models.quantize import bfloat16_pipeline, quantize_pipeline

    _, _, recipe = SYSTEMS[name]
    if name.startswith("onnx"):
        nlp = spacy.load(optimized_copy(pipeline, work, name, recipe))
    else:
        nlp = spacy.load(pipeline)
        if name == "torch_int8":
            quantize_pipeline(nlp)
        elif name == "torch_bf16":
            bfloat16_pipeline(nlp)

    def run(texts: List[str]) -> Tuple[numpy.ndarray, List[str]]:
        docs = list(nlp.pipe(texts, batch_size=BATCH_SIZE))
        return numpy.stack([doc._.cls_vector for doc in docs]), [max(doc.cats, key=doc.cats.get) for doc in docs]

    return run


def cpu_features() -> Dict[str, object]:
    from spacy_cls.layers.encoder import cpu_supports_bfloat16

    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "bfloat16_supported": cpu_supports_bfloat16()}


def cosines(a: numpy.ndarray, b: numpy.ndarray) -> numpy.ndarray:
    return (a * b).sum(axis=1) / numpy.maximum(numpy.linalg.norm(a, axis=1) * numpy.linalg.norm(b, axis=1), 1e-12)


def bench_backends(pipeline: Path, args) -> Dict[str, object]:
    import spacy

    import spacy_cls  # noqa: F401

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = read_dev("en")
    texts = [text for text, _ in rows]
    gold = ["positive" if label == 1 else "negative" for _, label in rows]
    flops, pieces = text_flops(spacy.load(pipeline), texts)
    names = [name for name in SYSTEMS if name in args.systems]
    runs = {name: make_system(name, pipeline, work, args.threads) for name in names}
    outputs, seconds = {}, {name: [] for name in names}
    for name in names:  # warm-up, then labels and vectors of every dev text
        runs[name](texts[:BATCH_SIZE])
        outputs[name] = runs[name](texts)
    loads = []
    for round_ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            start = time.perf_counter()
            runs[name](texts)
            seconds[name].append(time.perf_counter() - start)
        print(f"[backends] round {round_ + 1}: "
              + ", ".join(f"{n} {len(texts) / seconds[n][-1]:.0f}/s" for n in names) + f" (load {loads[-1]:.1f})",
              flush=True)
    reference_vectors, reference_labels = outputs["torch"]
    result = {"n_texts": len(texts), "word_pieces": pieces, "gflop": flops / 1e9, "load_average_1min": loads,
              **cpu_features(), "systems": {}}
    torch_rate = len(texts) / median(seconds["torch"])
    for name in names:
        vectors, labels = outputs[name]
        rate = len(texts) / median(seconds[name])
        result["systems"][name] = {
            "docs_per_s": rate, "x_torch": rate / torch_rate, "seconds": seconds[name],
            "gflop_per_s": flops / 1e9 * rate / len(texts),
            "accuracy": 100.0 * float(numpy.mean([p == g for p, g in zip(labels, gold)])),
            "same_label_pct": 100.0 * float(numpy.mean([p == r for p, r in zip(labels, reference_labels)])),
            "cosine_min": float(cosines(vectors, reference_vectors).min()),
        }
    return result


# --- report --------------------------------------------------------------------------------


def format_peak(peak_results: Dict[int, Dict[str, Dict[str, float]]], fmt: str, threads: int) -> float:
    """The machine's measured peak for a number format: the best library at the best shape."""
    rates = [rate for name, by_shape in peak_results[threads].items() if name.startswith(fmt + ",")
             for rate in by_shape.values()]
    return max(rates) if rates else float("nan")


def render(peak_results, shapes, backends, args) -> Tuple[str, List[str]]:
    lines: List[str] = []
    shape_names = list(shapes)
    features = backends or cpu_features()
    lines += [f"CPU features: torch's CPU capability {features['cpu_capability']}; bfloat16 arithmetic "
              f"{'yes' if features['bfloat16_supported'] else 'no (no bfloat16 rows)'}.", ""]
    lines += ["## Peak: matrix products (GFLOP/s; GOP/s for int8), best call", "",
              "Shapes (m x k x n): " + "; ".join(f"{name} = {m} x {k} x {n}" for name, (m, k, n) in shapes.items()), ""]
    header = ["format, library"] + [f"{shape}, {t} thread{'s' if t > 1 else ''}" for t in sorted(peak_results)
                                    for shape in shape_names]
    table = []
    for name in peak_results[min(peak_results)]:
        table.append([name] + [f"{peak_results[t].get(name, {}).get(shape, float('nan')):.0f}"
                               for t in sorted(peak_results) for shape in shape_names])
    lines += [markdown_table(header, table), ""]
    verdicts: List[str] = []
    if backends:
        threads = args.threads
        n, pieces, gflop = backends["n_texts"], backends["word_pieces"], backends["gflop"]
        lines += [f"## Backends: SST-2 dev ({n} texts, {pieces / n:.1f} word pieces a text, "
                  f"{gflop / n:.3f} GFLOP a text), batch {BATCH_SIZE}, {threads} threads", ""]
        table = []
        for name, row in backends["systems"].items():
            label, fmt, _ = SYSTEMS[name]
            peak = format_peak(peak_results, fmt, threads) if threads in peak_results else float("nan")
            row["peak_gflop_per_s"], row["share_of_peak"] = peak, row["gflop_per_s"] / peak
            table.append([label, f"{row['docs_per_s']:.0f}", f"{row['x_torch']:.2f}", f"{row['gflop_per_s']:.0f}",
                          f"{fmt} {peak:.0f}", f"{100 * row['share_of_peak']:.0f}%", f"{row['accuracy']:.2f}",
                          f"{row['same_label_pct']:.2f}", f"{row['cosine_min']:.5f}"])
        lines += [markdown_table(["backend", "docs/s (median)", "x torch", "GFLOP/s", "peak of its format",
                                  "share of peak", "dev accuracy", "same label as torch %", "min cosine to torch"],
                                 table), "",
                  "1-minute load average at the start of each round: "
                  + ", ".join(f"{x:.1f}" for x in backends["load_average_1min"]) + ".", ""]
        verdicts = target_verdicts(backends)
    return "\n".join(lines), verdicts


def target_verdicts(backends) -> List[str]:
    systems = backends["systems"]
    torch_accuracy = systems["torch"]["accuracy"]
    lines = []

    def agreement(name: str) -> str:
        row = systems[name]
        drop = torch_accuracy - row["accuracy"]
        ok = row["same_label_pct"] >= TARGET_SAME_LABEL and drop <= TARGET_ACCURACY_DROP
        return (f"same label {row['same_label_pct']:.2f}% (>= {TARGET_SAME_LABEL}), accuracy drop {drop:.2f} "
                f"(<= {TARGET_ACCURACY_DROP}): {'met' if ok else 'MISSED'}")

    if "onnx" in systems:
        row = systems["onnx"]
        ok = row["x_torch"] >= TARGETS["onnx"] or row["share_of_peak"] >= TARGET_ONNX_PEAK
        lines.append(f"ONNX float32: {row['x_torch']:.2f}x torch (>= {TARGETS['onnx']}) or "
                     f"{100 * row['share_of_peak']:.0f}% of the float32 peak (>= {100 * TARGET_ONNX_PEAK:.0f}%): "
                     f"{'met' if ok else 'MISSED'}; {agreement('onnx')}")
    for name, row in systems.items():
        fmt = SYSTEMS[name][1]
        if fmt == "bfloat16" and not backends.get("bfloat16_supported", True):
            lines.append(f"{SYSTEMS[name][0]}: not measurable here: this CPU has no bfloat16 arithmetic "
                         f"(torch's CPU capability: {backends.get('cpu_capability')}), so bfloat16_pipeline keeps "
                         f"float32 (and warns), {row['x_torch']:.2f}x torch; {agreement(name)}")
            continue
        if fmt in ("int8", "bfloat16"):
            target = TARGETS[fmt]
            lines.append(f"{SYSTEMS[name][0]}: {row['x_torch']:.2f}x torch (>= {target}): "
                         f"{'met' if row['x_torch'] >= target else 'MISSED'}; {agreement(name)}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", help="a trained English cls_classifier pipeline (SST-2); none: peaks only")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "spacy_cls_roofline"),
                        help="folder for the optimized copies (reused)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the backend runs")
    parser.add_argument("--peak-threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument("--name", default="roofline", help="results file name under benchmarks/results/")
    parser.add_argument("--data", default=os.environ.get("SPACY_CLS_DATA"),
                        help="folder holding sst2/ (default: $SPACY_CLS_DATA, else shared/data beside the project)")
    parser.add_argument("--from-json", help="render the report again from a results JSON this script wrote")
    args = parser.parse_args()
    if args.data:
        _common.SHARED_DATA = Path(args.data)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    # The encoder's shapes: a batch of 64 texts of SST-2's mean length (25 word
    # pieces) is about 1,600 rows; MiniLM-L6 is 384 wide with a 1,536 feed-forward.
    shapes = {"square": (SQUARE, SQUARE, SQUARE), "feed-forward": (1600, 384, 1536), "projection": (1600, 384, 384)}
    if args.from_json:  # the report again, from a run's saved figures
        saved = json.loads(Path(args.from_json).read_text(encoding="utf8"))
        peak_results = {int(k): v for k, v in saved["peaks"].items()}
        backends = saved["backends"]
        if backends is not None:
            for key, value in cpu_features().items():
                backends.setdefault(key, value)
        sys.argv = saved["command"].split()[1:]
    else:
        peak_results = {threads: peaks(threads, shapes, work) for threads in args.peak_threads}
        backends = None
    if args.pipeline and not args.from_json:
        if "torch" not in args.systems:
            parser.error("--systems must include torch (the reference)")
        backends = bench_backends(Path(args.pipeline), args)
    body, verdicts = render(peak_results, shapes, backends, args)
    notes = "\n".join(["Targets:", "", *[f"- {line}" for line in verdicts]]) if verdicts else None
    path = write_results(args.name, "Inference against the CPU's measured peak", body,
                         {"peaks": {str(k): v for k, v in peak_results.items()}, "shapes": shapes,
                          "backends": backends, "verdicts": verdicts}, notes)
    print(body)
    if notes:
        print(notes)
    print(f"Saved {path}")


if __name__ == "__main__":
    main()
