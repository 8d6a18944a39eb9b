"""Plots: training curve from a ConsoleLogger.v3 JSONL log, confusion matrix and
per-label counts, [CLS] vectors in 2-D; data from .spacy and .jsonl files."""
import json

import numpy
import pytest

pytest.importorskip("matplotlib", reason="the plots need matplotlib (pip install 'spacy-cls[plots]')")
from PIL import Image  # noqa: E402  (installed with matplotlib)
from typer.testing import CliRunner  # noqa: E402

import spacy_cls  # noqa: F401
from spacy_cls.cli import app
from spacy_cls.explain.plots import (
    LabelledTexts, confusion, find_training_log, gold_label, label_counts, load_labelled_texts,
    nearest_centroid_accuracy, pca_2d, plot_confusion, plot_label_counts, plot_projection, plot_training,
    project, read_training_log,
)

from toy_pipelines import EXCLUSIVE, write_docbin, write_jsonl


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_image(path, min_size=(400, 300)):
    assert path.stat().st_size > 10_000
    image = numpy.asarray(Image.open(path).convert("RGB"))
    assert image.shape[1] >= min_size[0] and image.shape[0] >= min_size[1]
    assert len(numpy.unique(image.reshape(-1, 3), axis=0)) > 20  # not blank
    return image


LOG_LINES = [
    {"epoch": 0, "step": 0, "losses": {"cls_classifier": 0.0}, "scores": {"cats_score": 33.3, "speed": 900.0}, "score": 0.333},
    {"epoch": 1, "step": 20, "losses": {"cls_classifier": 13.8}, "scores": {"cats_score": 83.3, "speed": 950.0}, "score": 0.833},
    {"epoch": 3, "step": 40, "losses": {"cls_classifier": 4.1}, "scores": {"cats_score": 91.2, "speed": 940.0}, "score": 0.912},
    {"epoch": 4, "step": 60, "losses": {"cls_classifier": 2.0}, "scores": {"cats_score": 90.0, "speed": 945.0}, "score": 0.9},
]


def write_log(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model-best").mkdir()
    (folder / "model-best" / "meta.json").write_text("{}")
    log = folder / "log.jsonl"
    log.write_text("\n".join(json.dumps(line) for line in LOG_LINES) + "\n")
    return log


def test_read_training_log(tmp_path):
    log_path = write_log(tmp_path / "out")
    assert find_training_log(tmp_path / "out") == log_path
    log = read_training_log(tmp_path / "out")
    assert log.steps == [0, 20, 40, 60]
    assert log.scores == [0.333, 0.833, 0.912, 0.9]
    assert log.columns == {"cats_score": pytest.approx([0.333, 0.833, 0.912, 0.9])}  # speed left out, /100
    assert log.losses == {"cls_classifier": [0.0, 13.8, 4.1, 2.0]}


@pytest.mark.parametrize("scores", [
    [0.333, 0.833, 0.912, 0.9],     # best near the right edge
    [0.2, 0.5, 0.7, 0.99],          # best at the last step, at the top
    [0.99, 0.5, 0.4, 0.3],          # best at the first step
    [0.1, 0.2, 0.15, 0.12],         # best low down
], ids=["near-end", "last-top", "first", "low"])
def test_best_label_stays_inside_the_axes_clear_of_the_loss_axis(scores):
    from spacy_cls.explain.plots import TrainingLog, training_figure

    log = TrainingLog([0, 20, 40, 60], scores, {}, {"cls_classifier": [0.0, 13.8, 4.1, 2.0]}, None)
    fig, ax = training_figure(log)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (label,) = [text for text in ax.texts if text.get_gid() == "best"]
    box = label.get_window_extent(renderer)
    inside = ax.get_window_extent(renderer)
    assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
    (loss_ax,) = [other for other in fig.axes if other is not ax]
    for tick in loss_ax.get_yticklabels() + [loss_ax.yaxis.label]:
        if tick.get_text():
            assert not box.overlaps(tick.get_window_extent(renderer)), tick.get_text()
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_training_log_errors(tmp_path):
    (tmp_path / "empty_run" / "model-best").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="ConsoleLogger.v3"):
        find_training_log(tmp_path / "empty_run")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "score": 0.5}\n{"oops": 1}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_training_log(bad)


