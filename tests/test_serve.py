"""`bertner serve`: the real server (uvicorn in a subprocess on a free port, `python -m bertner serve`).

The same texts give the same entities, offsets and scores through /v1/entities as through `bertner
predict` (softmax, CRF, bilstm); 200 concurrent requests each get their own answer; the limits give
their status codes; /metrics is Prometheus text; SIGTERM answers the requests in flight; the key,
CORS and several workers work; the command's mistakes are one line; the page works in headless
Chromium (skipped without it, like test_browser.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from cli_helpers import assert_one_line_error, invoke
from conftest import ROOT
from synthetic import make_window, write_synthetic
from test_browser import CHROMIUM

from bertner.config import TrainConfig
from bertner.engine.trainer import train
from bertner.serve.batching import Batcher, QueueFullError

CLINICAL = ROOT / "examples" / "clinical"
# Synthetic sentences (the runs find their entities), clinical notes (windowed: longer than 256
# characters), whitespace and characters no vocabulary holds, a text without entities.
TEXTS = [
    "患者今日复诊，血压正常，口服二甲双胍。",
    "诊断 糖尿病\n建议胰岛素 阿司匹林。HbA1c 7.5%",
    (CLINICAL / "note01.txt").read_text(encoding="utf-8") + (CLINICAL / "note02.txt").read_text(encoding="utf-8"),
    "ＨＢＡ１Ｃ升高高血压 冠心病𝔸肾病。",
    "无不适。",
    " ",
]


# ----------------------------------------------------------------------------- runs and servers

@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny softmax, a tiny CRF and a bilstm run, each trained in seconds on the synthetic task."""
    root = tmp_path_factory.mktemp("serve-runs")
    data = write_synthetic(root / "data", n_train=200, n_dev=20)
    common = dict(data=str(data), epochs=3, batch_size=16, warmup_ratio=0.05, seed=1, num_threads=1, log_every=1000)
    tiny = dict(model="tiny", tiny_layers=1, tiny_hidden=64, tiny_heads=2, lr=5e-3)
    variants = {"softmax": tiny, "crf": dict(tiny, crf=True, crf_lr_mult=10),
                "bilstm": dict(model="bilstm", rnn_hidden=48, char_dim=32, epochs=6)}
    for name, settings in variants.items():
        assert train(TrainConfig(output=str(root / name), **{**common, **settings})).best_f1 > 0.8
    return {name: root / name for name in variants}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`python -m bertner serve RUN ...` in a subprocess, ready to answer (its /ready is 200)."""

    def __init__(self, run: Path, *args: str, log: Path, key: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.log = log
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        env.pop(key_variable(), None)
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bertner", "serve", str(run), "--port", str(self.port), *args],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
            )

    def ready(self) -> Server:
        """Wait until /ready answers 200 (the model is loaded and warmed up); a server that never does is stopped."""
        deadline = time.monotonic() + 300  # a loaded machine starts python, torch and the model slowly
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/ready", headers=self.headers, timeout=10).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError("the server did not become ready:\n" + self.output())

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def post(self, body, **kwargs) -> httpx.Response:
        return httpx.post(self.url + "/v1/entities", json=body, headers=self.headers, timeout=60, **kwargs)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def key_variable() -> str:
    from bertner.serve.settings import API_KEY_VARIABLE

    return API_KEY_VARIABLE


@pytest.fixture(scope="module")
def servers(runs, tmp_path_factory):
    """One server per run: softmax with a small --max-chars, CRF behind a key, bilstm with CORS for one origin."""
    logs = tmp_path_factory.mktemp("serve-logs")
    started = {}
    try:
        started["softmax"] = Server(runs["softmax"], "--max-chars", "5000", log=logs / "softmax.log")
        started["crf"] = Server(runs["crf"], "--api-key", "s3cret", log=logs / "crf.log", key="s3cret")
        started["bilstm"] = Server(runs["bilstm"], "--cors-origin", "https://notes.example.org", log=logs / "bilstm.log")
        yield {name: server.ready() for name, server in started.items()}  # they start side by side
    finally:
        for server in started.values():
            server.stop()


def predicted(run: Path, texts: list[str], folder: Path, *options: str) -> list[list[dict]]:
    """What `bertner predict RUN FOLDER --format jsonl [OPTIONS]` finds in the texts (one file each, in order)."""
    folder.mkdir()
    for i, text in enumerate(texts):
        (folder / f"{i:02d}.txt").write_text(text, encoding="utf-8", newline="")
    result = invoke("predict", run, folder, "--format", "jsonl", *options)
    assert result.exit_code == 0, result.output
    rows = {row["doc"]: row["entities"] for row in map(json.loads, result.stdout.splitlines())}
    return [rows.get(f"{i:02d}", []) for i in range(len(texts))]  # predict skips an empty or blank file


# ----------------------------------------------------------------------------- the same entities as predict

@pytest.mark.parametrize("name", ["softmax", "crf", "bilstm"])
def test_entities_are_predicts_for_every_head(servers, runs, name, tmp_path):
    server = servers[name]
    texts = [t for t in TEXTS if t.strip()]
    expected = predicted(runs[name], texts, tmp_path / "together")
    assert sum(map(len, expected)) >= 5  # runs that find entities, else the comparison shows little
    # Together: the same documents in one batch, so the same windows in the same batches, to the last digit.
    answer = server.post({"texts": texts})
    assert answer.status_code == 200, answer.text
    assert [r["entities"] for r in answer.json()["results"]] == expected
    # Alone: a request of one text is predict of that one file.
    for i, text in enumerate(texts[:3]):
        (alone,) = predicted(runs[name], [text], tmp_path / f"alone{i}")
        answer = server.post({"text": text})
        assert answer.status_code == 200 and answer.json() == {"entities": alone}
    for entity in alone:
        assert texts[2][entity["start"] : entity["end"]] == entity["text"]


def test_an_ensemble_answers_what_predict_ensemble_finds(runs, tmp_path):
    server = Server(runs["crf"], "--ensemble", str(runs["bilstm"]), log=tmp_path / "ensemble.log").ready()
    try:
        texts = [t for t in TEXTS if t.strip()]
        expected = predicted(runs["crf"], texts, tmp_path / "texts", "--ensemble", str(runs["bilstm"]))
        assert sum(map(len, expected)) >= 5
        answer = server.post({"texts": texts})
        assert answer.status_code == 200, answer.text
        assert [r["entities"] for r in answer.json()["results"]] == expected
        info = httpx.get(server.url + "/info", timeout=10).json()
        assert (info["run"], info["ensemble"]) == ("crf", ["bilstm"])
        assert "crf + bilstm" in httpx.get(server.url + "/", timeout=10).text
    finally:
        server.stop()


def test_blank_and_empty_texts_have_no_entities(servers):
    answer = servers["softmax"].post({"texts": ["", " ", "\n\n", "无不适。"]})
    assert answer.status_code == 200
    assert [r["entities"] for r in answer.json()["results"][:3]] == [[], [], []]
    assert servers["softmax"].post({"texts": []}).json() == {"results": []}


def test_two_hundred_concurrent_requests_each_get_their_own_answer(servers):
    server = servers["softmax"]
    rng = random.Random(7)
    texts = [make_window(rng, i, "c").text * rng.randint(1, 3) for i in range(200)]
    alone = {text: server.post({"text": text}).json()["entities"] for text in set(texts[:20])}

    async def send_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=120) as client:
            return await asyncio.gather(*(client.post("/v1/entities", json={"text": t}) for t in texts))

    answers = asyncio.run(send_all())
    assert [a.status_code for a in answers] == [200] * len(texts)
    found = 0
    for text, answer in zip(texts, answers):
        entities = answer.json()["entities"]
        assert all(text[e["start"] : e["end"]] == e["text"] for e in entities)
        found += len(entities)
        if text in alone:  # the same entities as alone, whatever shared its batch
            assert [(e["start"], e["end"], e["label"]) for e in entities] == \
                [(e["start"], e["end"], e["label"]) for e in alone[text]]
    assert found > 2 * len(texts)  # 2 to 4 entities in each of the texts (some repeated)
    batches = metric(server, "bertner_batch_texts_count")
    assert batches < metric(server, "bertner_batch_texts_sum")  # some requests did share a batch


# ----------------------------------------------------------------------------- limits and failures

def test_limits_answer_with_their_status_and_one_readable_line(servers):
    server = servers["softmax"]
    cases = {
        413: [{"text": "糖" * 5001}, {"texts": ["糖" * 2600, "糖" * 2600]}],
        422: ['{"text": ', '{"text": 5}', '{"texts": ["a", 3]}', '{"txt": "a"}', "[1, 2]", '{}',
              '{"text": "a", "texts": ["b"]}', ""],
    }
    for status, bodies in cases.items():
        for body in bodies:
            raw = body if isinstance(body, str) else json.dumps(body)
            answer = httpx.post(server.url + "/v1/entities", content=raw.encode(), timeout=30,
                                headers={"Content-Type": "application/json"})
            assert answer.status_code == status, (body, answer.text)
            error = answer.json()["error"]
            assert "\n" not in error and "Traceback" not in error and "File " not in error and len(error) < 300, error
    assert "5,001 characters" in server.post({"text": "糖" * 5001}).json()["error"]
    assert server.post({"text": 5}).json() == {"error": "text: Input should be a valid string"}
    # A body far over the limit is refused from its length, before it is read or parsed.
    huge = httpx.post(server.url + "/v1/entities", content=b"x" * 200_000, timeout=30)
    assert huge.status_code == 413 and "bytes" in huge.json()["error"]
    assert httpx.get(server.url + "/nowhere").json() == {"error": "Not Found"}
    assert httpx.get(server.url + "/v1/entities").status_code == 405
    assert server.post({"text": "无不适。"}).status_code == 200  # and it still serves


def test_a_full_queue_is_503_with_retry_after(runs, tmp_path):
    # One job per batch and room for one text in the queue: while a long text is tagged, a second
    # request waits and the rest are refused.
    server = Server(runs["softmax"], "--max-queue", "1", "--max-batch-tokens", "1", "--max-wait-ms", "0",
                    "--max-chars", "400000", log=tmp_path / "server.log").ready()
    try:
        assert server.post({"texts": ["a", "b"]}).status_code == 413  # more texts than the queue holds
        long_text = "患者今日复诊，血压正常，口服二甲双胍。" * 15_000  # 285,000 characters: about a second or more

        async def flood() -> tuple[httpx.Response, list[httpx.Response]]:
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
                long_request = asyncio.create_task(client.post("/v1/entities", json={"text": long_text}))
                await asyncio.sleep(0.3)
                short = await asyncio.gather(*(client.post("/v1/entities", json={"text": "血压正常"}) for _ in range(8)))
                return await long_request, short

        long_answer, short = asyncio.run(flood())
        assert long_answer.status_code == 200 and len(long_answer.json()["entities"]) > 10_000
        statuses = [a.status_code for a in short]
        assert set(statuses) <= {200, 503} and statuses.count(503) >= 6, statuses
        refused = next(a for a in short if a.status_code == 503)
        assert int(refused.headers["Retry-After"]) >= 1 and "queue is full" in refused.json()["error"]
        assert metric(server, "bertner_requests_total", route="/v1/entities", status="503") == statuses.count(503)
        assert server.post({"text": "血压正常"}).status_code == 200  # served again once the queue is empty
    finally:
        server.stop()


def test_sigterm_answers_every_request_in_flight(runs, tmp_path):
    server = Server(runs["softmax"], "--max-batch-tokens", "1", "--max-wait-ms", "0", log=tmp_path / "server.log").ready()
    texts = [("患者今日复诊，血压正常，口服二甲双胍。" * 1500) + str(i) for i in range(20)]  # 28,500 characters each
    answers: list[httpx.Response | BaseException] = []

    async def send_all() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            answers.extend(await asyncio.gather(*(client.post("/v1/entities", json={"text": t}) for t in texts),
                                                return_exceptions=True))

    sender = threading.Thread(target=asyncio.run, args=(send_all(),))
    sender.start()
    deadline = time.monotonic() + 300
    while metric(server, "bertner_queue_texts") < 10:  # most of the 20 are queued: all are in flight
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.02)
    server.process.send_signal(signal.SIGTERM)
    sender.join(120)
    server.process.wait(timeout=60)
    assert [getattr(a, "status_code", a) for a in answers] == [200] * 20
    for text, answer in zip(texts, answers):
        entities = answer.json()["entities"]
        assert len(entities) > 1000 and all(text[e["start"] : e["end"]] == e["text"] for e in entities)
    assert "Shutting down" in server.output() and "Traceback" not in server.output()


# ----------------------------------------------------------------------------- key, CORS, metrics, info, page

def test_the_api_key_is_needed_everywhere_but_health(servers):
    server = servers["crf"]
    for path in ("/ready", "/info", "/metrics", "/", "/docs", "/openapi.json"):
        answer = httpx.get(server.url + path)
        assert answer.status_code == 401 and "API key" in answer.json()["error"], path
    assert httpx.get(server.url + "/").headers["WWW-Authenticate"].startswith("Basic")  # a browser asks for it
    anonymous = httpx.post(server.url + "/v1/entities", json={"text": "糖尿病"})
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = httpx.post(server.url + "/v1/entities", json={"text": "糖尿病"}, headers={"Authorization": "Bearer s3cre"})
    assert wrong.status_code == 401
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    assert server.post({"text": "糖尿病"}).status_code == 200
    assert httpx.get(server.url + "/info", auth=("anyone", "s3cret")).status_code == 200  # Basic, the key as password
    assert metric(server, "bertner_requests_total", route="/v1/entities", status="401") >= 2


def test_cors_answers_only_the_named_origin(servers):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    named = httpx.options(servers["bilstm"].url + "/v1/entities", headers={"Origin": "https://notes.example.org", **preflight})
    assert named.status_code == 200 and named.headers["access-control-allow-origin"] == "https://notes.example.org"
    other = httpx.options(servers["bilstm"].url + "/v1/entities", headers={"Origin": "https://elsewhere.example", **preflight})
    assert "access-control-allow-origin" not in other.headers
    off = httpx.post(servers["softmax"].url + "/v1/entities", json={"text": "a"}, headers={"Origin": "https://notes.example.org"})
    assert off.status_code == 200 and "access-control-allow-origin" not in off.headers


def metric(server: Server, name: str, **labels: str) -> float:
    """A value from /metrics, read with prometheus_client's parser (0 when the series does not exist yet)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(server.url + "/metrics", headers=server.headers, timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_metrics_parse_as_prometheus_text(servers):
    from prometheus_client.parser import text_string_to_metric_families

    server = servers["bilstm"]
    server.post({"texts": ["患者有糖尿病。", "口服二甲双胍。"]})
    server.post({"text": 5})
    answer = httpx.get(server.url + "/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    for name in ("bertner_requests", "bertner_request_seconds", "bertner_batch_texts", "bertner_batch_tokens",
                 "bertner_queue_texts", "bertner_characters", "bertner_model_characters_per_second"):
        assert name in families, name
    assert families["bertner_request_seconds"].type == "histogram"
    assert metric(server, "bertner_requests_total", route="/v1/entities", status="422") >= 1
    assert metric(server, "bertner_characters_total") >= 14
    assert metric(server, "bertner_model_characters_per_second") > 0


