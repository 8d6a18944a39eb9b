"""Each rank's part of a global batch. Every rank shuffles and batches the corpus in
the same order (the same seed), then keeps its own contiguous slice of each batch: the
ranks run the same number of steps, and together they see exactly the batches one
process would."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, List, Sequence, Tuple, TypeVar

T = TypeVar("T")


@dataclass
class ShardState:
    """The sizes of the current step's global batch and of this rank's shard."""

    global_size: int = 0
    local_size: int = 0
    skipped_batches: int = 0

    @property
    def weight(self) -> float:
        """This rank's share of the global batch: its mean gradient times this, summed over
        the ranks, is the global batch's mean gradient."""
        return self.local_size / self.global_size if self.global_size else 0.0


def shard_bounds(size: int, rank: int, world: int) -> Tuple[int, int]:
    """[start, end) of rank's slice of a batch of `size` items: sizes differ by one at most."""
    base, extra = divmod(size, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard_batches(batches: Iterable[Tuple[int, Sequence[T]]], rank: int, world: int,
                  state: ShardState) -> Iterator[Tuple[int, List[T]]]:
    """(epoch, batch) pairs as spaCy's `create_train_batches` yields them, each batch cut
    to this rank's slice. A batch smaller than the number of ranks is skipped on every
    rank alike (each rank needs at least one example a step)."""
    for epoch, batch in batches:
        batch = list(batch)
        if len(batch) < world:
            state.skipped_batches += 1
            continue
        start, end = shard_bounds(len(batch), rank, world)
        state.global_size, state.local_size = len(batch), end - start
        yield epoch, batch[start:end]
