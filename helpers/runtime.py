"""Process-wide settings: quiet TensorFlow, sensible thread counts, device choice."""
from __future__ import annotations

import logging
import os
import sys
import warnings

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class _ConsoleHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr (or sys.stdout) is when a record comes: Jupyter, papermill and pytest
    replace them after `helpers` is imported, and a stream held from import time would miss their capture."""

    def __init__(self, stream_name: str = "stderr"):
        self.stream_name = stream_name
        super().__init__()

    @property
    def stream(self):
        return getattr(sys, self.stream_name)

    @stream.setter
    def stream(self, value) -> None:
        pass  # logging.StreamHandler.__init__ assigns one; the property looks it up instead


def configure_logging(level: int | str = "INFO", stream: str = "stderr", fmt: str = LOG_FORMAT) -> logging.Logger:
    """Show the `helpers` loggers' messages at `level` and above on `stream`; calling it again reconfigures the
    same handler, never adds a second one, and the root logger is left alone."""
    if stream not in ("stderr", "stdout"):
        raise ValueError(f"stream must be 'stderr' or 'stdout', got {stream!r}")
    logger = logging.getLogger("helpers")
    handler = next((h for h in logger.handlers if isinstance(h, _ConsoleHandler)), None)
    if handler is None:
        handler = _ConsoleHandler()
        logger.addHandler(handler)
    handler.stream_name = stream
    handler.setFormatter(logging.Formatter(fmt))
    logger.setLevel(level)
    return logger


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ and Python logs; must run before `import tensorflow` to fully work."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # avoids the oneDNN "results may differ" banner
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="tensorflow")
    warnings.filterwarnings("ignore", module="keras")


def import_tensorflow(threads: int | None = None):
    """Import TensorFlow quietly, with memory growth on GPUs and bounded CPU threads."""
    quiet_tensorflow()
    import tensorflow as tf  # noqa: PLC0415 - deliberately late: the env vars above must come first

    tf.get_logger().setLevel(logging.ERROR)
    try:
        import absl.logging  # noqa: PLC0415

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with TensorFlow
        pass
    try:
        for gpu in tf.config.list_physical_devices("GPU"):
            # Without growth TensorFlow reserves the whole GPU and torch then runs out of memory.
            tf.config.experimental.set_memory_growth(gpu, True)
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised by an earlier call; the first settings stand
    return tf


def set_torch_threads(threads: int | None = None) -> int:
    """Use `threads` CPU threads in torch (default: every core this process may use)."""
    import torch  # noqa: PLC0415

    n = threads or cpu_count()
    torch.set_num_threads(n)
    return n


def cpu_count() -> int:
    """Cores this process may run on (respects CPU affinity and containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        return max(1, os.cpu_count() or 1)


def worker_count(workers: int) -> int:
    """Resolve a WORKERS parameter: 0 means one per core."""
    if workers < 0:
        raise ValueError(f"WORKERS must be >= 0 (0 = one per core), got {workers}")
    return workers or cpu_count()


def headless() -> bool:
    """True inside a run of helpers.pipeline (papermill): no one watches a live progress bar there."""
    return bool(os.environ.get("HELPERS_HEADLESS"))


def progress(*args, **kwargs):
    """tqdm: a widget in Jupyter, a terminal bar elsewhere, and a sparse text log in headless runs."""
    if headless():
        from tqdm import tqdm  # noqa: PLC0415

        kwargs.setdefault("mininterval", 30.0)  # a line every 30 s keeps the executed notebook small
        return tqdm(*args, **kwargs)
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(*args, **kwargs)
