"""An optimized (ONNX) pipeline is data too: a graph that names external data, and a
tokenizer that points at files, are refused through spacy.load, from_disk and
from_bytes, even when the attacker rewrote the sha256 in the config; nothing of the
outside file reaches the model or the error. And explain refuses cleanly."""
import json
import shutil
from pathlib import Path

import pytest
import spacy
import srsly

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import spacy_cls  # noqa: F401,E402
from spacy_cls.models.onnx import GRAPH_FILE, sha256  # noqa: E402
from spacy_cls.models.safe_load import load_checked  # noqa: E402
from spacy_cls.models.saved_checks import TamperedPipelineError, check_saved_pipeline  # noqa: E402
from spacy_cls.pipeline.optimize import optimize_to_disk  # noqa: E402

SECRET = "TOPSECRET-4242"
ONNX_NODE = "onnx_cls_encoder"
ROUTES = ["spacy.load", "from_disk", "from_bytes"]


@pytest.fixture(scope="module")
def optimized(en_pipeline, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("onnx_untrusted") / "optimized"
    optimize_to_disk(en_pipeline, output)
    return output


def graph_of(folder: Path):
    return onnx.load_from_string((folder / "cls_classifier" / GRAPH_FILE).read_bytes())


def as_external(tensor, location: str) -> None:
    """Make `tensor` read its bytes from `location`, as ONNX external data does."""
    length = len(tensor.raw_data) or numpy_helper.to_array(tensor).nbytes
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.data_location = TensorProto.EXTERNAL


def biggest_initializer(graph):
    return max(graph.initializer, key=lambda t: len(t.raw_data))


def ext_initializer(location):
    def edit(model):
        as_external(biggest_initializer(model.graph), location)
    return edit


def ext_constant(location):
    def edit(model):
        value = numpy_helper.from_array(__import__("numpy").ones((4, 4), "float32"), "c")
        as_external(value, location)
        model.graph.node.append(helper.make_node("Constant", [], ["unused_c"], value=value, name="c"))
    return edit


def ext_sparse(location):
    def edit(model):
        np = __import__("numpy")
        values = numpy_helper.from_array(np.ones(2, "float32"), "s_values")
        indices = numpy_helper.from_array(np.array([0, 3], "int64"), "s_indices")
        as_external(values, location)
        model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4]))
    return edit


def ext_subgraph(location):
    def edit(model):
        np = __import__("numpy")
        inner = numpy_helper.from_array(np.ones(3, "float32"), "inner")
        as_external(inner, location)
        body = helper.make_graph([helper.make_node("Identity", ["inner"], ["out"])], "body", [],
                                 [helper.make_tensor_value_info("out", TensorProto.FLOAT, [3])], [inner])
        cond = numpy_helper.from_array(np.array(True), "cond_c")
        model.graph.initializer.append(cond)
        model.graph.node.append(helper.make_node("If", ["cond_c"], ["if_out"], then_branch=body,
                                                 else_branch=body, name="if"))
    return edit


def locations(tmp_path: Path):
    """Bare name, relative dotted path, '../', absolute: each names a file holding SECRET."""
    outside = tmp_path / "outside.bin"
    outside.write_bytes(SECRET.encode() * 4096)
    return {
        "bare name": "key.bin",
        "relative dotted": ".secret/key.bin",
        "parent": "../../outside.bin",
        "absolute": str(outside),
    }


def plant_secrets(folder: Path, tmp_path: Path) -> None:
    """The files each location would name, from the component folder and the cwd."""
    for base in (folder / "cls_classifier", Path.cwd()):
        for relative in ("key.bin", ".secret/key.bin"):
            target = base / relative
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(SECRET.encode() * 4096)


def tampered_copy(optimized: Path, target: Path, edit) -> Path:
    """A copy of `optimized` with its graph edited and the config's sha256 rewritten to match."""
    shutil.copytree(optimized, target)
    model = graph_of(target)
    edit(model)
    data = model.SerializeToString()
    (target / "cls_classifier" / GRAPH_FILE).write_bytes(data)
    config = spacy.util.load_config(target / "config.cfg")
    config["components"]["cls_classifier"]["model"]["encoder"]["sha256"] = sha256(data)
    config.to_disk(target / "config.cfg")
    return target


