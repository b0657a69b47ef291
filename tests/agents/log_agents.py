"""Test agents that write to their standard streams in every way an agent's code can."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Any

from beamish.runtime import Agent, Failure, Resume

log = logging.getLogger("tests.talker")


class Talker(Agent):
    """Says hello in ``init`` and ``recover`` (so each process start shows in its log),
    then writes what each call asks for; every call answers the pid."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        print(f"hello from init, pid {os.getpid()}")
        return {}

    def recover(self, failure: Failure, state: Any) -> Resume:
        print(f"recovering from {failure.kind}, pid {os.getpid()}")
        return Resume()

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        op = msg["op"] if isinstance(msg, dict) else msg
        if op == "print":
            print(msg["text"])
        elif op == "stderr":
            print(msg["text"], file=sys.stderr)
        elif op == "log":
            log.warning("%s", msg["text"])
        elif op == "exc":
            try:
                raise ValueError("bad value")
            except ValueError:
                log.exception("it failed")
        elif op == "fd":
            os.write(msg["fd"], msg["text"].encode() + b"\n")
        elif op == "subprocess":
            subprocess.run(["sh", "-c", f"echo {msg['text']}; echo {msg['text']} >&2"],
                           check=True)
        elif op == "spam_fd":  # a subprocess's output only: no write through Python
            subprocess.run(["sh", "-c", f"yes {msg['text']} | head -n {msg['n']}"],
                           check=True)
        elif op == "spam":
            for i in range(msg["n"]):
                print(f"{msg['text']} {i:06d}")
        elif op == "title":
            with open(f"/proc/{os.getpid()}/comm") as fh:
                return fh.read().strip(), state
        return os.getpid(), state


class OwnStdio(Agent):
    """Points its fds 1 and 2 and ``sys.stdout`` at a file of its own in ``init`` (as an
    agent written before beamish kept logs may): it must keep running, writing there."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        fd = os.open(args["path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - for its life
        return {}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        print(msg)
        os.write(2, f"raw {msg}\n".encode())
        return os.getpid(), state


class Configured(Agent):
    """Configures logging itself in ``init``, as many programs do at start."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        logging.basicConfig(level=logging.INFO, format="configured %(levelname)s %(message)s")
        return {}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        log.info("%s", msg)
        return os.getpid(), state
