"""CPU training: spacy_cls fine-tuning against a plain PyTorch loop, and frozen
training with the encoder-output cache, on SST-2 train sentences with
all-MiniLM-L6-v2.

    python benchmarks/training.py            # full run (a few minutes)
    python benchmarks/training.py --quick    # fewer steps and examples

1. Fine-tuning steps (batch 32, max_length 128), interleaved step by step:
   - torch: AutoModelForSequenceClassification, fast tokenizer with padding per
     batch, AdamW (lr 5e-5, weight decay 0.01), gradient clipping at 1.0.
   - spacy_cls: `nlp.update` on a `cls_classifier` (pooling cls), thinc's Adam with
     the same settings (the optimizer `spacy train` uses).
   - spacy_cls_plain: the same without the encoder's speed-ups (full last layer,
     one forward pass per batch), for comparison.
   Examples/s from the median step time after warm-up.
2. Frozen training (freeze = true), 3 epochs over the same examples, with the
   encoder-output cache (default) and without it (cache_size = 0), head learning
   rate 1e-3: seconds per epoch, and the dev accuracy / probabilities of both,
   which must agree.
"""
import argparse
import cProfile
import io
import pstats
import random
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import LANGUAGES, markdown_table, median, model_folder, read_sst2, write_results  # noqa: E402

BATCH_SIZE = 32
MAX_LENGTH = 128
LEARN_RATE = 5e-5
FROZEN_LEARN_RATE = 1e-3  # the head alone learns slowly at fine-tuning rates
TARGET_FINE_TUNING = 1.3  # spacy_cls step time at most this many times the torch loop's
TARGET_FROZEN_EPOCH = 20.0  # a cached epoch at least this many times cheaper than the first


def quiet() -> None:
    import transformers

    transformers.logging.set_verbosity_error()


def sst2_sample(n: int, seed: int = 0) -> List[Tuple[str, int]]:
    rows = read_sst2("train")
    random.Random(seed).shuffle(rows)
    return rows[:n]


def batches(rows: List, size: int) -> List[List]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


# --- fine-tuning ----------------------------------------------------------------------------


