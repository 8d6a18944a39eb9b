"""Data-parallel training with 2 gloo workers on 127.0.0.1 and a tiny model: the same
weights as one process over the same global batches, byte-equal weights on every rank
after every step, sharding, and a worker killed mid-run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest
import spacy
import torch

from spacy_cls.distributed.sharding import ShardState, shard_batches, shard_bounds
from spacy_cls.layers.encoder import get_hf

ROOT = Path(__file__).resolve().parents[2]


def overrides(tiny_bert, steps=20, batch=8):
    return ["--components.cls_classifier.model.name", tiny_bert, "--training.max_steps", str(steps),
            "--training.eval_frequency", "10", "--training.dropout", "0.0", "--training.batcher.size", str(batch),
            "--components.cls_classifier.model.dropout", "0.0",
            # the encoder's own dropout too: equal weights need equal computations on each doc
            "--components.cls_classifier.model.transformer_config",
            '{"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}']


def run(args, timeout=600, **kwargs):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def weights(folder):
    nlp = spacy.load(folder)
    pipe = nlp.get_pipe("cls_classifier")
    state = {f"encoder.{k}": v.detach().numpy().copy() for k, v in get_hf(pipe.encoder).transformer.state_dict().items()}
    layer = pipe.model.get_ref("output_layer")
    for name in ("W", "b"):
        state[f"head.{name}"] = numpy.array(layer.get_param(name))
    return state


@pytest.fixture(scope="module")
def runs(tiny_bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("dp")
    results = {}
    for workers in (1, 2):
        result = run(["spacy_cls", "train", "configs/en_demo.cfg", "--output", str(out / f"w{workers}"),
                      "--workers", str(workers), "--check-sync", *overrides(tiny_bert)])
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
        results[workers] = out / f"w{workers}"
    single = run(["spacy", "train", "configs/en_demo.cfg", "--output", str(out / "spacy"), *overrides(tiny_bert)])
    assert single.returncode == 0, single.stderr[-3000:]
    results["spacy"] = out / "spacy"
    return results


def test_two_workers_give_the_weights_of_one_process(runs, tiny_bert):
    from transformers import AutoModel

    one, two = weights(runs[1] / "model-last"), weights(runs[2] / "model-last")
    start = {f"encoder.{k}": v.numpy() for k, v in AutoModel.from_pretrained(tiny_bert).state_dict().items()}
    moved = [name for name in start if name in one and not numpy.allclose(one[name], start[name], atol=1e-7)]
    assert len(moved) > 10  # the encoder was fine-tuned, not left as loaded
    worst = max(float(numpy.abs(one[name] - two[name]).max()) for name in one)
    assert worst < 1e-5, worst


def test_one_worker_is_spacy_train(runs):
    one, plain = weights(runs[1] / "model-last"), weights(runs["spacy"] / "model-last")
    assert max(float(numpy.abs(one[name] - plain[name]).max()) for name in one) < 1e-6


def test_every_rank_holds_the_same_weights_after_every_step(runs):
    report = json.loads((runs[2] / "distributed.json").read_text())
    assert report["world_size"] == 2 and report["steps"] == 21  # steps 0..20
    assert len(report["digests"]) == report["steps"] and len(set(report["digests"])) == report["steps"]
    assert report["allreduce_seconds"] > 0 and report["buckets"] >= 1


def test_only_rank_zero_prints_the_table(runs, tiny_bert, tmp_path):
    result = run(["spacy_cls", "train", "configs/en_demo.cfg", "--output", str(tmp_path / "o"), "--workers", "2",
                  *overrides(tiny_bert, steps=2)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Saved pipeline to output directory") == 1
    assert result.stdout.count("Pipeline: ['cls_classifier']") == 1
    assert "2 workers, 3 steps" in result.stdout


@pytest.mark.parametrize("size, world", [(8, 2), (9, 2), (3, 3), (10, 4)])
def test_shards_cover_each_batch_once_with_sizes_one_apart(size, world):
    bounds = [shard_bounds(size, rank, world) for rank in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == size
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    lengths = [end - start for start, end in bounds]
    assert max(lengths) - min(lengths) <= 1


def test_every_rank_runs_the_same_steps_and_small_batches_are_skipped_alike():
    batches = [(0, list(range(5))), (0, [5]), (1, list(range(6, 13)))]
    per_rank = []
    for rank in range(2):
        state = ShardState()
        got = list(shard_batches(iter(batches), rank, 2, state))
        per_rank.append((got, state))
    assert len(per_rank[0][0]) == len(per_rank[1][0]) == 2
    assert sorted(x for got, _ in per_rank for _, batch in got for x in batch) == list(range(5)) + list(range(6, 13))
    assert per_rank[0][1].skipped_batches == per_rank[1][1].skipped_batches == 1
    weights = [state.weight for _, state in per_rank]
    assert sum(weights) == pytest.approx(1.0)


def _worker_pids(parent: int):
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"spacy_cls.distributed.worker" in cmdline:
            ranks = [item.split(b"=", 1)[1] for item in environ if item.startswith(b"RANK=")]
            if ranks:
                found[int(ranks[0])] = int(entry.name)
    return found


def test_a_killed_worker_ends_the_run_with_a_usable_model_last(tiny_bert, tmp_path):
    output = tmp_path / "killed"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    args = [sys.executable, "-m", "spacy_cls", "train", "configs/en_demo.cfg", "--output", str(output),
            "--workers", "2", *overrides(tiny_bert, steps=100000, batch=4)]
    args[args.index("--training.eval_frequency") + 1] = "50"
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (output / "model-best").exists():  # rank 0 evaluated and saved once: mid-run
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.5)
        pids = _worker_pids(process.pid)
        assert set(pids) == {0, 1}
        os.kill(pids[1], signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode != 0
    assert "a worker was lost" in stderr and "model-last" in stderr, stderr[-3000:]
    nlp = spacy.load(output / "model-last")
    assert set(nlp("a good movie").cats) == {"POS", "NEG"}
    report = json.loads((output / "distributed.json").read_text())
    assert report["stopped"] and report["steps"] >= 1


@pytest.mark.slow
def test_ray_train_runs_the_same_loop_on_a_local_cluster(tiny_bert, tmp_path):
    pytest.importorskip("ray.train.torch")
    from spacy_cls.distributed.launch import train_distributed

    from spacy.cli._util import parse_config_overrides

    report = train_distributed(ROOT / "configs/en_demo.cfg", tmp_path / "ray", workers=2, engine="ray",
                               check_sync=True, overrides=parse_config_overrides(overrides(tiny_bert, steps=4)))
    assert report["ray_nodes"] == ["127.0.0.1"]
    assert report["world_size"] == 2 and report["steps"] == 5 and len(set(report["digests"])) == 5
    assert set(spacy.load(tmp_path / "ray" / "model-last")("a good movie").cats) == {"POS", "NEG"}


@pytest.mark.parametrize("config, extra", [
    ("configs/en_demo.cfg", ["--components.cls_classifier.model.freeze", "true"]),
    ("configs/en_ner_cats.cfg", []),  # ner and cls_classifier listening to one shared transformer
], ids=["frozen-encoder", "shared-transformer"])
def test_frozen_encoders_and_a_shared_transformer_stay_in_step(tiny_bert, tmp_path, config, extra):
    name = "--components.transformer.model.name" if "ner_cats" in config else "--components.cls_classifier.model.name"
    result = run(["spacy_cls", "train", config, "--output", str(tmp_path / "o"), "--workers", "2", "--check-sync",
                  name, tiny_bert, "--training.max_steps", "3", "--training.eval_frequency", "3", *extra])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "o" / "distributed.json").read_text())
    assert report["steps"] == 4 and len(set(report["digests"])) == 4
    assert spacy.load(tmp_path / "o" / "model-last")("a good movie").cats
