"""The few-shot and active-learning benchmarks' bookkeeping (benchmarks/fewshot*.py,
benchmarks/active_learning.py): sampling is deterministic, balanced and the same for every
system; results are keyed by their settings, resumable and locked; the report's targets
say met, missed or tie. No training and no SetFit here."""
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import fewshot  # noqa: E402
import fewshot_data  # noqa: E402
from fewshot_data import Split, sample_indexes  # noqa: E402


def _pool(counts, seed=0):
    """A shuffled pool with `counts[label]` rows of each label."""
    rows = [(f"{label} text {i}", label) for label, n in counts.items() for i in range(n)]
    numpy.random.RandomState(seed).shuffle(rows)
    return Split([t for t, _ in rows], [label for _, label in rows])


POOLS = [
    {"negative": 80, "positive": 300},
    {"ABBR": 70, "DESC": 90, "ENTY": 64, "HUM": 200, "LOC": 99, "NUM": 128},
    {f"news_{i}": 64 + 7 * i for i in range(15)},
]


@pytest.mark.parametrize("counts", POOLS)
@pytest.mark.parametrize("n", [1, 8, 16, 64])
def test_samples_are_balanced_and_deterministic(counts, n):
    pool = _pool(counts)
    labels = list(counts)
    chosen = sample_indexes(pool.labels, labels, n, seed=3)
    assert chosen == sample_indexes(list(pool.labels), labels, n, seed=3)
    assert len(set(chosen)) == len(chosen)
    assert Counter(pool.labels[i] for i in chosen) == {label: n for label in labels}
    # in the labels' order, n rows each
    assert [pool.labels[i] for i in chosen] == [label for label in labels for _ in range(n)]


@pytest.mark.parametrize("counts", POOLS)
def test_samples_nest_and_differ_between_seeds(counts):
    pool = _pool(counts)
    labels = list(counts)
    by_n = {n: sample_indexes(pool.labels, labels, n, seed=1) for n in (8, 16, 32, 64)}
    for small, large in ((8, 16), (16, 32), (32, 64)):
        for k, label in enumerate(labels):
            assert by_n[small][k * small:(k + 1) * small] == by_n[large][k * large:k * large + small], label
    assert set(sample_indexes(pool.labels, labels, 8, seed=0)) != set(sample_indexes(pool.labels, labels, 8, seed=1))


@pytest.mark.parametrize("counts", POOLS)
def test_sample_does_not_depend_on_the_pools_other_labels(counts):
    """A label's rows are drawn by (label, seed) only: asking for fewer labels keeps them."""
    pool = _pool(counts)
    labels = list(counts)
    full = sample_indexes(pool.labels, labels, 8, seed=2)
    assert sample_indexes(pool.labels, labels[-1:], 8, seed=2) == full[-8:]


@pytest.mark.parametrize("short", ["negative", "DESC", "news_3"])
def test_a_label_with_too_few_rows_is_an_error_naming_it(short):
    counts = next(c for c in POOLS if short in c)
    counts = {**counts, short: 5}
    pool = _pool(counts)
    with pytest.raises(ValueError, match=rf"{short}.*5 rows.*8"):
        sample_indexes(pool.labels, list(counts), 8, seed=0)


def test_stratified_dev_subset_keeps_each_labels_share():
    labels = ["a"] * 600 + ["b"] * 300 + ["c"] * 100
    chosen = fewshot_data.stratified_subset(labels, 100)
    assert Counter(labels[i] for i in chosen) == {"a": 60, "b": 30, "c": 10}
    assert chosen == fewshot_data.stratified_subset(labels, 100)


@pytest.mark.parametrize("task_key", list(fewshot_data.TASKS))
def test_sample_files_are_written_once_and_read_back(tmp_path, task_key):
    task = fewshot_data.TASKS[task_key]
    pool = _pool({label: 40 for label in task.labels})
    path = fewshot_data.train_file(task, 8, 0, root=tmp_path, pool=pool)
    first = path.read_bytes()
    read = fewshot_data.read_jsonl(path)
    assert Counter(read.labels) == {label: 8 for label in task.labels}
    assert all(pool.texts[row["id"]] == row["text"] for row in map(json.loads, path.read_text("utf8").splitlines()))
    # a second call (another system) reads the same file, even when given another pool
    again = fewshot_data.train_file(task, 8, 0, root=tmp_path, pool=_pool({label: 40 for label in task.labels}, 9))
    assert again == path and path.read_bytes() == first


