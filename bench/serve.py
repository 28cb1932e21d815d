"""Throughput and latency of `nngraph serve`: dynamic batching against batch size 1, 1 to 64 concurrent clients.

Models (exported once at the start, seeded initial weights):

* BERT-shaped: specs/bert_encoder.yaml with the real per-layer shape (d 768, 12 heads, FFN 3072) and
  ``--layers`` layers (default 2), vocabulary ``--vocab`` (default 1024), max_len 512; requests of one row of
  each of ``--bert-seqs`` tokens (default 8 and 32: short queries, where a batch-1 run mostly reads weights
  and batching pays most, and longer ones, where ORT on 2 cores is compute-bound), lengths = seq;
* gpt_char: specs/gpt_char.yaml as shipped (d 64, 4 heads, 2 layers, 67 characters, ctx 64); requests of
  one row of ``--seq`` ids (default 32).

Two servers per model run side by side, as users start them (``nngraph serve FILE``, one process each, ORT's
default threads): ``dynamic`` (``--max-batch B --batch-window W --max-wait M``, B = 64) and ``batch1``
(``--max-batch 1``: every request its own model run). For every client count (1, 4, 16, 64) the variants
take turns, ``--seconds`` each: that many clients send requests back to back over keep-alive connections
(a minimal asyncio HTTP/1.1 client in this process, bodies encoded once: the load generator's own CPU cost
stays small beside the server's) with ``.npz`` bodies both ways. Measured per cell: answers per second, p50
and p99 latency (client side), non-200 answers, and from the server's /metrics before and after the cell:
the batch-size histogram (rows per model run) and the mean model-run time; and the server process's CPU
time per answer (/proc: less sensitive to the machine's load than the throughput). The 1-minute load average is
recorded per cell: on a shared machine trust the ratios, not the absolute numbers. Last, the model alone in
this process (no HTTP), runs of 1 row and of 16 interleaved: the time per row 16 rows save is the ceiling of
what batching can gain here (on CPU a long sequence is compute-bound and batching saves little); and the
speed-up in CPU per answer, which a busy machine disturbs far less (:func:`caps`), and what the event loop's
own CPU per answer, which no batch shares, leaves possible. And the roofline (:func:`roofline`): each
request's FLOPs (``nngraph cost``) times batch1's throughput against the machine's matrix-product peak (one
ORT MatMul of BERT's FFN shape, :func:`gemm_peak`): no batching runs a model faster than every FLOP at that
peak. Speed-ups are the median of the rounds' paired ratios.

Goal (issue 19): dynamic >= 3x the throughput of batch1 at 16 clients; p99 <= 2 x max wait + one batch's
compute. Each cell prints that bound and the one the schedule allows with C clients and max batch B
(:func:`bounds`: up to ceil(C / B) batches queue ahead of a request, after the run in progress). With C
closed-loop clients the mean latency is C / throughput (Little's law), so the bound also sets a throughput
the server must reach before any p99 can meet it (:func:`littles_law`, printed beside the model's ceiling).
Each answer's ``Server-Timing`` header gives its wait for its batch and its batch's run, so each cell also
prints the p99 of the latency beyond a request's own run (the bound read per request: at most 2 x max wait)
and the server-side p99 (queued + run).

Then an open loop (:func:`open_loop`), as production traffic arrives: Poisson arrivals, seeded, at fractions
``--offered`` (default 0.5 and 0.8) of the dynamic server's best closed-loop throughput, the same arrival
times for every variant, latency counted from each request's due time. There the p99 bound is read at a load
the server can carry; a rate above batch1's capacity shows what batching buys: the same traffic carried
with a bounded p99 instead of a queue that grows for as long as the traffic lasts. The generator's garbage
collector is off during a cell (a collection pauses it, and the pause was charged to the server: up to
90 ms at p99), and each line gives how late it sent its requests. The summary sets beside each dynamic
open-loop p99 that of an ideal one-instance server under the same arrivals (:func:`ideal`: the model's
fastest run times, no HTTP): where even that exceeds the bound, no server of one instance meets it here.

Usage:  .venv/bin/python bench/serve.py [--clients 1,4,16,64] [--seconds 2] [--rounds 3] [--only bert|gpt_char]
                                        [--seq 32] [--layers 2] [--max-batch 64] [--window-ms 0] [--max-wait-ms 10]
                                        [--threads N] [--dynamic-threads N] [--instances N] [--offered 0.5,0.8]
Quick look (about a minute): --clients 16 --seconds 1 --rounds 2.
Writes bench/results/serve.json and prints a table. The load generator is bench/_http_load.py; the ceilings
and bounds the numbers are read against (ceiling, caps, bounds, littles_law, ideal) are bench/_serve_bounds.py.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from nngraph.compilers.serve.process import ServerProcess

from _http_load import arrivals, closed_load, open_load  # noqa: E402 - bench/ is on sys.path as the script's folder
from _serve_bounds import (bounds, caps, ceiling, flops_per_request, gemm_peak, ideal, issue_bound,  # noqa: E402
                           littles_law, percentiles, roofline)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def export(folder: Path, args: argparse.Namespace) -> dict[str, tuple[Path, bytes, int]]:
    """{model: (ONNX file, one request body as .npz, the request's forward FLOPs)}."""
    from nngraph.compilers.onnx.export import export_spec

    rng = np.random.default_rng(0)
    out = {}
    if args.only in (None, "bert"):
        sets = [f"layers={args.layers}", f"vocab={args.vocab}", "max_len=512"]
        export_spec(ROOT / "specs/bert_encoder.yaml", folder / "bert.onnx", sets, verify=False)
        for seq in args.bert_seqs:
            feeds = {"tokens": rng.integers(1, args.vocab, (1, seq)), "token_types": np.zeros((1, seq), np.int64),
                     "lengths": np.array([seq])}
            flops = flops_per_request(ROOT / "specs/bert_encoder.yaml", sets, seq)
            out[f"bert@{seq}"] = (folder / "bert.onnx", _npz(feeds), flops)
    if args.only in (None, "gpt_char"):
        export_spec(ROOT / "specs/gpt_char.yaml", folder / "gpt_char.onnx", [], verify=False)
        body = _npz({"tokens": rng.integers(0, 67, (1, args.seq))})
        flops = flops_per_request(ROOT / "specs/gpt_char.yaml", [], args.seq)
        out[f"gpt_char@{args.seq}"] = (folder / "gpt_char.onnx", body, flops)
    return out


def _npz(feeds: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **feeds)
    return buf.getvalue()


def _metrics(server: ServerProcess) -> dict[str, float]:
    """The batch histograms' samples of the server's /metrics ({sample name + labels: value})."""
    from prometheus_client.parser import text_string_to_metric_families

    text = server.metrics()
    return {s.name + json.dumps(s.labels, sort_keys=True): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name.startswith(("nngraph_batch_rows", "nngraph_batch_seconds"))}


def _batches(before: dict[str, float], after: dict[str, float]) -> tuple[dict[str, int], float, float]:
    """(rows per run -> runs in the cell, mean seconds per run, runs) from two /metrics snapshots."""
    delta = {k: after[k] - before.get(k, 0.0) for k in after}
    cumulative = sorted(((float(json.loads(k[len("nngraph_batch_rows_bucket"):])["le"]), v)
                         for k, v in delta.items() if k.startswith("nngraph_batch_rows_bucket")))
    histogram, below = {}, 0.0
    for le, count in cumulative:
        if count - below:
            histogram["inf" if le == float("inf") else f"<={int(le)}"] = int(count - below)
        below = count
    runs = delta.get("nngraph_batch_seconds_count{}", 0.0)
    return histogram, delta.get("nngraph_batch_seconds_sum{}", 0.0) / runs if runs else 0.0, runs


def cell(server: ServerProcess, load: Any) -> dict[str, Any]:
    """One variant under one load (``load()``: the coroutine of :func:`_http_load.closed_load` or
    :func:`_http_load.open_load` made for this server): the raw latencies and the server's batch counts and
    CPU time."""
    pid = server.proc.pid
    before, cpu, loop, client = _metrics(server), _cpu(f"{pid}"), _cpu(f"{pid}/task/{pid}"), time.process_time()
    start_load = os.getloadavg()[0]
    gc.collect()
    gc.disable()  # a collection in this process would pause the load generator and be charged to the server
    try:
        done = asyncio.run(load())
    finally:
        gc.enable()
    return {"latencies": done.latencies, "served": done.served, "late": done.late, "failures": len(done.failures),
            "seconds": done.wall, "load": start_load,
            "cpu": {"server": _cpu(f"{pid}") - cpu, "loop": _cpu(f"{pid}/task/{pid}") - loop,
                    "client": time.process_time() - client},
            "metrics": (before, _metrics(server))}


def _cpu(task: str) -> float:
    """CPU seconds (user + system) of /proc/TASK so far: a process (all its threads) or one thread, here the
    server and its main thread, the event loop (Linux; nan elsewhere). CPU per answer varies far less with
    the machine's load than answers per second."""
    try:
        fields = Path(f"/proc/{task}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def merge(clients: int, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """A variant's rounds at one client count: median throughput over the rounds, pooled latency quantiles,
    the summed batch histogram and the mean model-run time; from each answer's Server-Timing, the p99 of its
    time beyond its own batch's run (``p99_beyond_run_ms``: the wait for a batch, the loop's queue, HTTP) and
    of its time in the server's batcher (``server_p99_ms``: queued + run)."""
    latencies = [x for r in rounds for x in r["latencies"]]
    served = [x for r in rounds for x in r["served"]]
    q = percentiles(latencies)
    histogram: dict[str, int] = {}
    runs = run_s = 0.0
    for r in rounds:
        hist, mean, count = _batches(*r["metrics"])
        for k, v in hist.items():
            histogram[k] = histogram.get(k, 0) + v
        runs, run_s = runs + count, run_s + mean * count
    histogram = dict(sorted(histogram.items(), key=lambda kv: float(kv[0].lstrip("<="))))
    return {"clients": clients, "answers": len(latencies), "failures": sum(r["failures"] for r in rounds),
            "rounds_rps": [len(r["latencies"]) / r["seconds"] for r in rounds],
            "throughput_rps": statistics.median(len(r["latencies"]) / r["seconds"] for r in rounds),
            "p50_ms": 1000 * q[49], "p99_ms": 1000 * q[98], "batch_rows_histogram": histogram,
            "p99_beyond_run_ms": 1000 * percentiles([t - run for t, (_, run) in zip(latencies, served)])[98],
            "server_p99_ms": 1000 * percentiles([queued + run for queued, run in served])[98],
            "client_late_p99_ms": 1000 * percentiles([x for r in rounds for x in r["late"]])[98],
            "mean_run_ms": 1000 * run_s / runs if runs else 0.0,
            **{f"{k}_cpu_ms_per_answer": 1000 * sum(r["cpu"][k] for r in rounds) / max(len(latencies), 1)
               for k in ("server", "loop", "client")},
            "load_avg_1m": statistics.mean(r["load"] for r in rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog="quick look (about a minute): --clients 16 --seconds 1 --rounds 2")
    parser.add_argument("--clients", default="1,4,16,64")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["bert", "gpt_char"])
    parser.add_argument("--seq", type=int, default=32, help="gpt_char's request length (at most 64)")
    parser.add_argument("--bert-seqs", default="8,32", help="BERT request lengths, each its own row of the table")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--max-batch", type=int, default=64, help="the dynamic server's max batch (rows)")
    parser.add_argument("--window-ms", type=float, default=0.0)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--threads", type=int, help="ORT intra-op threads of both servers (default: ORT's)")
    parser.add_argument("--dynamic-threads", type=int,
                        help="also run the dynamic server with this many ORT threads (variant dyn_tN, same turns)")
    parser.add_argument("--instances", type=int, default=1,
                        help="also run the dynamic server with this many model instances (variant dyn_iN, same turns)")
    parser.add_argument("--offered", default="0.5,0.8",
                        help="open-loop rates, fractions of the dynamic server's closed-loop throughput ('' for none)")
    args = parser.parse_args()
    args.offered = [float(f) for f in args.offered.split(",") if f]
    clients = [int(c) for c in args.clients.split(",")]
    args.bert_seqs = [int(s) for s in args.bert_seqs.split(",")]
    results: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                           "platform": platform.platform()},
                               "settings": vars(args), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for model, (path, body, flops) in export(Path(tmp), args).items():
            variants = {"batch1": ["--max-batch", "1"],
                        "dynamic": ["--max-batch", str(args.max_batch), "--batch-window", str(args.window_ms),
                                    "--max-wait", str(args.max_wait_ms)]}
            threads = {name: args.threads for name in variants}
            if args.dynamic_threads:  # the same dynamic server with fewer ORT threads: a core left to the event loop
                name = f"dyn_t{args.dynamic_threads}"
                variants[name], threads[name] = variants["dynamic"], args.dynamic_threads
            if args.instances > 1:  # the same dynamic server with model instances, each its own batches
                name = f"dyn_i{args.instances}"
                variants[name], threads[name] = [*variants["dynamic"], "--instances", str(args.instances)], args.threads
            servers = {name: _server(path, flags, threads[name]) for name, flags in variants.items()}
            try:
                rows = closed_loop(model, servers, body, clients, args)
                results["models"][model] = rows
                if args.offered:
                    capacity = max(r["throughput_rps"] for r in rows if r["variant"] == "dynamic")
                    results.setdefault("open_loop", {})[model] = open_loop(model, servers, body, capacity, args)
            finally:
                for server in servers.values():
                    server.stop()
            results.setdefault("ceiling", {})[model] = ceiling(path, body, args.threads)
            results.setdefault("flops_per_request", {})[model] = flops
    peak = gemm_peak(args.threads)
    for model, rows in results["models"].items():
        one = [r for r in rows if r["variant"] == "batch1"]
        base = next((r for r in one if r["clients"] == 16), max(one, key=lambda r: r["throughput_rps"]))
        results.setdefault("roofline", {})[model] = {"clients": base["clients"],
                                                      **roofline(results["flops_per_request"][model],
                                                                 base["throughput_rps"], peak)}
    _summary(results, args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS / 'serve.json'}")


def closed_loop(model: str, servers: dict[str, ServerProcess], body: bytes, clients: list[int],
                args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every variant at every client count, the variants taking turns in each of ``args.rounds`` rounds."""
    rows = []
    for n in clients:
        done = _take_turns(servers, [lambda port: closed_load(port, body, n, args.seconds)] * args.rounds)
        for name in servers:
            rows.append({"variant": name, **merge(n, done[name])})
            rows[-1].update(bounds(rows[-1], _max_batch(name, args), args))
            print(_line(model, rows[-1]), flush=True)
    return rows


def open_loop(model: str, servers: dict[str, ServerProcess], body: bytes, capacity: float,
              args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every variant under Poisson arrivals at each fraction ``args.offered`` of ``capacity`` (the dynamic
    server's best closed-loop throughput in this run), the same seeded arrival times for every variant, the
    variants taking turns. A server that cannot carry the rate falls behind: its requests queue (at the
    client once 64 connections are busy) and their latencies, counted from each request's due time, grow
    with the length of the cell -- read its p99 as "not carried", and ``carried`` = answers per second over
    the offered rate."""
    rows = []
    for fraction in args.offered:
        rate = fraction * capacity
        loads = [lambda port, due=arrivals(rate, args.seconds, seed=turn): open_load(port, body, due)
                 for turn in range(args.rounds)]
        done = _take_turns(servers, loads)
        for name in servers:
            row = {"variant": name, "offered": fraction, "rate_rps": rate, **merge(0, done[name])}
            row["carried"] = row["throughput_rps"] / rate
            row["p99_bound_ms"] = issue_bound(row["mean_run_ms"], _max_batch(name, args), args)
            row["beyond_run_bound_ms"] = issue_bound(0.0, _max_batch(name, args), args)
            rows.append(row)
            print(_open_line(model, row), flush=True)
    return rows


def _take_turns(servers: dict[str, ServerProcess], loads: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """One :func:`cell` per server and round, the servers taking turns within each round (a busy machine's drift
    hits every variant alike): ``loads[i](port)`` is round i's load coroutine."""
    done: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    for load in loads:
        for name, server in servers.items():
            done[name].append(cell(server, lambda port=server.port: load(port)))
    return done


def _max_batch(variant: str, args: argparse.Namespace) -> int:
    return 1 if variant == "batch1" else args.max_batch


def _server(path: Path, flags: list[str], threads: int | None) -> ServerProcess:
    return ServerProcess(path, *flags, threads=threads)  # default: ORT's threads, as a user starts it


def _line(model: str, r: dict[str, Any]) -> str:
    return (f"{model:9s} {r['variant']:8s} {r['clients']:3d} clients  {r['throughput_rps']:8.1f} req/s  "
            f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms (bound {r['p99_bound_ms']:7.2f}, "
            f"schedule {r['p99_schedule_bound_ms']:7.2f})  " + _beyond(r) +
            f"run {r['mean_run_ms']:6.2f} ms  cpu/answer: server {r['server_cpu_ms_per_answer']:5.2f} "
            f"(loop {r['loop_cpu_ms_per_answer']:5.2f}) client {r['client_cpu_ms_per_answer']:5.2f} ms  " + _tail(r))


def _tail(r: dict[str, Any]) -> str:
    """The end of a cell's line: failures, load and the batch-size histogram."""
    hist = " ".join(f"{k}:{v}" for k, v in r["batch_rows_histogram"].items())
    return f"fail {r['failures']}  load {r['load_avg_1m']:.2f}  batches {hist}"


def _open_line(model: str, r: dict[str, Any]) -> str:
    return (f"{model:9s} {r['variant']:8s} open loop {r['offered']:.2f} x capacity = {r['rate_rps']:7.1f} req/s: "
            f"carried {r['carried']:.2f}  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:8.2f} ms "
            f"(bound {r['p99_bound_ms']:7.2f})  " + _beyond(r) + f"sent late p99 {r['client_late_p99_ms']:6.2f} ms  "
            f"run {r['mean_run_ms']:6.2f} ms  " + _tail(r))


def _beyond(r: dict[str, Any]) -> str:
    """The per-request reading of the p99 bound: each answer's latency less its own batch's run (Server-Timing)."""
    return (f"beyond own run p99 {r['p99_beyond_run_ms']:7.2f} ms (bound {r['beyond_run_bound_ms']:5.1f}; "
            f"server p99 {r['server_p99_ms']:7.2f})  ")


def _goal(model: str, results: dict[str, Any], clients: int = 16) -> None:
    """Issue 19's goal at ``clients``: the speed-up (goal 3x) beside what batching can gain here -- the model
    alone (16 rows vs 1, :func:`ceiling`), the roofline (a hard bound, :func:`roofline`) and batch1's CPU per
    answer over this server's (the speed-up with every core busy, :func:`caps`); the p99 against
    2 x max wait + the mean run, and read per request (its latency beyond its own batch's run <= 2 x max wait)."""
    rows = {r["variant"]: r for r in results["models"][model] if r["clients"] == clients}
    if "dynamic" not in rows:
        return
    r, up = rows["dynamic"], results["speedup"][model][clients]
    cpu = next(c for c in results["caps"][model]["dynamic"] if c["clients"] == clients)
    limits = {"the model alone": results["ceiling"][model]["gain"],
              "the roofline": results["roofline"][model]["roofline_x"], "CPU per answer": cpu["cpu_x"]}
    verdict = {"goal": 3.0, "met": up >= 3.0, "batching_gains": limits, "p99_holds": r["p99_ms"] <= r["p99_bound_ms"],
               "p99_per_request_holds": r["p99_beyond_run_ms"] <= r["beyond_run_bound_ms"]}
    results.setdefault("goal", {})[model] = verdict
    met = "met" if verdict["met"] else "not met"
    gains = ", ".join(f"{k} {v:.2f}x" for k, v in limits.items())
    print(f"  {model:11s} goal     {clients} clients: {up:.2f}x batch1 (goal 3x: {met}; batching gains here: {gains}); "
          f"p99 {r['p99_ms']:.1f} ms "
          f"(2 x max wait + mean run {r['p99_bound_ms']:.1f}: {'holds' if verdict['p99_holds'] else 'misses'}; "
          f"per request beyond its own run {r['p99_beyond_run_ms']:.1f} <= {r['beyond_run_bound_ms']:.0f}: "
          f"{'holds' if verdict['p99_per_request_holds'] else 'misses'})")


def _summary(results: dict[str, Any], args: argparse.Namespace) -> None:
    """The speed-up of dynamic batching over batch1 per model and client count: the median over the rounds of
    each round's ratio (the variants take turns within a round, so a busy spell hits both), with its range;
    then the caps (:func:`caps`) and the model-alone ceiling (:func:`ceiling`)."""
    print("\nspeed-up (dynamic / batch1 throughput, median of the rounds' ratios [range]):")
    for model, rows in results["models"].items():
        by = {(r["variant"], r["clients"]): r for r in rows}
        top = results["ceiling"][model]
        for variant in sorted({v for v, _ in by} - {"batch1"}):
            ratios = {n: [a / b for a, b in zip(by[(variant, n)]["rounds_rps"], by[("batch1", n)]["rounds_rps"])]
                      for (v, n) in by if v == variant}
            ups = {n: statistics.median(x) for n, x in ratios.items()}
            results.setdefault("speedup" if variant == "dynamic" else f"speedup_{variant}", {})[model] = ups
            print(f"  {model:11s} {variant:8s} " + "  ".join(f"{n} clients {ups[n]:.2f}x [{min(x):.2f}-{max(x):.2f}]"
                                                             for n, x in ratios.items()))
            limits = [caps(rows, variant, n, top["cpu_ms_per_row_at_16"]) for (v, n) in by if v == variant]
            results.setdefault("caps", {}).setdefault(model, {})[variant] = limits
            print(f"  {model:11s} {variant:8s} CPU per answer, batch1 / this: " + "  ".join(
                f"{c['clients']} clients {c['cpu_x']:.2f}x (event loop alone {c['loop_cap_x']:.2f}x, "
                f"+ the model at 16 rows {c['ceiling_x']:.2f}x)"
                for c in limits))
        print(f"  {model:11s} ceiling  the model alone, 16 rows vs 1: {top['gain']:.2f}x less time per row "
              f"(fastest runs; medians {top['median_gain']:.2f}x; CPU time {top['cpu_gain']:.2f}x)")
        roof = results["roofline"][model]
        print(f"  {model:11s} roofline {roof['gflop_per_request'] * 1000:.1f} MFLOP per request: batch1 at "
              f"{roof['clients']} clients ran {roof['batch1_gflops']:.1f} GFLOP/s, the machine's matrix-product peak "
              f"is {roof['peak_gflops']:.1f}: no batching gains more than {roof['roofline_x']:.2f}x")
        for row in results.get("open_loop", {}).get(model, []):
            if row["variant"] == "dynamic":
                row["ideal"] = best = ideal(top, row["rate_rps"], args)
                print(f"  {model:11s} open loop {row['offered']:.2f} x capacity: p99 {row['p99_ms']:.1f} ms (bound "
                      f"{row['p99_bound_ms']:.1f}); an ideal server (no HTTP, the model's fastest runs): p99 "
                      f"{best['p99_ms']:.1f} ms (bound {best['bound_ms']:.1f})")
        _goal(model, results)
        needs = littles_law(by, top)
        results.setdefault("littles_law", {})[model] = needs
        print(f"  {model:11s} p99 bound, closed loop: " + "  ".join(
            f"{c['clients']} clients: mean <= {c['bound_ms']:.1f} ms needs >= {c['needs_rps']:.0f} req/s = "
            f"{c['needs_x']:.2f}x batch1 (model ceiling {top['gain']:.2f}x)" for c in needs))


if __name__ == "__main__":
    main()
