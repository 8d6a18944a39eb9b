"""`tune`: fit a saved pipeline's decision settings on a labelled dev set and write them
into its config, so that `spacy.load` applies them.

- multi-label: a threshold per label (thresholds.tune_thresholds);
- exclusive: a softmax temperature (calibration.fit_temperature), and, when asked, the
  top score below which a doc gets no label (thresholds.abstain_for_accuracy).
The encoder runs once over the dev set; every candidate is scored in numpy.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

from .calibration import T_MAX, T_MIN, at_bound, fit_temperature, plot_reliability, reliability_bins
from .collect import ScoredSet, collect, evaluate
from .thresholds import (
    DEFAULT_MIN_POSITIVES,
    DEFAULT_MIN_THRESHOLD,
    abstain_for_accuracy,
    coverage_curve,
    tune_thresholds,
)

COVERAGE_CUTS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


@dataclass
class TuneResult:
    component: str
    multi_label: bool
    n_docs: int
    settings: Dict[str, object]
    before: Dict[str, object]
    after: Dict[str, object]
    coverage: List[Dict[str, float]] = field(default_factory=list)
    output: Optional[Path] = None
    plot: Optional[Path] = None
    notes: List[str] = field(default_factory=list)


def tune_pipeline(
    pipeline: Union[str, Path],
    dev: Union[str, Path],
    *,
    output: Optional[Union[str, Path]] = None,
    component: Optional[str] = None,
    min_threshold: float = DEFAULT_MIN_THRESHOLD,
    min_positives: int = DEFAULT_MIN_POSITIVES,
    abstain_accuracy: Optional[float] = None,
    plot: Optional[Union[str, Path]] = None,
) -> TuneResult:
    """Tune `pipeline` (a folder saved with nlp.to_disk) on `dev` (.spacy with gold cats);
    write the tuned pipeline to `output` (default: in place)."""
    from ..models.safe_load import load_checked
    from .rank import find_classifier

    pipeline = Path(pipeline)
    if not (pipeline / "config.cfg").exists():
        raise ValueError(f"{pipeline} is not a saved pipeline folder (no config.cfg): give what nlp.to_disk wrote.")
    nlp = load_checked(pipeline)  # the folder check, unless SPACY_CLS_CHECK_PIPELINES=0
    name = component or find_classifier(nlp)
    pipe = nlp.get_pipe(name)
    scored = collect(nlp, name, dev)
    if scored.multi_label:
        result = _tune_multilabel(scored, name, float(pipe.cfg.get("threshold", 0.5)), pipe.thresholds,
                                  min_threshold, min_positives)
        if abstain_accuracy is not None:
            result.notes.append("abstaining applies to exclusive classes; ignored for a multi-label classifier")
    else:
        result = _tune_exclusive(scored, name, pipe.temperature, pipe.abstain_threshold, abstain_accuracy)
    target = Path(output) if output is not None else pipeline
    if target.resolve() != pipeline.resolve():
        if target.exists() and any(target.iterdir()):
            raise ValueError(f"{target} exists and is not empty: give a new folder (or none to tune in place).")
        shutil.copytree(pipeline, target, dirs_exist_ok=True)
    write_settings(target, name, result.settings)
    result.output = target
    if plot is not None:
        result.plot = _plot(scored, result, Path(plot))
    return result


def _tune_multilabel(scored: ScoredSet, name, threshold, current, min_threshold, min_positives) -> TuneResult:
    tuned = tune_thresholds(scored.probabilities(), scored.gold, scored.labels, default=threshold,
                            min_threshold=min_threshold, min_positives=min_positives)
    too_rare = [label for label, n in zip(scored.labels, scored.gold.sum(axis=0)) if n < min_positives]
    result = TuneResult(
        component=name, multi_label=True, n_docs=len(scored.gold), settings={"thresholds": tuned},
        before=evaluate(scored, threshold=threshold, thresholds=current),
        after=evaluate(scored, threshold=threshold, thresholds=tuned),
    )
    if too_rare:
        result.notes.append(
            f"{len(too_rare)} label(s) with fewer than {min_positives} gold docs keep the global threshold "
            f"{threshold}: {too_rare}"
        )
    return result


def _tune_exclusive(scored: ScoredSet, name, temperature, abstain, abstain_accuracy) -> TuneResult:
    fitted = fit_temperature(scored.logits, scored.gold)
    settings: Dict[str, object] = {"temperature": round(fitted, 6)}
    new_abstain = abstain
    notes: List[str] = []
    if at_bound(fitted):
        notes.append(
            f"the fitted temperature {fitted:.3g} is at the end of the searched range [{T_MIN}, {T_MAX}]: "
            f"the dev set is too small or too easy to calibrate on (a model that gets every dev doc "
            f"right is pushed towards ever sharper scores); tune on a larger dev set"
        )
    if abstain_accuracy is not None:
        new_abstain = abstain_for_accuracy(scored.probabilities(fitted), scored.gold, abstain_accuracy)
        if new_abstain is None:
            notes.append(f"no abstain threshold reaches accuracy {abstain_accuracy} on this dev set; none set")
        else:
            settings["abstain_threshold"] = float(new_abstain)
    result = TuneResult(
        component=name, multi_label=False, n_docs=len(scored.gold), settings=settings,
        before=evaluate(scored, temperature=temperature, abstain_threshold=abstain),
        after=evaluate(scored, temperature=fitted, abstain_threshold=settings.get("abstain_threshold", abstain)),
        coverage=coverage_curve(scored.probabilities(fitted), scored.gold, COVERAGE_CUTS),
        notes=notes,
    )
    return result


def write_settings(folder: Path, component: str, settings: Dict[str, object]) -> None:
    """Set `settings` in the component's block of folder/config.cfg, checking that the
    config reads back the same values (a label spelt so that the config format cannot
    hold it as a key fails here, not at load time)."""
    from spacy.util import load_config
    from thinc.api import Config

    path = folder / "config.cfg"
    config = load_config(path, interpolate=False)
    block = config["components"].get(component)
    if block is None:
        raise ValueError(f"{path} has no component {component!r}.")
    for key, value in settings.items():
        block[key] = value
    text = config.to_str()
    reread = Config().from_str(text, interpolate=False)["components"][component]
    for key, value in settings.items():
        if reread.get(key) != value:
            raise ValueError(
                f"The config format cannot hold {key} = {value!r} (a label with '=' or a line break?); "
                f"rename the label, or set {key} in Python."
            )
    path.write_text(text, encoding="utf8")


def _plot(scored: ScoredSet, result: TuneResult, path: Path) -> Path:
    if scored.multi_label:
        curves = {"per (doc, label) score": reliability_bins(scored.probabilities(), scored.gold, multi_label=True)}
        title = f"{result.component}: reliability"
    else:
        t_before = result.before.get("temperature", None)
        curves = {
            "before": reliability_bins(scored.probabilities(t_before or 1.0), scored.gold),
            f"after (T = {result.settings['temperature']:.2f})": reliability_bins(
                scored.probabilities(float(result.settings["temperature"])), scored.gold),
        }
        title = f"{result.component}: top-label reliability"
    return plot_reliability(curves, path, title=title)
