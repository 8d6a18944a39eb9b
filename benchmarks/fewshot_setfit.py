"""SetFit's side of the few-shot benchmark. Runs in SetFit's own environment
(benchmarks/setup_setfit_venv.sh), never beside spacy_cls: `fewshot.py` starts it as

    .venv-setfit/bin/python benchmarks/fewshot_setfit.py SPEC.json

SPEC.json names the checkpoint folder, the train and dev JSONL files fewshot_data.py
wrote, the labels in order, the seed and SetFit's settings. The script trains SetFit
(mode "fewshot": on the train file; mode "zeroshot": on `setfit.get_templated_dataset`
built from the label descriptions and the template, as SetFit documents) and writes to
the spec's `output` the class probabilities of every dev row (columns in the labels'
order), the training time and the versions; fewshot.py scores them with the same
function as every other system.
"""
import hashlib
import inspect
import json
import sys
import time
from importlib.metadata import version
from pathlib import Path


def read_jsonl(path):
    texts, labels = [], []
    for line_no, line in enumerate(Path(path).read_text(encoding="utf8").splitlines(), 1):
        row = json.loads(line)
        if not isinstance(row.get("text"), str) or not isinstance(row.get("label"), str):
            raise SystemExit(f"{path}:{line_no}: needs a string 'text' and a string 'label'")
        texts.append(row["text"])
        labels.append(row["label"])
    return texts, labels


def main(spec_path):
    spec = json.loads(Path(spec_path).read_text(encoding="utf8"))
    import numpy
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from setfit import SetFitModel, Trainer, TrainingArguments, get_templated_dataset
    from sklearn.linear_model import LogisticRegression

    torch.set_num_threads(int(spec["threads"]))
    labels = list(spec["labels"])
    index = {label: i for i, label in enumerate(labels)}
    if spec["mode"] == "zeroshot":
        train = get_templated_dataset(candidate_labels=list(spec["descriptions"]), template=spec["template"],
                                      sample_size=int(spec["template_sample_size"]))
        train = train.remove_columns([c for c in train.column_names if c not in ("text", "label")])
    else:
        texts, names = read_jsonl(spec["train"])
        unknown = sorted(set(names) - set(index))
        if unknown:
            raise SystemExit(f"{spec['train']}: labels {unknown} are not among {labels}")
        train = Dataset.from_dict({"text": texts, "label": [index[name] for name in names]})
    dev_texts, _ = read_jsonl(spec["dev"])

    wall0 = time.perf_counter()
    # m3e-small's tokenizer needs do_lower_case for English words (the name of the argument
    # changed in sentence-transformers 6)
    kwargs_name = ("processor_kwargs" if "processor_kwargs" in inspect.signature(SentenceTransformer).parameters
                   else "tokenizer_kwargs")
    body = SentenceTransformer(spec["model"], device="cpu", **{kwargs_name: dict(spec["tokenizer_kwargs"])})
    body.max_seq_length = int(spec["max_length"])
    lower_cases = body.tokenizer.tokenize("Hello WORLD") == body.tokenizer.tokenize("hello world")
    if spec["tokenizer_kwargs"].get("do_lower_case") and not lower_cases:
        raise SystemExit(f"The tokenizer of {spec['model']} does not lower-case although do_lower_case is set")
    model = SetFitModel(model_body=body, model_head=LogisticRegression())
    args = TrainingArguments(
        batch_size=int(spec["batch_size"]), num_epochs=int(spec["num_epochs"]),
        num_iterations=int(spec["num_iterations"]), body_learning_rate=float(spec["body_learning_rate"]),
        seed=int(spec["seed"]), max_length=int(spec["max_length"]), show_progress_bar=False,
        report_to="none", save_strategy="no", output_dir=str(Path(spec["output"]).parent / "checkpoints"),
    )
    Trainer(model=model, args=args, train_dataset=train).train()
    train_seconds = time.perf_counter() - wall0

    probs = numpy.asarray(model.predict_proba(dev_texts, batch_size=64, as_numpy=True), dtype="float64")
    classes = [int(c) for c in model.model_head.classes_]
    full = numpy.zeros((len(dev_texts), len(labels)))
    full[:, classes] = probs
    out = {
        "probs": full.tolist(),
        "train_seconds": train_seconds,
        "train_rows": len(train),
        "dev_texts_sha": hashlib.sha256("\n".join(dev_texts).encode()).hexdigest()[:16],
        "lower_cases": lower_cases,
        "versions": {name: version(name) for name in ("setfit", "sentence-transformers", "transformers", "torch")},
    }
    Path(spec["output"]).write_text(json.dumps(out), encoding="utf8")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
