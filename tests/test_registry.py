"""Every registered name resolves, every shipped config validates, and the entry
points make it all reachable without importing spacy_cls first."""
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.util import registry

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.cfg"))


def _entry_points(group):
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=group) if ep.value.startswith("spacy_cls")}


@pytest.mark.parametrize(
    "group,table",
    [("spacy_architectures", "architectures"), ("spacy_readers", "readers"), ("spacy_misc", "misc")],
)
def test_every_entry_point_resolves(group, table):
    for name, ep in _entry_points(group).items():
        assert registry.get(table, name) is ep.load()


def test_factories_registered_by_entry_point():
    eps = _entry_points("spacy_factories")
    assert {"cls_classifier", "cls_classifier_multilabel"} <= set(eps)
    for name in eps:
        assert spacy.blank("en").add_pipe(name) is not None


def test_add_pipe_works_without_importing_the_package():
    code = "import spacy; nlp = spacy.blank('zh'); nlp.add_pipe('cls_classifier'); print(nlp.pipe_names)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "cls_classifier" in out.stdout


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_validates(config, capsys, monkeypatch):
    from spacy.cli.debug_config import debug_config

    monkeypatch.chdir(ROOT)
    debug_config(config, overrides={})  # `spacy debug config`, in process; exits non-zero on errors
    assert "Config is valid" in capsys.readouterr().out


def test_the_command_line_starts_without_the_encoder_libraries():
    """`python -m spacy_cls convert` needs spaCy only: transformers and spacy-transformers
    (several seconds to import) load with the components, not with the package."""
    code = ("import sys, spacy_cls.__main__; "
            "print(sorted(m for m in ('transformers', 'spacy_transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_package_attributes_load_the_components_on_first_use():
    import spacy_cls
    from spacy_cls.pipeline.component import ClsClassifier, ClsClassifierMultilabel

    assert spacy_cls.ClsClassifier is ClsClassifier
    assert spacy_cls.ClsClassifierMultilabel is ClsClassifierMultilabel
    assert callable(spacy_cls.pipeline.architectures.build_cls_classifier)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        spacy_cls.nothing_here