def test_descriptions_cover_every_label_once():
    for task in fewshot_data.TASKS.values():
        assert task.labels == list(task.descriptions) and all(task.descriptions.values())
        assert all("{}" in template for template in task.templates)


def test_a_bad_jsonl_row_is_an_error_with_its_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "ok", "label": "a"}\n{"text": "no label"}\n', encoding="utf8")
    with pytest.raises(ValueError, match=r"x.jsonl:2"):
        fewshot_data.read_jsonl(path)


# ---------------------------------------------------------------------------
# Keys, plans, resuming, the lock


def test_the_key_follows_every_setting():
    task = fewshot_data.TASKS["sst2"]
    for system in fewshot.SYSTEMS.values():
        base = system.settings(task, 0)
        key = fewshot.run_key(system.key, "sst2", 8, 0, base)
        assert key == fewshot.run_key(system.key, "sst2", 8, 0, json.loads(json.dumps(base)))
        assert key != fewshot.run_key(system.key, "sst2", 8, 0, system.settings(task, 100))
        assert key != fewshot.run_key(system.key, "sst2", 8, 1, base)
        assert key != fewshot.run_key(system.key, "sst2", 16, 0, base)
        changed = {**base, "max_length": base["max_length"] + 1}
        assert key != fewshot.run_key(system.key, "sst2", 8, 0, changed)


def test_the_plan_runs_each_cell_once():
    runs = fewshot.plan(["sst2", "tnews"], [8, 16], [0, 1, 2], list(fewshot.SYSTEMS))
    keys = [run.key for run in runs]
    assert len(keys) == len(set(keys))
    count = Counter((run.system.key, run.task.key) for run in runs)
    assert count[("ours-zeroshot", "sst2")] == count[("cosine", "tnews")] == 1  # deterministic: once
    assert count[("setfit-zeroshot", "sst2")] == 3  # one a seed
    assert count[("setfit", "tnews")] == count[("plain", "tnews")] == 6
    assert all(run.n == 0 for run in runs if run.system.zero_shot)


def test_every_system_reads_the_same_files(tmp_path):
    task = fewshot_data.TASKS["trec"]
    dev = fewshot_data.write_jsonl(tmp_path / "trec-dev.jsonl", ["what is x ?"] * 6, task.labels)
    files = fewshot_data.DataFiles(task, fewshot_data.train_file(task, 8, 0, tmp_path, _pool(
        {label: 20 for label in task.labels})), dev)
    run = fewshot.plan(["trec"], [8], [0], ["setfit"])[0]
    spec = fewshot.setfit_spec(run, files, 1, tmp_path / "out.json")
    assert (spec["train"], spec["dev"]) == (str(files.train), str(files.dev))
    assert spec["labels"] == task.labels
    assert spec["descriptions"] == [task.descriptions[label] for label in task.labels]


def _fake_runner(calls, fail_on=()):
    def runner(run, files, threads):
        calls.append(run.key)
        if run.seed in fail_on:
            raise RuntimeError("boom")
        probs = numpy.eye(len(run.task.labels))[[0] * 4]
        return {"scores": {"accuracy": 50.0 + run.seed, "macro_f1": 0.5}, "train_seconds": 1.0 + run.n,
                "train_rows": run.n * len(run.task.labels), "probs_shape": list(probs.shape)}
    return runner


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """fewshot.py writing to a temporary folder, with runners that train nothing."""
    runs = tmp_path / "runs"
    monkeypatch.setattr(fewshot, "RUNS", runs)
    monkeypatch.setattr(fewshot, "LOG", runs / "fewshot.log")
    monkeypatch.setattr(fewshot, "LOCK", runs / "driver.lock")
    monkeypatch.setattr(fewshot, "RESULTS", tmp_path)
    monkeypatch.setattr(fewshot, "machine", lambda: {"cpu": "test", "logical_cpus": 1, "torch": "x",
                                                    "transformers": "x", "spacy": "x"})

    def files(task, n, seed, dev_limit=0, root=None, pool=None):
        dev = fewshot_data.write_jsonl(tmp_path / f"{task.key}-dev.jsonl", ["t"] * 4, [task.labels[0]] * 4)
        train = fewshot_data.train_file(task, n, seed, tmp_path, _pool({label: 70 for label in task.labels})) \
            if n else None
        return fewshot_data.DataFiles(task, train, dev)

    monkeypatch.setattr(fewshot, "data_files", files)
    monkeypatch.setattr(fewshot, "pool_and_accounting", lambda task: (None, {"read": 1}))
    calls = []
    monkeypatch.setattr(fewshot, "RUNNERS", {"ours": _fake_runner(calls), "setfit": _fake_runner(calls),
                                             "reference": _fake_runner(calls)})
    return calls, runs


