"""Shared encoder vs. two encoders: time per batch of a pipeline whose
`cls_classifier` reads its [CLS] rows from the `transformer` component
(spacy_cls.TransformerClsListener.v1) against one whose `cls_classifier` runs its own
copy of the same checkpoint (spacy_cls.HFClsEncoder.v1).

    python benchmarks/shared_encoder.py [--n-texts 256] [--batch-size 32] [--repeats 5]

Both pipelines are `transformer` + `cls_classifier` on the English all-MiniLM-L6-v2
checkpoint, run on texts of the project's corpus/en_ner_cats (train + dev, repeated
to --n-texts). Prediction: `nlp.pipe` over all texts; training: `nlp.update` on
batches of --train-batch-size examples. The variants run interleaved in one process;
the table gives medians over the repeats, and counts the encoder forward passes per
batch (torch hooks on each encoder's embeddings).
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List

import spacy
import torch
from spacy.language import Language
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, interleaved, markdown_table, median, model_folder, write_results  # noqa: E402

CORPUS = ROOT / "corpus" / "en_ner_cats"
LABELS = ("SPORTS", "BUSINESS", "POLITICS")


def read_corpus() -> List[Dict]:
    rows = []
    for split in ("train", "dev"):
        with (CORPUS / f"{split}.jsonl").open(encoding="utf8") as file:
            rows += [json.loads(line) for line in file if line.strip()]
    return rows


def repeat_to(rows: List[Dict], n: int) -> List[Dict]:
    return [rows[i % len(rows)] for i in range(n)]


def build(variant: str, folder: str, max_length: int) -> Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config={"model": {
        "name": folder,
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96},
    }})
    if variant == "shared":
        encoder = {"@architectures": "spacy_cls.TransformerClsListener.v1", "pooling": "cls"}
    else:
        encoder = {"@architectures": "spacy_cls.HFClsEncoder.v1", "name": folder, "pooling": "cls",
                   "max_length": max_length}
    nlp.add_pipe("cls_classifier", config={
        "model": {"@architectures": "spacy_cls.ClsClassifierOnEncoder.v1", "encoder": encoder},
    })
    return nlp


def examples(nlp: Language, rows: List[Dict]) -> List[Example]:
    return [
        Example.from_dict(nlp.make_doc(row["text"]), {"cats": {lab: float(row["label"] == lab) for lab in LABELS}})
        for row in rows
    ]


def encoder_modules(nlp: Language) -> List[torch.nn.Module]:
    """The torch encoders the pipeline runs: the transformer's, and the
    cls_classifier's own if it has one."""
    modules = [nlp.get_pipe("transformer").model.transformer]
    own = nlp.get_pipe("cls_classifier").encoder
    if own.shims:
        modules.append(own.shims[0]._model)
    return modules


class PassCounter:
    """Forward passes of the encoders (their embeddings run once per pass)."""

    def __init__(self, modules: List[torch.nn.Module]) -> None:
        self.calls = 0
        for module in modules:
            module.embeddings.register_forward_hook(self._hook)

    def _hook(self, *args) -> None:
        self.calls += 1


