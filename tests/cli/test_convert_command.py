"""`python -m spacy_cls convert` as a user runs it: refusals exit 2 with a message and
write nothing, the summary ends with the train command, --holdout from the command line."""
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_cls.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def n_docs(path: Path) -> int:
    return len(DocBin().from_disk(path))


def test_dev_output_equal_to_the_main_output_is_refused(tmp_path):
    train = write(tmp_path / "train.tsv", "a\tX\nb\tY\nc\tX\n")
    dev = write(tmp_path / "dev.tsv", "d\tX\n")
    out = tmp_path / "train.spacy"
    assert runner.invoke(app, ["convert", str(train), str(out)]).exit_code == 0
    before = out.read_bytes()
    result = runner.invoke(app, ["convert", str(train), str(out), "--dev", str(dev), str(out)])
    assert result.exit_code == 2
    assert "same file as the output" in result.output
    assert out.read_bytes() == before and n_docs(out) == 3


def test_dev_output_equal_to_the_main_output_through_another_path(tmp_path):
    train = write(tmp_path / "train.tsv", "a\tX\nb\tY\n")
    (tmp_path / "sub").mkdir()
    result = runner.invoke(app, ["convert", str(train), str(tmp_path / "t.spacy"),
                                 "--dev", str(train), str(tmp_path / "sub" / ".." / "t.spacy")])
    assert result.exit_code == 2 and "same file" in result.output
    assert not (tmp_path / "t.spacy").exists()


@pytest.mark.parametrize("encoding, message", [("rot13", "not a text encoding"), ("base64", "not a text encoding"),
                                               ("utf-16", "re-encode"), ("nope", "Unknown encoding")])
def test_unusable_encodings_exit_2_without_a_traceback(tmp_path, encoding, message):
    src = write(tmp_path / "a.tsv", "a\tX\n")
    result = subprocess.run([sys.executable, "-m", "spacy_cls", "convert", str(src), str(tmp_path / "a.spacy"),
                             "--encoding", encoding], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_spacy_input_is_refused(tmp_path):
    src = write(tmp_path / "a.tsv", "a\tX\nb\tY\n")
    assert runner.invoke(app, ["convert", str(src), str(tmp_path / "a.spacy")]).exit_code == 0
    result = runner.invoke(app, ["convert", str(tmp_path / "a.spacy"), str(tmp_path / "b.spacy"), "--format", "tsv"])
    assert result.exit_code == 2 and "DocBin" in result.output


def test_summary_ends_with_the_train_command(tmp_path):
    train = write(tmp_path / "train.tsv", "a\tX\nb\tY\n")
    dev = write(tmp_path / "dev.tsv", "c\tX\n")
    result = runner.invoke(app, ["convert", str(train), str(tmp_path / "t.spacy"),
                                 "--dev", str(dev), str(tmp_path / "d.spacy")])
    assert result.exit_code == 0, result.output
    command = shlex.split(result.output.strip().splitlines()[-1])
    assert command[:5] == ["python", "-m", "spacy", "train", "configs/en_demo.cfg"]
    assert command[command.index("--paths.train") + 1] == str(tmp_path / "t.spacy")
    assert command[command.index("--paths.dev") + 1] == str(tmp_path / "d.spacy")
    block = json.loads(command[command.index("--corpora.train") + 1])
    assert block == {"@readers": "spacy.Corpus.v1", "path": "${paths.train}", "gold_preproc": False,
                     "max_length": 0, "limit": 0, "augmenter": None}
    assert (ROOT / command[4]).is_file()


def test_holdout_from_the_command_line(tmp_path):
    lines = [f"{'POS' if i % 2 else 'NEG'}:x question {i} ?" for i in range(30)]
    src = write(tmp_path / "q.label", "\n".join(lines) + "\n")
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "t.spacy"), "--holdout", "0.2", "--seed", "4",
                                 "--holdout-output", str(tmp_path / "d.spacy")])
    assert result.exit_code == 0, result.output
    assert (n_docs(tmp_path / "t.spacy"), n_docs(tmp_path / "d.spacy")) == (24, 6)
    assert "6 held out to" in result.output
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "x.spacy"), "--holdout", "0.2"])
    assert result.exit_code == 2 and "--holdout-output" in result.output


def test_a_row_too_long_for_spacy_does_not_stop_the_run(tmp_path):
    src = tmp_path / "a.tsv"
    src.write_text("ok\tX\n" + "x" * 1_000_001 + "\tY\nfine\tY\n", encoding="utf-8")
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "a.spacy")])
    assert result.exit_code == 0, result.output
    assert "read 3  written 2  rejected 1" in result.output and "line 2: text of 1,000,001 characters" in result.output
    assert n_docs(tmp_path / "a.spacy") == 2