def load_route(route: str, folder: Path):
    if route == "spacy.load":
        return spacy.load(folder)
    config = spacy.util.load_config(folder / "config.cfg")
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    if route == "from_disk":
        return nlp.from_disk(folder)
    # from_bytes: the graph (and tokenizer) travel inside the bytes.
    return nlp.from_bytes(bytes_with_graph(folder))


def bytes_with_graph(folder: Path) -> bytes:
    """nlp.to_bytes() of the clean optimized pipeline, its ONNX shim carrying the graph
    file (and the tokenizer files) of `folder`."""
    optimized_nlp = spacy.load(ORIGINAL[0])
    data = srsly.msgpack_loads(optimized_nlp.to_bytes())
    component = srsly.msgpack_loads(data["cls_classifier"])
    model_msg = srsly.msgpack_loads(component["model"])
    index = [node["name"] for node in model_msg["nodes"]].index(ONNX_NODE)
    shim = srsly.msgpack_loads(model_msg["shims"][index][0])
    shim["graph"] = (folder / "cls_classifier" / GRAPH_FILE).read_bytes()
    tokenizer_override = TOKENIZER_OVERRIDE.get(str(folder))
    if tokenizer_override is not None:
        shim["tokenizer"] = tokenizer_override
    model_msg["shims"][index][0] = srsly.msgpack_dumps(shim)
    component["model"] = srsly.msgpack_dumps(model_msg)
    data["cls_classifier"] = srsly.msgpack_dumps(component)
    return srsly.msgpack_dumps(data)


ORIGINAL = []
TOKENIZER_OVERRIDE = {}


@pytest.fixture(autouse=True)
def _original(optimized):
    ORIGINAL[:] = [optimized]
    yield
    TOKENIZER_OVERRIDE.clear()


EDITS = {"initializer": ext_initializer, "Constant attribute": ext_constant, "sparse initializer": ext_sparse,
         "subgraph initializer": ext_subgraph}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("where", sorted(EDITS))
