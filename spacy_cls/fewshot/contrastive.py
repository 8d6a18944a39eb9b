"""The contrastive stage: the encoder fine-tuned so that the cosine of two examples'
pooled vectors approaches 1 when they share a label and 0 when they share none (the
cosine-similarity loss of SetFit, Tunstall et al. 2022), on pairs drawn from the few
labelled examples. It trains the component's own torch encoder directly, before spaCy's
training loop starts; the head is fitted afterwards (head_fit)."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional

import numpy
import torch
from thinc.api import Model
from tqdm import tqdm

from ..layers.encoder import get_hf, pooled_with_grad
from .descriptions import unit_rows
from .pairs import contrastive_pairs, pair_counts

GRAD_CLIP = 1.0
WEIGHT_DECAY = 0.01
# Examples whose vectors are compared before and after the stage (the printed figures).
SEPARATION_SAMPLE = 2000


@dataclass(frozen=True)
class ContrastiveSettings:
    pairs_per_example: int = 20
    epochs: int = 1
    learn_rate: float = 2e-5
    batch_size: int = 16
    seed: int = 0
    warmup_fraction: float = 0.1

    @classmethod
    def from_config(cls, block: Optional[Mapping[str, Any]], component: str) -> Optional["ContrastiveSettings"]:
        if block is None:
            return None
        where = f"[initialize.components.{component}.contrastive]"
        if not isinstance(block, Mapping):
            raise ValueError(f"{where} must be a block of settings ({', '.join(cls.__dataclass_fields__)}).")
        unknown = sorted(set(block) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{where} has unknown settings {unknown}; the settings are "
                             f"{', '.join(cls.__dataclass_fields__)}.")
        settings = cls(**dict(block))
        settings.check(where)
        return settings

    def check(self, where: str) -> None:
        def whole(name: str, low: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{where} {name} = {value!r}: use a whole number of at least {low}.")

        whole("pairs_per_example", 2)
        whole("epochs", 0)
        whole("batch_size", 1)
        whole("seed", 0)
        rate = self.learn_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or not 0 < rate < 1:
            raise ValueError(f"{where} learn_rate = {rate!r}: use a positive rate below 1 (2e-5 is usual for an encoder).")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"{where} warmup_fraction = {self.warmup_fraction!r}: use a fraction from 0 to below 1.")

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class StageReport:
    examples: int
    positive_pairs: int
    negative_pairs: int
    steps: int
    seconds: float
    same_before: float
    different_before: float
    same_after: float
    different_after: float

    def lines(self) -> List[str]:
        return [
            f"contrastive stage: {self.examples} examples, {self.positive_pairs} positive and "
            f"{self.negative_pairs} negative pairs, {self.steps} steps in {self.seconds:.1f} s",
            f"mean cosine, same label {self.same_before:.3f} -> {self.same_after:.3f}, "
            f"no label shared {self.different_before:.3f} -> {self.different_after:.3f}",
        ]


def separation(encoder: Model, texts: List[str], gold: numpy.ndarray) -> tuple:
    """Mean cosine of pairs sharing a label and of pairs sharing none, over (a sample of)
    the examples, with the encoder as it is now."""
    if len(texts) > SEPARATION_SAMPLE:
        keep = numpy.random.default_rng(0).choice(len(texts), SEPARATION_SAMPLE, replace=False)
        texts, gold = [texts[i] for i in keep], gold[keep]
    vectors = unit_rows(numpy.asarray(encoder.ops.to_numpy(_features(encoder, texts)), dtype="float64"))
    cosines = vectors @ vectors.T
    gold = numpy.asarray(gold, dtype=bool)
    shares = (gold.astype(int) @ gold.T.astype(int)) > 0
    off_diagonal = ~numpy.eye(len(texts), dtype=bool)
    same, different = cosines[shares & off_diagonal], cosines[~shares & off_diagonal]
    return (float(same.mean()) if same.size else float("nan"),
            float(different.mean()) if different.size else float("nan"))


def _features(encoder: Model, texts: List[str], batch_size: int = 64) -> numpy.ndarray:
    from .docs import text_docs

    chunks = [encoder.ops.to_numpy(encoder.predict(text_docs(texts[i:i + batch_size])).features)
              for i in range(0, len(texts), batch_size)]
    return numpy.concatenate(chunks) if chunks else numpy.zeros((0, encoder.get_dim("nO")), dtype="float32")


def run_contrastive_stage(encoder: Model, texts: List[str], gold: numpy.ndarray, settings: ContrastiveSettings,
                          *, component: str) -> StageReport:
    """Fine-tune `encoder` (the component's own HF encoder) on pairs of `texts` whose
    label sets are the rows of `gold`; returns what it did."""
    start = time.perf_counter()
    same_before, different_before = separation(encoder, texts, gold)
    pairs = contrastive_pairs(gold, settings.pairs_per_example, settings.seed)
    positive, negative = pair_counts(pairs)
    if not positive or not negative:
        raise ValueError(
            f"[{component}] the contrastive stage needs pairs that share a label and pairs that share "
            f"none; these {len(texts)} examples give {positive} and {negative}. Give at least two "
            f"examples of a label and examples of two labels, or remove the contrastive block."
        )
    transformer = get_hf(encoder).transformer
    params = [p for p in transformer.parameters() if p.requires_grad]
    steps_per_epoch = math.ceil(len(pairs) / settings.batch_size)
    total = steps_per_epoch * settings.epochs
    warmup = round(total * settings.warmup_fraction)
    optimizer = torch.optim.AdamW(params, lr=settings.learn_rate, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (step + 1) / max(1, warmup) if step < warmup
        else max(0.0, (total - step) / max(1, total - warmup)))
    rng = numpy.random.default_rng(settings.seed)
    was_training = transformer.training
    steps = 0
    with torch.random.fork_rng(devices=[]), tqdm(total=total, desc=f"{component}: contrastive stage",
                                                  unit="step", disable=None, leave=False) as bar:
        torch.manual_seed(settings.seed)
        try:
            for _ in range(settings.epochs):
                order = rng.permutation(len(pairs))
                for first in range(0, len(order), settings.batch_size):
                    batch = [pairs[j] for j in order[first:first + settings.batch_size]]
                    left = [texts[a] for a, _, _ in batch]
                    right = [texts[b] for _, b, _ in batch]
                    vectors = pooled_with_grad(encoder, left + right)
                    cosine = torch.nn.functional.cosine_similarity(vectors[:len(batch)], vectors[len(batch):])
                    target = torch.tensor([t for _, _, t in batch], dtype=cosine.dtype, device=cosine.device)
                    loss = torch.nn.functional.mse_loss(cosine, target)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
                    optimizer.step()
                    schedule.step()
                    steps += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.4f}")
        finally:
            optimizer.zero_grad(set_to_none=True)
            transformer.train(was_training)
    same_after, different_after = separation(encoder, texts, gold)
    return StageReport(len(texts), positive, negative, steps, time.perf_counter() - start,
                       same_before, different_before, same_after, different_after)