def test_results_are_resumed_not_redone(sandbox):
    calls, runs = sandbox
    grid = fewshot.plan(["sst2"], [8], [0, 1], ["plain", "setfit"])
    assert fewshot.run_grid(grid, 0, 1) == (4, [])
    assert len(calls) == 4 and len(list(runs.glob("*.json"))) == 4
    record = json.loads((runs / f"{grid[0].key}.json").read_text())
    assert record["settings"] == grid[0].settings and record["files"]["train"] and record["command"]
    assert "machine" in record and record["n"] == 8
    # a second driver with a larger grid does only what is missing
    bigger = fewshot.plan(["sst2"], [8], [0, 1, 2], ["plain", "setfit"])
    assert fewshot.run_grid(bigger, 0, 1) == (2, [])
    assert len(calls) == 6


def test_a_failed_run_is_logged_and_the_grid_goes_on(sandbox, monkeypatch):
    calls, runs = sandbox
    monkeypatch.setattr(fewshot, "RUNNERS", {"ours": _fake_runner(calls, fail_on=(0,)),
                                             "setfit": _fake_runner(calls, fail_on=(0,))})
    grid = fewshot.plan(["trec"], [8], [0, 1], ["plain"])
    done, failed = fewshot.run_grid(grid, 0, 1)
    assert done == 1 and failed == [grid[0].key]
    assert f"FAILED {grid[0].key}: RuntimeError: boom" in (runs / "fewshot.log").read_text()
    assert not (runs / f"{grid[0].key}.json").exists()


def test_a_second_driver_is_refused_and_a_dead_ones_lock_is_taken(tmp_path):
    lock = tmp_path / "driver.lock"
    with fewshot.driver_lock(lock):
        assert lock.read_text() == str(os.getpid())
        with pytest.raises(SystemExit, match=str(os.getpid())):
            with fewshot.driver_lock(lock):
                pass
    assert not lock.exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(str(dead.pid))
    with fewshot.driver_lock(lock):
        assert lock.read_text() == str(os.getpid())


# ---------------------------------------------------------------------------
# Scores and the report


def test_every_system_is_scored_by_one_function():
    task = fewshot_data.TASKS["trec"]
    gold = ["ABBR", "DESC", "HUM", "HUM"]
    probs = numpy.zeros((4, 6))
    probs[[0, 1, 2, 3], [0, 1, 3, 4]] = 1.0
    found = fewshot.score(task, probs, gold)
    assert found["accuracy"] == pytest.approx(75.0)
    with pytest.raises(ValueError, match="4 dev rows and 6 labels"):
        fewshot.score(task, probs[:, :5], gold)
    with pytest.raises(ValueError, match="OTHER"):
        fewshot.score(task, probs, ["OTHER", "DESC", "HUM", "HUM"])


def _record(system, task, n, seed, accuracy, seconds=10.0, dev_limit=0):
    settings = fewshot.SYSTEMS[system].settings(fewshot_data.TASKS[task], dev_limit)
    return {"key": fewshot.run_key(system, task, n, seed, settings), "system": system, "task": task, "n": n,
            "seed": seed, "settings": settings, "scores": {"accuracy": accuracy, "macro_f1": accuracy / 100},
            "train_seconds": seconds, "command": "python benchmarks/fewshot.py --run"}


@pytest.mark.parametrize("ours,setfit,verdict", [
    ([70, 72, 74], [60, 61, 62], "better"),
    ([60, 62, 64], [61, 62, 63], "tie"),
    ([50, 51, 52], [60, 61, 62], "worse"),
    ([61, 61, 61], [60.5, 61.5, 60.0], "tie"),
])
def test_compare_says_ties_inside_one_sd(ours, setfit, verdict):
    assert fewshot.compare(fewshot.Cell(ours, [1] * 3), fewshot.Cell(setfit, [1] * 3)) == verdict


