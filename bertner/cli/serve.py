"""`bertner serve`: check the settings, the extra, the address and the run, then serve it over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bertner.cli._app import Command, app, user_errors
from bertner.cli._console import info, warn
from bertner.runs import RunDir
from bertner.serve import require_serve_extra
from bertner.serve.settings import API_KEY_VARIABLE, ServeSettings

DEFAULT = ServeSettings(run="")  # the options' defaults are the settings' own


@app.command(cls=Command, short_help="Serve a run over HTTP: JSON entities, a page, metrics.")
@user_errors
def serve(
    run: Path = typer.Argument(..., metavar="RUN", help="A run directory written by `bertner train`."),
    host: str = typer.Option(DEFAULT.host, "--host", metavar="ADDRESS", help="Address to listen on; 0.0.0.0 for every interface (then set --api-key)."),
    port: int = typer.Option(DEFAULT.port, "--port", metavar="PORT", help="Port to listen on."),
    device: str = typer.Option(DEFAULT.device, "--device", metavar="DEVICE", help="auto, cpu, cuda or cuda:N."),
    workers: int = typer.Option(DEFAULT.workers, "--workers", metavar="N", help="Processes, each with its own copy of the model and its own batches."),
    threads: int = typer.Option(DEFAULT.threads, "--threads", metavar="N", help="Torch threads per worker; 0: the cores it may use (taskset) shared among the workers."),
    batch_size: int = typer.Option(DEFAULT.batch_size, "--batch-size", "-b", metavar="N", help="Windows per forward pass, as in predict."),
    max_batch_tokens: int = typer.Option(DEFAULT.max_batch_tokens, "--max-batch-tokens", metavar="N", help="A batch starts as soon as the waiting texts hold this many tokens (characters)."),
    max_wait_ms: float = typer.Option(DEFAULT.max_wait_ms, "--max-wait-ms", metavar="MS", help="Or this long after its first request arrived, whichever comes first."),
    max_queue: int = typer.Option(DEFAULT.max_queue, "--max-queue", metavar="N", help="Texts that may wait for the model; more are refused with 503 and Retry-After."),
    max_chars: int = typer.Option(DEFAULT.max_chars, "--max-chars", metavar="N", help="Characters of text per request; more is refused with 413."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar=API_KEY_VARIABLE, metavar="KEY", show_envvar=True, help="Require Authorization: Bearer KEY on every route but /health."),
    cors_origin: list[str] = typer.Option([], "--cors-origin", metavar="ORIGIN", help="Let pages from this origin call the API (repeatable; * for any). Off by default."),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request (uvicorn's access log)."),
    ensemble: Optional[list[Path]] = typer.Option(None, "--ensemble", metavar="RUN", help="Another run over the same entity types to tag with RUN as one model (repeatable), as predict's --ensemble."),
) -> None:
    """Serve a trained run over HTTP, through the same Predictor as `bertner predict`.

    POST /v1/entities takes {"text": ...} or {"texts": [...]} and answers the entities as predict
    --format jsonl writes them. GET / is a page to try it; /health, /ready, /info and /metrics
    (Prometheus) are for operators; /docs is the OpenAPI page. Requests that arrive together are
    tagged in one batch by one model thread. SIGTERM or Ctrl-C finish the requests in flight, then stop.

    Examples:

    \b
      bertner serve runs/albert-crf
      bertner serve runs/albert-crf --host 0.0.0.0 --api-key "$KEY" --workers 2
      bertner serve runs/bilstm --ensemble runs/albert-crf
      curl localhost:8000/v1/entities -d '{"text": "患者有2型糖尿病"}'
    """
    settings = ServeSettings(str(run), host, port, device, batch_size, workers, threads, max_batch_tokens, max_wait_ms,
                             max_queue, max_chars, api_key or None, tuple(cors_origin), access_log,
                             tuple(str(r) for r in ensemble or ()))
    settings.check()
    require_serve_extra()
    for path in (run, *(ensemble or ())):
        RunDir(path).check()  # a missing or unfinished run: one line, before the address is taken

    import torch

    from bertner.ensemble import load_predictor
    from bertner.serve.app import check_address, run_server

    check_address(host, port)
    if not settings.is_local() and not settings.api_key:
        warn(f"listening on {host} without an API key: anyone who can reach this address can use it "
             f"(set --api-key or {API_KEY_VARIABLE})")
    torch.set_num_threads(settings.torch_threads())
    # Loaded here, so that a run that cannot be loaded is one line; each extra worker loads its own copy.
    predictor = load_predictor(run, settings.ensemble, device=device, batch_size=batch_size)
    address = f"[{host}]" if ":" in host else host
    info(f"serving {predictor.name} ({predictor.run.summary.variant}, {len(predictor.run.labels)} labels) on "
         f"http://{address}:{port}/ with {workers} worker{'s' if workers > 1 else ''}; Ctrl-C or SIGTERM stops it")
    if workers > 1:
        del predictor  # the workers load their own
        predictor = None
    run_server(settings, predictor)
