"""CPU inference: spacy_cls against the bare Hugging Face path and against spaCy with
spacy-transformers, on SST-2 dev (English, all-MiniLM-L6-v2) and ChnSentiCorp dev
(Chinese, m3e-small), plus the int8 option's speed-up and accuracy change.

    python benchmarks/inference.py            # full run (several minutes)
    python benchmarks/inference.py --quick    # a subset, fewer repeats

Variants, each producing one [CLS] vector per text:
- bare: the Hugging Face path by hand. Fast tokenizer over the whole input, texts
  sorted by length, batches of 64 padded to their longest text, AutoModel forward
  under torch.inference_mode, [CLS] row out.
- spacy_cls: `nlp.pipe(texts, batch_size=64)` with a `cls_classifier` (defaults).
- spacy_cls_int8: the same with quantize_int8 = true.
- spacy_trf: `nlp.pipe` with spacy-transformers' `transformer` component on the same
  checkpoint, its default spans (strided, window 128, stride 96).
With --all-variants also:
- spacy_cls_full_layer: spacy_cls with the [CLS]-only last layer turned off.
- spacy_trf_doc: spacy_trf reading each doc as one span (doc_spans.v1), as bare does.

Speeds are medians over interleaved repeats (A, B, C, A, B, C, ...) in one process;
peak memory (max RSS) is measured for each variant in a fresh child process.
"""
import argparse
import json
import random
import resource
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    LANGUAGES,
    interleaved,
    markdown_table,
    median,
    model_folder,
    read_dev,
    read_sst2,
    write_results,
)

BATCH_SIZE = 64
MAX_LENGTH = 512
TIMED_VARIANTS = ("bare", "spacy_cls", "spacy_cls_full_layer", "spacy_cls_int8", "spacy_trf", "spacy_trf_doc")
DEFAULT_VARIANTS = ("bare", "spacy_cls", "spacy_cls_int8", "spacy_trf")
TARGET_VS_TRF = {"en": 1.5, "zh": 1.3}
TARGET_VS_BARE = 0.9
TARGET_RSS = 1.2
QUICK_LIMITS = {"en": 256, "zh": 160}


def quiet() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=r".*were cut.*")


# --- the variants -------------------------------------------------------------------


class Bare:
    def __init__(self, lang: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        folder = model_folder(lang)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True, **LANGUAGES[lang].tokenizer_config)
        self.model = AutoModel.from_pretrained(folder).eval()
        self.n_real = self.n_padded = 0

    def __call__(self, texts: List[str]) -> numpy.ndarray:
        ids = self.tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = numpy.empty((len(texts), self.model.config.hidden_size), dtype=numpy.float32)
        pad_id = self.tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for start in range(0, len(order), BATCH_SIZE):
                rows = order[start : start + BATCH_SIZE]
                length = max(len(ids[i]) for i in rows)
                input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), length), dtype=torch.long)
                for j, i in enumerate(rows):
                    input_ids[j, : len(ids[i])] = torch.tensor(ids[i])
                    mask[j, : len(ids[i])] = 1
                hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                out[rows] = hidden[:, 0].numpy()
                self.n_real += int(mask.sum())
                self.n_padded += mask.numel()
        return out


def spacy_cls_pipeline(lang: str, **model_cfg):
    import spacy
    from spacy.training import Example

    import spacy_cls  # noqa: F401

    spec = LANGUAGES[lang]
    nlp = spacy.blank(lang)
    config = {"name": spec.model_name, "tokenizer_config": spec.tokenizer_config, **model_cfg}
    nlp.add_pipe("cls_classifier", config={"model": config})
    examples = [
        Example.from_dict(nlp.make_doc(text), {"cats": {"POS": float(y), "NEG": float(1 - y)}})
        for text, y in (("good", 1), ("bad", 0))
    ]
    nlp.initialize(lambda: examples)
    return nlp


def spacy_trf_pipeline(lang: str, doc_spans: bool):
    import spacy

    get_spans = (
        {"@span_getters": "spacy-transformers.doc_spans.v1"}
        if doc_spans
        else {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96}
    )
    nlp = spacy.blank(lang)
    nlp.add_pipe(
        "transformer",
        config={
            "model": {
                "@architectures": "spacy-transformers.TransformerModel.v3",
                "name": model_folder(lang),
                "tokenizer_config": {"use_fast": True, **LANGUAGES[lang].tokenizer_config},
                "get_spans": get_spans,
            }
        },
    )
    nlp.initialize()
    return nlp


