"""Tiny random checkpoints and toy data for `benchmarks/distill.py --smoke`: the whole
benchmark code path in seconds, with numbers that mean nothing."""
import random
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Tuple

WORDS = ("good great fine nice love fun best happy clean friendly bad awful boring slow rude dirty worst hate "
         "sad terrible the a movie film food room staff service was is and but not very really").split()
CJK = list("好很不错差慢贵喜欢讨厌服务酒店电影推荐失望满意")
POSITIVE = set("good great fine nice love fun best happy clean friendly".split()) | set("好不错喜欢推荐满意")


def _text(rng: random.Random, lang: str) -> Tuple[str, int]:
    pool = WORDS if lang == "en" else CJK
    words = [rng.choice(pool) for _ in range(rng.randint(3, 9))]
    label = int(sum(w in POSITIVE for w in words) * 2 >= len(words) * (0.6 if lang == "en" else 0.5))
    return (" " if lang == "en" else "").join(words), label


def smoke_data(lang: str) -> Dict[str, List[Tuple[str, int]]]:
    rng = random.Random(0)
    sizes = {"gold": 48, "heldout": 16, "unlabelled": 32, "dev": 24}
    return {name: [_text(rng, lang) for _ in range(n)] for name, n in sizes.items()}


@lru_cache(maxsize=None)
def smoke_model(kind: str) -> str:
    """A random 4-layer model of `kind` ("mpnet", or BERT for "minilm" / "m3e") in a temporary folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast, MPNetConfig, MPNetModel, MPNetTokenizerFast

    folder = Path(tempfile.mkdtemp(prefix=f"distill-smoke-{kind}-"))
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] if kind == "mpnet" else ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = list(dict.fromkeys(special + WORDS + CJK + letters + list(".,!?")))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf8")
    torch.manual_seed(0)
    shape = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=48)
    if kind == "mpnet":
        tokenizer = MPNetTokenizerFast(vocab_file=str(folder / "vocab.txt"), unk_token="<unk>", do_lower_case=True)
        model = MPNetModel(MPNetConfig(vocab_size=len(vocab), max_position_embeddings=66,
                                       pad_token_id=tokenizer.pad_token_id, **shape))
    else:
        tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
        model = BertModel(BertConfig(vocab_size=len(vocab), max_position_embeddings=64, **shape))
    tokenizer.model_max_length = 64
    tokenizer.save_pretrained(str(folder))
    model.save_pretrained(str(folder))
    return str(folder)
