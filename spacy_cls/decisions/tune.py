"""`tune`: fit a saved pipeline's decision settings on a labelled dev set and write them
into its config, so that `spacy.load` applies them.

- multi-label: a threshold per label (thresholds.tune_thresholds);
- exclusive: a softmax temperature (calibration.fit_temperature), and, when asked, the
  top score below which a doc gets no label (thresholds.abstain_for_accuracy).

The encoder runs once over the dev set; every candidate is scored in numpy, on the
float32 scores the pipeline's own `scores_from_logits` gives, decided by `decide`. The
values chosen are the values written (a temperature rounded to 4 significant digits is
the temperature scored), and the figures printed as "after" are computed once more from
the written pipeline, reloaded with `spacy.load`: its settings and its head on the dev
set's encoder features must give the same figures, or `tune` fails.
"""
from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy

from .apply import DecisionSettings, head_logits, settings_of
from .calibration import T_MAX, T_MIN, at_bound, fit_temperature, plot_reliability, reliability_bins
from .collect import ScoredSet, collect, evaluate
from .labels import encode_label_table, resolve_label_table
from .thresholds import (
    DEFAULT_MIN_POSITIVES,
    DEFAULT_MIN_THRESHOLD,
    abstain_for_accuracy,
    coverage_curve,
    tune_thresholds,
)

COVERAGE_CUTS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
# The fitted temperature is written (and scored) with this many significant digits.
TEMPERATURE_DIGITS = 4


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
    # the settings before and after, as the pipeline holds them
    settings_before: Optional[DecisionSettings] = None
    settings_after: Optional[DecisionSettings] = None


def load_pipeline(pipeline: Path):
    from ..models.safe_load import load_checked

    if not (pipeline / "config.cfg").exists():
        raise ValueError(f"{pipeline} is not a saved pipeline folder (no config.cfg): give what nlp.to_disk wrote.")
    return load_checked(pipeline)  # the folder check, unless SPACY_CLS_CHECK_PIPELINES=0


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
    from .rank import find_classifier

    pipeline = Path(pipeline)
    nlp = load_pipeline(pipeline)
    name = component or find_classifier(nlp)
    current = settings_of(nlp.get_pipe(name))
    scored = collect(nlp, name, dev, keep_features=True)
    if scored.multi_label:
        result = _tune_multilabel(scored, current, min_threshold, min_positives)
        if abstain_accuracy is not None:
            result.notes.append("abstaining applies to exclusive classes; ignored for a multi-label classifier")
    else:
        result = _tune_exclusive(scored, current, abstain_accuracy)
    target = Path(output) if output is not None else pipeline
    if target.resolve() != pipeline.resolve():
        if target.exists() and any(target.iterdir()):
            raise ValueError(f"{target} exists and is not empty: give a new folder (or none to tune in place).")
        shutil.copytree(pipeline, target, dirs_exist_ok=True)
    write_settings(target, name, result.settings, labels=scored.labels)
    result.output = target
    check_written(target, name, scored, result)
    if plot is not None:
        result.plot = _plot(scored, result, Path(plot))
    return result


def _tune_multilabel(scored: ScoredSet, current: DecisionSettings, min_threshold, min_positives) -> TuneResult:
    tuned = tune_thresholds(scored.probabilities(), scored.gold, scored.labels, default=current.threshold,
                            min_threshold=min_threshold, min_positives=min_positives)
    after = current.replace(thresholds=tuned)
    too_rare = [label for label, n in zip(scored.labels, scored.gold.sum(axis=0)) if n < min_positives]
    result = TuneResult(
        component=current.component, multi_label=True, n_docs=len(scored.gold), settings={"thresholds": tuned},
        before=evaluate(scored, settings=current), after=evaluate(scored, settings=after),
        settings_before=current, settings_after=after,
    )
    if too_rare:
        result.notes.append(
            f"{len(too_rare)} label(s) with fewer than {min_positives} gold docs keep the global threshold "
            f"{current.threshold}: {too_rare}"
        )
    return result


