"""The relay's transfers: bounded in memory (an agent's upload waits for the browser),
broken off rather than ended short, and refused for an agent that is not polling."""

from __future__ import annotations

import asyncio
import time

import pytest
from starlette.requests import Request

from strongroom.server.auth import ApiError
from strongroom.server.control.relay import QUEUE_PIECES, Relay, TransferBroken

PIECE = 64 * 1024


def _upload(pieces: int, sent: list[int], *, broken: bool = False) -> Request:
    """A real Starlette request whose body arrives in ``pieces`` pieces (or breaks off)."""

    async def receive() -> dict[str, object]:
        sent.append(1)
        if broken and len(sent) > pieces:
            return {"type": "http.disconnect"}
        more = broken or len(sent) < pieces
        return {"type": "http.request", "body": bytes([len(sent) % 256]) * PIECE, "more_body": more}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    return Request(scope, receive)


def test_an_upload_waits_for_the_browser_and_memory_stays_bounded() -> None:
    async def main() -> None:
        relay = Relay()
        relay.polled["m1"] = time.monotonic()
        t = relay.submit("m1", {"kind": "fetch"})
        sent: list[int] = []
        agent = asyncio.create_task(relay.receive(t, _upload(200, sent)))
        await asyncio.sleep(0.3)
        # the browser has read nothing: the agent's upload is held after a few pieces
        assert len(sent) <= QUEUE_PIECES + 2 and not agent.done()
        total = 0
        async for piece in relay.stream(t):
            total += len(piece)
            assert t.pieces.qsize() <= QUEUE_PIECES
        assert total == 200 * PIECE and await agent == total
        assert t.id not in relay.transfers  # nothing kept after the transfer

    asyncio.run(main())


def test_a_broken_upload_fails_the_download() -> None:
    async def main() -> None:
        relay = Relay()
        relay.polled["m1"] = time.monotonic()
        t = relay.submit("m1", {"kind": "fetch"})
        agent = asyncio.create_task(relay.receive(t, _upload(3, [], broken=True)))
        got = 0
        with pytest.raises(TransferBroken, match="broke off"):
            async for piece in relay.stream(t):
                got += len(piece)
        assert got == 3 * PIECE
        with pytest.raises(ApiError):
            await agent

    asyncio.run(main())


def test_an_agent_that_does_not_poll_is_offline() -> None:
    async def main() -> None:
        relay = Relay()
        with pytest.raises(ApiError, match="not online"):
            await relay.open("m1", {"kind": "browse"})
        assert relay.transfers == {}

    asyncio.run(main())
