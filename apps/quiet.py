"""A first run without TensorFlow's start-up noise; ``SWARM_DEBUG_TF=1`` brings all of it back.

What TensorFlow 2.19 prints on a machine without a GPU, and what silences each line:

* C++ logs after absl starts (``oneDNN custom operations are on``, ``cpu_feature_guard``):
  ``TF_CPP_MIN_LOG_LEVEL`` (``peer/__init__.py`` sets 2, this module 3 if nothing did), and
  ``CUDA_VISIBLE_DEVICES=""`` when the machine has no NVIDIA device. The failing ``cuInit``
  probe logs at ERROR even so; the first op runs inside the filtered import below.
* C++ logs written *before* absl is initialized (``Unable to register cuDNN factory``,
  ``computation placer already registered``, ``WARNING: All log messages before
  absl::InitializeLog()``): no setting reaches them (tensorflow/tensorflow#62075), so the
  first ``import tensorflow`` runs with file descriptor 2 sent to a temporary file; lines that
  are not this noise are written back to stderr afterwards, so a real error still shows (a
  crash inside the import itself, e.g. SIGILL on a CPU without AVX, loses them: rerun with
  ``SWARM_DEBUG_TF=1``).
* TensorFlow Decision Forests' welcome banner (imported by tensorflowjs):
  ``TFDF_DISABLE_WELCOME_MESSAGE``.
* Python-side: tf_keras's "saving as HDF5 is legacy" ``UserWarning`` (the .h5 files are what
  peers exchange on purpose), and the ``tensorflow``/``absl`` loggers below ERROR.

Everything is ``setdefault``: a variable the user set wins.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator, MutableMapping
from pathlib import Path

DEBUG_ENV = "SWARM_DEBUG_TF"
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:.]+\s+\d+ \S+:\d+\] "  # absl: E0000 00:00:1796162230.58 11052 file.cc:177]
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] "  # TF's own: 2026-01-01 10:00:00.000: I tensorflow/...
    r"|To enable the following instructions: )"
)
WARNINGS = ("You are saving your model as an HDF5 file", "Compiled the loaded model, but the compiled metrics")


def debugging(environ: MutableMapping[str, str] = os.environ) -> bool:
    return environ.get(DEBUG_ENV, "") not in ("", "0")


def has_nvidia_gpu() -> bool:
    return any(Path("/dev").glob("nvidia[0-9]*")) or Path("/proc/driver/nvidia").exists()


def quiet_environment(environ: MutableMapping[str, str] = os.environ) -> None:
    """The logging environment TensorFlow reads when it loads; call before it is imported."""
    if debugging(environ):
        return
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    if not has_nvidia_gpu():
        environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    for message in WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def _stderr_filtered() -> Iterator[None]:
    """File descriptor 2 goes to a temporary file (C++ writes there, not to ``sys.stderr``);
    afterwards every line that is not start-up noise is written back to stderr."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a daemon): nothing to keep quiet
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [line for line in sink.read().decode(errors="replace").splitlines()
                    if line.strip() and not NOISE.match(line)]  # fmt: skip
            if kept:
                print("\n".join(kept), file=sys.stderr)


def import_tensorflow() -> None:
    """Import TensorFlow, tf_keras and tensorflowjs once, without their start-up lines."""
    quiet_environment()
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    if "tensorflow" in sys.modules or debugging():
        return
    with _stderr_filtered():
        import tensorflow as tf
        import tensorflowjs  # noqa: F401
        import tf_keras  # noqa: F401

        tf.zeros(())  # the first op starts the devices: the cuInit probe logs its failure here

    tf.get_logger().setLevel(logging.ERROR)