def _tune_exclusive(scored: ScoredSet, current: DecisionSettings, abstain_accuracy) -> TuneResult:
    fitted = fit_temperature(scored.logits, scored.gold)
    temperature = float(f"{fitted:.{TEMPERATURE_DIGITS}g}")
    settings: Dict[str, object] = {"temperature": temperature}
    notes: List[str] = []
    if at_bound(fitted):
        notes.append(
            f"the fitted temperature {temperature:g} is at the end of the searched range [{T_MIN}, {T_MAX}]: "
            f"the dev set is too small or too easy to calibrate on (a model that gets every dev doc "
            f"right is pushed towards ever sharper scores); tune on a larger dev set"
        )
    abstain = current.abstain_threshold
    if abstain_accuracy is not None:
        abstain = abstain_for_accuracy(scored.probabilities(temperature), scored.gold, abstain_accuracy)
        if abstain is None:
            notes.append(f"no abstain threshold reaches accuracy {abstain_accuracy} on this dev set; none set")
        elif abstain == 0.0:
            abstain = None
            notes.append(f"all dev docs together reach accuracy {abstain_accuracy}: no abstain threshold needed")
        settings["abstain_threshold"] = abstain
    after = current.replace(temperature=temperature, abstain_threshold=abstain)
    return TuneResult(
        component=current.component, multi_label=False, n_docs=len(scored.gold), settings=settings,
        before=evaluate(scored, settings=current), after=evaluate(scored, settings=after),
        coverage=coverage_curve(scored.probabilities(temperature), scored.gold, COVERAGE_CUTS, after),
        notes=notes, settings_before=current, settings_after=after,
    )


def write_settings(folder: Path, component: str, settings: Dict[str, object],
                   labels: Optional[List[str]] = None) -> None:
    """Set `settings` in the component's block of folder/config.cfg, and check that the
    config reads back the same values through the parser `spacy.load` uses, with
    interpolation. A {label: threshold} table whose labels the config format cannot hold
    as keys is written with escaped keys (labels.py)."""
    from spacy.util import load_config
    from thinc.api import Config

    path = folder / "config.cfg"
    config = load_config(path, interpolate=False)
    block = config["components"].get(component)
    if block is None:
        raise ValueError(f"{path} has no component {component!r}.")
    for key, value in settings.items():
        if isinstance(value, dict):
            value = encode_label_table(value, labels or list(value), key)
        block[key] = value
    text = config.to_str()
    reread = Config().from_str(text, interpolate=True)["components"][component]
    for key, value in settings.items():
        if isinstance(value, dict):
            got = resolve_label_table(reread.get(key), labels or list(value), key, component)
        else:
            got = reread.get(key)
        if got != value:
            raise ValueError(
                f"The config format cannot hold {key} = {value!r} (it reads back as {got!r}); "
                f"rename the labels involved, or set {key} in Python."
            )
    path.write_text(text, encoding="utf8")


def check_written(folder: Path, name: str, scored: ScoredSet, result: TuneResult) -> None:
    """Load the written pipeline as users will, and recompute the "after" figures from its
    own settings and head on the dev set's encoder features; they must be those tune
    computed (a setting that did not survive the config, or a head that scores
    differently, fails here rather than silently later)."""
    nlp = load_pipeline(folder)
    pipe = nlp.get_pipe(name)
    loaded = settings_of(pipe)
    if loaded != result.settings_after:
        raise RuntimeError(
            f"The pipeline written to {folder} holds decision settings {loaded} where tune chose "
            f"{result.settings_after}; nothing it printed would hold for it."
        )
    if scored.features is not None and len(scored.features):
        logits = head_logits(pipe.model, pipe.model.ops.asarray2f(scored.features))
        again = ScoredSet(scored.labels, logits, scored.gold, scored.multi_label, scored.texts, known=scored.known,
                          component=name)
        figures = evaluate(again, settings=loaded)
        if not _same(figures, result.after):
            raise RuntimeError(f"The pipeline written to {folder} gives {figures} on the dev set where tune "
                               f"computed {result.after}.")


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


