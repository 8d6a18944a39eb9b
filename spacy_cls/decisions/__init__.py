"""Decisions users can trust: class weights, tuned thresholds, temperature scaling,
uncertainty for annotation, and cross-validated scores (docs/decisions.md).

`decide_labels(scores, settings)` is the one place a doc's labels are decided from its
scores; `settings_of(component)` gives a loaded component's `DecisionSettings`.
"""
from .apply import DecisionSettings, decide, decide_cats, decide_labels, scores_from_logits, settings_of
from .calibration import brier_score, expected_calibration_error, fit_temperature
from .collect import ScoredSet, collect, evaluate
from .thresholds import abstain_for_accuracy, coverage_curve, tune_thresholds
from .uncertainty import uncertainty
from .weights import resolve_class_weights

__all__ = [
    "DecisionSettings",
    "ScoredSet",
    "abstain_for_accuracy",
    "brier_score",
    "collect",
    "coverage_curve",
    "decide",
    "decide_cats",
    "decide_labels",
    "evaluate",
    "expected_calibration_error",
    "fit_temperature",
    "resolve_class_weights",
    "scores_from_logits",
    "settings_of",
    "tune_thresholds",
    "uncertainty",
]