def test_targets_met_missed_and_not_measured():
    records = []
    for seed in range(5):
        records += [_record("setfit", "sst2", 8, seed, 62 + seed, seconds=12),
                    _record("ours-contrastive", "sst2", 8, seed, 75 + seed, seconds=8),
                    _record("ours-contrastive-ft", "sst2", 8, seed, 55 + seed, seconds=20),
                    _record("plain", "sst2", 8, seed, 60 + seed),
                    _record("setfit-zeroshot", "sst2", 0, seed, 70)]
    records.append(_record("ours-zeroshot", "sst2", 0, 0, 70.1))
    lines = "\n".join(fewshot.targets(fewshot.cells(records)))
    assert "ours-contrastive >= SetFit at every N on every task: **met so far**" in lines
    assert "ours-contrastive-ft >= SetFit at every N on every task: **missed**" in lines
    assert "worse at SST-2 N=8" in lines
    assert "ours-contrastive training time <= SetFit's: **met so far**" in lines
    assert "ours-contrastive-ft training time <= SetFit's: **missed**" in lines
    assert "N=8 descriptions + examples >= 74 on SST-2, above both zero-shot rows and SetFit: **met**" in lines
    assert "ours-contrastive >= plain fine-tuning + 5 at N=8, averaged over the tasks: **met so far** (+15.0" in lines
    assert "1 of 4 tasks" in lines
    assert "1 of 16 (task, N) cells measured" in lines
    lines = "\n".join(fewshot.targets(fewshot.cells([r for r in records if r["system"] != "ours-zeroshot"])))
    assert "not measured: ours zero-shot" in lines and "SST-2, above both zero-shot rows and SetFit: **missed**" in lines


def test_the_report_keeps_smoke_runs_and_stale_settings_apart(sandbox):
    _, runs = sandbox
    runs.mkdir(parents=True)
    full = [_record("setfit", "sst2", 8, seed, 60 + seed) for seed in range(5)]
    smoke = [_record("setfit", "sst2", 8, 0, 99, dev_limit=100)]
    stale = {**_record("setfit", "sst2", 8, 1, 10), "settings": {"pooling": "cls", "dev_limit": 0}}
    stale["key"] += "-old"
    for r in full + smoke + [stale]:
        (runs / f"{r['key']}.json").write_text(json.dumps(r))
    md = fewshot.report(0).read_text()
    assert "62.0 ± 1.6" in md and "99.0" not in md and "10.0" not in md.split("## Targets")[0].split("N=64")[1]
    smoke_md = fewshot.report(100).read_text()
    assert "99.0 (1 seed)" in smoke_md and "Smoke-test figures" in smoke_md
    data = json.loads((fewshot.RESULTS / "fewshot.json").read_text())
    assert data["cells"][0]["runs"] == 5 and data["cells"][0]["accuracy_mean"] == pytest.approx(62.0)


def test_a_target_is_met_only_when_every_cell_is_measured():
    records = []
    for task in fewshot_data.TASKS:
        for n in fewshot_data.SIZES:
            for seed in range(5):
                records += [_record("setfit", task, n, seed, 60 + seed, seconds=10),
                            _record("ours-contrastive", task, n, seed, 70 + seed, seconds=5),
                            _record("plain", task, n, seed, 50 + seed)]
    lines = "\n".join(fewshot.targets(fewshot.cells(records)))
    assert "ours-contrastive >= SetFit at every N on every task: **met** (16 of 16" in lines
    assert "ours-contrastive training time <= SetFit's: **met**" in lines
    assert "plain fine-tuning + 5 at N=8, averaged over the tasks: **met** (+20.0 points over 4 of 4" in lines
    one_worse = [r for r in records if not (r["system"] == "ours-contrastive" and r["task"] == "tnews"
                                           and r["n"] == 64)]
    one_worse += [_record("ours-contrastive", "tnews", 64, seed, 40 + seed) for seed in range(5)]
    lines = "\n".join(fewshot.targets(fewshot.cells(one_worse)))
    assert "**missed** (16 of 16" in lines and "worse at TNEWS N=64" in lines


# ---------------------------------------------------------------------------
# Active learning


import active_learning  # noqa: E402


