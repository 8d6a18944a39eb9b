"""The scorers of `cls_classifier` and `cls_classifier_multilabel`: the keys and values of
spaCy's `Scorer.score_cats`, with precision, recall and F counted from the labels each
doc is given (`spacy_cls.decisions.apply.decide`, what sets `doc._.cls_labels`), and for
exclusive classes the accuracy.

What the decisions change, against spaCy's textcat scorers:
- exclusive classes with `abstain_threshold`: a doc that gets no label is a false
  negative of its gold label and a false positive of nothing; without abstention the
  figures are spaCy's;
- multi-label with per-label `thresholds`: each label is counted at its own threshold;
  with none, at the global `threshold`, as spaCy does.
`cats_score` is spaCy's (macro F for exclusive classes, or the F of `positive_label`;
macro AUC for multi-label, which no threshold changes).

Exclusive classes also get:
- `cats_accuracy`: the share of all docs whose label is their one gold label; a doc
  that abstains counts as wrong (so it is the accuracy of acting on doc._.cls_labels);
- `cats_coverage`: the share of docs that got a label (1.0 without abstention);
- `cats_covered_accuracy`: the accuracy on the docs that got a label.
`cats_score_desc` names the accuracy too, so `spacy evaluate`, which prints only
`cats_score` and its description for a text classifier, shows it.
"""
from typing import Any, Callable, Dict, Iterable, List, Optional

import numpy
from spacy.scorer import Scorer
from spacy.training import Example
from spacy.util import registry

from ..decisions.apply import DecisionSettings, decide, scores_of_cats
from ..decisions.thresholds import prf

ACCURACY_KEY = "cats_accuracy"
COVERAGE_KEY = "cats_coverage"
COVERED_ACCURACY_KEY = "cats_covered_accuracy"
# The keyword argument through which a component gives the scorer its decision settings.
DECISIONS_KWARG = "decisions"


def _labels_of(examples: List[Example], labels: Iterable[str], getter) -> List[str]:
    labels = list(labels)
    if labels:
        return labels
    names: Dict[str, None] = {}
    for example in examples:
        names.update(dict.fromkeys(getter(example.reference, "cats")))
        names.update(dict.fromkeys(getter(example.predicted, "cats")))
    return list(names)


def _settings(kwargs: Dict[str, Any], labels: List[str], multi_label: bool) -> DecisionSettings:
    given = kwargs.get(DECISIONS_KWARG)
    if given is not None:
        if list(given.labels) != labels:
            given = given.replace(labels=tuple(labels),
                                  thresholds={k: v for k, v in (given.thresholds or {}).items() if k in labels} or None)
        return given
    threshold = kwargs.get("threshold")
    if threshold is None or not multi_label:
        threshold = 0.5 if multi_label else 0.0
    return DecisionSettings(labels=tuple(labels), multi_label=multi_label, threshold=threshold)


def _gold(examples: List[Example], labels: List[str], multi_label: bool, getter):
    """(truth, known): the gold matrix as spaCy's scorer reads it. Multi-label: a gold value
    above 0 is positive, a label the reference leaves out is not counted. Exclusive: the
    highest gold label of the doc (none when the reference has no cats of these labels)."""
    truth = numpy.zeros((len(examples), len(labels)), dtype=bool)
    known = numpy.ones(truth.shape, dtype=bool)
    for i, example in enumerate(examples):
        gold = {k: v for k, v in getter(example.reference, "cats").items() if k in labels}
        if multi_label:
            for j, label in enumerate(labels):
                value = gold.get(label)
                known[i, j] = value is not None
                truth[i, j] = value is not None and value > 0
        elif gold:
            best = max(gold.items(), key=lambda item: item[1])[0]
            truth[i, labels.index(best)] = True
    return truth, known


def _one_gold_label(examples: List[Example], labels: List[str], getter) -> List[Optional[int]]:
    out = []
    for example in examples:
        gold = getter(example.reference, "cats")
        positives = [j for j, label in enumerate(labels) if gold.get(label) == 1.0]
        out.append(positives[0] if len(positives) == 1 else None)
    return out


def decided_labels(examples: List[Example], settings: DecisionSettings, getter=getattr) -> numpy.ndarray:
    """(n_examples, n_labels) booleans: the labels the component's decisions give each
    predicted doc, from its cats (a doc without any of the labels' scores gets none)."""
    labels = list(settings.labels)
    cats = [getter(example.predicted, "cats") for example in examples]
    scores, present = scores_of_cats(cats, labels)
    return decide(scores, settings) & present[:, None]