class TorchLoop:
    def __init__(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = model_folder("en")
        self.tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=LEARN_RATE, weight_decay=0.01)
        self.n_real = self.n_padded = 0

    def step(self, rows: List[Tuple[str, int]]) -> float:
        inputs = self.tokenizer(
            [t for t, _ in rows], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
        )
        labels = torch.tensor([y for _, y in rows])
        self.n_real += int(inputs["attention_mask"].sum())
        self.n_padded += inputs["attention_mask"].numel()
        loss = self.model(**inputs, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad()
        return float(loss.detach())


class SpacyClsLoop:
    def __init__(self, learn_rate: float = LEARN_RATE, **model_cfg) -> None:
        import spacy
        from thinc.api import Adam

        import spacy_cls  # noqa: F401

        self.nlp = spacy.blank("en")
        config = {"name": LANGUAGES["en"].model_name, "max_length": MAX_LENGTH, **model_cfg}
        self.nlp.add_pipe("cls_classifier", config={"model": config})
        self.nlp.initialize(lambda: self.examples([("good", 1), ("bad", 0)]))
        # As `spacy train`'s default Adam.v1 config: no parameter averaging.
        self.optimizer = Adam(learn_rate, L2=0.01, L2_is_weight_decay=True, grad_clip=1.0, use_averages=False)

    def examples(self, rows: List[Tuple[str, int]]):
        from spacy.training import Example

        return [
            Example.from_dict(self.nlp.make_doc(t), {"cats": {"POS": float(y), "NEG": float(1 - y)}}) for t, y in rows
        ]

    def step(self, examples, drop: float = 0.1) -> float:
        losses = self.nlp.update(examples, sgd=self.optimizer, drop=drop)
        return losses["cls_classifier"]

    @property
    def encoder(self):
        return self.nlp.get_pipe("cls_classifier").encoder

    def plain(self) -> "SpacyClsLoop":
        """Without the speed-ups of the encoder layer: full last layer, one pass per batch."""
        self.encoder.attrs["cls_only_last_layer"] = False
        self.encoder.attrs["pass_cost"] = 10**9
        return self

    def padding(self) -> float:
        from spacy_cls.layers.encoder import padding_stats

        real, padded = padding_stats(self.encoder)
        return padded / max(real, 1)


def fine_tuning(steps: int, warmup: int, profile: bool) -> Dict[str, object]:
    rows = sst2_sample(BATCH_SIZE * (steps + warmup))
    torch_loop, ours, plain = TorchLoop(), SpacyClsLoop(), SpacyClsLoop().plain()
    work = [(rows_, ours.examples(rows_)) for rows_ in batches(rows, BATCH_SIZE)]
    loops = {"torch": torch_loop, "spacy_cls": ours, "spacy_cls_plain": plain}
    times: Dict[str, List[float]] = {name: [] for name in loops}
    for i, (batch_rows, batch_examples) in enumerate(work):
        for name, loop in loops.items():
            start = time.perf_counter()
            loop.step(batch_rows if name == "torch" else batch_examples)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    result = {
        name: {
            "step_seconds": values,
            "examples_per_s": BATCH_SIZE / median(values),
            "padded_per_real_token": (
                torch_loop.n_padded / max(torch_loop.n_real, 1) if name == "torch" else loops[name].padding()
            ),
        }
        for name, values in times.items()
    }
    result["ratio_step_time"] = median(times["spacy_cls"]) / median(times["torch"])
    if profile:
        result["profile"] = {name: profile_steps(run, work[:4]) for name, run in (("spacy_cls", ours), ("torch", torch_loop))}
    return result


def profile_steps(loop, work) -> str:
    profiler = cProfile.Profile()
    for batch_rows, batch_examples in work:
        argument = batch_examples if isinstance(loop, SpacyClsLoop) else batch_rows
        profiler.runcall(loop.step, argument)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    return out.getvalue()


# --- frozen training ------------------------------------------------------------------------------


def frozen(n_train: int, n_dev: int, epochs: int) -> Dict[str, object]:
    from thinc.api import fix_random_seed

    rows = sst2_sample(n_train, seed=1)
    dev = read_sst2("dev")[:n_dev]
    result = {}
    for name, cache_size in (("cache", 50_000), ("no_cache", 0)):
        fix_random_seed(0)
        loop = SpacyClsLoop(learn_rate=FROZEN_LEARN_RATE, freeze=True, cache_size=cache_size)
        examples = loop.examples(rows)
        epoch_seconds = []
        for _ in range(epochs):
            start = time.perf_counter()
            for batch in batches(examples, BATCH_SIZE):
                loop.step(batch)
            epoch_seconds.append(time.perf_counter() - start)
        p_pos = numpy.array([doc.cats["POS"] for doc in loop.nlp.pipe([t for t, _ in dev], batch_size=64)])
        gold = numpy.array([y for _, y in dev])
        result[name] = {
            "epoch_seconds": epoch_seconds,
            "dev_accuracy": float(((p_pos >= 0.5) == gold).mean()),
            "p_pos": p_pos,
        }
    later = result["cache"]["epoch_seconds"][1:]
    result["first_over_later_epoch"] = result["cache"]["epoch_seconds"][0] / median(later)
    result["max_abs_diff_p_pos"] = float(numpy.abs(result["cache"].pop("p_pos") - result["no_cache"].pop("p_pos")).max())
    return result


def render(tuning: Dict, frozen_result: Dict, args) -> Tuple[str, List[str]]:
    parts, verdicts = [], []
    parts.append(
        f"## Fine-tuning step time, all-MiniLM-L6-v2, SST-2 train, batch {BATCH_SIZE}, max_length {MAX_LENGTH}, "
        f"{args.steps} timed steps after {args.warmup} warm-up\n"
    )
    table = []
    for name in ("torch", "spacy_cls", "spacy_cls_plain"):
        row = tuning[name]
        table.append(
            [
                name,
                f"{median(row['step_seconds']):.3f}",
                f"{row['examples_per_s']:.1f}",
                f"{median(tuning['torch']['step_seconds']) / median(row['step_seconds']):.2f}",
                f"{row['padded_per_real_token']:.2f}",
                len(row["step_seconds"]),
            ]
        )
    header = ["loop", "median step s", "examples/s", "x torch", "padded/real pieces", "steps"]
    parts.append(markdown_table(header, table) + "\n")
    parts.append(
        "spacy_cls_plain: spacy_cls with its encoder speed-ups off (full last layer, each batch "
        "one pass padded to its longest text), to show what they contribute.\n"
    )
    ratio = tuning["ratio_step_time"]
    verdicts.append(
        f"fine-tuning: spacy_cls step time / torch loop = {ratio:.2f} (target <= {TARGET_FINE_TUNING}): "
        f"{'met' if ratio <= TARGET_FINE_TUNING else 'MISSED'}"
    )
    parts.append(f"## Frozen training (freeze = true), {args.frozen_examples} examples, batch {BATCH_SIZE}\n")
    table = []
    for name in ("cache", "no_cache"):
        row = frozen_result[name]
        table.append([name, *[f"{s:.2f}" for s in row["epoch_seconds"]], f"{row['dev_accuracy']:.4f}"])
    header = ["run", *[f"epoch {i + 1} s" for i in range(len(frozen_result['cache']['epoch_seconds']))], f"dev accuracy ({args.frozen_dev} SST-2 dev)"]
    parts.append(markdown_table(header, table) + "\n")
    ratio = frozen_result["first_over_later_epoch"]
    verdicts.append(
        f"frozen: first epoch / later epochs (cache) = {ratio:.1f}x (target >= {TARGET_FROZEN_EPOCH:.0f}x): "
        f"{'met' if ratio >= TARGET_FROZEN_EPOCH else 'MISSED'}; dev P(POS) cache vs no cache: max |diff| "
        f"{frozen_result['max_abs_diff_p_pos']:.2e}"
    )
    if "profile" in tuning:
        parts.append("## Profile of 4 fine-tuning steps (cProfile, by own time)\n")
        for name, text in tuning["profile"].items():
            parts.append(f"### {name}\n\n```\n{text.strip()}\n```\n")
    return "\n".join(parts), verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and examples")
    parser.add_argument("--steps", type=int, default=None, help="timed fine-tuning steps (default 20, quick 6)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed fine-tuning steps first")
    parser.add_argument("--frozen-examples", type=int, default=None, help="examples per frozen epoch (default 640, quick 192)")
    parser.add_argument("--frozen-dev", type=int, default=None, help="SST-2 dev sentences scored after frozen training (default 872, quick 200)")
    parser.add_argument("--epochs", type=int, default=3, help="frozen training epochs")
    parser.add_argument("--profile", action="store_true", help="add a cProfile of fine-tuning steps to the report")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch threads (default 1: stable timings on a shared machine; 0: torch's default)",
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    quiet()
    args.steps = args.steps or (6 if args.quick else 20)
    args.frozen_examples = args.frozen_examples or (192 if args.quick else 640)
    args.frozen_dev = args.frozen_dev or (200 if args.quick else 872)
    tuning = fine_tuning(args.steps, args.warmup, args.profile)
    frozen_result = frozen(args.frozen_examples, args.frozen_dev, args.epochs)
    body, verdicts = render(tuning, frozen_result, args)
    notes = "Targets:\n" + "\n".join(f"- {v}" for v in verdicts)
    data = {"threads": torch.get_num_threads(), "fine_tuning": tuning, "frozen": frozen_result, "verdicts": verdicts}
    path = write_results("training", "Training benchmark (CPU)", body, data, notes)
    print(body)
    print("\n".join(verdicts))
    print(f"\nwritten: {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
