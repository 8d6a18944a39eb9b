"""A trained pipeline in spaCy's own tooling: `spacy evaluate`, `spacy debug data`,
`spacy package` into a wheel that installs in a fresh virtualenv and loads offline."""
import importlib.metadata
import json
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import spacy
from spacy.cli.package import get_third_party_dependencies

import spacy_cls  # noqa: F401

from toy_pipelines import EXCLUSIVE, save_trained_pipeline, write_docbin

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run(args, cwd=None, env=None, timeout=600):
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
        env={**os.environ, **OFFLINE, **(env or {})},
    )
    assert proc.returncode == 0, f"{args}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


def declared_python_floor() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf8")
    return re.search(r'^requires-python = ">=(3\.\d+)"$', text, flags=re.M).group(1)


def test_requires_python_is_the_floor_of_the_pinned_dependencies():
    """pyproject's Python floor is one that every installed dependency accepts, and the
    minor version below it is refused by at least one (torch 2.13 starts at 3.10)."""
    from packaging.specifiers import SpecifierSet

    floor = declared_python_floor()
    major, minor = (int(part) for part in floor.split("."))
    below = f"{major}.{minor - 1}"
    accepted = {}
    for dist in ("torch", "spacy", "spacy-transformers", "transformers"):
        spec = importlib.metadata.metadata(dist).get("Requires-Python") or ""
        accepted[dist] = (SpecifierSet(spec).contains(floor), SpecifierSet(spec).contains(below))
    assert all(at_floor for at_floor, _ in accepted.values()), accepted
    assert not all(at_below for _, at_below in accepted.values()), accepted


def test_requirements_name_spacy_cls(en_pipeline):  # noqa: F811
    """`spacy package` lists the distributions whose registered functions the config
    uses; ours must be among them, with a version range that includes this version."""
    nlp = spacy.load(en_pipeline)
    requirements = get_third_party_dependencies(nlp.config)
    version = importlib.metadata.version("spacy-cls")
    major, minor = version.split(".")[:2]
    assert f"spacy-cls>={version},<{major}.{int(minor) + 1}.0" in requirements


def test_spacy_evaluate(en_pipeline, tmp_path):  # noqa: F811
    data = write_docbin(tmp_path / "dev.spacy")
    metrics = tmp_path / "metrics.json"
    run([sys.executable, "-m", "spacy", "evaluate", en_pipeline, data, "--output", metrics])
    scores = json.loads(metrics.read_text())
    # The pipeline was fit on these six texts.
    assert scores["cats_score"] == pytest.approx(1.0)
    assert scores["cats_macro_auc"] == pytest.approx(1.0)
    assert set(scores["cats_f_per_type"]) == {"POS", "NEG"}


@pytest.mark.slow
def test_spacy_debug_data(tiny_bert):
    """`spacy debug data` on the demo config (encoder swapped for tiny_bert), with no
    other override: the configs' schedule reads max_steps = ${training.max_steps}, which
    debug data never fills in when it builds the optimizer."""
    proc = run(
        [sys.executable, "-m", "spacy", "debug", "data", ROOT / "configs" / "en_demo.cfg",
         "--components.cls_classifier.model.name", tiny_bert],
        cwd=ROOT,
    )
    assert "Pipeline can be initialized with data" in proc.stdout
    assert "Corpus is loadable" in proc.stdout
    assert "320 training docs" in proc.stdout and "80 evaluation docs" in proc.stdout


def child_venv(folder: Path) -> Path:
    """A virtualenv that sees every package the running interpreter sees, then its own.

    `venv --system-site-packages` would link the base interpreter's packages: run from a
    user's virtualenv, the child would miss everything installed there (spacy_cls
    included). So the child gets a .pth file that adds the running interpreter's site
    folders with `site.addsitedir`, which also runs their own .pth files (editable
    installs). Without pip, the child has no setuptools of its own to shadow the
    parent's (torch pins one)."""
    run([sys.executable, "-m", "venv", "--without-pip", folder])
    python = folder / "bin" / "python"
    child_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    parents = [path for path in site.getsitepackages() if Path(path).is_dir()]
    if site.ENABLE_USER_SITE and Path(site.getusersitepackages()).is_dir():
        parents.append(site.getusersitepackages())
    lines = [f"import site; site.addsitedir({path!r})" for path in parents]
    (Path(child_site) / "_parent_site_packages.pth").write_text("\n".join(lines) + "\n", encoding="utf8")
    return python