def score_decisions(examples: Iterable[Example], *, multi_label: bool, **kwargs) -> Dict[str, Any]:
    """spaCy's `Scorer.score_cats` keys, P/R/F counted from the decisions."""
    examples = list(examples)
    getter: Callable = kwargs.get("getter", getattr)
    labels = _labels_of(examples, kwargs.get("labels", ()), getter)
    settings = _settings(kwargs, labels, multi_label)
    positive_label = kwargs.get("positive_label")
    scores = Scorer.score_cats(examples, "cats", getter=getter, labels=labels, multi_label=multi_label,
                               positive_label=positive_label, threshold=settings.threshold)
    decided = decided_labels(examples, settings, getter)
    truth, known = _gold(examples, labels, multi_label, getter)
    tp = (decided & truth & known).sum(axis=0)
    fp = (decided & ~truth & known).sum(axis=0)
    fn = (~decided & truth & known).sum(axis=0)
    per_type = {label: prf(float(tp[j]), float(fp[j]), float(fn[j])) for j, label in enumerate(labels)}
    micro = prf(float(tp.sum()), float(fp.sum()), float(fn.sum()))
    n_cats = len(labels) + 1e-100
    scores.update({
        "cats_micro_p": micro["p"], "cats_micro_r": micro["r"], "cats_micro_f": micro["f"],
        "cats_macro_p": sum(s["p"] for s in per_type.values()) / n_cats,
        "cats_macro_r": sum(s["r"] for s in per_type.values()) / n_cats,
        "cats_macro_f": sum(s["f"] for s in per_type.values()) / n_cats,
        "cats_f_per_type": per_type,
    })
    if multi_label:
        return scores
    if len(labels) == 2 and positive_label:
        scores["cats_score"] = per_type[positive_label]["f"]
    else:
        scores["cats_score"] = scores["cats_macro_f"]
    one_gold = _one_gold_label(examples, labels, getter)
    covered = decided.any(axis=1)
    correct = numpy.array([g is not None and bool(row[g]) for g, row in zip(one_gold, decided)], dtype=bool)
    n = len(examples)
    scores[ACCURACY_KEY] = float(correct.sum()) / n if n else None
    scores[COVERAGE_KEY] = float(covered.sum()) / n if n else None
    scores[COVERED_ACCURACY_KEY] = float(correct[covered].mean()) if covered.any() else None
    scores["cats_score_desc"] = describe(scores)
    return scores


def describe(scores: Dict[str, Any]) -> str:
    """`cats_score_desc` with the accuracy: 'macro F; accuracy 87.90%'."""
    desc = scores.get("cats_score_desc") or "macro F"
    accuracy, coverage = scores.get(ACCURACY_KEY), scores.get(COVERAGE_KEY)
    if accuracy is None:
        return desc
    if coverage is None or coverage >= 1.0:
        return f"{desc}; accuracy {accuracy:.2%}"
    covered = scores.get(COVERED_ACCURACY_KEY)
    rest = f", {covered:.2%} on the {coverage:.2%} labelled" if covered is not None else ""
    return f"{desc}; accuracy {accuracy:.2%} counting the {1 - coverage:.2%} abstained as wrong{rest}"


def exclusive_accuracy(
    examples: Iterable[Example],
    labels: Iterable[str] = (),
    getter: Callable[[Any, str], Any] = getattr,
    decisions: Optional[DecisionSettings] = None,
) -> Optional[float]:
    """The share of examples whose decided label (the highest of `labels` in the
    predicted cats, ties to the label listed first, or none under `abstain_threshold`)
    is the one gold label set to 1.0. An example without exactly one gold label, or
    without a label, counts as wrong; None when there are no examples."""
    examples = list(examples)
    if not examples:
        return None
    labels = _labels_of(examples, labels, getter)
    kwargs = {DECISIONS_KWARG: decisions} if decisions is not None else {}
    settings = _settings(kwargs, labels, multi_label=False)
    decided = decided_labels(examples, settings, getter)
    one_gold = _one_gold_label(examples, labels, getter)
    return sum(g is not None and bool(row[g]) for g, row in zip(one_gold, decided)) / len(examples)


def textcat_score(examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
    return score_decisions(examples, multi_label=False, **kwargs)


def textcat_multilabel_score(examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
    return score_decisions(examples, multi_label=True, **kwargs)


@registry.scorers("spacy_cls.textcat_scorer.v1")
def make_textcat_scorer() -> Callable[..., Dict[str, Any]]:
    return textcat_score


@registry.scorers("spacy_cls.textcat_multilabel_scorer.v1")
def make_textcat_multilabel_scorer() -> Callable[..., Dict[str, Any]]:
    return textcat_multilabel_score
