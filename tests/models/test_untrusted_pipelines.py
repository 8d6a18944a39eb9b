"""Loading a tampered pipeline (folder or bytes) runs no code and writes nothing outside
its temporary folder: each attack is really attempted through spacy.load and
nlp.from_bytes, and must be refused before it can act."""
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import spacy
import srsly
import torch

import spacy_cls  # noqa: F401
from spacy_cls.models.saved_checks import TamperedPipelineError, check_saved_pipeline

ENCODER_NODE = "hf_cls_encoder"


# --- editing a saved pipeline -----------------------------------------------------------


def edit_model_bytes(model_bytes: bytes, edit) -> bytes:
    """Apply `edit` to the saved encoder message inside a component's model bytes."""
    model_msg = srsly.msgpack_loads(model_bytes)
    index = [node["name"] for node in model_msg["nodes"]].index(ENCODER_NODE)
    shim_msg = srsly.msgpack_loads(model_msg["shims"][index][0])
    edit(shim_msg)
    model_msg["shims"][index][0] = srsly.msgpack_dumps(shim_msg)
    return srsly.msgpack_dumps(model_msg)


def tampered_folder(pipeline: Path, folder: Path, edit) -> Path:
    shutil.copytree(pipeline, folder)
    model_file = folder / "cls_classifier" / "model"
    model_file.write_bytes(edit_model_bytes(model_file.read_bytes(), edit))
    return folder


def tampered_bytes(pipeline_bytes: bytes, edit) -> bytes:
    msg = srsly.msgpack_loads(pipeline_bytes)
    component = srsly.msgpack_loads(msg["cls_classifier"])
    component["model"] = edit_model_bytes(component["model"], edit)
    msg["cls_classifier"] = srsly.msgpack_dumps(component)
    return srsly.msgpack_dumps(msg)


def load(route: str, pipeline: Path, workdir: Path, edit):
    """Load `pipeline` with `edit` applied, from a folder or from bytes."""
    if route == "folder":
        return spacy.load(tampered_folder(pipeline, workdir / "tampered", edit))
    nlp = spacy.load(pipeline)
    data = tampered_bytes(nlp.to_bytes(), edit)
    return nlp.from_bytes(data)


def tree(root: Path):
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*"))


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Temporary folders and transformers' module cache inside tmp_path, so that
    whatever an attack writes can be seen."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    import transformers.dynamic_module_utils as dynamic

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    return tmp_path


ROUTES = ["folder", "bytes"]


def assert_refused(route, en_pipeline, sandbox, edit, match, markers=()):
    workdir = sandbox / "work"
    workdir.mkdir()
    if route == "bytes":
        spacy.load(en_pipeline)  # imports and warms up before the snapshot
    before = [entry for entry in tree(sandbox) if not entry[0].startswith("work")]
    with pytest.raises(TamperedPipelineError, match=match) as error:
        load(route, en_pipeline, workdir, edit)
    for marker in markers:
        assert not Path(marker).exists(), f"the payload ran or wrote {marker}"
    after = [entry for entry in tree(sandbox) if not entry[0].startswith("work")]
    assert after == before  # nothing written outside (temporary folders are gone again)
    assert "sources you trust" in str(error.value)
    return str(error.value)


# --- the attacks --------------------------------------------------------------------------

EVIL_PY = """import pathlib
pathlib.Path({marker!r}).write_text("ran")
from transformers import BertTokenizerFast


class EvilTokenizer(BertTokenizerFast):
    pass
"""


def remote_code(marker: Path, *, in_config: bool = False):
    def edit(msg):
        files = msg["tokenizer"]
        files["evil.py"] = EVIL_PY.format(marker=str(marker)).encode()
        settings = json.loads(files["tokenizer_config.json"])
        settings["auto_map"] = {"AutoTokenizer": [None, "evil.EvilTokenizer"]}
        settings.pop("tokenizer_class", None)
        files["tokenizer_config.json"] = json.dumps(settings).encode()
        files["kwargs"]["trust_remote_code"] = True
        if in_config:
            msg["config"]["auto_map"] = {"AutoTokenizer": [None, "evil.EvilTokenizer"]}

    return edit


