"""What a ``local`` pool worker process runs (:class:`~evograph.runs.execute.executors.LocalExecutor`
supervises it): the user's plug-ins registered (:mod:`evograph.runs.execute.plugins`), the
process set up (:func:`~evograph.runs.execute.process.init_worker`), then units received down
its pipe, evaluated, and their results sent back once their weights are on disk.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
from multiprocessing.connection import Connection

from .plugins import Payload, PluginError, install
from .process import init_worker
from .task import DataSpec
from .weights import PendingWrite, write_pending
from .worker import evaluate_unit

QUIET_WAIT_S = 0.25      # longest a pool worker's sender waits for a quiet moment to write


def worker_main(conn: Connection, device: str, memory_limit_mb: int,
                preload: DataSpec | None = None, plugins: Payload = ()) -> None:
    """Loop of a pool worker: register the user's ``plugins`` (one that cannot be loaded here
    is said instead of ready, and the worker ends), say ready, then for each unit received say it has begun,
    evaluate it and hand its results to the sender thread (:func:`send_results`), which
    writes their weights and sends them while this thread goes on to the next unit; None stops
    it, once the last results are sent.

    ``quiet`` is set while this thread trains or waits for a unit, and the sender writes only
    then (or after :data:`QUIET_WAIT_S`): Python threads share one interpreter lock, and a
    write's Python work (the state dict, the serialisation, the file calls) taking it while
    this thread receives, parses, builds and inherits the next candidate slows those steps
    (docs/performance.md); inside training the lock is free most of the time (kernels)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C for everyone
    sending, outbox, quiet = threading.Lock(), queue.SimpleQueue(), threading.Event()
    sender = threading.Thread(target=send_results, args=(conn, sending, outbox, quiet),
                              name="evograph-sender", daemon=True)
    sender.start()  # before init_worker limits the address space: its stack is mapped now
    try:
        install(plugins)  # before init_worker: the dataset it preloads may be a plug-in
    except PluginError as exc:
        conn.send({"plugin_error": str(exc)})
        return
    init_worker(1, device, memory_limit_mb, preload)
    with sending:
        conn.send({"ready": os.getpid()})
    while True:
        if not conn.poll():
            quiet.set()  # nothing to do until the next unit comes
        try:
            message = conn.recv()
        except EOFError:
            break
        quiet.clear()
        if message is None:
            break
        with sending:  # said before the work starts, so a crash is charged to this unit
            conn.send({"begun": [task.id for task in message["unit"]]})
        deferred: list[PendingWrite] = []
        results = evaluate_unit(message["unit"], message["mode"], deferred, quiet.set)
        quiet.clear()
        outbox.put((deferred, results))
    quiet.set()
    outbox.put(None)
    sender.join()


def send_results(conn: Connection, sending: threading.Lock, outbox: queue.SimpleQueue,
                  quiet: threading.Event) -> None:
    """A pool worker's sender thread: for each unit evaluated, in order, write its weights
    durably once the main thread is quiet (see :func:`worker_main`), then send its results
    (so a result the driver stores always has its weights)."""
    while (item := outbox.get()) is not None:
        writes, results = item
        if writes:
            quiet.wait(QUIET_WAIT_S)
        results = write_pending(writes, results)
        with sending:
            try:
                conn.send(results)
            except (BrokenPipeError, OSError):
                return  # the driver is gone