@pytest.fixture
def al_sandbox(tmp_path, monkeypatch):
    monkeypatch.setattr(active_learning, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(active_learning, "WORK", tmp_path / "work")
    monkeypatch.setattr(fewshot_data, "SAMPLES", tmp_path / "data")
    monkeypatch.setattr(active_learning, "train_file",
                        lambda task, n, seed, pool: fewshot_data.train_file(task, n, seed, tmp_path / "data", pool))
    return tmp_path


@pytest.mark.parametrize("task_key", ["sst2", "trec", "tnews"])
def test_the_pool_holds_back_labels_and_excludes_the_start(al_sandbox, task_key):
    task = fewshot_data.TASKS[task_key]
    source = _pool({label: 60 for label in task.labels}, seed=4)
    loop = active_learning.Loop(task, 2, "plain", 100, 0)
    start, pool = active_learning.start_and_pool(loop, source, root=al_sandbox / "work")
    assert Counter(start.values()) == {label: 8 for label in task.labels}
    assert len(pool.ids) == 100 and not set(pool.ids) & set(start)
    lines = [json.loads(line) for line in pool.unlabelled.read_text("utf8").splitlines()]
    assert [row["id"] for row in lines] == pool.ids
    assert all(set(row) == {"text", "id"} for row in lines)  # no label in what the classifier ranks
    assert all(pool.gold[row["id"]] == source.labels[int(row["id"][1:])] for row in lines)
    again_start, again = active_learning.start_and_pool(loop, source, root=al_sandbox / "work")
    assert (again_start, again.ids) == (start, pool.ids)
    other = active_learning.Loop(task, 3, "plain", 100, 0)
    assert active_learning.start_and_pool(other, source, root=al_sandbox / "work")[1].ids != pool.ids


def test_a_pool_larger_than_the_rows_left_is_an_error(al_sandbox):
    task = fewshot_data.TASKS["sst2"]
    loop = active_learning.Loop(task, 0, "plain", 500, 0)
    with pytest.raises(ValueError, match="84 rows left.*--pool-size 500"):
        active_learning.start_and_pool(loop, _pool({"negative": 50, "positive": 50}), root=al_sandbox)


def test_random_picks_are_fixed_by_seed_and_round():
    candidates = [f"p{i}" for i in range(300)]
    a = active_learning.pick_random(candidates, 16, 0, 1)
    assert a == active_learning.pick_random(candidates, 16, 0, 1) and len(set(a)) == 16
    assert set(a) <= set(candidates)
    assert a != active_learning.pick_random(candidates, 16, 0, 2) != active_learning.pick_random(candidates, 16, 1, 1)
    assert sorted(active_learning.pick_random(candidates[:5], 16, 0, 1)) == sorted(candidates[:5])


def test_each_round_adds_the_picks_revealed_before_it(al_sandbox):
    task = fewshot_data.TASKS["sst2"]
    loop = active_learning.Loop(task, 0, "plain", 100, 0)
    start, pool = active_learning.start_and_pool(loop, _pool({"negative": 80, "positive": 80}), root=al_sandbox)
    runs = active_learning.RUNS
    runs.mkdir()
    picks = {0: pool.ids[:16], 1: pool.ids[16:32]}
    (runs / f"{loop.key('random', 0)}.json").write_text(json.dumps({"picks": {"random": picks[0], "uncertainty": []}}))
    (runs / f"{loop.key('random', 1)}.json").write_text(json.dumps({"picks": {"random": picks[1]}}))
    labelled = active_learning.labelled_at(loop, "random", 2, start, pool)
    assert set(labelled) == set(start) | set(picks[0]) | set(picks[1])
    assert all(labelled[i] == pool.gold[i] for i in picks[0] + picks[1])
    with pytest.raises(RuntimeError, match="round 2"):
        active_learning.labelled_at(loop, "random", 3, start, pool)
    (runs / f"{loop.key('random', 1)}.json").write_text(json.dumps({"picks": {"random": picks[0]}}))
    with pytest.raises(RuntimeError, match="already revealed"):
        active_learning.labelled_at(loop, "random", 2, start, pool)
    # round 0 is one record, shared by both strategies
    assert loop.key("random", 0) == loop.key("uncertainty", 0) != loop.key("random", 1)
    assert loop.key("random", 1) != active_learning.Loop(task, 0, "plain", 200, 0).key("random", 1)


def test_uncertainty_picks_are_the_most_uncertain_candidates(en_pipeline, tmp_path):
    import spacy

    from spacy_cls.pipeline.attrs import CLS_UNCERTAINTY

    nlp = spacy.load(en_pipeline)
    texts = [f"{a} {b} movie" for a in ("good", "bad", "fine", "awful", "great", "boring") for b in ("very", "not",
                                                                                                   "so", "too")]
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps({"text": t, "id": f"p{i}"}) + "\n" for i, t in enumerate(texts)))
    pool = active_learning.Pool([f"p{i}" for i in range(len(texts))], dict(zip([f"p{i}" for i in range(len(texts))],
                                                                               texts)), {}, path)
    candidates = pool.ids[4:]
    chosen, skipped = active_learning.pick_uncertain(nlp, pool, candidates, 5)
    values = {f"p{i}": doc._.get(CLS_UNCERTAINTY) for i, doc in enumerate(nlp.pipe(texts))}
    expected = sorted(candidates, key=lambda i: -values[i])[:5]
    assert skipped == [] and set(chosen) <= set(candidates)
    assert [values[i] for i in chosen] == pytest.approx([values[i] for i in expected])