def make_variant(name: str, lang: str) -> Tuple[Callable[[List[str]], object], object]:
    """A function texts -> outputs, and the object holding the model."""
    if name == "bare":
        bare = Bare(lang)
        return bare, bare
    if name.startswith("spacy_trf"):
        nlp = spacy_trf_pipeline(lang, doc_spans=name == "spacy_trf_doc")
        return (lambda texts: sum(1 for _ in nlp.pipe(texts, batch_size=BATCH_SIZE))), nlp
    nlp = spacy_cls_pipeline(lang, quantize_int8=name == "spacy_cls_int8")
    if name == "spacy_cls_full_layer":
        nlp.get_pipe("cls_classifier").encoder.attrs["cls_only_last_layer"] = False
    return (lambda texts: [doc._.cls_vector for doc in nlp.pipe(texts, batch_size=BATCH_SIZE)]), nlp


def padding_ratio(name: str, holder) -> Optional[float]:
    if name == "bare":
        return holder.n_padded / max(holder.n_real, 1)
    if name.startswith("spacy_cls"):
        from spacy_cls.layers.encoder import padding_stats

        real, padded = padding_stats(holder.get_pipe("cls_classifier").encoder)
        return padded / max(real, 1)
    return None


def reset_padding(name: str, holder) -> None:
    if name == "bare":
        holder.n_real = holder.n_padded = 0
    elif name.startswith("spacy_cls"):
        from spacy_cls.layers.encoder import reset_padding_stats

        reset_padding_stats(holder.get_pipe("cls_classifier").encoder)


# --- memory, in a child process per variant ---------------------------------------------


def child_main(variant: str, lang: str, limit: Optional[int], threads: int) -> None:
    torch.set_num_threads(threads)
    quiet()
    texts = texts_for(lang, limit)
    run, _ = make_variant(variant, lang)
    run(texts)
    print(json.dumps({"max_rss_mb": own_peak_rss_mb()}))