def _plot(scored: ScoredSet, result: TuneResult, path: Path) -> Path:
    if scored.multi_label:
        curves = {"per (doc, label) score": reliability_bins(scored.probabilities(), scored.gold, multi_label=True)}
        title = f"{result.component}: reliability"
    else:
        before = result.settings_before.temperature if result.settings_before else 1.0
        after = result.settings_after.temperature if result.settings_after else 1.0
        curves = {
            f"before (T = {before:g})": reliability_bins(scored.probabilities(before), scored.gold),
            f"after (T = {after:g})": reliability_bins(scored.probabilities(after), scored.gold),
        }
        title = f"{result.component}: top-label reliability"
    return plot_reliability(curves, path, title=title)


def figures_table(result: TuneResult) -> List[str]:
    """The lines `tune` prints: what it chose, then the figures before and after, with the
    docs that get no label counted both ways (exclusive classes)."""
    lines = [f"{result.component}: {result.n_docs} dev docs, {'multi-label' if result.multi_label else 'exclusive'}"]
    before, after = result.settings_before, result.settings_after
    lines.append("Chose:")
    if result.multi_label:
        lines.append(f"  global threshold (labels not tuned): {after.threshold:g}")
        for label in after.labels:
            old = (before.thresholds or {}).get(label, before.threshold)
            new = (after.thresholds or {}).get(label, after.threshold)
            lines.append(f"  threshold {label!r}: {old:g} -> {new:g}")
    else:
        lines.append(f"  temperature: {before.temperature:g} -> {after.temperature:g}")
        show = lambda t: "none (always decide)" if t is None else f"{t:g}"  # noqa: E731
        lines.append(f"  abstain threshold: {show(before.abstain_threshold)} -> {show(after.abstain_threshold)}")
    rows = [("macro-F1", "macro_f1"), ("micro-F1", "micro_f1")]
    if not result.multi_label:
        rows.append(("accuracy", "accuracy"))
    width = 34
    lines.append(f"  {'':<{width}} {'before':>8} {'after':>8}")
    if not result.multi_label:
        lines.append("  over all docs (a doc with no label counts as an error):")
    for title, key in rows:
        lines.append(f"  {title:<{width}} {_fmt(result.before[key])} {_fmt(result.after[key])}")
    if not result.multi_label:
        lines.append(f"  {'coverage (share given a label)':<{width}} {_fmt(result.before['coverage'])} "
                     f"{_fmt(result.after['coverage'])}")
        lines.append("  over the docs given a label only (abstained docs left out):")
        for title, key in (("accuracy on covered", "covered_accuracy"), ("macro-F1 on covered", "covered_macro_f1"),
                           ("micro-F1 on covered", "covered_micro_f1")):
            lines.append(f"  {title:<{width}} {_fmt(result.before[key])} {_fmt(result.after[key])}")
    lines.append("  calibration of the scores:")
    calibration = [("ECE", "ece"), ("Brier", "brier")] + ([] if result.multi_label else [("NLL", "nll")])
    for title, key in calibration:
        lines.append(f"  {title:<{width}} {_fmt(result.before[key])} {_fmt(result.after[key])}")
    if result.coverage:
        lines.append(f"  coverage if abstaining below a top score (after, T = {after.temperature:g}):")
        lines.append("  abstain below | coverage | accuracy on covered")
        for row in result.coverage:
            lines.append(f"  {row['threshold']:>13.2f} | {row['coverage']:>8.3f} | {_fmt(row['accuracy']).strip()}")
    return lines


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'-':>8}"
    return f"{float(value):>8.4f}"


def as_json(result: TuneResult) -> Dict[str, object]:
    return {"component": result.component, "n_docs": result.n_docs, "settings": result.settings,
            "before": _plain(result.before), "after": _plain(result.after), "coverage": _plain(result.coverage),
            "notes": result.notes}


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (numpy.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, numpy.integer):
        return int(value)
    return value
