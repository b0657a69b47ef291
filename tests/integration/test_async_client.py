"""The native asyncio client (issue 13 item 7): `AsyncNode`, `AsyncAgentRef` and
`Node.acall`/`acast` on zmq.asyncio, against real agents, a real node and real LMDB.
What it does is asserted here (replies, errors, real concurrency, no thread per call,
nothing leaked, durability); how fast it is, in ``benchmarks/_aclient.py``."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import tempfile
import threading

import psutil
import pytest

from beamish.runtime import (
    AgentNotFound,
    AlreadyRunning,
    AsyncAgentRef,
    AsyncNode,
    BadMessage,
    CallTimeout,
    ConfigError,
    MessageTooLarge,
    Node,
    NodeNotRunning,
    RemoteError,
    connect,
    start_node,
)
from tests.conftest import kill_node, kill_tree, shutdown_quietly, wait_until

pytestmark = pytest.mark.slow

COUNTER = "tests.agents.basic:Counter"
FAULTY = "tests.agents.basic:Faulty"
BARRIER = "tests.agents.async_agents:Barrier"


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)  # pytest-timeout bounds it


async def _until(pred, what: str, timeout: float = 20.0,  # type: ignore[no-untyped-def]
                 interval: float = 0.005):
    """`wait_until` for coroutines: poll ``pred`` (a function, or one returning an
    awaitable) every ``interval`` s (0: every turn of the loop) without blocking it; fail
    the test with ``what`` after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = pred()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _reply_sockets(node: Node) -> set[str]:
    return {f for f in os.listdir(node.paths.run) if f.startswith("c") and f.endswith(".sock")}


def test_200_concurrent_acalls_have_all_200_handlers_in_flight_at_once(node):
    """Each Barrier handler replies only once all 200 have entered: every call returning
    proves the client had all 200 out at once (the old thread-pool acall had 6)."""
    n = 200
    names = [node.spawn(BARRIER, name=f"b{i}").name for i in range(n)]
    marks = tempfile.mkdtemp(prefix="bar-", dir="/tmp")

    async def go() -> tuple[list[dict[str, int]], int, int]:
        anode = AsyncNode(node)
        refs = [anode.ref(name) for name in names]
        before = threading.active_count()
        most = before
        calls = asyncio.gather(*(ref.call({"dir": marks, "n": n, "echo": i}, timeout=90)
                                 for i, ref in enumerate(refs)))
        while not calls.done():  # sample this process's threads while the calls wait
            most = max(most, threading.active_count())
            await asyncio.wait((calls,), timeout=0.05)
        return await calls, before, most
    try:
        replies, before, most = _run(go())
    finally:
        for f in os.listdir(marks):
            os.unlink(os.path.join(marks, f))
        os.rmdir(marks)
    assert [r["echo"] for r in replies] == list(range(n))
    assert all(r["entered"] == n for r in replies)
    assert most == before, f"threads rose from {before} to {most}: a thread per call?"


def test_acall_answers_and_fails_as_the_sync_call_does(node):
    node.spawn(FAULTY, name="f")
    node.spawn(COUNTER, name="c")
    cases = [("f", "raise", 5.0), ("nope", 1, 5.0), ("f", "x" * (20 * 2**20), 5.0),
             ("f", {(1, 2): 3}, 5.0), ("f", 1, -1.0), ("f", 1, float("nan")),
             ("bad name!", 1, 5.0), ("f", {"sleep": 1.0}, 0.2)]
    sync = []
    for name, msg, timeout in cases:
        with pytest.raises(Exception) as info:  # noqa: PT011 - compared below, type and text
            node.call(name, msg, timeout)
        sync.append(info.value)

    async def go() -> list[BaseException]:
        anode = AsyncNode(node)
        assert await anode.call("c", "incr") == 1
        assert await node.acall("c", "incr") == 2
        assert await anode.ref("c").call("get") == 2
        got = []
        for name, msg, timeout in cases:
            with pytest.raises(Exception) as info:  # noqa: PT011 - compared below
                await anode.call(name, msg, timeout)
            got.append(info.value)
        return got
    got = _run(go())
    expected = [RemoteError, AgentNotFound, MessageTooLarge, BadMessage, ConfigError,
                ConfigError, ConfigError, CallTimeout]
    assert [type(e) for e in sync] == expected
    assert [type(e) for e in got] == expected
    assert [str(e) for e in got] == [str(e) for e in sync]
    assert got[0].type == "ValueError" and "boom" in got[0].message  # type: ignore[attr-defined]


