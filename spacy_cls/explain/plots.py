"""Plots for people: the dev score during training, a confusion matrix (or per-label
counts for multi-label), and the corpus's [CLS] vectors projected to 2-D.

Figures are drawn with matplotlib's Agg backend (no display needed) and saved as PNG,
SVG or PDF by the output file's suffix.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy  # noqa: E402
from spacy.language import Language  # noqa: E402
from spacy.pipeline import MultiLabel_TextCategorizer, TextCategorizer  # noqa: E402
from spacy.tokens import DocBin  # noqa: E402

from ..pipeline.extensions import CLS_VECTOR  # noqa: E402
from ..data.readers import (  # noqa: E402
    ReaderSpec, cats_for, describe_rejected, infer_format, read_rows, resolve_label_set, split_records,
)

logger = logging.getLogger("spacy_cls")

PathLike = Union[str, Path]
LOGGER_HINT = (
    "spaCy's default console logger writes scores to the terminal only. To keep them, set "
    "in the training config:\n"
    "    [training.logger]\n"
    '    @loggers = "spacy.ConsoleLogger.v3"\n'
    '    progress_bar = "eval"\n'
    '    output_file = "training/log.jsonl"\n'
    "then pass that file (or the folder that holds it) to plot-training."
)
# Tried in order for glyphs that the default font lacks (Chinese labels); used when installed.
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Zen Hei", "SimHei", "Microsoft YaHei")
NONE_LABEL = "(none)"
SEVERAL_LABEL = "(several)"


# ---------------------------------------------------------------------------
# Data


@dataclass
class LabelledTexts:
    """Texts with their gold cats (1.0 for a doc's labels, 0.0 for the others)."""

    texts: List[str]
    gold: List[Dict[str, float]]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, limit: int, seed: int = 0) -> "LabelledTexts":
        """At most `limit` items (0: all), a seeded random sample kept in file order."""
        if limit <= 0 or limit >= len(self.texts):
            return self
        keep = numpy.sort(numpy.random.default_rng(seed).choice(len(self.texts), limit, replace=False))
        return LabelledTexts([self.texts[i] for i in keep], [self.gold[i] for i in keep])


def load_labelled_texts(path: PathLike, nlp: Optional[Language] = None) -> LabelledTexts:
    """Read a `.spacy` DocBin (gold from doc.cats) or a labelled text file (.jsonl with
    {"text", "label"}, or .tsv/.csv as `spacy_cls convert` reads them)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Data file not found: {path}")
    if path.suffix == ".spacy":
        vocab = nlp.vocab if nlp is not None else None
        if vocab is None:
            from spacy.vocab import Vocab

            vocab = Vocab()
        docs = list(DocBin().from_disk(path).get_docs(vocab))
        data = LabelledTexts([doc.text for doc in docs], [dict(doc.cats) for doc in docs])
    else:
        spec = ReaderSpec(format=infer_format(path))
        rows, rejected = split_records(read_rows(path, spec))
        if rejected:
            logger.warning("%s: skipped %d rejected rows: %s", path, len(rejected), describe_rejected(rejected))
        label_set = resolve_label_set(spec, rows)
        data = LabelledTexts([row.text for row in rows], [cats_for(row.labels, label_set) for row in rows])
    if not data.texts:
        raise ValueError(f"{path} holds no labelled texts.")
    if not any(data.gold):
        raise ValueError(f"The docs in {path} have no gold cats: convert the data with `python -m spacy_cls convert`.")
    return data


def find_textcat(nlp: Language) -> Tuple[str, TextCategorizer]:
    """The pipeline's first text classifier (cls_classifier or spaCy's textcat)."""
    for name, pipe in nlp.pipeline:
        if isinstance(pipe, TextCategorizer):
            return name, pipe
    raise ValueError(f"The pipeline has no text classifier (its components: {', '.join(nlp.pipe_names) or 'none'}).")


def is_multilabel(pipe: TextCategorizer) -> bool:
    return isinstance(pipe, MultiLabel_TextCategorizer)


def gold_label(cats: Dict[str, float]) -> str:
    """The one positive label of a doc, or (none) / (several)."""
    positive = [label for label, value in cats.items() if value >= 0.5]
    if not positive:
        return NONE_LABEL
    return positive[0] if len(positive) == 1 else SEVERAL_LABEL


# ---------------------------------------------------------------------------
# Training curve


@dataclass
class TrainingLog:
    steps: List[int]
    scores: List[float]  # the weighted dev score, 0-1
    columns: Dict[str, List[float]]  # per score column, 0-1 (spaCy logs them x100)
    losses: Dict[str, List[float]]
    source: Path


def find_training_log(path: PathLike) -> Path:
    """`path` itself if it is a file, else the JSONL training log inside the folder."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"No such training output folder or log file: {path}")
    for candidate in sorted(path.rglob("*.jsonl")):
        if _is_training_log(candidate):
            return candidate
    raise FileNotFoundError(f"No JSONL training log in {path}. " + LOGGER_HINT)