def test_info_health_ready_and_docs(servers, runs):
    server = servers["bilstm"]
    info = httpx.get(server.url + "/info").json()
    assert info["variant"] == "bilstm+softmax" and info["labels"] == ["Disease", "Drug", "Test"]
    assert info["run"] == "bilstm" and info["bertner"] and info["max_chars"] == 100_000
    assert httpx.get(server.url + "/ready").json() == {"status": "ready"}
    schema = httpx.get(server.url + "/openapi.json").json()
    assert "/v1/entities" in schema["paths"] and "text" in json.dumps(schema["paths"]["/v1/entities"]["post"]["requestBody"])
    assert httpx.get(server.url + "/docs").status_code == 200


def test_the_page_shows_the_entities_as_predicts_html_does(servers):
    server = servers["softmax"]
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "<form" in page.text and 'class="legend"' in page.text
    assert "script-src" not in page.headers["content-security-policy"] and "form-action 'self'" in page.headers["content-security-policy"]
    text = "患者有糖尿病<script>alert(1)</script>\r\n口服二甲双胍。"
    answer = httpx.post(server.url + "/", data={"text": text})
    assert answer.status_code == 200
    assert "<script>" not in answer.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text
    assert 'data-label="Drug">二甲双胍</mark>' in answer.text


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_the_page_in_a_browser_highlights_typed_text_and_runs_none_of_it(servers, tmp_path):
    """Load /, type a text holding <script>, submit: the entities appear, nothing in it runs, the console is silent."""
    from devtools import Browser

    server = servers["softmax"]
    browser = Browser(CHROMIUM, tmp_path / "profile")
    typed = '患者有糖尿病<script>window.ran = 1; console.error("ran")</script>\n口服二甲双胍。<img src=x onerror="window.ran = 2">'
    try:
        browser.open(server.url + "/")
        assert browser.evaluate("document.querySelectorAll('.legend .ent').length") == 3
        browser.evaluate("document.querySelector('textarea').focus()")
        browser.call("Input.insertText", session=True, text=typed)  # as typing does
        browser.click("button[type=submit]")
        browser.wait_for("Page.loadEventFired")
        labels = browser.evaluate("[...document.querySelectorAll('.document mark.ent')].map(m => [m.textContent, m.dataset.label])")
        assert ["二甲双胍", "Drug"] in labels and ["糖尿病", "Disease"] in labels
        assert browser.evaluate("document.querySelector('.document .text').textContent") == typed
        assert browser.evaluate("document.querySelector('textarea').value") == typed  # kept for the next try
        assert browser.evaluate("[window.ran, document.scripts.length, document.images.length]") == [None, 0, 0]
        assert browser.console() == []
        shot = browser.call("Page.captureScreenshot", session=True)["data"]
        assert len(shot) > 1000
    finally:
        browser.close()


