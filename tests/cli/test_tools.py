"""`python -m spacy_cls classify` and the command line's entry point."""
import subprocess
import sys
from pathlib import Path

import spacy
from typer.testing import CliRunner

import spacy_cls  # noqa: F401
from spacy_cls.cli import app

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def parse_classify(output: str):
    """[(text, {label: score}, shape)] from the classify command's output."""
    results = []
    for line in output.splitlines():
        if line.startswith("["):
            results.append([line.split("] ", 1)[1], {}, None])
        elif line.startswith("    cls_vector: "):
            results[-1][2] = line.split(": ", 1)[1]
        elif line.startswith("    "):
            label, score = line.strip().rsplit(None, 1)
            results[-1][1][label] = score
    return results


def test_classify_texts(en_pipeline):
    result = invoke("classify", en_pipeline, "i love this movie, it was great", "boring film, i hate it")
    assert result.exit_code == 0, result.output
    parsed = parse_classify(result.output)
    assert [p[0] for p in parsed] == ["i love this movie, it was great", "boring film, i hate it"]
    nlp = spacy.load(en_pipeline)
    for text, cats, shape in parsed:
        doc = nlp(text)
        expected = sorted(doc.cats.items(), key=lambda kv: -kv[1])
        assert list(cats) == [label for label, _ in expected]  # highest first
        assert cats == {label: f"{score:.3f}" for label, score in expected}
        assert shape == "(32,)"
    assert list(parsed[0][1])[0] == "POS" and list(parsed[1][1])[0] == "NEG"


def test_classify_file_chinese(zh_pipeline, tmp_path):
    texts = ["这家酒店的服务非常好", "", "手机糟糕，失望"]
    file = tmp_path / "texts.txt"
    file.write_text("\n".join(texts) + "\n", encoding="utf8")
    result = invoke("classify", zh_pipeline, "--file", file)
    assert result.exit_code == 0, result.output
    parsed = parse_classify(result.output)
    assert [p[0] for p in parsed] == ["这家酒店的服务非常好", "手机糟糕，失望"]
    assert list(parsed[0][1])[0] == "POS" and list(parsed[1][1])[0] == "NEG"


def test_classify_errors(en_pipeline, tmp_path):
    result = CliRunner().invoke(app, ["classify", str(en_pipeline)])
    assert result.exit_code == 2 and "No texts" in result.output
    result = CliRunner().invoke(app, ["classify", str(tmp_path / "missing"), "text"])
    assert result.exit_code == 2 and "Could not load the pipeline" in result.output
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf8")
    result = CliRunner().invoke(app, ["classify", str(en_pipeline), "--file", str(empty)])
    assert result.exit_code == 2 and "no texts" in result.output


def test_module_entry_point(en_pipeline):
    """What the README's demo command runs: a real `python -m spacy_cls` process."""
    proc = subprocess.run(
        [sys.executable, "-m", "spacy_cls", "classify", str(en_pipeline), "really good service"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    parsed = parse_classify(proc.stdout)
    assert len(parsed) == 1 and set(parsed[0][1]) == {"POS", "NEG"} and parsed[0][2] == "(32,)"
