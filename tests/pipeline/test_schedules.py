"""spacy_cls.warmup_linear.v1: thinc's warmup_linear sized by [training] max_steps."""
import itertools

import pytest
from spacy.util import registry
from thinc.api import warmup_linear


def rates(n, **options):
    schedule = registry.schedules.get("spacy_cls.warmup_linear.v1")(**options)
    return list(itertools.islice(schedule, n))


@pytest.mark.parametrize("max_steps, fraction, warmup", [(0 + 1, 0.1, 1), (99, 0.1, 10), (499, 0.25, 125), (9, 0.0, 0)])
def test_is_thincs_warmup_linear_over_max_steps_plus_one_updates(max_steps, fraction, warmup):
    got = rates(max_steps + 3, initial_rate=0.5, max_steps=max_steps, warmup_fraction=fraction)
    expected = list(itertools.islice(warmup_linear(0.5, warmup, max_steps + 1), max_steps + 3))
    assert got == pytest.approx(expected)
    assert got[max_steps] > 0 and got[max_steps + 1] == 0


@pytest.mark.parametrize("max_steps", [0, -3, "training.max_steps", "${training.max_steps} ", "12", 2.5, True])
def test_refuses_a_run_without_a_length(max_steps):
    with pytest.raises(ValueError, match=r"max_steps = \$\{training.max_steps\}"):
        rates(1, initial_rate=1e-3, max_steps=max_steps)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 3])
def test_refuses_a_warm_up_fraction_outside_0_1(fraction):
    with pytest.raises(ValueError, match="warmup_fraction"):
        rates(1, initial_rate=1e-3, max_steps=10, warmup_fraction=fraction)


def test_registered_by_entry_point_for_spacy_train_without_code():
    from importlib.metadata import entry_points

    (point,) = [ep for ep in entry_points(group="thinc_schedules") if ep.name == "spacy_cls.warmup_linear.v1"]
    assert registry.schedules.get("spacy_cls.warmup_linear.v1") is point.load()


@pytest.mark.parametrize("fraction, first", [(0.1, 0.0), (0.0, 1e-3)])
def test_an_unfilled_reference_gives_the_first_rate_then_refuses(fraction, first):
    """`spacy debug data` builds the optimizer (which takes one rate) from a config whose
    references it never filled in; the first rate does not depend on the run's length,
    any later one does."""
    schedule = registry.schedules.get("spacy_cls.warmup_linear.v1")(
        initial_rate=1e-3, max_steps="${training.max_steps}", warmup_fraction=fraction)
    assert next(schedule) == first
    with pytest.raises(ValueError, match=r"max_steps = \$\{training.max_steps\}.*never filled in"):
        next(schedule)


def test_an_unfilled_reference_still_checks_the_warm_up_fraction():
    with pytest.raises(ValueError, match="warmup_fraction"):
        registry.schedules.get("spacy_cls.warmup_linear.v1")(
            initial_rate=1e-3, max_steps="${training.max_steps}", warmup_fraction=1.5)
