"""Decisions users can trust: class weights, tuned thresholds, temperature scaling,
uncertainty for annotation, and cross-validated scores (docs/decisions.md)."""
from .calibration import brier_score, expected_calibration_error, fit_temperature
from .collect import ScoredSet, collect, evaluate
from .thresholds import abstain_for_accuracy, coverage_curve, decide, tune_thresholds
from .uncertainty import uncertainty
from .weights import resolve_class_weights

__all__ = [
    "ScoredSet",
    "abstain_for_accuracy",
    "brier_score",
    "collect",
    "coverage_curve",
    "decide",
    "evaluate",
    "expected_calibration_error",
    "fit_temperature",
    "resolve_class_weights",
    "tune_thresholds",
    "uncertainty",
]