def test_plot_training_command(tmp_path):
    write_log(tmp_path / "out")
    output = tmp_path / "curve.png"
    result = invoke("plot-training", tmp_path / "out", "--output", output)
    assert result.exit_code == 0, result.output
    assert "best score 0.912 at step 40" in result.output
    assert_image(output)
    missing = CliRunner().invoke(app, ["plot-training", str(tmp_path / "nothing"), "-o", str(output)])
    assert missing.exit_code == 2 and "No such" in missing.output


def test_load_labelled_texts_spacy_and_jsonl(tmp_path):
    from_docbin = load_labelled_texts(write_docbin(tmp_path / "d.spacy"))
    from_jsonl = load_labelled_texts(write_jsonl(tmp_path / "d.jsonl"))
    assert from_docbin.texts == from_jsonl.texts == [t for t, _ in EXCLUSIVE["en"]]
    assert from_docbin.gold == from_jsonl.gold
    assert [gold_label(c) for c in from_jsonl.gold] == [label for _, label in EXCLUSIVE["en"]]
    multi = load_labelled_texts(write_docbin(tmp_path / "m.spacy", multilabel=True))
    assert [gold_label(c) for c in multi.gold][:4] == ["(several)", "(several)", "SERVICE", "(none)"]
    with pytest.raises(FileNotFoundError):
        load_labelled_texts(tmp_path / "missing.jsonl")


def test_subset_is_seeded_and_ordered():
    data = LabelledTexts([str(i) for i in range(100)], [{"A": 1.0}] * 100)
    a, b = data.subset(10), data.subset(10)
    assert a.texts == b.texts and len(a) == 10
    assert [int(t) for t in a.texts] == sorted(int(t) for t in a.texts)
    assert data.subset(0) is data and data.subset(1000) is data


def test_confusion_counts():
    labels = ["A", "B", "C"]
    gold = [{"A": 1.0, "B": 0.0, "C": 0.0}, {"A": 0.0, "B": 1.0, "C": 0.0}, {"A": 0.0, "B": 1.0, "C": 0.0}, {"A": 0.0, "B": 0.0, "C": 0.0}]
    pred = [{"A": 0.7, "B": 0.2, "C": 0.1}, {"A": 0.6, "B": 0.3, "C": 0.1}, {"A": 0.1, "B": 0.8, "C": 0.1}, {"A": 0.9, "B": 0.0, "C": 0.1}]
    result = confusion(labels, gold, pred)
    assert result.matrix.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert result.n_skipped == 1 and result.accuracy == pytest.approx(2 / 3)


def test_label_counts():
    labels = ["X", "Y"]
    gold = [{"X": 1.0, "Y": 1.0}, {"X": 0.0, "Y": 1.0}, {"X": 1.0, "Y": 0.0}]
    pred = [{"X": 0.9, "Y": 0.4}, {"X": 0.6, "Y": 0.7}, {"X": 0.2, "Y": 0.1}]
    result = label_counts(labels, gold, pred, threshold=0.5)
    assert result.tp.tolist() == [1, 1] and result.fp.tolist() == [1, 0] and result.fn.tolist() == [1, 1]
    assert result.micro_f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    assert label_counts(labels, gold, pred, threshold=0.35).tp.tolist() == [1, 2]


def test_pca_and_centroids():
    rng = numpy.random.default_rng(0)
    a = rng.normal(0, 0.1, (20, 8)) + numpy.eye(8)[0] * 5
    b = rng.normal(0, 0.1, (20, 8)) - numpy.eye(8)[0] * 5
    vectors = numpy.vstack([a, b])
    points, explained = pca_2d(vectors)
    assert points.shape == (40, 2) and explained[0] > 0.95
    assert (numpy.sign(points[:20, 0]) != numpy.sign(points[20:, 0])[0]).all()  # PC 1 splits the two clusters
    labels = ["a"] * 20 + ["b"] * 20
    assert nearest_centroid_accuracy(vectors, labels) == 1.0
    shuffled = list(numpy.random.default_rng(1).permutation(labels))
    assert nearest_centroid_accuracy(rng.normal(size=(40, 8)), shuffled) < 1.0


def test_plot_confusion_command(en_pipeline, tmp_path):  # noqa: F811
    data = write_docbin(tmp_path / "dev.spacy")
    output = tmp_path / "cm.png"
    result = invoke("plot-confusion", en_pipeline, data, "--output", output)
    assert result.exit_code == 0, result.output
    assert "6 docs: accuracy 1.000" in result.output  # the pipeline was fit on these texts
    assert_image(output)


