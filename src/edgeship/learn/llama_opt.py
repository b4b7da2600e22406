"""llama.cpp's own training API (``llama_opt_init`` / ``llama_opt_epoch``) through ctypes.

llama-cpp-python binds the two llama functions but not the ggml dataset/result helpers
they need, and its ``llama_opt_params`` lacks the ``optimizer_type`` field the library
reads, so the struct and helpers are declared here. This runs in a child process
(`_train_child`): a native crash in the trainer must not take the agent down.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

GGML_TYPE_I32 = 26
OPTIMIZER_ADAMW = 0
PR_SET_PDEATHSIG = 1


class _AdamW(ctypes.Structure):
    _fields_ = [("alpha", ctypes.c_float), ("beta1", ctypes.c_float), ("beta2", ctypes.c_float),
                ("eps", ctypes.c_float), ("wd", ctypes.c_float)]


class _SGD(ctypes.Structure):
    _fields_ = [("alpha", ctypes.c_float), ("wd", ctypes.c_float)]


class _OptimizerParams(ctypes.Structure):
    _fields_ = [("adamw", _AdamW), ("sgd", _SGD)]


class _OptParams(ctypes.Structure):
    _fields_ = [("n_ctx_train", ctypes.c_uint32), ("param_filter", ctypes.c_void_p),
                ("param_filter_ud", ctypes.c_void_p), ("get_opt_pars", ctypes.c_void_p),
                ("get_opt_pars_ud", ctypes.c_void_p), ("optimizer_type", ctypes.c_int)]


_ParamFilter = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_void_p)


def _ggml(lib_dir: Path) -> ctypes.CDLL:
    g = ctypes.CDLL(str(lib_dir / "libggml-base.so"))
    vp, i64 = ctypes.c_void_p, ctypes.c_int64
    g.ggml_opt_dataset_init.argtypes = [ctypes.c_int, ctypes.c_int, i64, i64, i64, i64]
    g.ggml_opt_dataset_init.restype = vp
    for name in ("ggml_opt_dataset_data", "ggml_opt_dataset_labels", "ggml_get_data"):
        getattr(g, name).argtypes, getattr(g, name).restype = [vp], vp
    g.ggml_get_name.argtypes, g.ggml_get_name.restype = [vp], ctypes.c_char_p
    g.ggml_opt_result_init.restype = vp
    g.ggml_opt_result_reset.argtypes = [vp]
    g.ggml_opt_result_loss.argtypes = [vp, ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double)]
    return g


def _fill(g: ctypes.CDLL, tensor: int, rows: np.ndarray) -> None:
    ptr = ctypes.cast(g.ggml_get_data(tensor), ctypes.POINTER(ctypes.c_int32))
    np.ctypeslib.as_array(ptr, rows.shape)[:] = rows


def windows(tokens: np.ndarray, n_ctx: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-token labels: ``n_ctx``-token windows moving by half a window."""
    stride = max(1, n_ctx // 2)
    count = max(0, (len(tokens) - n_ctx - 1) // stride + 1)
    starts = np.arange(count) * stride
    index = starts[:, None] + np.arange(n_ctx)[None, :]
    return tokens[index].astype(np.int32), tokens[index + 1].astype(np.int32)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies: a killed agent leaves no trainer."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def _train_child() -> None:
    """argv: base, out, tokens.npy, epochs, learning rate, tensor names (comma-separated
    substrings; empty trains every tensor). Prints one JSON line."""
    base, out, tokens_path = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    epochs, lr, only = int(sys.argv[4]), float(sys.argv[5]), [t for t in sys.argv[6].split(",") if t]
    _die_with_parent()
    from llama_cpp import llama_cpp as C

    g = _ggml(Path(C.__file__).parent / "lib")
    lib = C._lib
    lib.llama_opt_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, _OptParams]
    lib.llama_opt_init.restype = None
    C.llama_backend_init()
    mparams = C.llama_model_default_params()
    mparams.load_mode = C.LLAMA_LOAD_MODE_NONE  # read into memory: the trainer writes the weights in place (a mapping is read-only)
    model = C.llama_model_load_from_file(str(base).encode(), mparams)
    cparams = C.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = 256
    cparams.type_k = cparams.type_v = 0  # F32 caches: the backward pass has no F16 kernels
    cparams.flash_attn_type = 0
    ctx = C.llama_init_from_model(model, cparams)
    n_ctx = C.llama_n_ctx(ctx)
    inputs, labels = windows(np.load(tokens_path), n_ctx)
    dataset = g.ggml_opt_dataset_init(GGML_TYPE_I32, GGML_TYPE_I32, n_ctx, n_ctx, len(inputs), 1)
    _fill(g, g.ggml_opt_dataset_data(dataset), inputs)
    _fill(g, g.ggml_opt_dataset_labels(dataset), labels)
    pars = _OptimizerParams(_AdamW(lr, 0.9, 0.999, 1e-8, 0.0), _SGD(lr, 0.0))
    trainable = _ParamFilter(lambda tensor, _: not only or any(t in g.ggml_get_name(tensor).decode() for t in only))
    lib.llama_opt_init(ctx, model, _OptParams(
        0, ctypes.cast(trainable, ctypes.c_void_p).value, None,
        ctypes.cast(g.ggml_opt_get_constant_optimizer_params, ctypes.c_void_p).value,
        ctypes.addressof(pars), OPTIMIZER_ADAMW))
    result = g.ggml_opt_result_init()
    loss, unc = ctypes.c_double(), ctypes.c_double()
    started = time.monotonic()
    for _ in range(epochs):
        g.ggml_opt_result_reset(result)
        C.llama_opt_epoch(ctx, dataset, result, None, len(inputs), None, None)
    g.ggml_opt_result_loss(result, ctypes.byref(loss), ctypes.byref(unc))
    seconds = time.monotonic() - started
    C.llama_model_save_to_file(model, str(out).encode())
    with out.open("rb") as f:
        os.fsync(f.fileno())  # on disk before the parent renames it final
    sys.stdout.write(json.dumps({"steps": epochs * len(inputs), "seconds": seconds, "loss": loss.value}) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: llama.cpp's static destructors are not our business
