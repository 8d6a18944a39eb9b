"""`.spacy` files in training (issue: the natural try with the corpus reader pointed at
wrong fixes), and the held-out split that `convert --holdout` shares with the corpus
reader, with the documented TREC commands."""
import importlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.util import load_config, registry
from typer.testing import CliRunner

from spacy_cls.cli import app
from spacy_cls.data.convert import convert, report_path_for
from spacy_cls.data.readers import ReaderSpec, create_labelled_text_corpus, read_rows

from conftest import SHARED_DATA as DATA, needs_datasets

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "convert.md"
runner = CliRunner()
TOY = [("i love this movie", "POS"), ("awful and rude staff", "NEG"), ("really good service", "POS"),
       ("terrible dirty room", "NEG"), ("nice clean hotel", "POS"), ("boring film i hate", "NEG")]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows), encoding="utf-8")
    return path


def docbin_texts(path: Path) -> List[str]:
    return [doc.text for doc in DocBin().from_disk(path).get_docs(spacy.blank("en").vocab)]


@pytest.fixture()
def toy_corpus(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", TOY * 2)
    dev = write_jsonl(tmp_path / "dev.jsonl", TOY[:4])
    report = convert(train, tmp_path / "train.spacy", ReaderSpec(format="jsonl"),
                     dev=(dev, tmp_path / "dev.spacy"))
    return report


# --- the reader meets a .spacy file ------------------------------------------------


@pytest.mark.parametrize("name", ["train.spacy", "train.jsonl", "train.tsv"])
def test_reader_refuses_a_docbin_and_says_what_to_use(toy_corpus, tmp_path, name):
    docbin = tmp_path / name
    if name != "train.spacy":
        docbin.write_bytes((tmp_path / "train.spacy").read_bytes())
    with pytest.raises(ValueError, match="spacy.Corpus.v1") as error:
        list(read_rows(docbin, ReaderSpec(format="jsonl")))
    assert "DocBin" in str(error.value) and "cannot decode" not in str(error.value)
    with pytest.raises(ValueError, match="spacy.Corpus.v1"):
        create_labelled_text_corpus(docbin, format="jsonl")


@pytest.mark.parametrize("content, message", [
    (b"\x1f\x8b\x08\x00" + bytes(60), "compressed"),
    (b"PK\x03\x04" + bytes(60), "compressed"),
    ("text\tlabel\n".encode("utf-16") + "hello there\tA\n".encode("utf-16-le") * 20, "not a text file"),
], ids=["gzip", "zip", "utf-16"])
def test_reader_refuses_other_binary_files(tmp_path, content, message):
    path = tmp_path / "a.tsv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_rows(path, ReaderSpec())


def test_a_stray_nul_byte_only_spoils_its_row(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_bytes(b"ok\tA\nbad\x00\tB\x00\nfine\tA\n")
    records = list(read_rows(path, ReaderSpec(header=False)))
    assert [r.line_no for r in records] == [1, 2, 3] and "control character" in records[1].reason


def run_spacy_train(args: List[str], tmp_path: Path, tiny_bert: str) -> subprocess.CompletedProcess:
    overrides = ["--components.cls_classifier.model.name", tiny_bert, "--training.max_steps", "2",
                 "--training.eval_frequency", "1", "--training.batcher.size", "4"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "spacy", "train"] + args + overrides, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_spacy_train_on_a_docbin_with_the_text_reader_says_what_to_use(toy_corpus, tmp_path, tiny_bert):
    result = run_spacy_train(["configs/en_demo.cfg", "--paths.train", str(tmp_path / "train.spacy"),
                              "--paths.dev", str(tmp_path / "dev.spacy")], tmp_path, tiny_bert)
    assert result.returncode != 0
    assert "spacy.Corpus.v1" in result.stderr + result.stdout
    assert "cannot decode" not in result.stderr + result.stdout


def documented_train_command() -> List[str]:
    [line] = [line for line in DOCS.read_text(encoding="utf-8").splitlines()
              if line.startswith("python -m spacy train ") and "spacy.Corpus.v1" in line]
    return shlex.split(line)


def test_documented_train_command_trains_on_the_converted_files(toy_corpus, tmp_path, tiny_bert):
    args = documented_train_command()[4:]
    paths = {"corpus/train.spacy": str(tmp_path / "train.spacy"), "corpus/dev.spacy": str(tmp_path / "dev.spacy"),
             "training/en_demo": str(tmp_path / "trained")}
    result = run_spacy_train([paths.get(arg, arg) for arg in args], tmp_path, tiny_bert)
    assert result.returncode == 0, result.stderr[-3000:]
    nlp = spacy.load(tmp_path / "trained" / "model-last")
    assert set(nlp("a good movie").cats) == {"NEG", "POS"}


def test_the_reports_train_command_trains(toy_corpus, tmp_path, tiny_bert):
    args = shlex.split(toy_corpus.train_command)
    assert args[:4] == ["python", "-m", "spacy", "train"]
    assert toy_corpus.summary().splitlines()[-1].strip() == toy_corpus.train_command
    args = [str(tmp_path / "out") if arg == "training" else arg for arg in args[4:]]
    result = run_spacy_train(args, tmp_path, tiny_bert)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads(report_path_for(tmp_path / "train.spacy").read_text(encoding="utf-8"))
    assert saved["train_command"] == toy_corpus.train_command


def run_spacy(command: List[str], tiny_bert: str, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", *command[2:], *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_reports_debug_data_and_evaluate_commands_run(tmp_path, tiny_bert):
    """The printed corpus overrides work for `spacy debug data` as for `spacy train`
    (debug data validates a command-line corpus block without filling its defaults, and
    builds the optimizer from the config with `${training.max_steps}` unfilled), and the
    printed evaluate command scores the trained pipeline."""
    # debug data calls fewer than 100 training docs an error
    rows = [(f"{text} {i}", label) for i in range(20) for text, label in TOY]
    toy_corpus = convert(write_jsonl(tmp_path / "train.jsonl", rows), tmp_path / "train.spacy",
                         ReaderSpec(format="jsonl"), dev=(write_jsonl(tmp_path / "dev.jsonl", TOY), tmp_path / "dev.spacy"))
    debug = shlex.split(toy_corpus.debug_command)
    assert debug[:5] == ["python", "-m", "spacy", "debug", "data"]
    assert debug[5:] == shlex.split(toy_corpus.train_command)[4:5] + shlex.split(toy_corpus.train_command)[7:]
    result = run_spacy(debug, tiny_bert, "--components.cls_classifier.model.name", tiny_bert)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "Corpus is loadable" in result.stdout and "120 training docs" in result.stdout

    args = [str(tmp_path / "out") if arg == "training" else arg for arg in shlex.split(toy_corpus.train_command)[4:]]
    assert run_spacy_train(args, tmp_path, tiny_bert).returncode == 0
    evaluate = shlex.split(toy_corpus.evaluate_command)
    assert evaluate[:5] == ["python", "-m", "spacy", "evaluate", "training/model-best"]
    evaluate[4] = str(tmp_path / "out" / "model-best")
    result = run_spacy(evaluate, tiny_bert, "--output", str(tmp_path / "metrics.json"))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "cats_score" in json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))


def test_train_command_without_a_dev_corpus_names_the_missing_piece(tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", TOY)
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(format="jsonl"), lang="zh")
    assert "configs/zh_demo.cfg" in report.train_command and "--paths.dev DEV.spacy" in report.train_command
    assert "DEV.spacy: a dev corpus" in report.summary()


# --- the held-out split ------------------------------------------------------------


def write_prefixed(path: Path, n: int) -> Path:
    labels = ["DESC:manner", "HUM:ind", "LOC:city", "NUM:date"]
    lines = [f"{labels[i % 4]} question number {i} ?" for i in range(n)]
    lines.insert(7, "not a prefixed line")  # a rejected line, before the split
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    return path


@pytest.mark.parametrize("holdout, seed", [(0.1, 0), (0.25, 3), (0.5, 1)])
def test_convert_holdout_is_the_readers_split(tmp_path, holdout, seed):
    src = write_prefixed(tmp_path / "q.label", 57)
    spec = ReaderSpec(format="prefixed", encoding="latin-1")
    report = convert(src, tmp_path / "train.spacy", spec, holdout=holdout, holdout_output=tmp_path / "dev.spacy",
                     seed=seed)
    nlp = spacy.blank("en")
    options = dict(format="prefixed", encoding="latin-1", holdout=holdout, seed=seed)
    reader_train = [eg.reference for eg in create_labelled_text_corpus(src, split="train", **options)(nlp)]
    reader_dev = [eg.reference for eg in create_labelled_text_corpus(src, split="dev", **options)(nlp)]
    assert docbin_texts(tmp_path / "train.spacy") == [d.text for d in reader_train]
    assert docbin_texts(tmp_path / "dev.spacy") == [d.text for d in reader_dev]
    dev_docs = list(DocBin().from_disk(tmp_path / "dev.spacy").get_docs(nlp.vocab))
    assert [d.cats for d in dev_docs] == [d.cats for d in reader_dev]
    assert report.rows_read == 58 and report.rows_written == 57 and report.rows_rejected == 1
    assert report.holdout.rows == len(reader_dev) and report.holdout.seed == seed


def test_holdout_report_and_summary(tmp_path):
    src = write_prefixed(tmp_path / "q.label", 20)
    report = convert(src, tmp_path / "t.spacy", ReaderSpec(format="prefixed"), holdout=0.1,
                     holdout_output=tmp_path / "d.spacy")
    saved = json.loads(report_path_for(tmp_path / "t.spacy").read_text(encoding="utf-8"))
    assert saved["holdout"] == {"output": str(tmp_path / "d.spacy"), "fraction": 0.1, "seed": 0, "rows": 2}
    assert "written 20 (18 to " in report.summary() and "2 held out to " in report.summary()
    assert "--paths.dev " + str(tmp_path / "d.spacy") in report.train_command


@pytest.mark.parametrize("options, message", [
    (dict(holdout=0.1), "needs an output for the held-out rows"),
    (dict(holdout=1.5, holdout_output="d.spacy"), "between 0 and 1"),
    (dict(holdout=0.0, holdout_output="d.spacy"), "between 0 and 1"),
    (dict(holdout=0.1, holdout_output="t.spacy"), "same file as the output"),
    (dict(holdout=0.1, holdout_output="d.spacy", dev=("q.label", "x.spacy")), "not both"),
])
def test_bad_holdout_options(tmp_path, options, message):
    src = write_prefixed(tmp_path / "q.label", 10)
    options = {k: (tmp_path / v if k == "holdout_output" else v) for k, v in options.items()}
    if "dev" in options:
        options["dev"] = (src, tmp_path / "x.spacy")
    with pytest.raises(ValueError, match=message):
        convert(src, tmp_path / "t.spacy", ReaderSpec(format="prefixed"), **options)
    assert not (tmp_path / "t.spacy").exists()


# --- TREC: config, benchmark, documented commands -----------------------------------------


def test_trec_config_max_length_is_the_benchmarks():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        tasks = importlib.import_module("accuracy_tasks")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    config = load_config(ROOT / "configs" / "en_trec.cfg")
    max_length = config["components"]["cls_classifier"]["model"]["max_length"]
    trec = tasks.TASKS["trec"]
    assert max_length == trec.full.max_length == trec.quick.max_length


def trec_commands() -> List[List[str]]:
    section = DOCS.read_text(encoding="utf-8").split("## TREC: the held-out dev slice")[1].split("\n## ")[0]
    return [shlex.split(line) for line in section.splitlines() if line.startswith("python -m spacy")]


def test_trec_docs_show_train_and_both_evaluations():
    commands = trec_commands()
    converts = [c for c in commands if c[:4] == ["python", "-m", "spacy_cls", "convert"]]
    evaluates = [c for c in commands if c[:4] == ["python", "-m", "spacy", "evaluate"]]
    trains = [c for c in commands if c[:4] == ["python", "-m", "spacy", "train"]]
    assert trains == [["python", "-m", "spacy", "train", "configs/en_trec.cfg", "--output", "training/trec"]]
    config = load_config(ROOT / "configs" / "en_trec.cfg")["corpora"]["dev"]
    holdout = converts[0]
    assert holdout[holdout.index("--holdout") + 1] == str(config["holdout"])
    assert holdout[holdout.index("--seed") + 1] == str(config["seed"])
    outputs = {converts[0][converts[0].index("--holdout-output") + 1], converts[1][5]}
    assert {c[5] for c in evaluates} == outputs and len(outputs) == 2


def localise(args: List[str], tmp_path: Path, data: Path) -> List[str]:
    def one(arg: str) -> str:
        if arg.startswith("data/"):
            return str(data / arg[len("data/"):])
        return str(tmp_path / arg) if arg.startswith(("corpus/", "training/")) else arg
    return [one(arg) for arg in args]


def test_trec_test_file_command_and_evaluate(tmp_path, en_pipeline):
    """The documented test-file conversion on a file in TREC's format, then `spacy evaluate`
    (a toy pipeline with POS/NEG stands in for a TREC model)."""
    data = tmp_path / "data"
    (data / "trec").mkdir(parents=True)
    (data / "trec" / "TREC_10.label").write_bytes("POS:good i love this movie\nNEG:bad awful café\n".encode("latin-1"))
    args = localise(trec_commands()[3], tmp_path, data)
    labels = args.index("--labels") + 1
    assert args[labels] == "ABBR,DESC,ENTY,HUM,LOC,NUM"
    args[labels] = "NEG,POS"
    result = runner.invoke(app, args[3:] + ["--strict"])
    assert result.exit_code == 0, result.output
    evaluate = localise(trec_commands()[4], tmp_path, data)
    evaluate[4] = str(en_pipeline)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable] + evaluate[1:] + ["--output", str(tmp_path / "m.json")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "cats_score" in json.loads((tmp_path / "m.json").read_text())


@needs_datasets("trec")
def test_trec_holdout_command_matches_the_config_on_the_real_file(tmp_path):
    args = localise(trec_commands()[0], tmp_path, DATA)
    result = runner.invoke(app, args[3:] + ["--strict", "--no-progress"])
    assert result.exit_code == 0, result.output
    overrides = {"paths.train": str(DATA / "trec" / "train_5500.label")}
    config = load_config(ROOT / "configs" / "en_trec.cfg", overrides=overrides, interpolate=True)
    corpora = registry.resolve(config["corpora"])
    nlp = spacy.blank("en")
    train_out = Path(args[5])
    dev_out = Path(args[args.index("--holdout-output") + 1])
    assert docbin_texts(train_out) == [eg.reference.text for eg in corpora["train"](nlp)]
    assert docbin_texts(dev_out) == [eg.reference.text for eg in corpora["dev"](nlp)]
    assert len(docbin_texts(dev_out)) == 545