@pytest.mark.parametrize("route", ROUTES)
def test_saved_python_file_with_auto_map_and_trust_remote_code(route, en_pipeline, sandbox):
    marker = sandbox / "remote_code_ran"
    message = assert_refused(route, en_pipeline, sandbox, remote_code(marker), "trust_remote_code", [marker])
    assert "only use_fast may be saved" in message


@pytest.mark.parametrize("route", ROUTES)
def test_remote_code_without_the_setting_is_refused_too(route, en_pipeline, sandbox):
    """Even with trust_remote_code gone, an auto_map or a .py file is refused."""
    marker = sandbox / "remote_code_ran"

    def edit(msg):
        remote_code(marker)(msg)
        del msg["tokenizer"]["kwargs"]["trust_remote_code"]

    assert_refused(route, en_pipeline, sandbox, edit, "evil.py.*not a tokenizer file|auto_map", [marker])


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("where", ["parent", "absolute"])
def test_tokenizer_file_named_outside_the_temporary_folder(route, where, en_pipeline, sandbox):
    target = sandbox / "outside" / "escaped.txt"
    target.parent.mkdir()
    # '../x' from a temporary folder made in sandbox/tmp lands in sandbox/tmp.
    name = "../escaped.txt" if where == "parent" else str(target)
    escaped = sandbox / "tmp" / "escaped.txt" if where == "parent" else target

    def edit(msg):
        msg["tokenizer"][name] = b"import os; os.system('echo pwned')\n"

    assert_refused(route, en_pipeline, sandbox, edit, "not a plain file name", [escaped])


@pytest.mark.parametrize("route", ROUTES)
def test_pickled_payload_in_the_weights(route, en_pipeline, sandbox, monkeypatch):
    marker = sandbox / "pickle_ran"

    class Payload:
        def __reduce__(self):
            return exec, (f"import pathlib; pathlib.Path({str(marker)!r}).write_text('ran')",)

    buffer = __import__("io").BytesIO()
    torch.save({"embeddings.word_embeddings.weight": Payload()}, buffer)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

    def edit(msg):
        msg["state"] = buffer.getvalue()

    assert_refused(route, en_pipeline, sandbox, edit, "weights are not plain tensors", [marker])


# --- every check, on the encoder's own bytes ----------------------------------------------


@pytest.fixture(scope="module")
def encoder(en_pipeline):
    nlp = spacy.load(en_pipeline)
    return nlp.get_pipe("cls_classifier").encoder


def edited_shim_bytes(encoder, edit) -> bytes:
    msg = srsly.msgpack_loads(encoder.shims[0].to_bytes())
    edit(msg)
    return srsly.msgpack_dumps(msg)


def set_json(name, key, value):
    def edit(msg):
        content = json.loads(msg["tokenizer"][name])
        content[key] = value
        msg["tokenizer"][name] = json.dumps(content).encode()

    return edit


BAD_NAMES = ["", ".", "..", "a/b.txt", "a\\b.txt", "/etc/x.txt", "..json", "x\x00.txt", "evil.py", "site.pth",
             "lib.so", "config.json", ".hidden.txt", "x" * 200 + ".txt"]
