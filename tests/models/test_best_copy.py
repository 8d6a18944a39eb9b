"""model-best survives a training run killed while spaCy replaces it: the
KeepBestLogger keeps a complete hard-linked copy, and restore_model_best puts it back."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.util import registry

import spacy_cls  # noqa: F401
from spacy_cls.models.best_copy import COPY, restore_model_best, same_files

TEXTS = ["i love this movie", "the food was awful"]


class FakeRun:
    """Checkpoints saved the way spaCy's save_checkpoint does it (spacy/training/loop.py:
    model-last written, then model-best deleted and copied from it), with the logger
    called after each, as the training loop calls it."""

    def __init__(self, output: Path, pipeline: Path):
        self.output, self.pipeline = output, pipeline
        setup = registry.loggers.get("spacy_cls.KeepBestLogger.v1")(
            registry.loggers.get("spacy.ConsoleLogger.v3")(console_output=False)
        )
        self.log_step, self.finalize = setup(spacy.blank("en"), sys.stdout, sys.stderr)
        self.step = 0

    def write_last(self, marker: str) -> Path:
        last = self.output / "model-last"
        if last.exists():
            shutil.rmtree(last)
        shutil.copytree(self.pipeline, last)
        (last / "marker.txt").write_text(marker)  # tells the checkpoints apart
        return last

    def checkpoint(self, is_best: bool, marker: str, kill_after: str = "") -> None:
        self.step += 1
        last = self.write_last(marker)
        if is_best:
            best = self.output / "model-best"
            if best.exists():
                shutil.rmtree(best)
            if kill_after == "delete":
                raise KeyboardInterrupt
            if kill_after == "half copy":
                shutil.copytree(last, best, ignore=lambda folder, names: [n for n in names if n == "model"])
                raise KeyboardInterrupt
            shutil.copytree(last, best)
        self.log_step({"step": self.step, "epoch": 0, "score": 0.5, "other_scores": {}, "losses": {},
                       "output_path": str(last), "words": 0, "seconds": 0})


def marker_of(folder: Path) -> str:
    return (folder / "marker.txt").read_text()


@pytest.mark.parametrize("kill_after", ["delete", "half copy"])
def test_a_run_killed_while_replacing_model_best_keeps_a_complete_copy(kill_after, en_pipeline, tmp_path):
    run = FakeRun(tmp_path, en_pipeline)
    run.checkpoint(True, "first best")
    run.checkpoint(False, "worse")
    with pytest.raises(KeyboardInterrupt):
        run.checkpoint(True, "second best", kill_after=kill_after)
    assert marker_of(tmp_path / COPY) == "first best"
    assert restore_model_best(tmp_path) == tmp_path / COPY
    assert marker_of(tmp_path / "model-best") == "first best"
    assert [doc.cats for doc in spacy.load(tmp_path / "model-best").pipe(TEXTS)] == [
        doc.cats for doc in spacy.load(en_pipeline).pipe(TEXTS)
    ]
    assert restore_model_best(tmp_path) is None  # now complete


def test_the_copy_follows_each_new_best_and_goes_at_the_end(en_pipeline, tmp_path):
    run = FakeRun(tmp_path, en_pipeline)
    run.checkpoint(True, "first best")
    run.checkpoint(True, "second best")
    assert marker_of(tmp_path / COPY) == "second best"
    assert same_files(tmp_path / "model-best", tmp_path / COPY, by_inode=True)  # hard links: no extra space
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([COPY, "model-best", "model-last"])
    run.finalize()
    assert not (tmp_path / COPY).exists()
    assert marker_of(tmp_path / "model-best") == "second best"


def test_an_interrupted_run_keeps_the_copy_at_the_end(en_pipeline, tmp_path):
    """spaCy calls the logger's finalize in a `finally`, after a KeyboardInterrupt too."""
    run = FakeRun(tmp_path, en_pipeline)
    run.checkpoint(True, "first best")
    with pytest.raises(KeyboardInterrupt):
        run.checkpoint(True, "second best", kill_after="half copy")
    run.finalize()
    assert marker_of(tmp_path / COPY) == "first best"


def test_a_complete_model_best_is_left_alone(en_pipeline, tmp_path):
    run = FakeRun(tmp_path, en_pipeline)
    run.checkpoint(True, "first best")
    run.write_last("later")  # killed after spaCy's copy, before the logger ran
    shutil.rmtree(tmp_path / "model-best")
    shutil.copytree(tmp_path / "model-last", tmp_path / "model-best")
    assert restore_model_best(tmp_path) is None
    assert marker_of(tmp_path / "model-best") == "later"


def test_nothing_to_restore_from(tmp_path):
    (tmp_path / "model-last").mkdir()
    with pytest.raises(FileNotFoundError, match="KeepBestLogger"):
        restore_model_best(tmp_path)


@pytest.mark.slow
def test_with_spacy_train(tiny_bert, tmp_path):
    from toy_pipelines import write_docbin

    nlp = spacy.blank("en")
    nlp.add_pipe("cls_classifier", config={"model": {"name": tiny_bert}})
    config = nlp.config
    config["training"]["logger"] = {
        "@loggers": "spacy_cls.KeepBestLogger.v1",
        "logger": {"@loggers": "spacy.ConsoleLogger.v3", "progress_bar": None},
    }
    config.to_disk(tmp_path / "config.cfg")
    data = write_docbin(tmp_path / "train.spacy")
    output = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "spacy", "train", str(tmp_path / "config.cfg"), "--output", str(output),
         "--paths.train", str(data), "--paths.dev", str(data), "--training.max_steps", "6",
         "--training.eval_frequency", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "E    #" in proc.stdout  # the console logger's table header
    assert (output / "model-best" / "meta.json").is_file() and not (output / COPY).exists()