# ----------------------------------------------------------------------------- several workers

def test_two_workers_answer_and_their_metrics_add_up(runs, tmp_path):
    server = Server(runs["softmax"], "--workers", "2", "--threads", "1", log=tmp_path / "server.log").ready()
    try:
        async def send_all() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
                return await asyncio.gather(*(client.post("/v1/entities", json={"text": "口服二甲双胍。"})
                                              for _ in range(30)))

        answers = asyncio.run(send_all())
        assert [a.status_code for a in answers] == [200] * 30
        assert metric(server, "bertner_requests_total", route="/v1/entities", status="200") == 30
        assert server.output().count("Application startup complete") == 2
    finally:
        assert server.stop() in (0, -signal.SIGTERM)


# ----------------------------------------------------------------------------- the command's mistakes

@pytest.fixture
def no_server(monkeypatch):
    """The command runs up to serving, and the settings it would serve with are kept."""
    import bertner.serve.app

    import torch

    served = []
    monkeypatch.setattr(bertner.serve.app, "run_server", lambda settings, predictor: served.append(settings))
    threads = torch.get_num_threads()
    yield served
    torch.set_num_threads(threads)  # the command sets the process's threads


def test_a_public_address_without_a_key_warns(runs, no_server, monkeypatch):
    monkeypatch.delenv(key_variable(), raising=False)
    monkeypatch.setattr("bertner.serve.app.check_address", lambda host, port: None)  # nothing is bound
    result = invoke("serve", runs["softmax"], "--host", "0.0.0.0", "--port", free_port())
    assert result.exit_code == 0 and "warning: listening on 0.0.0.0 without an API key" in result.output
    result = invoke("serve", runs["softmax"], "--host", "0.0.0.0", "--port", free_port(), "--api-key", "k")
    assert result.exit_code == 0 and "warning" not in result.output
    monkeypatch.setenv(key_variable(), "from-the-environment")
    result = invoke("serve", runs["softmax"], "--port", free_port())
    assert result.exit_code == 0 and "warning" not in result.output
    assert no_server[-1].api_key == "from-the-environment" and no_server[-1].host == "127.0.0.1"