def _is_training_log(path: Path) -> bool:
    try:
        with path.open(encoding="utf8") as f:
            first = json.loads(f.readline() or "null")
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and "step" in first and "score" in first


def read_training_log(path: PathLike) -> TrainingLog:
    source = find_training_log(path)
    steps: List[int] = []
    scores: List[float] = []
    columns: Dict[str, List[float]] = {}
    losses: Dict[str, List[float]] = {}
    for line_no, line in enumerate(source.read_text(encoding="utf8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            step, score = int(entry["step"]), float(entry["score"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{source}, line {line_no}: not a spaCy training log entry ({e}). " + LOGGER_HINT) from None
        steps.append(step)
        scores.append(score)
        for name, value in (entry.get("scores") or {}).items():
            if name != "speed" and isinstance(value, (int, float)):
                columns.setdefault(name, []).append(float(value) / 100)
        for name, value in (entry.get("losses") or {}).items():
            losses.setdefault(name, []).append(float(value))
    if not steps:
        raise ValueError(f"The training log {source} is empty: did training reach its first evaluation?")
    columns = {k: v for k, v in columns.items() if len(v) == len(steps)}
    losses = {k: v for k, v in losses.items() if len(v) == len(steps)}
    return TrainingLog(steps, scores, columns, losses, source)


def _plain_text(plot):
    """Draw every string as typed: labels, titles and file names may hold `$`, which
    matplotlib would otherwise read as mathtext (and fail on an odd number of them)."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
            return plot(*args, **kwargs)

    return wrapper


@_plain_text
def plot_training(log: TrainingLog, output: PathLike) -> Path:
    fig, _ = training_figure(log)
    return _save(fig, output)


def training_figure(log: TrainingLog):
    """The training-curve figure and its dev-score axes (drawn, not saved)."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.plot(log.steps, log.scores, marker="o", color="#1a5fb4", linewidth=2, label="dev score")
    if len(log.columns) > 1:
        for name, values in log.columns.items():
            ax.plot(log.steps, values, linestyle="--", linewidth=1, label=name)
    best = int(numpy.argmax(log.scores))
    ax.scatter([log.steps[best]], [log.scores[best]], s=140, facecolors="none", edgecolors="#c01c28", linewidths=2, zorder=3)
    ax.set_xlabel("training step")
    ax.set_ylabel("dev score")
    low, high = min(0.0, min(log.scores)), max(1.0, max(log.scores)) * 1.02
    ax.set_ylim(low, high)
    ax.grid(alpha=0.3)
    # The label goes on the side of the point with more room, so that it stays inside
    # the axes and clear of the loss axis and its labels on the right.
    span = (max(log.steps) - min(log.steps)) or 1
    right_half = (log.steps[best] - min(log.steps)) / span > 0.5
    upper_half = (log.scores[best] - low) / ((high - low) or 1) > 0.5
    ax.annotate(
        f"best {log.scores[best]:.3f}\nstep {log.steps[best]}",
        (log.steps[best], log.scores[best]),
        textcoords="offset points",
        xytext=(-10 if right_half else 10, -12 if upper_half else 12),
        ha="right" if right_half else "left",
        va="top" if upper_half else "bottom",
        color="#c01c28",
        gid="best",
    )
    handles, labels = ax.get_legend_handles_labels()
    if log.losses:
        loss_ax = ax.twinx()
        for name, values in log.losses.items():
            loss_ax.plot(log.steps, values, color="#888888", linestyle=":", marker=".", label=f"loss {name}")
        loss_ax.set_ylabel("training loss (sum since previous evaluation)", color="#666666")
        loss_handles, loss_labels = loss_ax.get_legend_handles_labels()
        handles, labels = handles + loss_handles, labels + loss_labels
    ax.legend(handles, labels, loc="lower right", fontsize="small")
    ax.set_title(f"Dev score per evaluation ({len(log.steps)} evaluations)")
    return fig, ax


# ---------------------------------------------------------------------------
# Confusion matrix / per-label counts


@dataclass
class Confusion:
    labels: List[str]
    matrix: numpy.ndarray  # (gold, predicted) counts
    n_skipped: int  # docs without exactly one gold label

    @property
    def accuracy(self) -> float:
        total = self.matrix.sum()
        return float(numpy.trace(self.matrix) / total) if total else 0.0


@dataclass
class LabelCounts:
    labels: List[str]
    tp: numpy.ndarray
    fp: numpy.ndarray
    fn: numpy.ndarray
    threshold: float

    def f1(self) -> numpy.ndarray:
        denominator = 2 * self.tp + self.fp + self.fn
        return numpy.divide(2 * self.tp, denominator, out=numpy.zeros(len(self.labels)), where=denominator > 0)

    @property
    def micro_f1(self) -> float:
        denominator = 2 * self.tp.sum() + self.fp.sum() + self.fn.sum()
        return float(2 * self.tp.sum() / denominator) if denominator else 0.0


def predict_cats(nlp: Language, texts: Sequence[str], batch_size: int = 32) -> List[Dict[str, float]]:
    return [dict(doc.cats) for doc in nlp.pipe(texts, batch_size=batch_size)]


def confusion(labels: Sequence[str], gold: Sequence[Dict[str, float]], predicted: Sequence[Dict[str, float]]) -> Confusion:
    """Exclusive labels: gold label (the one at 1.0) against the argmax prediction."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = numpy.zeros((len(labels), len(labels)), dtype=numpy.int64)
    skipped = 0
    for gold_cats, pred_cats in zip(gold, predicted):
        truth = gold_label(gold_cats)
        if truth not in index or not pred_cats:
            skipped += 1
            continue
        matrix[index[truth], index[max(pred_cats, key=pred_cats.get)]] += 1
    return Confusion(list(labels), matrix, skipped)


def label_counts(
    labels: Sequence[str], gold: Sequence[Dict[str, float]], predicted: Sequence[Dict[str, float]], threshold: float
) -> LabelCounts:
    """Multi-label: per-label true/false positives and false negatives at `threshold`."""
    g = numpy.array([[cats.get(label, 0.0) >= 0.5 for label in labels] for cats in gold], dtype=bool)
    p = numpy.array([[cats.get(label, 0.0) >= threshold for label in labels] for cats in predicted], dtype=bool)
    g, p = g.reshape(-1, len(labels)), p.reshape(-1, len(labels))
    return LabelCounts(
        list(labels), (g & p).sum(0), (~g & p).sum(0), (g & ~p).sum(0), threshold
    )


@_plain_text
def plot_confusion(result: Confusion, output: PathLike, title: str = "") -> Path:
    n = len(result.labels)
    size = min(max(4.5, 0.55 * n + 2.5), 30)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    totals = result.matrix.sum(axis=1, keepdims=True)
    share = numpy.divide(result.matrix, totals, out=numpy.zeros(result.matrix.shape), where=totals > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the gold label's docs")
    ax.set_xticks(range(n), result.labels, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center")
    ax.set_yticks(range(n), result.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    if n <= 25:
        for i in range(n):
            for j in range(n):
                colour = "white" if share[i, j] > 0.6 else "black"
                ax.text(j, i, str(result.matrix[i, j]), ha="center", va="center", color=colour, fontsize="small")
    subtitle = f"accuracy {result.accuracy:.3f} on {int(result.matrix.sum())} docs"
    if result.n_skipped:
        subtitle += f" ({result.n_skipped} without one gold label skipped)"
    ax.set_title(f"{title}\n{subtitle}" if title else subtitle)
    return _save(fig, output)


@_plain_text
def plot_label_counts(result: LabelCounts, output: PathLike, title: str = "") -> Path:
    n = len(result.labels)
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.45 * n + 1.5)))
    y = numpy.arange(n)
    height = 0.27
    ax.barh(y - height, result.tp, height, label="true positives", color="#1a9850")
    ax.barh(y, result.fp, height, label="false positives", color="#d73027")
    ax.barh(y + height, result.fn, height, label="false negatives", color="#fdae61")
    f1 = result.f1()
    ax.set_yticks(y, [f"{label}  (F1 {score:.2f})" for label, score in zip(result.labels, f1)])
    ax.invert_yaxis()
    ax.set_xlabel("docs")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    subtitle = f"threshold {result.threshold:g}, micro F1 {result.micro_f1:.3f}"
    ax.set_title(f"{title}\n{subtitle}" if title else subtitle)
    return _save(fig, output)


# ---------------------------------------------------------------------------
# [CLS] vectors in 2-D


@dataclass
class Projection:
    points: numpy.ndarray  # (n_docs, 2)
    explained: Tuple[float, float]  # share of the variance on each axis
    labels: List[str]  # gold label per doc
    centroid_accuracy: float  # nearest class centroid in the full space


def cls_vectors(nlp: Language, texts: Sequence[str], batch_size: int = 32) -> numpy.ndarray:
    rows = []
    for doc in nlp.pipe(texts, batch_size=batch_size):
        vector = doc._.get(CLS_VECTOR)
        if vector is None:
            raise ValueError("The pipeline sets no doc._.cls_vector: it needs a cls_classifier component.")
        rows.append(vector)
    return numpy.stack(rows).astype(numpy.float32)


def pca_2d(vectors: numpy.ndarray) -> Tuple[numpy.ndarray, Tuple[float, float]]:
    """Project onto the two directions of largest variance (SVD of the centred rows)."""
    centred = vectors.astype(numpy.float64) - vectors.mean(axis=0, keepdims=True)
    _, singular, components = numpy.linalg.svd(centred, full_matrices=False)
    points = numpy.zeros((len(vectors), 2))
    k = min(2, components.shape[0])
    points[:, :k] = centred @ components[:k].T
    variance = singular ** 2
    total = variance.sum()
    explained = tuple(float(variance[i] / total) if total > 0 and i < k else 0.0 for i in range(2))
    return points, explained  # type: ignore[return-value]


def nearest_centroid_accuracy(vectors: numpy.ndarray, labels: Sequence[str]) -> float:
    """Share of docs closer to their own label's mean vector than to any other's."""
    names = sorted(set(labels))
    if len(names) < 2:
        return 1.0
    centroids = numpy.stack([vectors[[lab == name for lab in labels]].mean(axis=0) for name in names])
    distances = ((vectors[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=-1)
    nearest = numpy.asarray(names)[distances.argmin(axis=1)]
    return float((nearest == numpy.asarray(labels)).mean())


def project(vectors: numpy.ndarray, labels: Sequence[str]) -> Projection:
    points, explained = pca_2d(vectors)
    return Projection(points, explained, list(labels), nearest_centroid_accuracy(vectors, labels))


@_plain_text
def plot_projection(result: Projection, output: PathLike, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(8, 6.5))
    counts = Counter(result.labels)
    names = sorted(counts, key=lambda name: (-counts[name], name))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    labels = numpy.asarray(result.labels)
    size = 30 if len(labels) < 500 else 12
    for i, name in enumerate(names):
        mask = labels == name
        ax.scatter(
            result.points[mask, 0], result.points[mask, 1], s=size, alpha=0.7,
            color=cmap(i % cmap.N), label=f"{name} ({counts[name]})", edgecolors="none",
        )
    ax.set_xlabel(f"PC 1 ({result.explained[0]:.1%} of variance)")
    ax.set_ylabel(f"PC 2 ({result.explained[1]:.1%} of variance)")
    ax.grid(alpha=0.3)
    if len(names) <= 20:
        ax.legend(fontsize="small", markerscale=1.5, loc="best")
    subtitle = (
        f"[CLS] vectors of {len(labels)} docs, coloured by gold label; nearest-centroid "
        f"accuracy in the full space {result.centroid_accuracy:.3f}"
    )
    ax.set_title(f"{title}\n{subtitle}" if title else subtitle, fontsize="medium")
    return _save(fig, output)


def _use_cjk_fallback() -> None:
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    fallback = [name for name in CJK_FONTS if name in installed]
    families = list(plt.rcParams["font.sans-serif"])
    plt.rcParams["font.sans-serif"] = families + [name for name in fallback if name not in families]


_use_cjk_fallback()


def _save(fig, output: PathLike) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
