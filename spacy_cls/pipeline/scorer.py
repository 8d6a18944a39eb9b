"""The scorer of `cls_classifier`: spaCy's `Scorer.score_cats` for exclusive classes,
plus `cats_accuracy`, the share of docs whose highest-scoring label is their gold label.

spaCy's textcat scorer reports precision, recall, F and AUC only; for exclusive classes
its micro-F equals accuracy only when every doc has exactly one gold label and the
threshold is 0. This scorer names accuracy, so `spacy train` shows it as a column and
`nlp.evaluate` returns it, whatever the threshold.
"""
from typing import Any, Callable, Dict, Iterable, Optional

from spacy.scorer import Scorer
from spacy.training import Example
from spacy.util import registry

ACCURACY_KEY = "cats_accuracy"


def exclusive_accuracy(
    examples: Iterable[Example],
    labels: Iterable[str] = (),
    getter: Callable[[Any, str], Any] = getattr,
) -> Optional[float]:
    """The share of examples whose predicted label (the highest of `labels` in the
    predicted cats; ties go to the label listed first) is the one gold label set to
    1.0. An example without exactly one gold label counts as wrong; None when there
    are no examples."""
    labels = list(labels)
    n_examples = n_correct = 0
    for example in examples:
        n_examples += 1
        gold = getter(example.reference, "cats")
        predicted = getter(example.predicted, "cats")
        names = labels or list(dict.fromkeys([*gold, *predicted]))
        positives = [label for label in names if gold.get(label) == 1.0]
        scored = [label for label in names if label in predicted]
        if len(positives) != 1 or not scored:
            continue
        best = max(scored, key=lambda label: (predicted[label], -scored.index(label)))
        n_correct += best == positives[0]
    return n_correct / n_examples if n_examples else None


def textcat_score(examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
    examples = list(examples)
    scores = Scorer.score_cats(examples, "cats", multi_label=False, **kwargs)
    scores[ACCURACY_KEY] = exclusive_accuracy(
        examples, kwargs.get("labels", ()), kwargs.get("getter", getattr)
    )
    return scores


@registry.scorers("spacy_cls.textcat_scorer.v1")
def make_textcat_scorer() -> Callable[..., Dict[str, Any]]:
    return textcat_score