HOSTILE = {
    **{f"file name {name[:20]!r}": (lambda n: lambda msg: msg["tokenizer"].__setitem__(n, b"x"))(name) for name in BAD_NAMES},
    "file name not a string": (lambda msg: msg["tokenizer"].__setitem__(3, b"x"), "not a plain file name"),
    "file content not bytes": (lambda msg: msg["tokenizer"].__setitem__("vocab.txt", "text"), "is a str"),
    "extra tokenizer setting": (lambda msg: msg["tokenizer"]["kwargs"].__setitem__("cache_dir", "/x"), "cache_dir"),
    "use_fast not a bool": (lambda msg: msg["tokenizer"]["kwargs"].__setitem__("use_fast", "yes"), "not a bool"),
    "auto_map in the model config": (lambda msg: msg["config"].__setitem__("auto_map", {"AutoModel": "m.M"}), "auto_map"),
    "trust_remote_code in the model config": (lambda msg: msg["config"].__setitem__("trust_remote_code", True), "trust_remote_code"),
    "unknown model type": (lambda msg: msg["config"].__setitem__("model_type", "evil"), "model type 'evil'"),
    "no model type": (lambda msg: msg["config"].pop("model_type"), "model type None"),
    "auto_map in tokenizer_config.json": (set_json("tokenizer_config.json", "auto_map", {"AutoTokenizer": ["a.B", None]}), "auto_map"),
    "vocab_file pointing outside": (set_json("tokenizer_config.json", "vocab_file", "/etc/passwd"), "vocab_file"),
    "odd tokenizer class": (set_json("tokenizer_config.json", "tokenizer_class", "os.system"), "tokenizer class"),
    "tokenizer_config.json not JSON": (lambda msg: msg["tokenizer"].__setitem__("tokenizer_config.json", b"{"), "not valid JSON"),
    "weights not a state dict": (lambda msg: msg.__setitem__("state", _saved([1, 2])), "mapping of parameter names"),
    "weights garbage": (lambda msg: msg.__setitem__("state", b"\x80\x04junk"), "not plain tensors"),
    "loader setting trust_remote_code": (lambda msg: msg["_init_transformer_config"].__setitem__("trust_remote_code", True), "trust_remote_code"),
    "a million layers declared": (lambda msg: msg["config"].__setitem__("num_hidden_layers", 10**6), "num_hidden_layers=1000000, and its weights hold 2 layers"),
    "wider than the weights": (lambda msg: msg["config"].__setitem__("intermediate_size", 64), "do not fit its model config.*intermediate"),
    "heads not dividing the width": (lambda msg: msg["config"].__setitem__("num_attention_heads", 5), "does not build a model"),
    "config not a dict": (lambda msg: msg.__setitem__("config", ["bert"]), "model config is a list"),
    "missing keys": (lambda msg: msg.pop("state"), "not a saved encoder"),
}


def _saved(obj) -> bytes:
    buffer = __import__("io").BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_saved_encoder_is_refused(case, encoder, sandbox):
    edit = HOSTILE[case]
    match = "not a plain file name|not a tokenizer file|would replace the saved model config"
    if isinstance(edit, tuple):
        edit, match = edit
    data = edited_shim_bytes(encoder, edit)
    before = tree(sandbox)
    with pytest.raises(TamperedPipelineError, match=match):
        encoder.shims[0].from_bytes(data)
    assert tree(sandbox) == before


def test_not_a_saved_encoder_at_all(encoder):
    for data in (b"", b"\xc1", srsly.msgpack_dumps([1, 2])):
        with pytest.raises(TamperedPipelineError, match="not a saved encoder"):
            encoder.shims[0].from_bytes(data)


# --- what still loads ---------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_untampered_round_trip(route, en_pipeline, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # explicit weights_only=True still wins
    reference = spacy.load(en_pipeline)
    texts = ["i love this movie", "the food was awful", "这家酒店的服务非常好"]
    expected = [doc.cats for doc in reference.pipe(texts)]
    loaded = load(route, en_pipeline, tmp_path, lambda msg: None)
    for doc, cats in zip(loaded.pipe(texts), expected):
        assert doc.cats == pytest.approx(cats, abs=1e-6)
    loaded.to_disk(tmp_path / "again")
    assert_same_cats([doc.cats for doc in spacy.load(tmp_path / "again").pipe(texts)], expected, 1e-6)