def test_an_agent_killed_mid_acall_is_restarted_and_answers_or_fails_as_sync(node):
    """A permanent agent SIGKILLed while handling the call: it is restarted and the call
    retried (the sync call's behaviour); a call that kills it every time gets RemoteError
    once the retries are spent. A temporary agent killed mid-call leaves the tree: the
    call ends at once with the sync call's error, not at its timeout."""
    ref = node.spawn(FAULTY, name="p")
    node.spawn(FAULTY, name="t", restart="temporary")
    entered = os.path.join(node.dir, "entered")

    def sync_gone() -> BaseException:
        node.spawn(FAULTY, name="t2", restart="temporary")
        box: list[BaseException] = []

        def call() -> None:
            try:
                node.call("t2", {"sleep": 60, "entered": entered + "2"}, timeout=60)
            except Exception as exc:  # noqa: BLE001 - handed to the test
                box.append(exc)
        th = threading.Thread(target=call)
        th.start()
        wait_until(lambda: os.path.exists(entered + "2"), what="the sync call's handler")
        os.kill(node.info("t2").pid, signal.SIGKILL)
        th.join(30)
        return box[0]
    sync_error = sync_gone()

    async def go() -> tuple[object, BaseException, BaseException]:
        anode = AsyncNode(node)
        pid = (await anode.info("p")).pid
        assert pid is not None
        call = asyncio.ensure_future(anode.call("p", {"sleep": 0.5, "entered": entered},
                                                timeout=60))
        await _until(lambda: os.path.exists(entered), "the handler to start")
        os.kill(pid, signal.SIGKILL)
        answer = await call  # handled again by the restarted agent
        with pytest.raises(RemoteError) as poison:
            await anode.call("p", "sigkill", timeout=60)
        os.unlink(entered)
        pid = (await anode.info("t")).pid
        assert pid is not None
        call = asyncio.ensure_future(anode.call("t", {"sleep": 60, "entered": entered},
                                                timeout=60))
        await _until(lambda: os.path.exists(entered), "the handler to start")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(Exception) as gone:  # noqa: PT011 - compared with the sync one
            await call
        assert loop.time() - t0 < 30
        return answer, poison.value, gone.value
    answer, poison, gone = _run(go())
    assert answer == "slept" and ref.info().restarts >= 1
    assert poison.failure is not None and poison.failure.kind == "killed"  # type: ignore[attr-defined]
    assert type(gone) is type(sync_error) and not isinstance(gone, CallTimeout)
    assert "'t'" in str(gone) and "'t2'" in str(sync_error)


def test_a_node_killed_mid_acall(node_dir):
    """kill -9 of the node while calls wait: a call times out as the sync call does (its
    message stays queued), a control request ends at once with NodeNotRunning; the node
    started again handles the queued call, and a waiting acall gets that reply."""
    n = start_node(node_dir)
    n2 = None
    try:
        n.spawn(FAULTY, name="f")
        entered = os.path.join(node_dir, "entered")

        async def go() -> None:
            nonlocal n2
            anode = AsyncNode(n)
            first = asyncio.ensure_future(anode.call("f", {"sleep": 2, "entered": entered},
                                                     timeout=0.5))
            await _until(lambda: os.path.exists(entered), "the handler to start")
            os.kill(n.pid, signal.SIGKILL)
            with pytest.raises(CallTimeout) as timed_out:
                await first
            assert "will still be handled" in str(timed_out.value)
            with pytest.raises(NodeNotRunning, match="went away"):
                await anode.info("f")
            kill_tree(n.pid)  # the agents died with it; reap what is left
            os.unlink(entered)
            waiting = asyncio.ensure_future(anode.call("f", {"sleep": 0.1}, timeout=90))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            n2 = await asyncio.to_thread(start_node, node_dir)
            # The first call, still queued, runs again on the restarted agent; then this.
            assert await waiting == "slept"
            anode.close()
        _run(go())
    finally:
        kill_node(n)
        if n2 is not None:
            shutdown_quietly(n2)