def test_child_venv_imports_the_running_spacy_cls(tmp_path):
    python = child_venv(tmp_path / "venv")
    proc = run([python, "-c", "import spacy_cls, spacy; print(spacy_cls.__file__); print(spacy.__file__)"],
               cwd=tmp_path)
    found_cls, found_spacy = proc.stdout.strip().splitlines()[-2:]
    assert Path(found_cls) == Path(spacy_cls.__file__)
    assert Path(found_spacy) == Path(spacy.__file__)


REQUIREMENTS_MET = """
import sys
from importlib.metadata import PackageNotFoundError, requires, version
from packaging.requirements import Requirement
unmet = []
for line in requires(sys.argv[1]) or []:
    req = Requirement(line)
    if req.marker and not req.marker.evaluate({"extra": ""}):
        continue
    try:
        found = version(req.name)
    except PackageNotFoundError:
        found = None
    if found is None or not req.specifier.contains(found, prereleases=True):
        unmet.append((line, found))
assert not unmet, unmet
"""

CHECK_SCRIPT = """
import json, sys
import spacy
nlp = spacy.load("en_cls_packaged")
texts = json.loads(sys.argv[1])
docs = list(nlp.pipe(texts, n_process=2, batch_size=2))
print(json.dumps({
    "file": spacy.util.get_package_path("en_cls_packaged").as_posix(),
    "cats": [doc.cats for doc in docs],
    "shapes": [list(doc._.cls_vector.shape) for doc in docs],
}))
"""


@pytest.mark.slow
def test_package_wheel_installs_and_loads_offline(tiny_bert, tmp_path):
    pytest.importorskip("build", reason="`spacy package --build wheel` needs `pip install build`")
    # Train on a copy of the encoder that is gone before the package is built and loaded:
    # the pipeline must carry its weights and tokenizer.
    encoder_copy = Path(shutil.copytree(tiny_bert, tmp_path / "encoder"))
    pipeline = save_trained_pipeline(tmp_path / "pipeline", str(encoder_copy))
    shutil.rmtree(encoder_copy)
    texts = [text for text, _ in EXCLUSIVE["en"]]
    expected = [doc.cats for doc in spacy.load(pipeline).pipe(texts)]

    packages = tmp_path / "packages"
    packages.mkdir()
    run([sys.executable, "-m", "spacy", "package", pipeline, packages, "--name", "cls_packaged",
         "--version", "1.0.0", "--build", "wheel", "--force"])
    wheels = list(packages.glob("en_cls_packaged-1.0.0/dist/*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as wheel:
        metadata = next(name for name in wheel.namelist() if name.endswith("METADATA"))
        requires = [line for line in wheel.read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")]
    assert any(line.startswith("Requires-Dist: spacy-cls") for line in requires), requires

    venv = tmp_path / "venv"
    python = child_venv(venv)
    # No index, no dependency resolution: the wheel's own requirements (spacy-cls
    # included) must already be met in the child; pip's full resolution would also judge
    # the parent environment's unrelated pins (torch's setuptools floor, say).
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--no-deps",
         "--no-cache-dir", wheels[0]])
    run([python, "-c", REQUIREMENTS_MET, "en_cls_packaged"], cwd=tmp_path)
    proc = run([python, "-c", CHECK_SCRIPT, json.dumps(texts)], cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["file"].startswith(venv.as_posix())
    assert result["shapes"] == [[32]] * len(texts)
    for got, want in zip(result["cats"], expected):
        assert got == pytest.approx(want, abs=1e-5)
    assert [max(c, key=c.get) for c in result["cats"]] == [label for _, label in EXCLUSIVE["en"]]