def own_peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM belongs to the process's own
    address space; getrusage's ru_maxrss can carry the parent's peak over a
    fork and exec, so it is the fallback only."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mb(variant: str, lang: str, limit: Optional[int], threads: int) -> float:
    command = [sys.executable, __file__, "--child", variant, "--lang", lang, "--threads", str(threads)]
    if limit:
        command += ["--limit", str(limit)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory run of {variant}/{lang} failed:\n{done.stderr[-3000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["max_rss_mb"])


# --- int8 accuracy on SST-2 dev -------------------------------------------------------------


def train_sst2(n_train: int, seed: int = 0):
    """The English MiniLM classifier fine-tuned briefly: n_train SST-2 train
    sentences, 1 epoch, batch 32, lr 5e-5, max_length 64."""
    from spacy.training import Example
    from spacy.util import minibatch
    from thinc.api import Adam, fix_random_seed

    fix_random_seed(seed)
    rows = read_sst2("train")
    random.Random(seed).shuffle(rows)
    nlp = spacy_cls_pipeline("en", max_length=64)
    examples = [
        Example.from_dict(nlp.make_doc(text), {"cats": {"POS": float(y), "NEG": float(1 - y)}})
        for text, y in rows[:n_train]
    ]
    optimizer = Adam(5e-5, L2=0.01, L2_is_weight_decay=True, grad_clip=1.0)
    for batch in minibatch(examples, 32):
        nlp.update(batch, sgd=optimizer, drop=0.1)
    return nlp


def accuracy(nlp, rows: List[Tuple[str, int]]) -> Tuple[float, numpy.ndarray]:
    p_pos = numpy.array([doc.cats["POS"] for doc in nlp.pipe([t for t, _ in rows], batch_size=BATCH_SIZE)])
    gold = numpy.array([y for _, y in rows])
    return float(((p_pos >= 0.5) == gold).mean()), p_pos


def int8_accuracy(trained: Optional[str], n_train: int) -> Dict[str, object]:
    import spacy

    from spacy_cls.models.quantize import quantize_pipeline

    nlp = spacy.load(trained) if trained else train_sst2(n_train)
    dev = read_sst2("dev")
    fp32, p_fp32 = accuracy(nlp, dev)
    quantize_pipeline(nlp)
    int8, p_int8 = accuracy(nlp, dev)
    return {
        "model": trained or f"all-MiniLM-L6-v2 cls_classifier fine-tuned on {n_train} SST-2 train sentences "
        f"(1 epoch, batch 32, lr 5e-5, max_length 64)",
        "n_dev": len(dev),
        "accuracy_fp32": fp32,
        "accuracy_int8": int8,
        "same_prediction": float(((p_fp32 >= 0.5) == (p_int8 >= 0.5)).mean()),
        "max_abs_diff_p_pos": float(numpy.abs(p_fp32 - p_int8).max()),
    }


# --- main ---------------------------------------------------------------------------------


def parse_limits(value: str) -> Dict[str, int]:
    if value.isdigit():
        return {lang: int(value) for lang in LANGUAGES}
    limits = {}
    for item in value.split(","):
        lang, _, number = item.partition("=")
        if lang not in LANGUAGES or not number.isdigit():
            raise argparse.ArgumentTypeError(f"'{value}': use N or en=N,zh=M")
        limits[lang] = int(number)
    return limits


def texts_for(lang: str, limit: Optional[int]) -> List[str]:
    texts = [text for text, _ in read_dev(lang)]
    return texts[:limit] if limit else texts


def bench_language(lang: str, args) -> Dict[str, object]:
    limit = args.limit.get(lang) or (args.quick and QUICK_LIMITS[lang]) or None
    texts = texts_for(lang, limit)
    chosen = TIMED_VARIANTS if args.all_variants else DEFAULT_VARIANTS
    variants = [v for v in chosen if v not in args.skip]
    # Memory first, while this process holds no model.
    peaks = {} if args.no_memory else {name: peak_rss_mb(name, lang, limit, args.threads) for name in variants}
    runs, holders = {}, {}
    for name in variants:
        run, holder = make_variant(name, lang)
        run(texts[:BATCH_SIZE])  # warm-up
        reset_padding(name, holder)
        runs[name] = lambda run=run: run(texts)
        holders[name] = holder
    seconds = interleaved(runs, args.repeats)
    result = {"dataset": LANGUAGES[lang].dataset, "model": LANGUAGES[lang].model_name, "n_texts": len(texts)}
    rows = {}
    for name in variants:
        rows[name] = {
            "seconds": seconds[name],
            "docs_per_s": len(texts) / median(seconds[name]),
            "padded_per_real_token": padding_ratio(name, holders[name]),
        }
        if name in peaks:
            rows[name]["max_rss_mb"] = peaks[name]
    result["variants"] = rows
    return result


def render(results: Dict[str, Dict], int8: Optional[Dict], args) -> Tuple[str, List[str]]:
    parts, verdicts = [], []
    for lang, res in results.items():
        rows = res["variants"]
        bare = rows["bare"]["docs_per_s"] if "bare" in rows else None
        trf = max((rows[v]["docs_per_s"] for v in ("spacy_trf", "spacy_trf_doc") if v in rows), default=None)
        bare_rss = rows.get("bare", {}).get("max_rss_mb")
        table = []
        for name, row in rows.items():
            rss = row.get("max_rss_mb")
            table.append(
                [
                    name,
                    f"{row['docs_per_s']:.1f}",
                    len(row["seconds"]),
                    f"{row['docs_per_s'] / bare:.2f}" if bare else "",
                    f"{row['docs_per_s'] / trf:.2f}" if trf else "",
                    f"{rss:.0f}" if rss else "",
                    f"{rss / bare_rss:.2f}" if rss and bare_rss else "",
                    f"{row['padded_per_real_token']:.3f}" if row["padded_per_real_token"] else "n/a",
                ]
            )
        header = ["variant", "docs/s (median)", "runs", "x bare", "x best spacy-trf", "peak RSS MB", "RSS x bare", "padded/real pieces"]
        parts.append(f"## {res['dataset']} ({lang}), {res['model']}, {res['n_texts']} texts, batch {BATCH_SIZE}\n")
        parts.append(markdown_table(header, table) + "\n")
        ours = rows.get("spacy_cls")
        if ours and bare:
            ratio = ours["docs_per_s"] / bare
            verdicts.append(f"{lang}: spacy_cls / bare = {ratio:.2f} (target >= {TARGET_VS_BARE}): {'met' if ratio >= TARGET_VS_BARE else 'MISSED'}")
        if ours and trf:
            ratio = ours["docs_per_s"] / trf
            target = TARGET_VS_TRF[lang]
            verdicts.append(f"{lang}: spacy_cls / best spacy-transformers = {ratio:.2f} (target >= {target}): {'met' if ratio >= target else 'MISSED'}")
        if ours and ours.get("max_rss_mb") and bare_rss:
            ratio = ours["max_rss_mb"] / bare_rss
            verdicts.append(f"{lang}: spacy_cls peak RSS / bare = {ratio:.2f} (target <= {TARGET_RSS}): {'met' if ratio <= TARGET_RSS else 'MISSED'}")
    if int8:
        speed = ""
        en = results.get("en", {}).get("variants", {})
        if "spacy_cls_int8" in en and "spacy_cls" in en:
            speed = f"{en['spacy_cls_int8']['docs_per_s'] / en['spacy_cls']['docs_per_s']:.2f}"
        parts.append("## int8 dynamic quantisation (quantize_int8), SST-2 dev\n")
        parts.append(
            markdown_table(
                ["model", "accuracy fp32", "accuracy int8", "change (points)", "same prediction", "max |dP(POS)|", "speed int8 / fp32 (en)"],
                [[
                    int8["model"],
                    f"{int8['accuracy_fp32']:.4f}",
                    f"{int8['accuracy_int8']:.4f}",
                    f"{100 * (int8['accuracy_int8'] - int8['accuracy_fp32']):+.2f}",
                    f"{int8['same_prediction']:.4f}",
                    f"{int8['max_abs_diff_p_pos']:.3f}",
                    speed,
                ]],
            )
            + "\n"
        )
    return "\n".join(parts), verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a subset of the texts, 2 repeats, a smaller int8 training set")
    parser.add_argument("--lang", choices=sorted(LANGUAGES), action="append", help="only these languages")
    parser.add_argument(
        "--limit", type=parse_limits, default={},
        help="only the first N dev texts: N for every language, or per language as en=N,zh=M",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per variant (default 3, quick 2)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch threads (default 1: stable timings on a shared machine; 0: torch's default)",
    )
    parser.add_argument("--all-variants", action="store_true", help="add spacy_cls_full_layer and spacy_trf_doc")
    parser.add_argument("--skip", action="append", default=[], choices=TIMED_VARIANTS, help="leave a variant out")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-variant peak memory runs")
    parser.add_argument("--no-int8-accuracy", action="store_true", help="skip training the SST-2 classifier for int8 accuracy")
    parser.add_argument("--trained", default=None, help="a trained English spacy_cls pipeline folder for int8 accuracy")
    parser.add_argument("--n-train", type=int, default=None, help="SST-2 train sentences for the int8 classifier (default 2000, quick 500)")
    parser.add_argument("--output", default="inference", help="results file name in benchmarks/results (no suffix)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    if args.child:
        child_main(args.child, args.lang[0], args.limit.get(args.lang[0]), args.threads)
        return
    quiet()
    args.repeats = args.repeats or (2 if args.quick else 3)
    n_train = args.n_train or (500 if args.quick else 2000)
    results = {lang: bench_language(lang, args) for lang in (args.lang or ["en", "zh"])}
    int8 = None if args.no_int8_accuracy else int8_accuracy(args.trained, n_train)
    body, verdicts = render(results, int8, args)
    notes = "\n".join(
        [
            "Targets:",
            *[f"- {v}" for v in verdicts],
            "",
            "x bare / x best spacy-trf: docs/s relative to the bare Hugging Face path and to the faster of the two "
            "spacy-transformers set-ups. padded/real pieces: word pieces run through the encoder (padding included) "
            "per real word piece. Peak RSS: max resident memory of a fresh process that loads the variant and runs it once.",
        ]
    )
    path = write_results(
        args.output,
        "Inference benchmark (CPU)",
        body,
        {"threads": args.threads, "repeats": args.repeats, "results": results, "int8": int8, "verdicts": verdicts},
        notes,
    )
    print(body)
    print("\n".join(verdicts))
    print(f"\nwritten: {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
