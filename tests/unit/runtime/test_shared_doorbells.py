"""One process's doorbells are shared by its threads (messaging/messenger.py
`SharedDoorbells`): a ZeroMQ context holds 1,023 sockets, and a thread each with up to 256
open ran out once a few threads had rung enough distinct agents (a client calling
thousands of sessions; the node stopping hundreds of them from its worker threads).

A real store, real agent records, real ZeroMQ sockets: the casts ring inbox paths nobody
listens on, which is what a ring is (a hint; the message is in LMDB).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from beamish.runtime._paths import NodePaths
from beamish.runtime._types import AgentStatus
from beamish.runtime.messaging.messenger import Messenger
from beamish.runtime.store.lmdb import Store
from beamish.runtime.store.records import AgentRecord

THREADS, AGENTS_EACH = 6, 300  # 1,800 distinct agents: past the context's 1,023 sockets


def test_threads_casting_to_thousands_of_agents_do_not_run_out_of_sockets(tmp_path: Any) -> None:
    paths = NodePaths.of(tmp_path / "node")
    os.makedirs(paths.run, mode=0o700)
    store = Store(str(tmp_path / "store"))
    names = [f"s{i}" for i in range(THREADS * AGENTS_EACH)]

    def register(t: Any) -> None:
        for i, name in enumerate(names, start=1):
            t.put_agent(AgentRecord(name, i, status=AgentStatus.RUNNING))
    store.write(register)
    messenger = Messenger(paths, store, max_message_bytes=1 << 20)
    errors: list[BaseException] = []

    def cast_all(mine: list[str]) -> None:
        try:
            for name in mine:
                messenger.cast(name, {"hello": name})
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=cast_all, args=(names[k::THREADS],))
               for k in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert store.read(lambda t: sum(t.depth(i) for i in range(1, len(names) + 1))) \
            == len(names)  # every cast is in its mailbox
    finally:
        messenger.close()
        store.close()
