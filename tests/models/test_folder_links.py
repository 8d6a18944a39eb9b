"""A saved pipeline or a checkpoint folder reads only its own files: a link leaving it
(a file or a folder, anywhere in it), a FIFO or a device is refused, by the checker,
by load_checked and the commands, and by the components' own loading; the refusal
never quotes the file a link points to. Links that stay inside, hard links and the
Hugging Face cache's own layout load."""
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
import spacy
from typer.testing import CliRunner

import spacy_cls  # noqa: F401
from spacy_cls.cli import app
from spacy_cls.models.loaders import ModelLoadError, load_encoder
from spacy_cls.models.safe_load import load_checked
from spacy_cls.models.saved_checks import TamperedPipelineError, check_saved_pipeline

SECRET = "TOPSECRET-LINE-4242"


def outside_file(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / "outside" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf8")
    return path


def link_strings(folder: Path, tmp_path: Path) -> None:
    target = outside_file(tmp_path, "strings.json", json.dumps([SECRET, "good", "bad"]))
    (folder / "vocab" / "strings.json").unlink()
    (folder / "vocab" / "strings.json").symlink_to(target)


def link_config(folder: Path, tmp_path: Path) -> None:
    target = outside_file(tmp_path, "passwd", SECRET + ":x:0:0\n")
    (folder / "config.cfg").unlink()
    (folder / "config.cfg").symlink_to(target)


def link_model_file(folder: Path, tmp_path: Path) -> None:
    model = folder / "cls_classifier" / "model"
    target = tmp_path / "outside" / "model"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, target)
    model.unlink()
    model.symlink_to(target)