def test_plot_confusion_multilabel(multilabel_pipeline, tmp_path):  # noqa: F811
    data = write_docbin(tmp_path / "dev.spacy", multilabel=True)
    output = tmp_path / "counts.png"
    result = invoke("plot-confusion", multilabel_pipeline, data, "-o", output, "--threshold", "0.5")
    assert result.exit_code == 0, result.output
    assert "6 docs, threshold 0.5: micro F1 1.000" in result.output
    assert_image(output)
    # A threshold above every score predicts nothing.
    result = invoke("plot-confusion", multilabel_pipeline, data, "-o", output, "--threshold", "1.01")
    assert "micro F1 0.000" in result.output


def test_plot_vectors_command(zh_pipeline, tmp_path):  # noqa: F811
    data = write_jsonl(tmp_path / "dev.jsonl", lang="zh")
    output = tmp_path / "pca.pdf"
    result = invoke("plot-vectors", zh_pipeline, data, "--output", output)
    assert result.exit_code == 0, result.output
    assert "6 docs; PC 1+2 explain" in result.output
    assert output.read_bytes().startswith(b"%PDF") and output.stat().st_size > 5_000


def test_plot_vectors_png(en_pipeline, tmp_path):  # noqa: F811
    output = tmp_path / "pca.png"
    result = invoke("plot-vectors", en_pipeline, write_docbin(tmp_path / "d.spacy"), "-o", output, "--limit", "4")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("4 docs;")
    assert_image(output)


@pytest.mark.slow
def test_plot_training_from_real_spacy_train(tiny_bert, tmp_path):
    """The logger settings that docs/explain.md gives, on a real `spacy train` run."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    output_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "spacy", "train", str(root / "configs" / "en_demo.cfg"), "--output", str(output_dir),
         "--components.cls_classifier.model.name", tiny_bert,
         "--training.max_steps", "6", "--training.eval_frequency", "2", "--corpora.train.limit", "64",
         "--training.logger.@loggers", "spacy.ConsoleLogger.v3", "--training.logger.progress_bar", "null",
         "--training.logger.output_file", str(output_dir / "log.jsonl")],
        capture_output=True, text=True, cwd=root, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = read_training_log(output_dir)
    assert log.steps == [0, 2, 4, 6]
    assert all(0.0 <= score <= 1.0 for score in log.scores)
    assert log.columns["cats_score"] == pytest.approx(log.scores)  # one score column, weight 1
    output = tmp_path / "curve.png"
    result = invoke("plot-training", output_dir, "-o", output)
    assert result.exit_code == 0, result.output
    assert_image(output)


DOLLAR_LABELS = ["$5 off", "costs $$", "a$b$c", "$\\frac{1}{0}$"]


@pytest.mark.parametrize("plot", ["confusion", "label_counts", "projection", "training"])
def test_dollar_signs_are_drawn_as_text(plot, tmp_path):
    """Labels, titles and file names with `$` are plain text, not matplotlib mathtext
    (an odd number of `$`, or TeX that mathtext cannot parse, used to crash the plot)."""
    title = "model on dev$1$.spacy"
    output = tmp_path / f"a$b$ {plot}.png"
    rng = numpy.random.default_rng(0)
    if plot == "confusion":
        gold = [{name: float(name == gold_name) for name in DOLLAR_LABELS} for gold_name in DOLLAR_LABELS]
        plot_confusion(confusion(DOLLAR_LABELS, gold, gold), output, title)
    elif plot == "label_counts":
        gold = [{name: 1.0 for name in DOLLAR_LABELS}]
        plot_label_counts(label_counts(DOLLAR_LABELS, gold, gold, threshold=0.5), output, title)
    elif plot == "projection":
        labels = [DOLLAR_LABELS[i % 4] for i in range(40)]
        plot_projection(project(rng.normal(size=(40, 8)), labels), output, title)
    else:
        log = read_training_log(write_log(tmp_path / "train$dir"))
        log.columns["cats_f_$x"] = [0.1, 0.2, 0.3, 0.4]
        log.losses["cls_$classifier"] = [0.0, 1.0, 2.0, 3.0]
        plot_training(log, output)
    assert_image(output)


def test_dollar_signs_through_the_command(en_pipeline, tmp_path):  # noqa: F811
    data = write_docbin(tmp_path / "dev$1.spacy")
    output = tmp_path / "cm$.png"
    result = invoke("plot-confusion", en_pipeline, data, "--output", output)
    assert result.exit_code == 0, result.output
    assert_image(output)
