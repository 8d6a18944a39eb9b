"""The Ray engine on a local two-CPU Ray cluster bound to 127.0.0.1: the same output
as nlp.pipe, one row per id after an actor dies, resume, and the Dataset API."""
import os
import re
import sys
from pathlib import Path

import numpy
import pytest
import spacy

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
from ray import cloudpickle  # noqa: E402

from spacy_cls.scale import apply, apply_ray  # noqa: E402
from spacy_cls.scale.predict import Predictor  # noqa: E402
from spacy_cls.scale.ray_engine import ray_node_addresses, start_local_ray  # noqa: E402

from helpers import read_output, rejected_ids, write_jsonl  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    if ray.is_initialized():
        ray.shutdown()
    start_local_ray(num_cpus=2, object_store_memory=200 * 1024**2,
                    _temp_dir=str(tmp_path_factory.mktemp("ray")), log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    # Test modules are not importable on Ray's workers: send this one's classes by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        assert ray_node_addresses() == ["127.0.0.1"]
        yield
    finally:
        ray.shutdown()


def test_output_matches_nlp_pipe_with_two_workers(ray_cluster, en_pipeline, tmp_path):
    rows = write_jsonl(tmp_path / "in.jsonl", 40, bad_every=10)
    summary = apply(en_pipeline, tmp_path / "in.jsonl", tmp_path / "out", engine="ray", workers=2, vectors=True,
                    batch_size=4, shard_rows=6)
    out = read_output(tmp_path / "out")
    good = [r for r in rows if "text" in r]
    assert sorted(out["id"]) == sorted(r["id"] for r in good)
    assert sorted(rejected_ids(tmp_path / "out")) == sorted(r["id"] for r in rows if "text" not in r)
    assert summary.rows_read == 40 and summary.rows_written == 36 and summary.rows_rejected == 4
    out = out.set_index("id").loc[[r["id"] for r in good]]
    nlp = spacy.load(en_pipeline)
    docs = list(nlp.pipe([r["text"] for r in good]))
    assert list(out["label"]) == [max(d.cats, key=d.cats.get) for d in docs]
    for label in nlp.get_pipe("cls_classifier").labels:
        numpy.testing.assert_allclose(out[f"score_{label}"], [d.cats[label] for d in docs], atol=1e-5)
    numpy.testing.assert_allclose(numpy.stack(out["cls_vector"].to_numpy()), numpy.stack([d._.cls_vector for d in docs]),
                                  atol=1e-5)


class ExitOnce(Predictor):
    """Ends its worker process (as a crash would) at its first batch, once per marker file."""

    def __init__(self, *args, marker: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.marker = Path(marker)

    def predict(self, batch):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return super().predict(batch)
        os.close(fd)
        os._exit(1)


def test_a_worker_that_dies_loses_and_duplicates_no_row(ray_cluster, en_pipeline, tmp_path):
    rows = write_jsonl(tmp_path / "in.jsonl", 30)
    marker = tmp_path / "died"
    dataset = _apply_ray_with(ExitOnce, marker, tmp_path / "in.jsonl", en_pipeline)
    out = dataset.to_pandas()
    assert marker.exists(), "no worker died"
    assert sorted(out["id"]) == sorted(r["id"] for r in rows)
    assert out["reason"].isna().all()


def _apply_ray_with(predictor_cls, marker, path, pipeline):
    # The subclass's own constructor argument travels with the class.
    class WithMarker(predictor_cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, marker=str(marker), **kwargs)

    return apply_ray(str(path), pipeline, workers=2, batch_size=4, shard_rows=5, predictor_cls=WithMarker)


def test_a_rerun_redoes_only_the_missing_parts(ray_cluster, en_pipeline, tmp_path):
    rows = write_jsonl(tmp_path / "in.jsonl", 24, bad_every=5)
    out_dir = tmp_path / "out"
    apply(en_pipeline, tmp_path / "in.jsonl", out_dir, engine="ray", workers=2, batch_size=4, shard_rows=4)
    parts = sorted(out_dir.glob("part-*.parquet"))
    lost = parts[1::2]
    for part in lost:  # as if the driver had been killed before these were written
        part.unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in parts[0::2]}
    summary = apply(en_pipeline, tmp_path / "in.jsonl", out_dir, engine="ray", workers=2, batch_size=4, shard_rows=4)
    assert all((out_dir / name).stat().st_mtime_ns == t for name, t in kept.items())
    assert summary.rows_this_run < 24 and summary.rows_read == 24
    ids = list(read_output(out_dir)["id"]) + rejected_ids(out_dir)
    assert sorted(ids) == sorted(r["id"] for r in rows)


def test_apply_ray_takes_a_dataset_with_ids(ray_cluster, en_pipeline):
    dataset = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(["good film", "awful", None])])
    out = apply_ray(dataset, en_pipeline, workers=1).to_pandas().sort_values("id")
    assert list(out["id"]) == ["0", "1", "2"]
    assert out["reason"].isna().tolist() == [True, True, False] and out["reason"].tolist()[2] == "'text' is null"
    with pytest.raises(ValueError, match="no 'id' column"):
        apply_ray(ray.data.from_items([{"text": "x"}]), en_pipeline)


def test_command_runs_on_an_existing_cluster_given_by_address(ray_cluster, en_pipeline, tmp_path):
    import subprocess
    import sys

    rows = write_jsonl(tmp_path / "in.jsonl", 12, with_ids=False)
    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:")
    command = [sys.executable, "-m", "spacy_cls", "apply", str(en_pipeline), str(tmp_path / "in.jsonl"),
               str(tmp_path / "out"), "--engine", "ray", "--address", address, "--workers", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"rows read +12\n", result.stdout) and "(ray, 1 worker)" in result.stdout
    assert sorted(read_output(tmp_path / "out")["id"]) == sorted(f"in.jsonl:{i + 1}" for i in range(len(rows)))


class CountsRows(Predictor):
    """Notes the rows of each call in a file."""

    def __init__(self, *args, marker: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.marker = marker

    def predict(self, batch):
        with open(self.marker, "a", encoding="utf8") as f:
            f.write(f"{batch.num_rows}\n")
        return super().predict(batch)


def test_an_actor_call_holds_several_model_batches(ray_cluster, en_pipeline, tmp_path):
    from spacy_cls.scale import inputs, output
    from spacy_cls.scale.ray_engine import write_parts

    rows = write_jsonl(tmp_path / "in.jsonl", 48, bad_every=7)
    marker = tmp_path / "calls"

    class Counting(CountsRows):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, marker=str(marker), **kwargs)

    shards = inputs.plan_shards(inputs.describe_files(tmp_path / "in.jsonl", "text"), 8)
    out_dir = tmp_path / "out"
    output.prepare(out_dir, {"run": 1}, overwrite=True)
    read = sum(write_parts(shards, out_dir, en_pipeline, text_col="text", id_col="id", vectors=False, batch_size=2,
                           workers=1, gpus_per_worker=0, component=None, shard_rows=8, predictor_cls=Counting,
                           rows_per_call=12))
    calls = [int(n) for n in marker.read_text().split()]
    assert read == sum(calls) == 48
    assert max(calls) == 12
    assert sorted(read_output(out_dir)["id"]) == sorted(r["id"] for r in rows if "text" in r)

