"""Admission of reads: at most ``Settings.search_concurrency`` searches run at once; writes never wait.

Why: with every request on the thread pool, a server at saturation runs as many searches as it has
clients, all sharing the cores and the GIL, and a write of a few milliseconds (an ingest's encode,
its tantivy commit) is sliced among them into a second or more (benchmarks/load.py). Beyond about
one search per core more concurrency only lengthens every request. So reads (GET routes, and the
POST routes that only read: similar, recommend, S2's recommendations and batch lookup) queue here,
on the event loop, in arrival order, without holding a thread; ingests, deletes, likes and every
other write go straight to the thread pool and find the cores nearly free.

While a write is in flight one of the slots is held back (when there are two or more): a search
may still take it once every write has been answered. Measured with benchmarks/load.py (32 clients
on 2 cores, closed loop): searches on both cores beside a stream of writes pushed an ingest's p99
in the server from ~75 to ~115 ms, and one search at a time served more requests in all.

On an index below ``Settings.search_thread_min_papers`` a search runs on the event loop itself
(api_deps.run_read), so searches run one at a time whatever the slots, and a read waits here only
for its turn in order; the slots bound the searches of a large index, which run on the thread pool.

A read that waited ``Settings.search_queue_seconds`` without a slot is answered 503 with
Retry-After, rather than queueing without bound behind a server that cannot keep up. /health and
/metrics never wait: a monitor must see a busy server as busy, not as down.
"""

from __future__ import annotations

import asyncio
import os

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import Settings

# POST routes that only read; every other POST, PUT, PATCH and DELETE writes.
READ_POSTS = frozenset({"/similar", "/recommend", "/recommendations/v1/papers", "/graph/v1/paper/batch"})
# Reads that never queue.
UNGATED = frozenset({"/health", "/metrics"})
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def search_slots(settings: Settings) -> int:
    """Searches run at once: the setting, or one per core; 0 means no bound."""
    configured = settings.search_concurrency
    return configured if configured is not None else (os.cpu_count() or 2)


def is_read(method: str, path: str) -> bool:
    """Whether a request waits for a search slot (trailing slashes as S2's twin routes write them)."""
    path = path.rstrip("/") or "/"
    if method in ("GET", "HEAD"):
        return path not in UNGATED
    return method == "POST" and path in READ_POSTS


class ReadAdmission:
    """ASGI middleware: reads take one of ``slots`` (one less while a write is in flight) before they
    run and give it back once answered."""

    def __init__(self, app: ASGIApp, slots: int, wait: float):
        self.app = app
        self.slots = slots
        self.wait = wait
        self._reads = self._writes = 0  # running on this loop
        # Made on first use in the running loop: a test may serve one app from several loops in turn.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._turns: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._turns, self._reads, self._writes = loop, asyncio.Condition(), 0, 0
        return self._turns

    def _free(self) -> bool:
        return self._reads < (self.slots - 1 if self.slots > 1 and self._writes else self.slots)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.slots <= 0:
            await self.app(scope, receive, send)
            return
        turns = self._condition()
        if not is_read(scope["method"], scope["path"]):
            if scope["method"] not in WRITES:
                await self.app(scope, receive, send)
                return
            self._writes += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self._writes -= 1
                if not self._writes:
                    async with turns:
                        turns.notify()
            return
        if scope["method"] == "POST":  # a slow client must not hold a slot while its body trickles in
            receive = await _buffered(receive)
        async with turns:
            try:
                await asyncio.wait_for(turns.wait_for(self._free), self.wait)
            except TimeoutError:
                refused = True
            else:
                refused = False
                self._reads += 1
        if refused:
            await self._refuse(send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            async with turns:
                self._reads -= 1
                turns.notify()

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps({"detail": f"the server is busy: no search slot came free in {self.wait:g} s; try again "
                                       "(PAPERLENS_SEARCH_CONCURRENCY and PAPERLENS_SEARCH_QUEUE_SECONDS set the bound)"})
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", b"1")]})
        await send({"type": "http.response.body", "body": body})


async def _buffered(receive: Receive) -> Receive:
    """Read a request's body whole (BodyLimit, outside, bounds it) and hand it on as received."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay
