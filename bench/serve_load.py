"""Load test: `bertner serve` against the server a user would write instead, in the same run.

    python bench/serve_load.py [--rounds 2] [--levels 1,8,32,128] [--encoder tiny|albert-tiny] [--quick]

A small bertner run (softmax, so that it can be exported) is trained first, and `bertner export`
writes it as a transformers folder: both servers tag with the same weights.

ours:      `bertner serve RUN` (adaptive batching: one model thread fed by a queue)
baseline:  FastAPI calling `pipeline("token-classification", EXPORT, aggregation_strategy="simple",
           stride=128)` once per request in a plain `def` endpoint (FastAPI runs it in its thread pool),
           under uvicorn: what the transformers and FastAPI documentation lead to.

The client is one asyncio process with httpx: `concurrency` users, each sending its next text as soon
as the previous answer came (a closed loop), until `--rounds` x the concurrency requests (24 at least)
have been sent, per level and server; requests/s and characters/s are over the time until the last answer. Texts: the
documents of `../shared/data/ruijin/unlabeled` cut into pieces of 50 to 2,000 characters (uniform,
seed 0), shuffled; every user takes the next piece. Both servers get the same torch threads
(`--threads`, default: every core) and run one at a time, alternating which goes first per level.
First, as a ceiling for any server, `Predictor.predict` on 96 of the texts in the script's own process.
Reported per server and level: requests/s, characters/s (of the answered texts), p50/p95/p99
latency of the answered requests, and the answers by kind (200, 503 from the queue limit, other
5xx, other statuses, lost: no answer at all).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NAME = "serve_load"
LEVELS = (1, 8, 32, 128)


# ----------------------------------------------------------------------------- the run, the export, the texts

def prepare_run(work: Path, encoder: str, steps: int) -> tuple[Path, Path]:
    """A softmax run trained for `steps` on Ruijin windows (speed does not depend on them), and its export."""
    from bertner.config import TrainConfig
    from bertner.engine.trainer import train

    run_dir, export_dir = work / f"run-{encoder}-{steps}", work / f"export-{encoder}-{steps}"
    if not (run_dir / "summary.json").exists():
        train_w, dev_w = common.window_slice(480, 100)
        data_dir = common.write_data_dir(work / "data", train_w, dev_w)
        model = {"tiny": "tiny", "albert-tiny": str(common.ALBERT_TINY)}[encoder]
        train(TrainConfig(data=str(data_dir), output=str(run_dir), model=model, epochs=100,
                          max_steps=steps, batch_size=16, log_every=50, device="cpu"), force=True)
    if not (export_dir / "config.json").exists():
        subprocess.run([sys.executable, "-m", "bertner", "export", str(run_dir), str(export_dir), "--force"],
                       check=True, cwd=str(common.ROOT), stdout=subprocess.DEVNULL)
    return run_dir, export_dir


def load_texts(low: int = 50, high: int = 2000, seed: int = 0) -> list[str]:
    """The unlabeled Ruijin documents cut into consecutive pieces of `low` to `high` characters, shuffled."""
    if not common.RUIJIN_UNLABELED.is_dir():
        raise SystemExit(f"{common.RUIJIN_UNLABELED} is not here; this benchmark needs ../shared/data/ruijin")
    rng = random.Random(seed)
    pieces = []
    for path in sorted(common.RUIJIN_UNLABELED.glob("*.txt")):
        text = path.read_text(encoding="utf-8").lstrip("\ufeff")
        position = 0
        while len(text) - position >= low:
            piece = text[position : position + rng.randint(low, high)]
            position += len(piece)
            if piece.strip():
                pieces.append(piece)
    rng.shuffle(pieces)
    return pieces


# ----------------------------------------------------------------------------- the servers

def naive_app(export_dir: Path):
    """The baseline: FastAPI and a transformers pipeline, one call per request."""
    from fastapi import FastAPI
    from transformers import pipeline

    tagger = pipeline("token-classification", model=str(export_dir), aggregation_strategy="simple", stride=128,
                      device=-1)
    app = FastAPI()

    @app.post("/v1/entities")
    def entities(body: dict) -> dict:
        text = body["text"]
        return {"entities": [{"start": int(e["start"]), "end": int(e["end"]), "label": e["entity_group"],
                              "text": text[e["start"] : e["end"]], "score": float(e["score"])} for e in tagger(text)]}

    return app


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    """A server in its own process on a free local port, ready once it answers."""

    def __init__(self, name: str, command: list[str], log: Path):
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(common.ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        with open(log, "wb") as out:
            self.process = subprocess.Popen([*command, "--port", str(self.port)], stdout=out, stderr=subprocess.STDOUT,
                                            env=env, cwd=str(common.ROOT))
        self.log = log

    def wait(self, probe_text: str) -> None:
        import httpx

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} stopped:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.post(self.url + "/v1/entities", json={"text": probe_text}, timeout=30).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.name} did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


# ----------------------------------------------------------------------------- the client

async def load(url: str, texts: list[str], concurrency: int, requests: int) -> dict[str, Any]:
    """`concurrency` users in a closed loop until `requests` have been sent; every answer counted by kind.

    A count, not a time window: on a loaded machine a window shorter than the latency measures nothing.
    """
    import httpx

    latencies: list[float] = []
    counts = {"ok": 0, "503": 0, "other_5xx": 0, "other": 0, "lost": 0}
    characters = 0
    sent = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def user(client) -> None:
        nonlocal characters, sent
        while sent < requests:
            text = texts[sent % len(texts)]
            sent += 1
            start = time.perf_counter()
            try:
                answer = await client.post("/v1/entities", json={"text": text})
            except httpx.HTTPError:
                counts["lost"] += 1
                continue
            if answer.status_code == 200:
                latencies.append(time.perf_counter() - start)
                characters += len(text)
                counts["ok"] += 1
            elif answer.status_code == 503:
                counts["503"] += 1
                await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
            else:
                counts["other_5xx" if answer.status_code >= 500 else "other"] += 1

    async with httpx.AsyncClient(base_url=url, timeout=900, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(user(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    ordered = sorted(latencies)

    def percentile(q: float) -> float | None:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1) if ordered else None

    return {"concurrency": concurrency, "requests": requests, "seconds": round(wall, 2),
            "requests_per_s": round(counts["ok"] / wall, 2), "chars_per_s": round(characters / wall, 1),
            "p50_ms": percentile(0.50), "p95_ms": percentile(0.95), "p99_ms": percentile(0.99),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 1) if ordered else None, "answers": counts}


# ----------------------------------------------------------------------------- the benchmark

def run(quick: bool = False, rounds: int = 2, levels: tuple[int, ...] = LEVELS, encoder: str = "tiny",
        threads: int = 0, steps: int = 150, out_dir: Path | None = None, log=print) -> dict[str, Any]:
    threads = threads or os.cpu_count() or 1
    work = common.scratch_dir(NAME)
    run_dir, export_dir = prepare_run(work, encoder, 40 if quick else steps)
    texts = load_texts()
    ceiling = predict_ceiling(run_dir, texts, threads)  # before the servers start: nothing beside it
    log(f"  Predictor.predict in this process, 32 windows a batch: {ceiling['chars_per_s']:,.0f} chars/s")
    servers = {
        "bertner": Served("bertner serve", [sys.executable, "-m", "bertner", "serve", str(run_dir),
                                            "--threads", str(threads)], work / "bertner.log"),
        "naive": Served("naive server", [sys.executable, str(Path(__file__).resolve()), "--naive-server",
                                         str(export_dir), "--threads", str(threads)], work / "naive.log"),
    }
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    try:
        for server in servers.values():
            server.wait(texts[0])
        same = asyncio.run(compare_answers(servers, texts[:20]))
        for i, level in enumerate(levels):
            order = list(servers) if i % 2 == 0 else list(servers)[::-1]
            for name in order:
                asyncio.run(load(servers[name].url, texts, min(level, 8), min(level, 8)))  # warm up
                row = asyncio.run(load(servers[name].url, texts, level, max(24, rounds * level)))
                rows[name].append(row)
                log(f"  {name:8s} c={level:<4d} {row['chars_per_s']:>10,.0f} chars/s  {row['requests_per_s']:7.1f} req/s  "
                    f"p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  {row['answers']}")
    finally:
        for server in servers.values():
            server.stop()
    result = {"name": NAME, "what": __doc__.split("\n\n")[2], "encoder": encoder, "threads": threads,
              "run": str(run_dir.name),
              "requests_per_level": f"max(24, {rounds} x concurrency)", "texts": len(texts),
              "text_characters": {"min": min(map(len, texts)), "median": statistics.median(map(len, texts)),
                                  "max": max(map(len, texts))},
              "entities_on_20_texts": same, "predict_in_process": ceiling, "rows": rows, "goals": goals(rows),
              "machine": common.machine_info()}
    common.write_result(NAME + ("_smoke" if quick else ""), result, out_dir)
    return result


def predict_ceiling(run_dir: Path, texts: list[str], threads: int, repeats: int = 3) -> dict[str, Any]:
    """`Predictor.predict` in this process on 96 of the texts, 32 windows a batch: what the model and
    predict's own work reach with no HTTP, JSON or client beside them (a ceiling for any server)."""
    import torch

    from bertner.predict import Document, Predictor

    torch.set_num_threads(threads)
    predictor = Predictor.from_run(run_dir, device="cpu", batch_size=32)
    documents = [Document(f"t{i}", text) for i, text in enumerate(texts[:96])]
    predictor.predict(documents[:8])  # warm up
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.predict(documents)
        seconds.append(time.perf_counter() - started)
    characters = sum(len(d.text) for d in documents)
    return {"texts": len(documents), "characters": characters, "threads": threads,
            "chars_per_s": round(characters / statistics.median(seconds), 1)}


async def compare_answers(servers: dict[str, Served], texts: list[str]) -> dict[str, int]:
    """Entities each server finds in the same texts (a sanity check: same weights, nearly the same entities)."""
    import httpx

    found = {}
    async with httpx.AsyncClient(timeout=120) as client:
        for name, server in servers.items():
            answers = [await client.post(server.url + "/v1/entities", json={"text": t}) for t in texts]
            found[name] = sum(len(a.json()["entities"]) for a in answers)
    return found


def goals(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The issue's goals: at 32, >= 3x the baseline's characters/s and p99 <= 4x a p50 at 1; at 128 nothing lost or 5xx."""
    ours = {r["concurrency"]: r for r in rows["bertner"]}
    naive = {r["concurrency"]: r for r in rows["naive"]}
    out: dict[str, Any] = {}
    if 32 in ours and 32 in naive:
        out["chars_per_s_ratio_at_32"] = round(ours[32]["chars_per_s"] / max(naive[32]["chars_per_s"], 1e-9), 2)
        if 1 in naive:
            out["p99_at_32_over_naive_p50_at_1"] = round(ours[32]["p99_ms"] / naive[1]["p50_ms"], 2)
        if 1 in ours:
            out["p99_at_32_over_own_p50_at_1"] = round(ours[32]["p99_ms"] / ours[1]["p50_ms"], 2)
    if 128 in ours:
        answers = ours[128]["answers"]
        out["at_128_lost_or_5xx"] = answers["lost"] + answers["other_5xx"]
        out["at_128_refused_503"] = answers["503"]
    return out


def table(result: dict[str, Any]):
    from rich.table import Table

    t = Table(title=f"bertner serve vs FastAPI + pipeline ({result['encoder']}, same weights)", title_justify="left")
    for column in ("server", "concurrency", "requests/s", "chars/s", "p50 ms", "p95 ms", "p99 ms", "503", "lost/5xx"):
        t.add_column(column, justify="left" if column == "server" else "right")
    for name, rows in result["rows"].items():
        for r in rows:
            a = r["answers"]
            t.add_row(name, str(r["concurrency"]), f"{r['requests_per_s']:.1f}", f"{r['chars_per_s']:,.0f}",
                      str(r["p50_ms"]), str(r["p95_ms"]), str(r["p99_ms"]), str(a["503"]),
                      str(a["lost"] + a["other_5xx"]))
    return t


def markdown(result: dict[str, Any]) -> str:
    """The table as README.md and bench/README.md show it."""
    ours = {r["concurrency"]: r for r in result["rows"]["bertner"]}
    naive = {r["concurrency"]: r for r in result["rows"]["naive"]}
    lines = ["| concurrency | bertner serve chars/s | naive chars/s | ratio | bertner p50 / p95 / p99 ms | "
             "naive p50 / p95 / p99 ms | bertner 503 / lost or 5xx |", "|---|---|---|---|---|---|---|"]
    for level in sorted(ours):
        o, n = ours[level], naive.get(level)
        if n is None:
            continue
        lines.append(f"| {level} | {o['chars_per_s']:,.0f} | {n['chars_per_s']:,.0f} | "
                     f"{o['chars_per_s'] / max(n['chars_per_s'], 1e-9):.2f}x | "
                     f"{o['p50_ms']} / {o['p95_ms']} / {o['p99_ms']} | {n['p50_ms']} / {n['p95_ms']} / {n['p99_ms']} | "
                     f"{o['answers']['503']} / {o['answers']['lost'] + o['answers']['other_5xx']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a briefly trained run and 1 round: checks the script")
    parser.add_argument("--rounds", type=int, default=2, help="requests per level and server: this many x the concurrency (24 at least)")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--encoder", choices=("tiny", "albert-tiny"), default="tiny")
    parser.add_argument("--threads", type=int, default=0, help="torch threads of each server (default: every core)")
    parser.add_argument("--train-steps", type=int, default=150, help="steps of the run both servers tag with")
    parser.add_argument("--naive-server", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        import torch
        import uvicorn

        if args.threads:
            torch.set_num_threads(args.threads)
        uvicorn.run(naive_app(args.naive_server), host="127.0.0.1", port=args.port, log_level="warning")
        return
    from rich.console import Console

    result = run(args.quick, 1 if args.quick else args.rounds, tuple(int(x) for x in args.levels.split(",")),
                 args.encoder, args.threads, args.train_steps)
    Console().print(table(result))
    print(json.dumps(result["goals"]))
    print(markdown(result))


if __name__ == "__main__":
    main()
