"""What the numbers of bench/serve.py allow: the model alone (:func:`ceiling`), the CPU per answer
(:func:`caps`), issue 19's p99 bound (:func:`issue_bound`, :func:`bounds`), what the bound asks of the
throughput (:func:`littles_law`), an ideal server under the open loop's arrivals (:func:`ideal`), and the
roofline: a request's FLOPs (:func:`flops_per_request`) against the machine's matrix-product peak
(:func:`gemm_peak`, :func:`roofline`)."""

from __future__ import annotations

import argparse
import io
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _http_load import arrivals  # noqa: E402 - bench/ is on sys.path as the script's folder


def percentiles(values: list[float]) -> list[float]:
    """The 99 percentiles of ``values`` (nan when there are fewer than 2)."""
    return statistics.quantiles(values, n=100) if len(values) >= 2 else [float("nan")] * 99


def ceiling(path: Path, body: bytes, threads: int | None, rows: int = 16, repeats: int = 15) -> dict[str, float]:
    """The model alone, in this process (no HTTP): ms per row of one run of 1 row and of ``rows`` rows, runs of
    the two sizes interleaved ``repeats`` times (a busy spell hits both), fastest and median; the ratio of the
    fastest ms per row (``gain``) is the most any batching can gain on this machine (ORT as the servers run
    it: no spinning). ``cpu_gain``: the same ratio in CPU time (this process, all ORT's threads), which a
    busy machine disturbs far less: the gain when the cores are kept busy either way."""
    from nngraph.compilers.onnx.runner import open_model

    session = open_model(path, threads=threads, spin=False)
    one = dict(np.load(io.BytesIO(body)))
    feeds = {n: {k: np.repeat(v, n, axis=0) for k, v in one.items()} for n in (1, rows)}
    times: dict[int, list[float]] = {n: [] for n in feeds}
    cpu = dict.fromkeys(feeds, 0.0)
    for n in feeds:
        session.run(None, feeds[n])
    for _ in range(repeats):
        for n in feeds:
            start, start_cpu = time.perf_counter(), time.process_time()
            session.run(None, feeds[n])
            times[n].append(1000 * (time.perf_counter() - start) / n)
            cpu[n] += 1000 * (time.process_time() - start_cpu) / n / repeats
    out = {}
    for n, ms in times.items():
        # the fastest run: on a loaded machine a 1-row run fits between preemptions and a 16-row one does not,
        # which biases a median towards the short runs (at load 16 it showed 16 rows *slower* per row)
        out[f"ms_per_row_at_{n}"], out[f"median_ms_per_row_at_{n}"] = min(ms), statistics.median(ms)
        out[f"cpu_ms_per_row_at_{n}"] = cpu[n]
    out["gain"] = out["ms_per_row_at_1"] / out[f"ms_per_row_at_{rows}"]
    out["median_gain"] = out["median_ms_per_row_at_1"] / out[f"median_ms_per_row_at_{rows}"]
    out["cpu_gain"] = out["cpu_ms_per_row_at_1"] / out[f"cpu_ms_per_row_at_{rows}"]
    return out


def caps(rows: list[dict[str, Any]], variant: str, clients: int, model_ms: float, cores: int = 2) -> dict[str, float]:
    """What CPU time says of a variant at one client count, the load-insensitive view of the speed-up:

    * ``cpu_x`` = batch1's CPU per answer / the variant's (server + load generator): the speed-up when both
      keep the ``cores`` busy -- the throughput each would reach on cores of its own, ``cpu_cap_rps``;
    * ``loop_cap_x``: the same ratio with the variant's model time gone, only its event loop left (the one
      thread that parses, checks and answers every request, which no batch shares): what any batching could
      reach with that event loop;
    * ``ceiling_x``: the same with the model's CPU per row at 16 rows (``model_ms``, :func:`ceiling`) added
      back: the most batching 16 rows at a time reaches with this event loop and this model."""
    by = {(r["variant"], r["clients"]): r for r in rows}
    r, one = by[(variant, clients)], by[("batch1", clients)]
    cpu = {row["variant"]: row["server_cpu_ms_per_answer"] + row["client_cpu_ms_per_answer"] for row in (r, one)}
    floor = r["loop_cpu_ms_per_answer"] + r["client_cpu_ms_per_answer"]
    return {"clients": clients, "cpu_cap_rps": 1000 * cores / cpu[variant], "cpu_x": cpu["batch1"] / cpu[variant],
            "loop_cap_x": cpu["batch1"] / floor if floor > 0 else float("inf"),
            "ceiling_x": cpu["batch1"] / (floor + model_ms)}


def issue_bound(run_ms: float, max_batch: int, args: argparse.Namespace) -> float:
    """Issue 19's p99 goal in ms: 2 x max wait + R, R = one batch's compute (max wait as configured; 0 for
    batch1)."""
    return 2 * (args.max_wait_ms if max_batch > 1 else 0.0) + run_ms


