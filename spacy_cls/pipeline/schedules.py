"""Learning-rate schedules for `spacy train` that follow `[training] max_steps`, so a
config changes its length with one value and its warm-up and decay come along."""
import re
from typing import Iterable, Iterator, Union

from spacy.util import registry
from thinc.api import warmup_linear


def warmup_steps_for(max_steps: int, warmup_fraction: float) -> int:
    """Warm-up steps for a run of `max_steps + 1` updates (spaCy counts steps from 0 and
    stops after step `max_steps`)."""
    if warmup_fraction == 0:
        return 0
    return max(1, round((max_steps + 1) * warmup_fraction))


UNRESOLVED_REFERENCE = re.compile(r"\$\{[^}]+\}")
NEEDS_LENGTH = (
    "spacy_cls.warmup_linear.v1 needs the run's length: max_steps = ${{training.max_steps}} "
    "with [training] max_steps >= 1 (got {value!r}). For a run limited by max_epochs "
    "instead, use thinc's warmup_linear.v1 with explicit warmup_steps and total_steps."
)


@registry.schedules("spacy_cls.warmup_linear.v1")
def create_warmup_linear(
    initial_rate: float, max_steps: Union[int, str], warmup_fraction: float = 0.1
) -> Iterable[float]:
    """thinc's warmup_linear.v1 sized by the run: the rate rises linearly from 0 over the
    first `warmup_fraction` of the updates, then falls linearly to 0 after the last one.
    Write `max_steps = ${training.max_steps}` in the config."""
    if isinstance(max_steps, str) and UNRESOLVED_REFERENCE.fullmatch(max_steps):
        # `spacy debug data` builds the optimizer from the config without filling in
        # references, and never steps it: give it the first rate, which does not depend
        # on the run's length, and refuse any later one.
        _check_fraction(warmup_fraction)
        return _unsized(initial_rate, max_steps, warmup_fraction)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(NEEDS_LENGTH.format(value=max_steps))
    _check_fraction(warmup_fraction)
    return warmup_linear(
        initial_rate=initial_rate,
        warmup_steps=warmup_steps_for(max_steps, warmup_fraction),
        total_steps=max_steps + 1,
    )


def _check_fraction(warmup_fraction: float) -> None:
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction must be at least 0 and below 1 (got {warmup_fraction!r})")


def _unsized(initial_rate: float, reference: str, warmup_fraction: float) -> Iterator[float]:
    yield 0.0 if warmup_fraction > 0 else initial_rate
    raise ValueError(NEEDS_LENGTH.format(value=reference) + " The reference was never filled in.")