def test_cancelled_acalls_leak_no_task_socket_or_fd_and_respect_the_commit(node):
    """An acall cancelled before its commit sends nothing; one cancelled while it waits
    for the reply was sent (the agent handles it). Neither leaves a task, a pending
    receive, a waiting entry or a file descriptor behind."""
    node.spawn(COUNTER, name="c")

    async def go() -> None:
        tasks = asyncio.all_tasks()
        anode = AsyncNode(node)
        assert await anode.call("c", "get") == 0
        link = node._link()
        fds = _fds()
        for _ in range(50):
            before_commit = asyncio.ensure_future(anode.call("c", "incr"))
            await asyncio.sleep(0)  # it queued its append; the commit is the loop's next turn
            before_commit.cancel()
            waiting = asyncio.ensure_future(anode.call("c", "incr"))
            # Committed and rung: waiting for the reply (seen at the loop's next turn,
            # before the reply can be: that takes an agent's handler and a poll).
            await _until(lambda: link.messenger._calls, "the call to wait for its reply",
                         interval=0)
            waiting.cancel()
            for task in (before_commit, waiting):
                with pytest.raises(asyncio.CancelledError):
                    await task
        assert await anode.call("c", "get") == 50  # the 50 sent, not the 50 unsent
        assert asyncio.all_tasks() == tasks
        inbox = link.messenger._inbox
        assert inbox is not None
        assert inbox.replies.waiting == 0 and inbox.replies._recv is None
        assert not link.messenger._calls and not link.messenger._queue
        assert _fds() == fds
    _run(go())


def test_acast_is_acknowledged_by_its_commit_a_ledger_across_kill_9(node_dir):
    """Concurrent acasts (group-committed) to a Counter while the node is SIGKILLed: every
    acast that returned is counted exactly once after the node is started again."""
    n = start_node(node_dir)
    n2 = None
    try:
        n.spawn(COUNTER, name="c")

        async def go() -> int:
            anode = AsyncNode(n)
            acked = 0
            running = True

            async def sender() -> None:
                nonlocal acked
                while running:
                    await anode.cast("c", "incr")
                    acked += 1  # its commit returned: acknowledged
            senders = [asyncio.ensure_future(sender()) for _ in range(8)]
            await _until(lambda: acked >= 400, "400 acknowledged casts")
            os.kill(n.pid, signal.SIGKILL)
            await asyncio.sleep(0.3)  # casts go on: their commits need no node
            running = False
            await asyncio.gather(*senders)
            anode.close()
            return acked
        acked = _run(go())
        kill_node(n)
        n2 = start_node(node_dir)
        # Queued behind every cast: what it answers counts each of them, once.
        assert n2.call("c", "get", timeout=60) == acked
    finally:
        kill_node(n)
        if n2 is not None:
            shutdown_quietly(n2)