def link_component_folder(folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "outside" / "cls_classifier"
    shutil.copytree(folder / "cls_classifier", target)
    shutil.rmtree(folder / "cls_classifier")
    (folder / "cls_classifier").symlink_to(target, target_is_directory=True)


def relative_link_up(folder: Path, tmp_path: Path) -> None:
    target = outside_file(tmp_path, "meta.json", (folder / "meta.json").read_text())
    (folder / "meta.json").unlink()
    os.symlink(os.path.relpath(target, folder), folder / "meta.json")


def link_in_a_subfolder_chain(folder: Path, tmp_path: Path) -> None:
    """A folder link inside the pipeline that points at an outside folder holding a file."""
    outside_file(tmp_path, "extra/notes.txt", SECRET)
    (folder / "vocab" / "extra").symlink_to(tmp_path / "outside" / "extra", target_is_directory=True)


LINKS = {
    "vocab/strings.json": link_strings,
    "config.cfg": link_config,
    "component model file": link_model_file,
    "component folder": link_component_folder,
    "relative ../ link": relative_link_up,
    "folder link in vocab": link_in_a_subfolder_chain,
}
# Where plain spacy.load refuses too: the components check the pipeline folder before
# reading their files (spaCy itself reads config.cfg first and quotes it).
SPACY_LOAD_REFUSES = set(LINKS) - {"config.cfg"}


@pytest.fixture
def copy(en_pipeline, tmp_path) -> Path:
    folder = tmp_path / "pipeline"
    shutil.copytree(en_pipeline, folder)
    return folder


@pytest.mark.parametrize("case", sorted(LINKS))
def test_links_leaving_the_pipeline_are_refused(case, copy, tmp_path):
    LINKS[case](copy, tmp_path)
    for load in (check_saved_pipeline, load_checked):
        with pytest.raises(TamperedPipelineError, match="link to a path outside it|is a link") as error:
            load(copy)
        assert SECRET not in str(error.value)
    if case in SPACY_LOAD_REFUSES:
        with pytest.raises(TamperedPipelineError, match="link") as error:
            spacy.load(copy)
        assert SECRET not in str(error.value)
    result = CliRunner().invoke(app, ["classify", str(copy), "a fine film"])
    assert result.exit_code == 2 and "link" in result.output and SECRET not in result.output


def test_no_check_opts_out(copy, tmp_path, monkeypatch):
    monkeypatch.delenv("SPACY_CLS_CHECK_PIPELINES", raising=False)
    link_model_file(copy, tmp_path)  # a link to a true copy: loads when the user trusts it
    result = CliRunner().invoke(app, ["classify", str(copy), "a fine film", "--no-check"])
    assert result.exit_code == 0, result.output
    assert os.environ.pop("SPACY_CLS_CHECK_PIPELINES") == "0"


def test_a_fifo_is_refused_without_blocking(copy):
    (copy / "vocab" / "lookups.bin").unlink()
    os.mkfifo(copy / "vocab" / "lookups.bin")
    done = []

    def run():
        with pytest.raises(TamperedPipelineError, match="not a regular file"):
            check_saved_pipeline(copy)
        done.append(True)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    assert done, "the check blocked on the FIFO"


def test_links_that_stay_inside_and_hard_links_load(copy):
    (copy / "meta-copy.json").symlink_to("meta.json")
    os.link(copy / "vocab" / "strings.json", copy / "strings-hardlink.json")
    assert check_saved_pipeline(copy) == ["cls_classifier"]
    nlp = load_checked(copy)
    assert set(nlp("a fine film").cats) == {"POS", "NEG"}


# --- checkpoint folders named at initialize ----------------------------------------------


@pytest.fixture
def checkpoint(tiny_bert, tmp_path) -> Path:
    folder = tmp_path / "checkpoint"
    shutil.copytree(tiny_bert, folder)
    return folder


def test_checkpoint_vocab_link_is_refused(checkpoint, tmp_path):
    (checkpoint / "tokenizer.json").unlink()
    vocab = (checkpoint / "vocab.txt").read_text(encoding="utf8")
    target = outside_file(tmp_path, "vocab.txt", vocab + SECRET + "\n")
    (checkpoint / "vocab.txt").unlink()
    (checkpoint / "vocab.txt").symlink_to(target)
    with pytest.raises(ModelLoadError, match="vocab.txt', a link to a path outside") as error:
        load_encoder(str(checkpoint))
    assert SECRET not in str(error.value)


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json", "config.json"])
def test_checkpoint_links_of_any_file_are_refused(name, checkpoint, tmp_path):
    target = tmp_path / "outside" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(checkpoint / name, target)
    (checkpoint / name).symlink_to(target)
    with pytest.raises(ModelLoadError, match="a link to a path outside"):
        load_encoder(str(checkpoint))


def test_checkpoint_settings_pointing_at_files_are_refused(checkpoint, tmp_path):
    target = outside_file(tmp_path, "vocab.txt", (checkpoint / "vocab.txt").read_text(encoding="utf8"))
    settings = json.loads((checkpoint / "tokenizer_config.json").read_text(encoding="utf8"))
    settings["vocab_file"] = str(target)
    (checkpoint / "tokenizer_config.json").write_text(json.dumps(settings), encoding="utf8")
    with pytest.raises(ModelLoadError, match="vocab_file"):
        load_encoder(str(checkpoint))


def test_hugging_face_cache_layout_loads(tiny_bert, tmp_path):
    """A snapshot folder of the hub cache is made of links into its blobs folder."""
    repo = tmp_path / "hub" / "models--org--tiny"
    snapshot, blobs = repo / "snapshots" / "abc123", repo / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for path in Path(tiny_bert).iterdir():
        shutil.copy(path, blobs / path.name)
        (snapshot / path.name).symlink_to(Path("..", "..", "blobs", path.name))
    assert load_encoder(str(snapshot)).hf.transformer.config.hidden_size == 32


def command_lines(pipeline: Path, tmp_path: Path):
    from toy_pipelines import write_docbin, write_jsonl

    dev = write_docbin(tmp_path / "dev.spacy")
    texts = write_jsonl(tmp_path / "texts.jsonl")
    out = tmp_path / "out"
    return {
        "classify": ["classify", str(pipeline), "a fine film"],
        "explain": ["explain", str(pipeline), "a fine film", "-o", str(out / "e.html")],
        "optimize": ["optimize", str(pipeline), str(out / "optimized")],
        "tune": ["tune", str(pipeline), str(dev), "-o", str(out / "tuned")],
        "rank-uncertain": ["rank-uncertain", str(pipeline), str(texts), "-o", str(out / "u.jsonl")],
        "apply": ["apply", str(pipeline), str(texts), str(out / "applied")],
        "plot-confusion": ["plot-confusion", str(pipeline), str(dev), "-o", str(out / "c.png")],
        "plot-vectors": ["plot-vectors", str(pipeline), str(dev), "-o", str(out / "v.png")],
    }


COMMANDS = ["classify", "explain", "optimize", "tune", "rank-uncertain", "apply", "plot-confusion", "plot-vectors"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_that_loads_a_pipeline_checks_it(command, copy, tmp_path):
    if command.startswith("plot"):
        pytest.importorskip("matplotlib")
    link_strings(copy, tmp_path)
    result = CliRunner().invoke(app, command_lines(copy, tmp_path)[command])
    assert result.exit_code == 2, result.output
    assert "link to a path outside it" in result.output and SECRET not in result.output
    assert not (tmp_path / "out" / "tuned").exists() and not (tmp_path / "out" / "optimized").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_no_check(command, en_pipeline, tmp_path):
    """--no-check is accepted and the command runs on a clean pipeline (the copy for
    tune, which writes into its pipeline)."""
    if command.startswith("plot"):
        pytest.importorskip("matplotlib")
    pipeline = tmp_path / "pipeline"
    shutil.copytree(en_pipeline, pipeline)
    try:
        result = CliRunner().invoke(app, command_lines(pipeline, tmp_path)[command] + ["--no-check"])
    finally:
        os.environ.pop("SPACY_CLS_CHECK_PIPELINES", None)
    assert result.exit_code == 0, result.output


def test_an_installed_package_name_is_checked_in_its_data_folder(copy, tmp_path, monkeypatch):
    """load_checked("en_pkg") checks the folder spaCy would load for the package."""
    import spacy.util

    from spacy_cls.models.safe_load import check_pipeline, pipeline_folder

    package = tmp_path / "site" / "en_pkg"
    package.mkdir(parents=True)
    meta = json.loads((copy / "meta.json").read_text())
    meta.update(lang="en", name="pkg", version="1.0.0")
    (package / "meta.json").write_text(json.dumps(meta))
    data = package / "en_pkg-1.0.0"
    shutil.copytree(copy, data)
    monkeypatch.setattr(spacy.util, "is_package", lambda name: name == "en_pkg")
    monkeypatch.setattr(spacy.util, "get_package_path", lambda name: package)
    assert pipeline_folder("en_pkg") == data
    assert check_pipeline("en_pkg") == data
    link_strings(data, tmp_path)
    with pytest.raises(TamperedPipelineError, match="strings.json', a link"):
        load_checked("en_pkg")


def test_a_component_loaded_on_its_own_checks_its_folder(copy, tmp_path, en_pipeline):
    link_model_file(copy, tmp_path)
    nlp = spacy.load(en_pipeline)
    with pytest.raises(TamperedPipelineError, match="model', a link"):
        nlp.get_pipe("cls_classifier").from_disk(copy / "cls_classifier")
