"""One peer of the ``peers`` scenario, in a process of its own (`._peers.run_peer` starts it
in a new session and kills whatever is left of that session afterwards).

``python -m benchmarks._peers_child PEER ENDPOINT SIZES_JSON OUT_JSON``: measures every row
of `._peers` on PEER (thespian, pykka or ray) against the raw echo server at ENDPOINT and
writes the figures to OUT_JSON; progress goes to stderr.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from ._peers import (
    CALL_TIMEOUT_S,
    PeerSizes,
    measure,
    self_uss,
    uss_growth,
    uss_median,
)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Kept:
    """A Thespian Counter under a `Keeper` (its parent, which re-creates it)."""

    def __init__(self, keeper: Any, gen: int, child: Any) -> None:
        self.keeper, self.gen, self.child = keeper, gen, child


class ThespianSystem:
    """Thespian on its TCP multi-process base: every actor is a process."""

    isolation = "process"

    def __init__(self) -> None:
        from thespian.actors import ActorExitRequest, ActorSystem

        from . import _peer_actors
        self._exit = ActorExitRequest
        self._actors = _peer_actors
        self.asys = ActorSystem("multiprocTCPBase",
                                capabilities={"Admin Port": _free_port()})

    def spawn(self, kind: str) -> Any:
        if kind == "kept":
            keeper = self.asys.createActor(self._actors.Keeper)
            return _Kept(keeper, *self.call(keeper, "start"))
        return self.asys.createActor(self._actors.Counter)

    def call(self, handle: Any, msg: Any) -> Any:
        to = handle.child if isinstance(handle, _Kept) else handle
        reply = self.asys.ask(to, msg, CALL_TIMEOUT_S)
        if reply is None:
            raise TimeoutError(f"no reply from {to} within {CALL_TIMEOUT_S:g} s")
        return reply

    def cast(self, handle: Any, msg: Any) -> None:
        self.asys.tell(handle.child if isinstance(handle, _Kept) else handle, msg)

    def delete(self, handle: Any) -> None:
        # A keeper's exit request reaches its child too (Thespian stops an actor's children).
        self.asys.tell(handle.keeper if isinstance(handle, _Kept) else handle, self._exit())

    def memory_per_actor(self, handles: Sequence[Any], before_uss: int) -> dict[str, Any]:
        return uss_median([self.call(h, "pid") for h in handles])

    def kill_and_recall(self, handle: Any) -> tuple[int, Any]:
        assert isinstance(handle, _Kept)
        pid = self.call(handle, "pid")
        t0 = time.perf_counter_ns()
        os.kill(pid, signal.SIGKILL)
        # The client learns the new address from the keeper (it asks until the generation
        # changed), then calls the new Counter.
        while True:
            gen, child = self.call(handle.keeper, "child")
            if gen != handle.gen:
                break
            if time.perf_counter_ns() - t0 > CALL_TIMEOUT_S * 1e9:
                raise TimeoutError("the keeper did not re-create its Counter")
        handle.gen, handle.child = gen, child
        answer = self.call(handle, "count")
        return time.perf_counter_ns() - t0, answer

    def close(self) -> None:
        self.asys.shutdown()


class PykkaSystem:
    """Pykka's threading actors: every actor is a thread of this process."""

    isolation = "threads"

    def __init__(self) -> None:
        import pykka

        class Counter(pykka.ThreadingActor):  # type: ignore[misc]  # pykka: untyped here
            def __init__(self) -> None:
                super().__init__()
                self.n = 0

            def on_receive(self, msg: Any) -> Any:
                if msg == "incr":
                    self.n += 1
                    return None
                if msg == "count":
                    return self.n
                if msg == "pid":
                    return os.getpid()
                return msg

        self._pykka, self._cls = pykka, Counter

    def spawn(self, kind: str) -> Any:
        return self._cls.start()

    def call(self, handle: Any, msg: Any) -> Any:
        return handle.ask(msg, timeout=CALL_TIMEOUT_S)

    def cast(self, handle: Any, msg: Any) -> None:
        handle.tell(msg)

    def delete(self, handle: Any) -> None:
        handle.stop()

    def memory_per_actor(self, handles: Sequence[Any], before_uss: int) -> dict[str, Any]:
        return uss_growth(before_uss, len(handles))

    def kill_and_recall(self, handle: Any) -> tuple[int, Any]:
        raise NotImplementedError("threads")

    def close(self) -> None:
        self._pykka.ActorRegistry.stop_all()


class RaySystem:
    """Ray's actors: every actor is a worker process, restarted by Ray after it dies."""

    isolation = "process"

    def __init__(self) -> None:
        import ray

        class Counter:
            def __init__(self) -> None:
                self.n = 0

            def tell(self, msg: Any) -> None:
                if msg == "incr":
                    self.n += 1

            def ask(self, msg: Any) -> Any:
                if msg == "count":
                    return self.n
                if msg == "pid":
                    return os.getpid()
                return msg

        self._ray = ray
        ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False,
                 log_to_driver=False)
        self._cls = ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0)(Counter)

    def spawn(self, kind: str) -> Any:
        return self._cls.remote()

    def call(self, handle: Any, msg: Any) -> Any:
        return self._ray.get(handle.ask.remote(msg), timeout=CALL_TIMEOUT_S)

    def cast(self, handle: Any, msg: Any) -> None:
        handle.tell.remote(msg)

    def delete(self, handle: Any) -> None:
        self._ray.kill(handle, no_restart=True)

    def memory_per_actor(self, handles: Sequence[Any], before_uss: int) -> dict[str, Any]:
        return uss_median([self.call(h, "pid") for h in handles])

    def kill_and_recall(self, handle: Any) -> tuple[int, Any]:
        pid = self.call(handle, "pid")
        t0 = time.perf_counter_ns()
        os.kill(pid, signal.SIGKILL)
        answer = self.call(handle, "count")
        return time.perf_counter_ns() - t0, answer

    def close(self) -> None:
        self._ray.shutdown()


SYSTEMS = {"thespian": ThespianSystem, "pykka": PykkaSystem, "ray": RaySystem}


def main(argv: list[str]) -> int:
    """Measure one peer; write its figures (or its error) as JSON."""
    peer, endpoint, sizes_json, out_path = argv
    sz = PeerSizes(**json.loads(sizes_json))
    result: dict[str, Any] = {"available": True, "version": version(peer)}
    system: Any = None
    status = 0
    try:
        t0 = time.perf_counter()
        system = SYSTEMS[peer]()
        result["start_seconds"] = time.perf_counter() - t0
        result["isolation"] = system.isolation
        result.update(measure(system, endpoint, sz, self_uss, _log, peer))
    except Exception as exc:  # noqa: BLE001 - reported in the figures, the run goes on
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
        status = 1
    finally:
        if system is not None:
            try:
                system.close()
            except Exception as exc:  # noqa: BLE001 - reported; the parent reaps the rest
                result["close_error"] = f"{type(exc).__name__}: {exc}"
        with open(out_path, "w") as fh:
            json.dump(result, fh, default=str)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
