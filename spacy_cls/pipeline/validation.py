"""Checks on the labelled data given to the classifiers, run before any weight
changes: at `initialize` (training data, and the dev corpus that `spacy train`
will score) and at each `update` (the batch).

Every message says what was found, where (which example, with the start of its
text) and what to do about it.
"""
import math
import numbers
from typing import Callable, Iterable, List, Optional, Sequence

from spacy.training import Example

PREVIEW_CHARS = 60
MULTILABEL_HINT = (
    "If a doc can have no label or several labels, use the `cls_classifier_multilabel` "
    "component instead."
)


class LabelDataError(ValueError):
    """Labelled data that would train or score the classifier wrongly."""


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite; the weights were left unchanged."""


def where(example: Example, index: int, source: str) -> str:
    """E.g. "training example 12 ('The room was…')"."""
    text = example.reference.text
    preview = text[:PREVIEW_CHARS] + ("…" if len(text) > PREVIEW_CHARS else "")
    return f"{source} example {index} ({preview!r})"


# An exclusive example's soft cats may sum to 1 within this much (scores rounded to
# a few decimals, or float32 probabilities); the loss renormalises them.
SOFT_SUM_TOLERANCE = 1e-3


def is_soft(cats) -> bool:
    """Whether any value is a probability strictly between 0 and 1 (a soft label)."""
    return any(value not in (0.0, 1.0) for value in cats.values())


def check_example(
    eg: Example,
    index: int,
    source: str,
    component: str,
    exclusive: bool,
    known: Optional[Sequence[str]] = None,
    unknown_fix: str = "",
) -> None:
    """Values are probabilities in [0, 1]; labels are among `known` (when given); an
    exclusive classifier's example has exactly one label set to 1.0 (hard) or values
    that sum to 1 (soft: a distribution over its labels)."""
    cats = eg.reference.cats
    for label, value in cats.items():
        if not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
            raise LabelDataError(
                f"{component}: {where(eg, index, source)} has cats[{label!r}] = {value!r}; "
                f"a label's value is a probability from 0.0 to 1.0: 1.0 (the doc has it), "
                f"0.0 (it has not), or a soft label in between. NaN, negative values and "
                f"values above 1 are refused; leave the label out of examples where it is unknown."
            )
    if known is not None:
        unknown = [label for label in cats if label not in known]
        if unknown:
            fix = unknown_fix or (
                f"Include examples of it in the data given to `initialize` (or list it in "
                f"[initialize.components.{component}.labels]) and initialise again."
            )
            raise LabelDataError(
                f"{component}: {where(eg, index, source)} has the label {unknown[0]!r}, which "
                f"is not among the component's labels ({', '.join(known)}). {fix}"
            )
    if not exclusive:
        return
    if is_soft(cats):
        total = math.fsum(float(value) for value in cats.values())
        if abs(total - 1.0) <= SOFT_SUM_TOLERANCE:
            return
        raise LabelDataError(
            f"{component}: {where(eg, index, source)} has soft cats that sum to {total:.6g} "
            f"({dict(cats)}), but {component}'s scores are a distribution over its labels: "
            f"soft cats of an exclusive classifier sum to 1 (within {SOFT_SUM_TOLERANCE}). "
            f"Divide them by their sum, or give the missing labels their share. {MULTILABEL_HINT}"
        )
    positive = [label for label, value in cats.items() if value == 1.0]
    if len(positive) == 1:
        return
    if not cats:
        found = "has no cats at all"
    elif not positive:
        found = f"has no label set to 1.0 (cats: {dict(cats)})"
    else:
        found = f"has {len(positive)} labels set to 1.0 ({', '.join(positive)})"
    raise LabelDataError(
        f"{component}: {where(eg, index, source)} {found}, but {component} gives every doc "
        f"exactly one of its labels (a softmax over them). Give the example exactly one "
        f"label with 1.0 (or soft cats that sum to 1), or drop it. {MULTILABEL_HINT}"
    )


def check_examples(
    examples: Iterable[Example],
    source: str,
    component: str,
    exclusive: bool,
    known: Optional[Sequence[str]] = None,
    unknown_fix: str = "",
) -> None:
    for i, eg in enumerate(examples):
        check_example(eg, i, source, component, exclusive, known, unknown_fix)


def label_list(labels: Optional[Iterable[str]], component: str) -> Optional[List[str]]:
    """The labels given to `initialize` as a list (read once: a generator works), or
    None when none were given."""
    if labels is None:
        return None
    if isinstance(labels, (str, bytes)):
        raise LabelDataError(
            f"{component}: `labels` is the string {labels!r}; give a list of label names, "
            f"e.g. labels=[{labels!r}], or in a config labels = [{str(labels)!r}]."
        )
    return list(labels)


def check_label_count(labels: Sequence[str], component: str) -> None:
    """An exclusive classifier needs two labels to choose between."""
    if len(labels) >= 2:
        return
    found = f"only the label {labels[0]!r}" if labels else "no labels"
    raise LabelDataError(
        f"{component}: found {found} in the training data (with the labels given to "
        f"`initialize` or added with add_label), but an exclusive classifier "
        f"chooses one label among at least two (a softmax over one label is always 1.0). "
        f"For a yes/no task give every doc both labels, e.g. "
        f'{{"POSITIVE": 1.0, "NEGATIVE": 0.0}}, or use `cls_classifier_multilabel`, which '
        f"learns an independent yes/no for each label, one label included."
    )


def dev_examples(nlp) -> Optional[Callable[[], Iterable[Example]]]:
    """The dev corpus named by the pipeline's training config (what `spacy train`
    scores), or None when the config names none that can be read, as in a pipeline
    built in code with `spacy.blank`."""
    from confection import ConfigValidationError
    from spacy.util import resolve_dot_names

    if nlp is None:
        return None
    config = nlp.config
    dot_name = config.get("training", {}).get("dev_corpus")
    if not isinstance(dot_name, str):
        return None
    try:
        (corpus,) = resolve_dot_names(config.interpolate(), [dot_name])
    except (ValueError, KeyError, ConfigValidationError):
        # E.g. no path given for the dev corpus: nothing to check against.
        return None
    if corpus is None or getattr(corpus, "path", True) is None:
        return None
    return lambda: corpus(nlp)


def check_initialize_data(
    get_examples: Callable[[], Iterable[Example]],
    *,
    nlp,
    labels: Optional[Iterable[str]],
    current_labels: Sequence[str],
    component: str,
    exclusive: bool,
) -> None:
    """Everything `initialize` can find wrong in the training data and in the dev
    corpus that `spacy train` will score, before any training step."""
    train_labels = dict.fromkeys(label for eg in get_examples() for label in eg.reference.cats)
    given = list(labels) if labels is not None else None
    final = list(dict.fromkeys([*current_labels, *(given if given is not None else train_labels)]))
    if exclusive:
        check_label_count(final, component)
    if not train_labels:
        # No example has any cats: spaCy's placeholder for "no data" (`nlp.initialize()`
        # without examples), or docs given only to set the model's shapes. The labels
        # come from add_label or `labels`; every training batch is checked at update.
        return
    fix = (
        f"Add it to [initialize.components.{component}.labels] (or to the labels given to "
        f"`initialize`), or fix the example."
    )
    # Labels given explicitly may leave other labels in the data to another component,
    # which an exclusive classifier cannot allow (each doc needs one of its labels).
    strict = exclusive or given is None
    check_examples(get_examples(), "training", component, exclusive, final if strict else None, fix)
    get_dev = dev_examples(nlp) if strict else None
    if get_dev is not None:
        dev_fix = (
            "Training never sees this label, so the component can never predict it. Add "
            "training examples of it, or fix its spelling in the dev data."
        )
        check_examples(get_dev(), "dev", component, exclusive, list(train_labels), dev_fix)


def _shim_ready(shim) -> bool:
    """A shim that says whether it is ready (`ready`), or one that wraps a model (`_model`)."""
    ready = getattr(shim, "ready", None)
    return bool(ready) if ready is not None else getattr(shim, "_model", True) is not None


def check_initialized(model, component: str) -> None:
    """Refuse to run a model with a layer that has no weights yet."""
    for node in model.walk():
        unset = [name for name in node.param_names if node.has_param(name) is None]
        if unset or not all(_shim_ready(shim) for shim in node.shims):
            raise ValueError(
                f"{component}: the component has no weights yet, so it cannot classify or "
                f"train. Call nlp.initialize() first (with training examples, or after "
                f"add_label for each label), or load a trained pipeline with spacy.load()."
            )


def check_finite_loss(loss: float, step: int, component: str) -> None:
    if math.isfinite(loss):
        return
    raise NonFiniteLossError(
        f"{component}: the training loss is {loss} at update step {step} of this "
        f"component; training stopped and this step changed no weights. Lower the learning "
        f"rate ([training.optimizer] learn_rate), clip gradients ([training.optimizer] "
        f"grad_clip = 1.0), or, with mixed_precision = true, turn it off to check for an "
        f"overflow. A loss that is not finite at step 1 means the weights already hold NaN "
        f"or inf: reload the pipeline or initialise it again."
    )