@pytest.mark.parametrize("args, expected", [
    (["--port", "70000"], "--port must be at least 1 and at most 65535"),
    (["--workers", "0"], "--workers must be at least 1"),
    (["--max-wait-ms", "-1"], "--max-wait-ms must be"),
    (["--batch-size", "0"], "--batch-size"),
    (["--cors-origin", "notes.example.org/x"], "--cors-origin must be an origin"),
    (["--api-key", "has space"], "--api-key must be printable ASCII"),
])
def test_bad_settings_are_one_line(runs, no_server, args, expected):
    assert_one_line_error(invoke("serve", runs["softmax"], *args), expected)
    assert no_server == []


def test_a_missing_run_or_a_taken_port_is_one_line(runs, no_server, tmp_path):
    assert_one_line_error(invoke("serve", tmp_path / "nothing"), "nothing")
    assert_one_line_error(invoke("serve", runs["softmax"], "--ensemble", tmp_path / "gone"), "gone")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_line_error(invoke("serve", runs["softmax"], "--port", port), f"cannot listen on 127.0.0.1:{port}")
    assert no_server == []


def test_without_the_serve_extra_the_command_names_it(runs, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if it were not installed
    assert_one_line_error(invoke("serve", runs["softmax"]), "serve extra", "fastapi", 'pip install "bertner[serve]"')


# ----------------------------------------------------------------------------- the batcher alone

def test_the_batcher_batches_by_tokens_and_never_blocks_the_loop():
    seen: list[list[str]] = []
    release = threading.Event()

    def tag(texts: list[str]) -> list[str]:
        release.wait(5)  # the model is busy until the test lets it go
        seen.append(texts)
        return [t.upper() for t in texts]

    async def scenario() -> list[list[str]]:
        batcher = Batcher(tag, max_tokens=4, max_wait_s=0.05, max_queue=6)
        batcher.start(lambda: None)
        first = batcher.submit(["a"])  # taken alone after 50 ms: nothing joined it
        await asyncio.sleep(0.2)
        later = [batcher.submit([c]) for c in "bcdef"]  # wait while the model is busy
        ticks = 0
        while ticks < 20:  # the loop runs while the model thread is stuck
            await asyncio.sleep(0.001)
            ticks += 1
        with pytest.raises(QueueFullError):
            batcher.submit(["g", "h"])  # 5 waiting + 2 > 6
        release.set()
        results = [await first] + [await f for f in later]
        batcher.close()
        return results

    assert asyncio.run(scenario()) == [["A"], ["B"], ["C"], ["D"], ["E"], ["F"]]
    assert seen == [["a"], ["b", "c", "d", "e"], ["f"]]  # up to 4 tokens a batch, in arrival order


# ----------------------------------------------------------------------------- the load benchmark's pieces

def test_the_load_benchmark_cuts_texts_and_checks_its_goals():
    sys.path.insert(0, str(ROOT / "bench"))
    import serve_load

    from conftest import RUIJIN_UNLABELED, need

    row = {"answers": {"ok": 10, "503": 2, "other_5xx": 0, "other": 0, "lost": 0}, "requests_per_s": 1.0, "p95_ms": 1}
    rows = {"bertner": [dict(row, concurrency=1, chars_per_s=100, p50_ms=10, p99_ms=20),
                        dict(row, concurrency=32, chars_per_s=900, p50_ms=30, p99_ms=60),
                        dict(row, concurrency=128, chars_per_s=900, p50_ms=90, p99_ms=99)],
            "naive": [dict(row, concurrency=1, chars_per_s=50, p50_ms=20, p99_ms=40),
                      dict(row, concurrency=32, chars_per_s=300, p50_ms=200, p99_ms=400)]}
    assert serve_load.goals(rows) == {"chars_per_s_ratio_at_32": 3.0, "p99_at_32_over_naive_p50_at_1": 3.0,
                                      "p99_at_32_over_own_p50_at_1": 6.0, "at_128_lost_or_5xx": 0,
                                      "at_128_refused_503": 2}
    need(RUIJIN_UNLABELED)
    texts = serve_load.load_texts()
    assert len(texts) > 100 and all(50 <= len(t) <= 2000 for t in texts)
