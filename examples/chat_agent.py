"""An LLM chat agent that keeps its conversation in beamish state.

It calls an OpenAI-style ``/chat/completions`` endpoint from an ``async def`` handler.
When the endpoint says the context is too long, the handler raises `ContextTooLong`;
the process crashes (let it crash), and in the fresh process ``recover`` compacts the
history — it asks the model for a summary of the old turns and keeps the summary and
the last turns — and resumes: the caller's ``call`` simply gets the answer. A transient
upstream error (HTTP 5xx) is retried the same way, at most ``max_attempts`` times.
Because the conversation is committed to LMDB after every turn, it survives a kill -9
of the agent and of the whole node.

    node.spawn("examples.chat_agent:ChatAgent", name="alice",
               args={"base_url": "http://127.0.0.1:8765/v1", "model": "fake"})
    node.call("alice", "Hello!", timeout=30)

A chat service with many users registers one session per user with `register_user`: a
lazy spawn, so a record and no process until the user's first message; a session idle
for ``idle_timeout`` seconds sleeps (its process exits, its conversation stays
committed) and the user's next message wakes it, with no ``init`` and no ``recover``. With
``[node] max_awake`` in the node's config, at most that many are awake at once.

    node.add_supervisor("sessions")
    register_user(node, "alice", "http://127.0.0.1:8765/v1")    # once, at sign-up
    node.call(session_name("alice"), "Hello!", timeout=30)      # wakes her session
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

from beamish.runtime import Agent, AgentRef, Node, Resume

KEEP_TURNS = 2  # messages kept verbatim after a compaction, besides the summary
IDLE_TIMEOUT_S = 300.0  # a session sleeps after five minutes without a message
SESSIONS = "sessions"  # the supervisor of the users' sessions


class ContextTooLong(Exception):
    """The endpoint refused the conversation: too many tokens (messages, here)."""


class UpstreamError(Exception):
    """The endpoint failed in a way that may pass (HTTP 5xx)."""


async def post_json(url: str, body: dict[str, Any], timeout: float = 30.0
                    ) -> tuple[int, dict[str, Any]]:
    """POST ``body`` as JSON over plain HTTP/1.1 with asyncio streams; return
    ``(status, json)``. (A real agent would use httpx or the openai client.)"""
    parts = urllib.parse.urlsplit(url)
    data = json.dumps(body).encode()
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(parts.hostname, parts.port or 80), timeout)
    try:
        writer.write(f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                     "Connection: close\r\n\r\n".encode() + data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(payload or b"{}")


class ChatAgent(Agent):
    """One conversation. Calls: a user message (str) -> the assistant's reply;
    ``{"op": "history"}`` -> the conversation as stored."""

    version = 1

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"base_url": args["base_url"], "model": args.get("model", "fake"),
                "messages": [{"role": "system",
                              "content": args.get("system", "You are helpful.")}],
                "compactions": 0}

    async def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if isinstance(msg, dict) and msg.get("op") == "history":
            return state, state
        messages = [*state["messages"], {"role": "user", "content": str(msg)}]
        reply = await self._complete(state, messages)
        state["messages"] = [*messages, {"role": "assistant", "content": reply}]
        return reply, state

    async def _complete(self, state: dict[str, Any], messages: list[dict[str, str]]) -> str:
        status, body = await post_json(state["base_url"] + "/chat/completions",
                                       {"model": state["model"], "messages": messages})
        if status == 400 and body.get("error", {}).get("code") == "context_length_exceeded":
            raise ContextTooLong(body["error"]["message"])
        if status >= 500:
            raise UpstreamError(f"HTTP {status}: {body.get('error', {}).get('message', '')}")
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body}")
        return str(body["choices"][0]["message"]["content"])

    async def recover(self, failure: Any, state: dict[str, Any]) -> Any:
        if failure.exc_type == "ContextTooLong":
            return Resume(await self._compact(state))  # retry on a shorter history
        if failure.exc_type == "UpstreamError":
            return Resume(state)  # may pass: retry (at most max_attempts times)
        return super().recover(failure, state)

    async def _compact(self, state: dict[str, Any]) -> dict[str, Any]:
        system, *turns = state["messages"]
        old, recent = turns[:-KEEP_TURNS], turns[-KEEP_TURNS:]
        ask = [system, *old[-6:], {"role": "user", "content": "Summarize our conversation."}]
        summary = await self._complete(state, ask)
        return {**state, "compactions": state["compactions"] + 1,
                "messages": [system, {"role": "system", "content": f"Earlier: {summary}"},
                             *recent]}


def session_name(user: str) -> str:
    """The agent name of ``user``'s chat session."""
    return f"chat-{user}"


def register_user(node: Node, user: str, base_url: str, model: str = "fake",
                  idle_timeout: float = IDLE_TIMEOUT_S) -> AgentRef:
    """Register ``user``'s chat session under the ``sessions`` supervisor, asleep: a
    record, no process. Its first message starts it (``init`` runs then); it sleeps after
    ``idle_timeout`` seconds without a message, and its next message wakes it.

    Raises:
        SpawnError: the user has a session already.
    """
    return node.spawn(ChatAgent, name=session_name(user), supervisor=SESSIONS,
                      args={"base_url": base_url, "model": model},
                      idle_timeout=idle_timeout, lazy=True)
