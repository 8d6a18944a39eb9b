"""Start the ranks: `torchrun` (torch.distributed.run, on this machine) or Ray Train's
`TorchTrainer` (a local Ray cluster on 127.0.0.1, or one given by address). Both only
start processes and set up the process group; each process runs `worker.run_worker`."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from ..cpus import usable_cpus

ENGINES = ("torchrun", "ray")
LOCALHOST = "127.0.0.1"


class DistributedError(RuntimeError):
    """A distributed run that did not finish; the message says what happened."""


def free_port(host: str = LOCALHOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def threads_per_worker(workers: int) -> int:
    """The CPUs this process may use (affinity and cgroup quota, not the machine's
    count), shared out."""
    return max(1, usable_cpus() // max(1, workers))


def train_distributed(
    config: str | Path,
    output: Optional[str | Path],
    *,
    workers: int = 2,
    engine: str = "torchrun",
    overrides: Optional[Dict[str, Any]] = None,
    use_gpu: bool = False,
    address: Optional[str] = None,
    check_sync: bool = False,
    timeout: Optional[float] = None,
) -> Dict[str, Any]:
    """Train `config` with spaCy's loop in `workers` processes (data parallel); rank 0
    writes `output`/model-best, model-last and distributed.json. Returns rank 0's report
    (steps, all-reduce time). Raises DistributedError when a worker fails."""
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: choose one of {', '.join(ENGINES)}.")
    if workers < 1:
        raise ValueError(f"workers={workers}: give 1 or more.")
    if not Path(config).is_file():
        raise ValueError(f"{config} is not a config file.")
    overrides = dict(overrides or {})
    if engine == "torchrun":
        if address is not None:
            raise ValueError("--address is for --engine ray; torchrun starts its workers on this machine.")
        return _torchrun(Path(config), output, workers, overrides, use_gpu, check_sync, timeout)
    return _ray(Path(config), output, workers, overrides, use_gpu, address, check_sync)


def worker_command(config: Path, output: Optional[str | Path], overrides: Dict[str, Any], use_gpu: bool,
                   check_sync: bool) -> Sequence[str]:
    args = ["-m", "spacy_cls.distributed.worker", str(config), str(output or ""), json.dumps(overrides)]
    return args + (["--gpu"] if use_gpu else []) + (["--check-sync"] if check_sync else [])


def _torchrun(config: Path, output, workers: int, overrides: Dict[str, Any], use_gpu: bool, check_sync: bool,
              timeout: Optional[float]) -> Dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads_per_worker(workers)))
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(workers),
               "--master-addr", LOCALHOST, "--master-port", str(free_port()), "--max-restarts", "0",
               *worker_command(config, output, overrides, use_gpu, check_sync)]
    process = subprocess.run(command, env=env, timeout=timeout)
    return _finish(process.returncode, output)


def _finish(returncode: int, output) -> Dict[str, Any]:
    report_path = Path(output) / "distributed.json" if output else None
    report = json.loads(report_path.read_text(encoding="utf8")) if report_path and report_path.exists() else {}
    if returncode != 0:
        last = Path(output) / "model-last" if output else None
        saved = f" {last} holds the weights after the last completed step." if last and last.exists() else ""
        raise DistributedError(f"The distributed run failed (exit status {returncode}).{saved}")
    return report


def _ray(config: Path, output, workers: int, overrides: Dict[str, Any], use_gpu: bool, address: Optional[str],
         check_sync: bool) -> Dict[str, Any]:
    try:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError as e:
        raise ImportError("--engine ray needs Ray Train: pip install 'spacy-cls[ray]' (ray[train]).") from e
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            from ..scale.ray_engine import start_local_ray

            start_local_ray(num_cpus=max(workers, usable_cpus()))
    output_path = str(Path(output).resolve()) if output else None

    def loop_per_worker(settings):
        from spacy_cls.distributed.worker import run_worker

        # Relative paths in the config mean what they mean where the command was run
        # (on other nodes, that folder must exist: the data on storage every node sees).
        if os.path.isdir(settings["cwd"]):
            os.chdir(settings["cwd"])

        run_worker(settings["config"], settings["output"], settings["overrides"], use_gpu=settings["use_gpu"],
                   check_sync=settings["check_sync"])

    trainer = TorchTrainer(
        loop_per_worker,
        train_loop_config={"config": str(config.resolve()), "output": output_path, "overrides": overrides,
                           "cwd": os.getcwd(),
                           "use_gpu": use_gpu, "check_sync": check_sync},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": threads_per_worker(workers)}),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name="spacy_cls_train", storage_path=str(Path(output_path or ".").resolve() / "ray_train")
                             if output_path else None),
    )
    nodes = sorted({node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")})
    try:
        trainer.fit()
        returncode = 0
    except Exception as err:  # Ray wraps the worker's error in its own types
        print(f"Ray Train: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", file=sys.stderr)
        returncode = 1
    finally:
        if started:
            ray.shutdown()
    report = _finish(returncode, output)
    report["ray_nodes"] = nodes
    return report
