"""Where and in what precision the model runs: shared by training and prediction."""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial

import torch

from bertner.config import check_setting
from bertner.errors import BertnerError


def pick_device(name: str) -> torch.device:
    check_setting("device", name)  # the same rule for train, evaluate and predict
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BertnerError(f"--device {name} asked for, but no CUDA GPU is visible")
    return torch.device(name)


# Models made of many small operations (a 128-wide LSTM, tiny's 2-layer 128-wide BERT, a CRF's loop
# over positions): each operation split over threads hands work to sleeping threads and waits for them
# (bertner/__init__.py sets OMP_WAIT_POLICY=PASSIVE), which costs more than the split saves.
ONE_THREAD_MODELS = ("bilstm", "tiny")


def training_threads(requested: int, model: str, device: torch.device) -> int:
    """The CPU threads to train with; 0 leaves torch's default (OMP_NUM_THREADS, else one per core).

    Without --num-threads, the bilstm and tiny models train on one thread: on this project's 2-core
    machine two threads trained the bilstm at 0.19x and tiny at 0.64x one thread's speed (0.63x and
    0.83x with another job on a core), where ALBERT-tiny's larger matrices gained 1.16x (bench/cpu_threads.py).
    That holds whatever OMP_NUM_THREADS says: one is at most any share of the cores (a sweep worker's).
    """
    if requested or device.type != "cpu":
        return requested
    return 1 if model in ONE_THREAD_MODELS else 0


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX-512 BF16 or AMX), as oneDNN reports it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pick_precision(name: str, device: torch.device) -> str:
    if name != "auto":
        if device.type != "cuda" and name == "fp16":
            raise BertnerError("--precision fp16 needs a CUDA GPU; on CPU use fp32, or bf16 where the CPU has it")
        if device.type != "cuda" and name == "bf16" and not cpu_has_bf16():
            raise BertnerError("--precision bf16 on CPU needs AVX-512 BF16 or AMX, which this CPU lacks; use fp32")
        return name
    if device.type != "cuda":
        # bf16 autocast on a CPU with native bf16: ALBERT-tiny trains 2.3x and the bilstm 1.4x
        # faster on this project's AMD EPYC, with the same loss curve (see README).
        return "bf16" if cpu_has_bf16() else "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast_for(precision: str, device: torch.device):
    if precision == "fp32":
        return nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return partial(torch.autocast, device_type=device.type, dtype=dtype)