def test_curves_and_the_verdict_say_when_uncertainty_does_not_beat_random():
    task = fewshot_data.TASKS["sst2"]
    records = []
    for seed in range(3):
        settings = active_learning.Loop(task, seed, "plain", 2000, 0).settings()
        records.append({"key": f"start-x-{seed}", "task": "sst2", "seed": seed, "round": 0, "labels": 16,
                        "settings": settings, "scores": {"accuracy": 60.0 + seed}})
        for strategy, accuracy in (("uncertainty", 64.0), ("random", 70.0)):
            records.append({"key": f"{strategy}-x-{seed}", "task": "sst2", "seed": seed, "round": 1, "labels": 32,
                            "settings": settings, "scores": {"accuracy": accuracy + seed * 0.1}})
    found = active_learning.curves(records, "plain", 2000, 0)
    assert found[("sst2", "uncertainty")][16] == found[("sst2", "random")][16] == [60.0, 61.0, 62.0]
    text = active_learning.verdict(found[("sst2", "uncertainty")], found[("sst2", "random")])
    assert text.startswith("uncertainty sampling does not beat random: it is worse") and "worse at 32 labels" in text
    assert active_learning.curves(records, "plain", 1000, 0) == {}
    one_seed = {16: [60.0], 32: [64.0]}
    assert "too few seeds" in active_learning.verdict(one_seed, {16: [60.0], 32: [70.0]})
    tie = active_learning.verdict({16: [60.0, 62.0], 32: [65.0, 69.0]}, {16: [60.0, 62.0], 32: [66.0, 68.0]})
    assert "they tie" in tie


def test_the_pool_accounts_for_every_row_read():
    pool = Split(["a b c", "a b c", "in dev here", "short", "x y z w", " a b c "], ["p", "n", "p", "p", "n", "p"])
    kept, counts = fewshot_data.filter_pool(pool, {"in dev here"}, min_words=2)
    assert kept.texts == ["a b c", "x y z w"] and kept.labels == ["p", "n"]
    assert counts == {"read": 6, "short": 1, "in_dev": 1, "duplicate": 2, "kept": 2}
    assert counts["read"] == sum(v for k, v in counts.items() if k != "read")


def test_the_plan_goes_smallest_n_first_over_every_task_and_system():
    runs = fewshot.plan(["sst2", "trec"], [32, 8], [0, 1], ["setfit", "plain", "ours-zeroshot", "setfit-zeroshot"])
    ns = [run.n for run in runs]
    assert ns == sorted(ns) and ns[0] == 0
    first_n8 = [(run.task.key, run.system.key) for run in runs if run.n == 8]
    assert set(first_n8) == {(t, s) for t in ("sst2", "trec") for s in ("setfit", "plain")}
    assert ns.index(32) == len([n for n in ns if n < 32])


def test_fewer_seeds_than_planned_is_never_a_met_target():
    records = [_record("setfit", "sst2", 8, 0, 60.0), _record("ours-contrastive", "sst2", 8, 0, 80.0),
               _record("setfit-zeroshot", "sst2", 0, 0, 70.0), _record("ours-zeroshot", "sst2", 0, 0, 71.0),
               _record("plain", "sst2", 8, 0, 60.0)]
    lines = "\n".join(fewshot.targets(fewshot.cells(records)))
    assert "**met**" not in lines
    assert "above both zero-shot rows and SetFit: **met so far** (best of our two rows 80.0 (1 seed)" in lines
    assert "some with fewer than 5 seeds" in lines
    # a deterministic zero-shot row is complete with its one run
    assert fewshot.full(fewshot.cells(records)[("sst2", "ours-zeroshot", 0)])
    assert not fewshot.full(fewshot.cells(records)[("sst2", "setfit-zeroshot", 0)])