def spread(seconds: List[float], n_batches: int) -> str:
    return f"{1000 * min(seconds) / n_batches:.0f}-{1000 * max(seconds) / n_batches:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-texts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32, help="nlp.pipe batch size")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-batch-size", type=int, default=16)
    parser.add_argument("--train-batches", type=int, default=4, help="nlp.update calls per repeat")
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()

    fix_random_seed(0)
    folder = model_folder("en")
    rows = repeat_to(read_corpus(), args.n_texts)
    texts = [row["text"] for row in rows]
    n_batches = -(-len(texts) // args.batch_size)
    train_rows = rows[: args.train_batch_size * args.train_batches]

    pipelines: Dict[str, Language] = {}
    counters: Dict[str, PassCounter] = {}
    optimizers = {}
    for variant in ("shared", "separate"):
        nlp = build(variant, folder, args.max_length)
        nlp.initialize(lambda nlp=nlp: examples(nlp, rows[:32]))
        optimizers[variant] = Adam(5e-5)
        pipelines[variant] = nlp
        counters[variant] = PassCounter(encoder_modules(nlp))

    def predict(nlp: Language) -> Callable[[], None]:
        return lambda: list(nlp.pipe(texts, batch_size=args.batch_size))

    def train(variant: str) -> Callable[[], None]:
        nlp = pipelines[variant]

        def run() -> None:
            for start in range(0, len(train_rows), args.train_batch_size):
                nlp.update(examples(nlp, train_rows[start : start + args.train_batch_size]), sgd=optimizers[variant])

        return run

    def count_passes(variant: str, run: Callable[[], None], per: int) -> float:
        counters[variant].calls = 0
        run()
        return counters[variant].calls / per

    passes: Dict[str, Dict[str, float]] = {}
    for variant, nlp in pipelines.items():  # warm-up runs, counted
        predict(nlp)()
        passes[variant] = {
            "predict": count_passes(variant, predict(nlp), n_batches),
            "train": count_passes(variant, train(variant), args.train_batches),
        }

    predict_s = interleaved({v: predict(nlp) for v, nlp in pipelines.items()}, args.repeats)
    train_s = interleaved({v: train(v) for v in pipelines}, args.repeats)

    results = {}
    for variant in pipelines:
        results[variant] = {
            "predict_ms_per_batch": 1000 * median(predict_s[variant]) / n_batches,
            "train_ms_per_batch": 1000 * median(train_s[variant]) / args.train_batches,
            "encoder_passes_per_predict_batch": passes[variant]["predict"],
            "encoder_passes_per_train_batch": passes[variant]["train"],
            "predict_s_runs": predict_s[variant],
            "train_s_runs": train_s[variant],
        }
    speedup_predict = results["separate"]["predict_ms_per_batch"] / results["shared"]["predict_ms_per_batch"]
    speedup_train = results["separate"]["train_ms_per_batch"] / results["shared"]["train_ms_per_batch"]

    names = {"shared": "transformer + cls_classifier (listener, shared encoder)",
             "separate": "transformer + cls_classifier (own HFClsEncoder)"}
    table = markdown_table(
        ["pipeline", f"predict ms / batch of {args.batch_size}", "(min-max)",
         f"train ms / batch of {args.train_batch_size}", "(min-max)",
         "encoder passes / predict batch", "encoder passes / train batch"],
        [
            [names[v], f"{r['predict_ms_per_batch']:.0f}", spread(r["predict_s_runs"], n_batches),
             f"{r['train_ms_per_batch']:.0f}", spread(r["train_s_runs"], args.train_batches),
             f"{r['encoder_passes_per_predict_batch']:g}", f"{r['encoder_passes_per_train_batch']:g}"]
            for v, r in results.items()
        ],
    )
    body = (
        f"{len(texts)} texts of corpus/en_ner_cats (train + dev, repeated), checkpoint all-MiniLM-L6-v2 "
        f"(6 layers, hidden 384), pooling `cls`, medians of {args.repeats} interleaved runs in one process; "
        f"training: {args.train_batches} `nlp.update` calls a run.\n\n{table}\n\n"
        f"Two encoders / shared encoder: prediction {speedup_predict:.2f}x, training {speedup_train:.2f}x."
    )
    notes = (
        "The own-encoder `cls_classifier` is not a plain second forward pass: it sorts rows by "
        "length and computes the last layer at [CLS] only. The encoder pass counter counts "
        "calls of each encoder's embeddings layer; the own encoder may split a batch into "
        "sub-batches, each a pass. In training, the shared pipeline runs the transformer "
        "forward and backward once; the other runs the transformer forward (its output "
        "unused, nothing listens) and its own encoder forward and backward. Timings on a "
        "machine shared with other jobs vary between runs (see min-max); compare the two "
        "rows of one run."
    )
    print(body)
    path = write_results("shared_encoder", "Shared encoder vs. two encoders", body, {
        "args": vars(args), "n_batches": n_batches, "results": results,
        "speedup_predict": speedup_predict, "speedup_train": speedup_train,
    }, notes)
    print(f"\nWrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