@pytest.mark.parametrize("location", ["bare name", "relative dotted", "parent", "absolute"])
def test_external_data_is_refused(route, where, location, optimized, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    place = locations(tmp_path)[location]
    folder = tampered_copy(optimized, tmp_path / "work" / "p", EDITS[where](place))
    plant_secrets(folder, tmp_path)
    with pytest.raises(TamperedPipelineError, match="external data") as error:
        load_route(route, folder)
    assert SECRET not in str(error.value)
    with pytest.raises(TamperedPipelineError, match="external data"):
        check_saved_pipeline(folder)
    with pytest.raises(TamperedPipelineError, match="external data"):
        load_checked(folder)


def test_external_data_in_bytes_is_refused_by_the_checker(optimized, tmp_path):
    folder = tampered_copy(optimized, tmp_path / "p", ext_initializer("key.bin"))
    with pytest.raises(TamperedPipelineError, match="Component 'cls_classifier'.*external data"):
        check_saved_pipeline(bytes_with_graph(folder))


def test_untampered_optimized_pipeline_passes_every_route(optimized, tmp_path):
    assert check_saved_pipeline(optimized) == ["cls_classifier"]
    reference = [doc.cats for doc in spacy.load(optimized).pipe(["i love it", "awful food"])]
    for route in ROUTES:
        nlp = load_route(route, optimized)
        for got, want in zip([doc.cats for doc in nlp.pipe(["i love it", "awful food"])], reference):
            assert got == pytest.approx(want, abs=1e-6)


# --- the tokenizer of an optimized pipeline ------------------------------------------------


def edit_tokenizer(folder: Path, edit) -> None:
    model_file = folder / "cls_classifier" / "model"
    model_msg = srsly.msgpack_loads(model_file.read_bytes())
    index = [node["name"] for node in model_msg["nodes"]].index(ONNX_NODE)
    shim = srsly.msgpack_loads(model_msg["shims"][index][0])
    edit(shim["tokenizer"])
    TOKENIZER_OVERRIDE[str(folder)] = shim["tokenizer"]
    model_msg["shims"][index][0] = srsly.msgpack_dumps(shim)
    model_file.write_bytes(srsly.msgpack_dumps(model_msg))


def point_vocab_at(value):
    def edit(files):
        files.pop("tokenizer.json", None)
        settings = json.loads(files["tokenizer_config.json"])
        settings["vocab_file"] = value
        files["tokenizer_config.json"] = json.dumps(settings).encode()
    return edit


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("value", ["absolute", "parent", "bare"])
def test_tokenizer_settings_pointing_at_files_are_refused(route, value, optimized, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outside = tmp_path / "vocab_outside.txt"
    outside.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n" + SECRET + "\n", encoding="utf8")
    (tmp_path / "vocab.txt").write_text(outside.read_text(), encoding="utf8")
    target = {"absolute": str(outside), "parent": "../../vocab_outside.txt", "bare": "vocab.txt"}[value]
    folder = tmp_path / "work" / "p"
    shutil.copytree(optimized, folder)
    edit_tokenizer(folder, point_vocab_at(target))
    with pytest.raises(TamperedPipelineError, match="vocab_file") as error:
        load_route(route, folder)
    assert SECRET not in str(error.value)
    with pytest.raises(TamperedPipelineError, match="vocab_file"):
        check_saved_pipeline(folder)


HOSTILE_FILES = {
    "parent name": lambda files: files.__setitem__("../escaped.txt", b"x"),
    "absolute name": lambda files: files.__setitem__("/tmp/escaped.txt", b"x"),
    "python file": lambda files: files.__setitem__("evil.py", b"import os"),
    "auto_map": lambda files: files.__setitem__(
        "tokenizer_config.json", json.dumps({"auto_map": {"AutoTokenizer": ["a.B", None]}}).encode()),
    "tokenizer_file": lambda files: files.__setitem__(
        "tokenizer_config.json", json.dumps({"tokenizer_file": "/etc/hostname"}).encode()),
}


@pytest.mark.parametrize("route", ["spacy.load", "from_bytes"])
@pytest.mark.parametrize("case", sorted(HOSTILE_FILES))
def test_hostile_tokenizer_files_are_refused(route, case, optimized, tmp_path):
    folder = tmp_path / "p"
    shutil.copytree(optimized, folder)
    edit_tokenizer(folder, HOSTILE_FILES[case])
    with pytest.raises(TamperedPipelineError):
        load_route(route, folder)
    assert not (tmp_path / "escaped.txt").exists()


def test_tokenizer_file_far_beyond_the_limit(optimized, tmp_path, monkeypatch):
    monkeypatch.setenv("SPACY_CLS_MAX_TOKENIZER_BYTES", str(2**20))
    folder = tmp_path / "p"
    shutil.copytree(optimized, folder)
    edit_tokenizer(folder, lambda files: files.__setitem__("vocab.txt", b"a\n" * 2**20))
    for route in ("spacy.load", "from_bytes"):
        with pytest.raises(TamperedPipelineError, match="vocab.txt' is 2,097,152 bytes"):
            load_route(route, folder)


# --- explain ------------------------------------------------------------------------------


def test_explain_refuses_an_optimized_pipeline_naming_the_original(en_pipeline, optimized, tmp_path):
    from typer.testing import CliRunner

    from spacy_cls.cli import app
    from spacy_cls.explain.attention import cls_attention
    from spacy_cls.layers.onnx_encoder import OnnxAttentionError

    result = CliRunner().invoke(app, ["explain", str(optimized), "a fine film", "-o", str(tmp_path / "e.html")])
    assert result.exit_code == 2, result.output
    assert "ONNX Runtime graph" in result.output and str(en_pipeline) in result.output
    assert "AttributeError" not in result.output and not (tmp_path / "e.html").exists()
    nlp = spacy.load(optimized)
    with pytest.raises(OnnxAttentionError, match="original"):
        cls_attention(nlp, [nlp("a fine film")])
    # The original still explains.
    result = CliRunner().invoke(app, ["explain", str(en_pipeline), "a fine film", "-o", str(tmp_path / "e.html")])
    assert result.exit_code == 0, result.output