def test_async_node_offers_the_whole_node_api_as_coroutines(node):
    public = {name for name, _ in inspect.getmembers(Node, inspect.isfunction)
              if not name.startswith("_")}
    # acall/acast/acast_many are AsyncNode's call/cast/cast_many.
    missing = sorted(public - {"acall", "acast", "acast_many"} - set(dir(AsyncNode)))
    assert not missing, f"AsyncNode lacks {missing} (SPEC: the whole Node API)"
    for name in public - {"acall", "acast", "acast_many", "ref", "close", "events", "logs"}:
        assert inspect.iscoroutinefunction(getattr(AsyncNode, name)), name

    async def go() -> None:
        anode = await AsyncNode.connect(node.dir)
        assert anode.pid == node.pid and anode.dir == node.dir
        await anode.add_supervisor("workers", max_restarts=5)
        ref = await anode.spawn(FAULTY, name="f", supervisor="workers")
        assert isinstance(ref, AsyncAgentRef) and await ref.call("get") == 0
        lazy = await anode.spawn(COUNTER, name="lazy", lazy=True)
        assert (await lazy.info()).status == "sleeping"
        assert await lazy.call("incr") == 1  # wakes it
        await lazy.cast_many(["incr", "incr"])
        assert await lazy.call("get") == 3
        await anode.cast_many([("lazy", "incr"), ("f", "incr")])
        assert await lazy.call("get") == 4
        assert [i.name for i in await anode.ps()] == ["f", "lazy"]
        page = await anode.ps_page(limit=1)
        assert [i.name for i in page.rows] == ["f"] and page.more == 1
        assert [i.name for i in await anode.ps(supervisor="workers")] == ["f"]
        tree = await anode.tree()
        workers = [c for c in tree["children"] if c["name"] == "workers"]
        assert [c["name"] for c in workers[0]["children"]] == ["f"]
        # A woken agent joins the tree when the zygote's answer to its fork reaches the
        # node, which can come after the agent answered its first call.
        async def lazy_in_tree() -> bool:
            return "lazy" in {c["name"] for c in (await anode.tree())["children"]}
        await _until(lazy_in_tree, "the woken agent in the tree")
        events = await anode.events()
        assert {"spawned"} <= {e.kind for e in events}
        follow = anode.events(follow=True, after=max(e.seq for e in events))
        page = await anode.events_page(kind="spawned", limit=1)
        assert [e.kind for e in page.events] == ["spawned"]
        assert {a.name for a in (await anode.stats()).agents} == {"f", "lazy"}
        await ref.cast("flaky")  # a Skip: a dead letter and its event
        kinds = []
        async for event in follow:
            kinds.append(event.kind)
            if event.kind == "dead_lettered":
                break
        await follow.aclose()
        letters = await anode.dead_letters("f")
        assert letters[0]["msg"] == "flaky"
        await ref.cast("heal")
        await anode.resend_dead_letter("f", letters[0]["seq"])
        assert await ref.call("get") == 2
        assert (await anode.status()).pid == node.pid
        await ref.sleep()
        assert (await ref.info()).status == "sleeping"
        await ref.stop()
        with pytest.raises(AgentNotFound):
            await ref.call("get")
        await anode.delete("lazy")
        with pytest.raises(AgentNotFound):
            await anode.info("lazy")
        anode.close()
        with pytest.raises(NodeNotRunning, match="closed"):
            await anode.call("f", "get")
    _run(go())


def test_restart_and_shutdown_from_asyncio(node_dir):
    n = start_node(node_dir)
    try:
        n.spawn(COUNTER, name="c")

        async def go() -> None:
            anode = AsyncNode(n)
            assert await anode.call("c", "incr") == 1
            with pytest.raises(AlreadyRunning, match="beamish stop c"):
                await anode.restart("c")
            await anode.stop("c")
            await anode.restart("c")
            assert await anode.call("c", "get") == 1
            await anode.shutdown()
            with pytest.raises(NodeNotRunning, match="closed"):
                await anode.info("c")
        _run(go())
        assert not psutil.pid_exists(n.pid) or psutil.Process(n.pid).status() == "zombie"
    finally:
        shutdown_quietly(n)


def test_node_acall_from_many_event_loops_and_threads(node):
    """A `Node` serves asyncio code in any loop: one link per loop, those of finished
    loops closed at the next link, all closed with the node; no reply socket is left."""
    node.spawn(COUNTER, name="c")
    sockets = _reply_sockets(node)
    client = connect(node.dir)

    async def burst() -> list[int]:
        return list(await asyncio.gather(*(client.acall("c", "incr") for _ in range(20))))
    results: list[int] = []
    for _ in range(3):
        results += asyncio.run(burst())
    threads = [threading.Thread(target=lambda: results.extend(asyncio.run(burst())))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == list(range(1, 141))
    assert len(client._links) <= 5  # finished loops' links were closed as new ones came
    assert len(_reply_sockets(node) - sockets) == len(client._links)
    client.close()
    assert not client._links and _reply_sockets(node) == sockets


def test_async_cluster_answers_like_node_cluster(node):
    """`AsyncNode.cluster` reads the same answer as `Node.cluster`: None for a node that is
    not in a cluster (the cluster tests read a member's through `Node.cluster`)."""

    async def go():  # type: ignore[no-untyped-def]
        return await AsyncNode(node).cluster()  # (closing it would close the fixture's node)

    assert node.cluster() is None
    assert _run(go()) is None