def bounds(r: dict[str, Any], max_batch: int, args: argparse.Namespace) -> dict[str, float]:
    """The p99 bounds of one cell in ms, R = the cell's mean model-run time (one batch's compute):

    * ``p99_bound_ms``, issue 19's goal (:func:`issue_bound`);
    * ``p99_schedule_bound_ms``, what the one-worker schedule allows (compilers/serve/batching.py): the wait
      before its batch starts, max(W, R) -- W = max wait with a window (0 without: no waiting for company),
      R for the run in progress -- plus ceil(C / B) runs, C clients' requests going out in batches of at
      most B rows, plus C x the event loop's CPU per answer (every request's parsing and answering ahead of
      it on the one thread that does them).

    With C requests always outstanding (closed-loop clients) the mean latency is C / throughput (Little's
    law); and every request that arrives during a run waits for it, which the bound does not count."""
    run, batched = r["mean_run_ms"], max_batch > 1
    wait = args.max_wait_ms if batched and args.window_ms > 0 else 0.0
    loop = r["clients"] * r["loop_cpu_ms_per_answer"]
    return {"p99_bound_ms": issue_bound(run, max_batch, args), "beyond_run_bound_ms": issue_bound(0.0, max_batch, args),
            "p99_schedule_bound_ms": max(wait, run) + math.ceil(r["clients"] / max_batch) * run + loop}


def littles_law(by: dict[tuple[str, int], dict[str, Any]], top: dict[str, float]) -> list[dict[str, float]]:
    """What issue 19's p99 bound asks of the throughput with C closed-loop clients: C requests are always
    outstanding, so the mean latency is C / throughput (Little's law) and p99 >= mean; p99 <= bound therefore
    needs throughput >= C / bound -- given per client count as req/s and as a multiple of batch1's throughput,
    next to the most batching can gain on the model's time (``top['gain']``, :func:`ceiling`)."""
    out = []
    for (variant, n), r in sorted(by.items(), key=lambda kv: kv[0][1]):
        if variant == "dynamic" and n > 1:
            needs = 1000 * n / r["p99_bound_ms"]
            out.append({"clients": n, "bound_ms": r["p99_bound_ms"], "needs_rps": needs,
                        "needs_x": needs / by[("batch1", n)]["throughput_rps"], "ceiling_x": top["gain"]})
    return out


def ideal(top: dict[str, float], rate: float, args: argparse.Namespace) -> dict[str, float]:
    """An ideal one-instance server under the open loop's arrivals (the same seeds): no HTTP and no event
    loop, a run of k rows takes the model's fastest time in this process (:func:`ceiling`: a + b k through
    its 1- and 16-row runs), and each run takes every request waiting when it starts (up to max batch).
    Its p99 against issue 19's bound (2 x max wait + its mean run) says whether any such server could meet
    the bound at this rate on this machine: a request that arrives during a run waits for it."""
    one, sixteen = top["ms_per_row_at_1"], 16 * top["ms_per_row_at_16"]
    per_row = (sixteen - one) / 15
    latencies, runs = [], []
    for seed in range(args.rounds):
        due = 1000 * arrivals(rate, args.seconds, seed=seed)
        free, i = 0.0, 0
        while i < len(due):
            start = max(free, due[i])
            k = min(int(np.searchsorted(due, start, side="right")) - i, args.max_batch)
            run = one + per_row * (k - 1)
            free = start + run
            latencies += list(free - due[i:i + k])
            runs.append(run)
            i += k
    mean_run = statistics.mean(runs)
    return {"p99_ms": percentiles(latencies)[98], "mean_run_ms": mean_run,
            "bound_ms": issue_bound(mean_run, args.max_batch, args)}


def flops_per_request(spec: Path, sets: list[str], seq: int) -> int:
    """Forward FLOPs of one request (one row of ``seq`` tokens), from ``nngraph cost`` (its per-op rules)."""
    from nngraph.cost.report import cost_report, sizes_for
    from nngraph.spec import load_spec

    graph = load_spec(spec, sets)
    return cost_report(graph, sizes_for(graph, {"seq": seq}, 1)[0])["totals"]["flops_forward"]


def gemm_peak(threads: int | None, rows: int = 1024, k: int = 768, n: int = 3072, repeats: int = 20) -> float:
    """The machine's matrix-product peak in GFLOP/s as the servers reach it: one ONNX Runtime MatMul of
    BERT's widest shape ([rows, k] x [k, n], FFN 768 -> 3072) at 1024 rows, as ORT runs in the servers (no
    spinning, ``threads``), the fastest of ``repeats`` runs. No batching of a model whose FLOPs are mostly
    matrix products can run faster per FLOP than its largest product runs alone."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from nngraph.compilers.onnx.runner import open_model

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, n])], [weight])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gemm.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        session = open_model(path, threads=threads, spin=False)
    x = {"x": rng.standard_normal((rows, k)).astype(np.float32)}
    session.run(None, x)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, x)
        best = min(best, time.perf_counter() - start)
    return 2 * rows * k * n / best / 1e9


def roofline(flops: int, batch1_rps: float, peak_gflops: float) -> dict[str, float]:
    """The most any batching can gain over the batch1 server: its requests' FLOPs per second
    (``flops`` x throughput) against the machine's matrix-product peak (:func:`gemm_peak`). A model run at
    that peak in every one of its FLOPs is the fastest a batch can go; for a model batch 1 already runs
    near the peak (BERT with 32 tokens) no batching reaches 3x."""
    reached = flops * batch1_rps / 1e9
    return {"gflop_per_request": flops / 1e9, "batch1_gflops": reached, "peak_gflops": peak_gflops,
            "roofline_x": peak_gflops / reached}
