"""The CPUs a process may use: affinity cut to the cgroup quota, read from fake
cgroup trees (v2 and v1), and torch's threads capped to them once."""
import pytest
import torch

from spacy_cls import cpus


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_quota_is_read_in_cpus(tmp_path):
    write(tmp_path / "proc", "0::/job/worker\n")
    write(tmp_path / "cg" / "job" / "worker" / "cpu.max", "150000 100000\n")
    assert cpus.cgroup_cpu_limit(tmp_path / "proc", tmp_path / "cg") == pytest.approx(1.5)


def test_v2_no_limit(tmp_path):
    write(tmp_path / "proc", "0::/job\n")
    write(tmp_path / "cg" / "job" / "cpu.max", "max 100000\n")
    assert cpus.cgroup_cpu_limit(tmp_path / "proc", tmp_path / "cg") is None


def test_v2_a_parents_smaller_quota_applies(tmp_path):
    write(tmp_path / "proc", "0::/a/b\n")
    write(tmp_path / "cg" / "a" / "cpu.max", "100000 100000\n")
    write(tmp_path / "cg" / "a" / "b" / "cpu.max", "400000 100000\n")
    assert cpus.cgroup_cpu_limit(tmp_path / "proc", tmp_path / "cg") == pytest.approx(1.0)


def test_v2_container_view_falls_back_to_the_mount(tmp_path):
    # the path names the host's cgroup; inside the container the mount is the cgroup
    write(tmp_path / "proc", "0::/kubepods/pod1/abc\n")
    write(tmp_path / "cg" / "cpu.max", "300000 100000\n")
    assert cpus.cgroup_cpu_limit(tmp_path / "proc", tmp_path / "cg") == pytest.approx(3.0)


def test_v1_quota_and_no_limit(tmp_path):
    write(tmp_path / "proc", "12:memory:/x\n4:cpu,cpuacct:/x\n")
    folder = tmp_path / "cg" / "cpu,cpuacct" / "x"
    write(folder / "cpu.cfs_quota_us", "200000\n")
    write(folder / "cpu.cfs_period_us", "100000\n")
    assert cpus.cgroup_cpu_limit(tmp_path / "proc", tmp_path / "cg") == pytest.approx(2.0)
    write(folder / "cpu.cfs_quota_us", "-1\n")
    assert cpus.cgroup_cpu_limit(tmp_path / "proc", tmp_path / "cg") is None


def test_no_cgroup_files(tmp_path):
    assert cpus.cgroup_cpu_limit(tmp_path / "missing", tmp_path / "cg") is None
    write(tmp_path / "proc", "garbage\n0::/a\n")
    assert cpus.cgroup_cpu_limit(tmp_path / "proc", tmp_path / "cg") is None


@pytest.mark.parametrize("affinity,limit,expected", [(8, 1.5, 1), (8, 0.2, 1), (8, None, 8), (2, 16.0, 2), (8, 3.0, 3)])
def test_usable_cpus_is_affinity_cut_to_the_quota(monkeypatch, affinity, limit, expected):
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: affinity)
    monkeypatch.setattr(cpus, "cgroup_cpu_limit", lambda: limit)
    assert cpus.usable_cpus() == expected


def test_usable_cpus_on_this_machine_is_within_the_affinity():
    assert 1 <= cpus.usable_cpus() <= cpus.affinity_cpus()


@pytest.mark.parametrize("value,expected", [("3", 3), ("4,2", 4), ("0", None), ("x", None), ("", None)])
def test_env_threads(monkeypatch, value, expected):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert cpus.env_threads() == expected


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    cpus.reset_cap()
    yield
    torch.set_num_threads(before)
    cpus.reset_cap()


def test_cap_lowers_torch_threads_to_the_usable_cpus_once(monkeypatch, torch_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpus, "usable_cpus", lambda: 1)
    torch.set_num_threads(2)
    assert cpus.cap_torch_threads() == 1
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)  # the user's later choice stands
    assert cpus.cap_torch_threads() == 2


def test_cap_leaves_an_explicit_omp_setting_and_lower_counts(monkeypatch, torch_threads):
    monkeypatch.setattr(cpus, "usable_cpus", lambda: 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    assert cpus.cap_torch_threads() == 2
    cpus.reset_cap()
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(cpus, "usable_cpus", lambda: 4)
    assert cpus.cap_torch_threads() == 2