def test_fast_tokenizer_only_round_trip(tiny_bert, tmp_path):
    """A checkpoint with tokenizer.json and no vocab.txt, as m3e-small ships."""
    from toy_pipelines import save_trained_pipeline

    folder = tmp_path / "fast_only"
    shutil.copytree(tiny_bert, folder)
    (folder / "vocab.txt").unlink()
    pipeline = save_trained_pipeline(tmp_path / "pipeline", str(folder), steps=2)
    texts = ["good movie", "这家酒店很差"]
    first = [doc.cats for doc in spacy.load(pipeline).pipe(texts)]
    nlp = spacy.load(pipeline)
    nlp.from_bytes(nlp.to_bytes())
    assert_same_cats([doc.cats for doc in nlp.pipe(texts)], first, 1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["en", "zh"])
def test_real_checkpoint_round_trip(which, tmp_path):
    from conftest import chinese_model_path, english_model_path
    from toy_pipelines import save_trained_pipeline

    model = english_model_path() if which == "en" else chinese_model_path()
    pipeline = save_trained_pipeline(tmp_path / "pipeline", model, lang=which, steps=2)
    texts = ["a fine hotel", "这家酒店的服务非常好"]
    first = [doc.cats for doc in spacy.load(pipeline).pipe(texts)]
    nlp = spacy.load(pipeline)
    nlp.from_bytes(nlp.to_bytes())
    assert_same_cats([doc.cats for doc in nlp.pipe(texts)], first, 1e-5)


# --- checking a whole pipeline before loading it ---------------------------------------------


def test_check_saved_pipeline_passes_a_clean_one(en_pipeline):
    assert check_saved_pipeline(en_pipeline) == ["cls_classifier"]
    assert check_saved_pipeline(spacy.load(en_pipeline).to_bytes()) == ["cls_classifier"]


@pytest.fixture(scope="module")
def transformer_pipeline(tiny_bert, tmp_path_factory):
    """A spacy-transformers `transformer` component, which spacy-transformers loads unchecked."""
    from spacy.training import Example

    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config={"model": {"name": tiny_bert}})
    nlp.initialize(lambda: [Example.from_dict(nlp.make_doc("good movie"), {})])
    folder = tmp_path_factory.mktemp("trf") / "pipeline"
    nlp.to_disk(folder)
    return folder


def edit_any_hf_shim(model_bytes: bytes, edit) -> bytes:
    model_msg = srsly.msgpack_loads(model_bytes)
    for shims in model_msg["shims"]:
        for i, blob in enumerate(shims):
            msg = srsly.msgpack_loads(blob)
            if isinstance(msg, dict) and "tokenizer" in msg:
                edit(msg)
                shims[i] = srsly.msgpack_dumps(msg)
    return srsly.msgpack_dumps(model_msg)


@pytest.mark.parametrize("route", ROUTES)
def test_check_saved_pipeline_covers_other_components(route, transformer_pipeline, sandbox, monkeypatch):
    marker = sandbox / "remote_code_ran"
    escaped = sandbox / "outside.txt"
    assert check_saved_pipeline(transformer_pipeline) == ["transformer"]

    def edit(msg):
        msg["tokenizer"][str(escaped)] = b"x"

    if route == "folder":
        source = sandbox / "work" / "tampered"
        shutil.copytree(transformer_pipeline, source)
        model_file = source / "transformer" / "model"
        model_file.write_bytes(edit_any_hf_shim(model_file.read_bytes(), edit))
    else:
        msg = srsly.msgpack_loads(spacy.load(transformer_pipeline).to_bytes())
        component = srsly.msgpack_loads(msg["transformer"])
        component["model"] = edit_any_hf_shim(component["model"], edit)
        msg["transformer"] = srsly.msgpack_dumps(component)
        source = srsly.msgpack_dumps(msg)
    with pytest.raises(TamperedPipelineError, match="Component 'transformer'.*not a plain file name"):
        check_saved_pipeline(source)
    assert not escaped.exists() and not marker.exists()


def test_check_saved_pipeline_needs_a_pipeline(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.cfg"):
        check_saved_pipeline(tmp_path)


def assert_same_cats(actual, expected, tolerance):
    """Per doc, the same labels with scores within `tolerance` (pytest.approx takes no
    list of dicts)."""
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert got == pytest.approx(want, abs=tolerance)
