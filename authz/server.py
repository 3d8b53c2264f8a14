"""Production WSGI servers for ``authz serve``; gunicorn is the default (docs/decisions.md)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import tempfile
from typing import Any

log = logging.getLogger("authz.server")
SERVERS = ("gunicorn", "granian")


def run(server: str, host: str, port: int, workers: int) -> None:
    """Serve ``wsgi:app`` semantics: each worker process builds its own app after the fork."""
    log.info("serving", extra={"server": server, "workers": workers, "bind": f"{host}:{port}"})
    if server == "granian":
        _run_granian(host, port, workers)
    else:
        _run_gunicorn(host, port, workers)


def prepare_metrics_dir() -> str:
    """A fresh folder for the workers' metric files; must precede any prometheus import."""
    folder = tempfile.mkdtemp(prefix="authz-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder


def _child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def _run_gunicorn(host: str, port: int, workers: int) -> None:
    from gunicorn.app.base import BaseApplication

    class Gunicorn(BaseApplication):  # type: ignore[misc]
        def __init__(self, options: dict[str, Any]) -> None:
            self.options = options
            super().__init__()

        def load_config(self) -> None:
            for key, value in self.options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from authz import create_app

            return create_app()

    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    Gunicorn({
        "bind": bind, "workers": workers, "worker_class": "sync", "preload_app": False,
        "timeout": 30, "graceful_timeout": 20, "accesslog": None,
        "errorlog": "-", "loglevel": "warning", "proc_name": "authz",
        # A request line or header beyond these limits is refused before it reaches Flask.
        "limit_request_line": 8190, "limit_request_fields": 100,
        "child_exit": _child_exit,
    }).run()


def _run_granian(host: str, port: int, workers: int) -> None:
    from granian import Granian
    from granian.constants import Interfaces

    Granian("authz.wsgi:app", address=host, port=port, interface=Interfaces.WSGI,
            workers=workers, blocking_threads=1).serve()


def start_jobs() -> subprocess.Popen[bytes]:
    """``authz jobs run`` in a child process that dies with this one (Linux PDEATHSIG)."""
    command = [sys.executable, "-c", "from authz.cli import main; main()", "jobs", "run"]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and a fixed command
        command, env=os.environ.copy(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        preexec_fn=_die_with_parent)  # noqa: PLW1509 - before exec only
    log.info("job runner started", extra={"pid": process.pid})
    return process


def stop_jobs(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    # gunicorn's arbiter reaps any child, ours included: then there is nothing left to wait for.
    with contextlib.suppress(ChildProcessError, subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _die_with_parent() -> None:
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
