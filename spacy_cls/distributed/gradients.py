"""The gradients of every trainable weight of a pipeline, all-reduced in buckets.

spaCy's loop ends a step with `proc.finish_update(optimizer)` for each trainable
component, and every weight (a thinc parameter, or a torch parameter inside a shim)
passes through `optimizer(key, weights, gradient)` one at a time. A collective per call
would be slow, and a weight with no gradient on one rank would never be called there and
so leave the ranks out of step. `GradientSync.sync` therefore runs once a step, before the
first component's `finish_update`: it packs every weight's gradient (zeros where a rank
has none, with a flag saying whether it had one) into buckets of about `bucket_bytes`,
all-reduces each bucket in the same order on every rank, and gives every rank the same
gradients, for the same set of weights, before any optimizer call.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional

import numpy
import torch
import torch.distributed as dist
from thinc.api import Model

DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024


class _ThincWeight:
    def __init__(self, node: Model, name: str):
        self.node, self.name = node, name
        self.shape = tuple(node.get_param(name).shape)
        self.size = int(numpy.prod(self.shape)) if self.shape else 1

    def grad(self) -> Optional[torch.Tensor]:
        if not self.node.has_grad(self.name):
            return None
        return torch.from_numpy(numpy.ascontiguousarray(self.node.ops.to_numpy(self.node.get_grad(self.name))))

    def set_grad(self, value: torch.Tensor) -> None:
        self.node.set_grad(self.name, self.node.ops.asarray(value.cpu().numpy().reshape(self.shape)))

    def weights(self) -> torch.Tensor:
        return torch.from_numpy(numpy.ascontiguousarray(self.node.ops.to_numpy(self.node.get_param(self.name))))

    def set_weights(self, value: torch.Tensor) -> None:
        self.node.set_param(self.name, self.node.ops.asarray(value.cpu().numpy().reshape(self.shape)))


class _TorchWeight:
    def __init__(self, param: torch.nn.Parameter):
        self.param = param
        self.shape = tuple(param.shape)
        self.size = param.numel()

    def grad(self) -> Optional[torch.Tensor]:
        return None if self.param.grad is None else self.param.grad.detach()

    def set_grad(self, value: torch.Tensor) -> None:
        value = value.view(self.shape).to(self.param.device, self.param.dtype)
        if self.param.grad is None:
            self.param.grad = value.clone()
        else:
            self.param.grad.copy_(value)

    def weights(self) -> torch.Tensor:
        return self.param.data

    def set_weights(self, value: torch.Tensor) -> None:
        self.param.data.copy_(value.view(self.shape).to(self.param.device, self.param.dtype))


@dataclass
class _Bucket:
    weights: List[object] = field(default_factory=list)
    size: int = 0


def trainable_models(nlp, exclude: Iterable[str] = ()) -> List[Model]:
    """The models spaCy's loop calls finish_update on, in pipeline order."""
    exclude = set(exclude)
    return [proc.model for name, proc in nlp.pipeline
            if name not in exclude and getattr(proc, "is_trainable", False) and proc.model not in (True, False, None)]


def pipeline_weights(models: Iterable[Model]) -> List[object]:
    """Every weight of `models` once, in an order that is the same on every rank."""
    seen_nodes, seen_shims, found = set(), set(), []
    for model in models:
        for node in model.walk():
            if node.id in seen_nodes:
                continue
            seen_nodes.add(node.id)
            for shim in node.shims:
                module = getattr(shim, "_model", None)
                if shim.id in seen_shims or not isinstance(module, torch.nn.Module):
                    continue
                seen_shims.add(shim.id)
                found += [_TorchWeight(param) for _, param in module.named_parameters() if param.requires_grad]
            found += [_ThincWeight(node, name) for name in node.param_names if node.has_param(name)]
    return found


class GradientSync:
    def __init__(self, weights: List[object], *, device: torch.device, bucket_bytes: int = DEFAULT_BUCKET_BYTES,
                 group=None):
        self.device, self.group = device, group
        self.buckets: List[_Bucket] = []
        limit = max(1, bucket_bytes // 4)
        for weight in weights:
            if not self.buckets or (self.buckets[-1].size and self.buckets[-1].size + weight.size > limit):
                self.buckets.append(_Bucket())
            self.buckets[-1].weights.append(weight)
            self.buckets[-1].size += weight.size
        self.seconds = 0.0
        self.calls = 0

    @property
    def n_weights(self) -> int:
        return sum(len(bucket.weights) for bucket in self.buckets)

    @property
    def n_values(self) -> int:
        return sum(bucket.size for bucket in self.buckets)

    def sync(self, local_weight: float) -> None:
        """Replace each gradient by the sum over ranks of `local_weight` x the rank's
        gradient (the global mean when local_weight is the rank's share of the batch)."""
        self.calls += 1
        if dist.get_world_size(self.group) == 1:
            return  # one rank: its gradients are the global ones (and its weight is 1)
        start = time.perf_counter()
        for bucket in self.buckets:
            flat = torch.zeros(bucket.size + len(bucket.weights), dtype=torch.float32, device=self.device)
            offset = 0
            for i, weight in enumerate(bucket.weights):
                grad = weight.grad()
                if grad is not None:
                    flat[offset:offset + weight.size] = grad.reshape(-1).to(self.device, torch.float32) * local_weight
                    flat[bucket.size + i] = 1.0
                offset += weight.size
            dist.all_reduce(flat, group=self.group)
            offset = 0
            for i, weight in enumerate(bucket.weights):
                if flat[bucket.size + i] > 0:
                    weight.set_grad(flat[offset:offset + weight.size])
                offset += weight.size
        self.seconds += time.perf_counter() - start

    def broadcast_weights(self, source: int = 0) -> None:
        for bucket in self.buckets:
            flat = torch.cat([weight.weights().reshape(-1).to(self.device, torch.float32) for weight in bucket.weights])
            dist.broadcast(flat, src=source, group=self.group)
            offset = 0
            for weight in bucket.weights:
                weight.set_weights(flat[offset:offset + weight.size])
                offset += weight.size

    def weights_digest(self) -> str:
        digest = hashlib.sha256()
        for bucket in self.buckets:
            for weight in bucket.weights:
                digest.update(weight.weights().detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


def sync_before_first_update(nlp, sync: GradientSync, local_weight: Callable[[], float],
                             exclude: Iterable[str] = (), after: Optional[Callable[[], None]] = None) -> None:
    """Make the first trainable component's finish_update all-reduce every gradient of
    the pipeline first (an instance attribute: the class and other pipelines are untouched)."""
    exclude = set(exclude)
    procs = [proc for name, proc in nlp.pipeline
             if name not in exclude and getattr(proc, "is_trainable", False) and proc.model not in (True, False, None)]
    if not procs:
        return
    first, last = procs[0], procs[-1]
    first_update = first.finish_update

    def finish_update(optimizer, *args, **kwargs):
        sync.sync(local_weight())
        return first_update(optimizer, *args, **kwargs)

    first.finish_update = finish_update
    if after is not None:
        last_update = last.finish_update

        def finish_last(optimizer, *args, **kwargs):
            result = last_update(optimizer, *args, **kwargs)
            after()
            return result

        last.finish_update = finish_last
