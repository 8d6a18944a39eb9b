"""The offline English and Chinese checkpoints end to end: [CLS] fidelity, a few
training steps, and identical vectors after loading in a fresh offline process."""
import json
import os
import subprocess
import sys

import numpy
import pytest
import spacy
import torch
from spacy.training import Example
from thinc.api import Adam, fix_random_seed
from transformers import AutoModel, AutoTokenizer

import spacy_cls  # noqa: F401
from conftest import chinese_model_path, english_model_path

CASES = {
    "en": (english_model_path, {}, [("what a wonderful, moving film", "POS"), ("a dull and tedious mess", "NEG")]),
    "zh": (
        chinese_model_path,
        {"do_lower_case": True},
        [("酒店干净，服务热情，下次还来", "POS"), ("快递太慢了，包装也破了，很失望", "NEG")],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_real_checkpoint_end_to_end(lang, tmp_path):
    get_path, tok_cfg, data = CASES[lang]
    path = get_path()
    nlp = spacy.blank(lang)
    nlp.add_pipe("cls_classifier", config={"model": {"name": path, "tokenizer_config": tok_cfg}})
    examples = [
        Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(l == "POS"), "NEG": float(l == "NEG")}})
        for t, l in data
    ]
    fix_random_seed(0)
    nlp.initialize(lambda: examples)

    tokenizer = AutoTokenizer.from_pretrained(path, **tok_cfg)
    model = AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        expected = model(**tokenizer(data[0][0], return_tensors="pt")).last_hidden_state[0, 0].numpy()
    numpy.testing.assert_allclose(nlp(data[0][0])._.cls_vector, expected, atol=1e-4)

    optimizer = Adam(5e-5)
    for _ in range(5):
        losses = nlp.update(examples, sgd=optimizer)
    assert numpy.isfinite(losses["cls_classifier"])

    nlp.to_disk(tmp_path / "pipeline")
    texts = [t for t, _ in data]
    here = [nlp(t)._.cls_vector.tolist() for t in texts]
    code = (
        "import json, sys, spacy; nlp = spacy.load(sys.argv[1]); "
        "print(json.dumps([nlp(t)._.cls_vector.tolist() for t in json.loads(sys.argv[2])]))"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path / "empty_hf_home"))
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "pipeline"), json.dumps(texts)],
        capture_output=True, text=True, env=env, check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here
