"""Reduce the encoder's last layer to one feature row per sequence (torch, differentiable).

- ``cls``: the last-layer row at the [CLS] position (BERT's sentence summary).
- ``pooler``: HF's ``pooler_output``, tanh(dense([CLS])), trained by next-sentence prediction.
- ``mean``: mean of the last layer over all real tokens ([CLS] and [SEP] included), padding masked out.
- ``max``: element-wise max over the real tokens.
- ``cls_mean``: ``cls`` and ``mean`` concatenated (twice the hidden width).
"""
from typing import Callable, Dict

import torch

POOLINGS = ("cls", "pooler", "mean", "max", "cls_mean")


def check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise ValueError(
            f"Unknown pooling '{pooling}'. Choose one of {', '.join(POOLINGS)}, e.g. "
            f'nlp.add_pipe("cls_classifier", config={{"model": {{"pooling": "cls"}}}})'
        )


def pooled_width(hidden_size: int, pooling: str) -> int:
    return 2 * hidden_size if pooling == "cls_mean" else hidden_size


def uses_tokens_beyond_cls(pooling: str) -> bool:
    """Whether the pooling reads last-layer rows other than [CLS]."""
    return pooling in ("mean", "max", "cls_mean")


def _cls(hidden: torch.Tensor, mask: torch.Tensor, pooler_output) -> torch.Tensor:
    return hidden[:, 0]


def _pooler(hidden: torch.Tensor, mask: torch.Tensor, pooler_output) -> torch.Tensor:
    if pooler_output is None:
        raise ValueError("pooling='pooler' needs an encoder with a pooler layer")
    return pooler_output


def _mean(hidden: torch.Tensor, mask: torch.Tensor, pooler_output) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _max(hidden: torch.Tensor, mask: torch.Tensor, pooler_output) -> torch.Tensor:
    fill = torch.finfo(hidden.dtype).min
    return hidden.masked_fill(~mask.bool().unsqueeze(-1), fill).max(dim=1).values


def _cls_mean(hidden: torch.Tensor, mask: torch.Tensor, pooler_output) -> torch.Tensor:
    return torch.cat([_cls(hidden, mask, None), _mean(hidden, mask, None)], dim=-1)


_POOL_FUNCTIONS: Dict[str, Callable] = {
    "cls": _cls,
    "pooler": _pooler,
    "mean": _mean,
    "max": _max,
    "cls_mean": _cls_mean,
}


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooler_output, pooling: str) -> torch.Tensor:
    """hidden: (n, length, width); mask: (n, length), 1 for real tokens."""
    return _POOL_FUNCTIONS[pooling](hidden, mask, pooler_output)
