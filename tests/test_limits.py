"""Rate and resource limits (``Limits``), on real servers on loopback: the
frame and byte budgets of a connection, the bounded send queue that cuts off
a peer that stops reading, the deadline on the WebSocket upgrade request, and
the resource test: 500 idle and 50 slow clients against one server process
whose memory must stay bounded while an honest reader keeps its latency."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gether
from gether.core.ids import Version
from gether.server.hub import HubConfig
from gether.server.limits import Budget, TokenBucket
from gether.server.outbox import Outbox
from gether.server.process import ServerProcess
from gether.server.serve import GetherServer, start_server
from gether.sync import Error, Hello, Limits, Subscribe
from gether.sync.framing import FrameReader, frame
from gether.sync.messages import Message, Ping, decode, encode
from gether.transport.stream import StreamChannel

HELPER = Path(__file__).parent / "helpers" / "limits_server.py"
MIB = 1 << 20


# -- the buckets, with time passed in ------------------------------------------------------


def test_a_token_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=10, burst=20, now=0.0)
    assert all(bucket.take(1, 0.0) for _ in range(20))
    assert not bucket.take(1, 0.0)  # the burst is spent; nothing is taken on refusal
    assert bucket.take(5, 0.5) and not bucket.take(1, 0.5)
    assert bucket.take(20, 100.0)  # saved up to the burst, never beyond
    assert not bucket.take(1, 100.0)
    assert not TokenBucket(1, 5, 0.0).take(6, 0.0)  # more than the burst never fits


@given(
    st.lists(
        st.tuples(st.floats(0, 50), st.floats(0, 2)),  # (amount asked, seconds since)
        max_size=60,
    )
)
def test_a_token_bucket_never_grants_more_than_burst_plus_rate_times_time(
    steps: list[tuple[float, float]],
) -> None:
    bucket = TokenBucket(rate=10, burst=20, now=0.0)
    now = granted = 0.0
    for amount, elapsed in steps:
        now += elapsed
        if bucket.take(amount, now):
            granted += amount
        assert granted <= 20 + 10 * now + 1e-9
        assert 0 <= bucket.tokens <= 20


def test_a_budget_counts_frames_and_bytes_apart() -> None:
    limits = Limits(
        messages_per_second=100, message_burst=10, bytes_per_second=1000, byte_burst=4000
    )
    budget = Budget(limits, now=0.0)
    budget.spend_bytes(4000, 0.0)
    with pytest.raises(gether.RateLimitedError) as over:
        budget.spend_bytes(1, 0.0)
    assert over.value.code == "rate_limited"
    budget.spend_bytes(1000, 1.0)
    budget.spend_frames(10, 1.0)
    with pytest.raises(gether.RateLimitedError):
        budget.spend_frames(1, 1.0)
    budget.spend_frames(0, 1.0)  # reading half a frame costs no frame


def test_defaults_leave_room_for_typing_and_large_documents() -> None:
    limits = Limits()
    assert limits.byte_burst >= 4 * limits.max_frame_bytes
    assert limits.message_burst >= limits.max_documents  # a mesh peer subscribes to all
    assert limits.messages_per_second >= 100  # a keystroke is one frame
    assert gether.SlowConsumerError.code == "slow_consumer"
    assert issubclass(gether.RateLimitedError, gether.LimitExceededError)


# -- the send queue, on a real socket whose reader never reads -------------------------------


@asynccontextmanager
async def stuck_stream() -> AsyncIterator[StreamChannel]:
    """A real TCP stream to a reader that never reads."""
    done = asyncio.Event()

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()
        writer.close()

    # small kernel buffers both ways, so that "stuck" comes after kilobytes, not megabytes
    listening = socket.create_server(("127.0.0.1", 0))
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server = await asyncio.start_server(never_read, sock=listening)
    dialling = socket.socket()
    dialling.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    dialling.connect(listening.getsockname())
    reader, writer = await asyncio.open_connection(sock=dialling)
    try:
        yield StreamChannel(reader, writer)
    finally:
        done.set()
        server.close()
        await server.wait_closed()


async def test_the_outbox_refuses_what_a_reader_that_stopped_would_queue() -> None:
    async with stuck_stream() as channel:
        outbox = Outbox(channel.send, limit=256 << 10)
        assert outbox.put(b"x" * MIB)  # one chunk always fits an empty queue
        task = asyncio.create_task(outbox.pump())
        await asyncio.sleep(0.2)
        assert outbox.writing == MIB and not task.done()  # stuck: the peer takes nothing
        chunk = b"y" * (64 << 10)
        assert [outbox.put(chunk) for _ in range(5)] == [True] * 4 + [False]
        assert outbox.queued == 256 << 10
        await asyncio.wait_for(outbox.pump(), 1)  # a send is under way: returns at once
        channel.abort()
        await asyncio.wait_for(outbox.drained(), 5)
        assert outbox.broken and outbox.queued == 0
        assert outbox.put(chunk)  # dropped: nothing more is sent on a broken channel
        assert task.done()


async def test_the_outbox_sends_at_once_only_when_nothing_would_wait() -> None:
    """The fan-out's path with no task (``send_now``): taken while the stream
    buffers nothing and no send is under way; else the bytes queue in order."""
    async with stuck_stream() as channel:
        outbox = Outbox(channel.send, limit=256 << 10, send_now=channel.send_now)
        assert outbox.send_now(b"a")  # an idle stream takes it at once
        assert outbox.send_now(b"x" * MIB)  # into the transport: most of it stays buffered
        assert not outbox.send_now(b"b")  # now it would wait for the buffer: queue it
        assert outbox.put(b"b")
        task = asyncio.create_task(outbox.pump())
        await asyncio.sleep(0.2)
        assert outbox.writing == 1 and not task.done()  # waiting for the peer to read
        assert not outbox.send_now(b"c")  # behind the send under way, in order
        channel.abort()
        await asyncio.wait_for(outbox.drained(), 5)
        assert not outbox.send_now(b"d")  # a closed stream: through the queue,
        assert outbox.put(b"d")
        await asyncio.wait_for(outbox.pump(), 5)
        assert outbox.broken  # which finds it broken
        assert outbox.send_now(b"e")  # and drops what comes after, as ``put`` does


# -- budgets on a real server ----------------------------------------------------------------


async def serve(tmp_path: Path, **limits: Any) -> GetherServer:
    return await start_server(
        f"sqlite:///{tmp_path}/server.db",
        port=0,
        tcp_port=0,
        config=HubConfig(limits=Limits(**limits)),
        handle_signals=False,
    )


@pytest.fixture
async def tight(tmp_path: Path) -> AsyncIterator[GetherServer]:
    running = await serve(
        tmp_path,
        hello_timeout=0.5,
        messages_per_second=20,
        message_burst=50,
        bytes_per_second=10_000,
        byte_burst=20_000,
    )
    yield running
    await running.stop()


async def exchange(url: str, data: bytes, timeout: float = 10.0) -> list[Message]:
    """Send ``data`` on a raw TCP connection; every message until the server closes."""
    host, port = url.removeprefix("tcp://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    received = b""
    async with asyncio.timeout(timeout):
        while chunk := await reader.read(65536):
            received += chunk
    writer.close()
    return [decode(p) for p in FrameReader(1 << 24).feed(received)]


async def test_a_flood_of_frames_is_cut_off_and_others_are_served(
    tight: GetherServer, tmp_path: Path
) -> None:
    assert tight.tcp_url is not None
    pings = b"".join(frame(encode(Ping(n))) for n in range(1, 201))
    messages = await exchange(tight.tcp_url, frame(encode(Hello("flood"))) + pings)
    assert [m.code for m in messages if isinstance(m, Error)] == ["rate_limited"]
    # frames over the budget are not acted on: none of these documents is opened
    subscribes = b"".join(frame(encode(Subscribe(f"d{n}", Version()))) for n in range(100))
    messages = await exchange(tight.tcp_url, frame(encode(Hello("many"))) + subscribes)
    assert [m.code for m in messages if isinstance(m, Error)] == ["rate_limited"]
    assert not any(tight.hub.loaded(f"d{n}") for n in range(100))
    # the flood cost the others nothing: a client syncs at once
    doc = gether.Document()
    doc["x"] = 1
    async with gether.connect(tight.ws_url, "d", doc=doc) as session:
        await session.sync(timeout=10)


async def test_bytes_over_the_budget_are_refused_before_they_are_decoded(
    tight: GetherServer,
) -> None:
    assert tight.tcp_url is not None
    garbage = frame(b"\xc1" * 30_000)  # not msgpack: decoding it would be a decode error
    messages = await exchange(tight.tcp_url, frame(encode(Hello("big"))) + garbage)
    assert [m.code for m in messages if isinstance(m, Error)] == ["rate_limited"]


async def test_a_large_document_syncs_within_the_default_budget(tmp_path: Path) -> None:
    running = await serve(tmp_path)  # the defaults
    try:
        writer = gether.Document()
        text = writer.text("t")
        for _ in range(350):  # 7 MB of text (5 MB compressed), sent at once: more than
            # the default queue bound, so the download is one catch-up chunk
            text.insert(len(text), base64.b64encode(os.urandom(15_000)).decode())
        async with gether.connect(running.ws_url, "big", doc=writer) as session:
            await session.sync(timeout=60)
        reader = gether.Document()
        async with gether.connect(running.tcp_url or "", "big", doc=reader) as session:
            await session.sync(timeout=60)
        assert reader.version == writer.version
        assert session.traffic.bytes_received > Limits().max_queued_bytes
    finally:
        await running.stop()


# -- the WebSocket port before the upgrade ---------------------------------------------------


async def test_the_upgrade_request_has_the_hello_timeout(tight: GetherServer) -> None:
    host, port = tight.ws_url.removeprefix("ws://").split(":")

    async def until_closed(data: bytes) -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection(host, int(port))
        started = time.monotonic()
        writer.write(data)
        received = b""
        async with asyncio.timeout(10):
            while chunk := await reader.read(65536):
                received += chunk
        writer.close()
        return received, time.monotonic() - started

    for silent in (b"", b"GET / HTTP/1.1\r\nHost: x\r\n"):  # nothing; headers never ended
        received, elapsed = await until_closed(silent)
        assert received == b"" and 0.3 < elapsed < 2.0
    # a whole request is answered, and a kept-alive connection gets the deadline again
    received, elapsed = await until_closed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 200") and elapsed < 2.0


# -- the resource test -----------------------------------------------------------------------


@contextmanager
def server_process(tmp_path: Path, **limits: Any) -> Iterator[tuple[int, str, str, Path]]:
    """The helper server, its pid, URLs and log."""
    src = str(Path(gether.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log = tmp_path / "server.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(HELPER), f"sqlite:///{tmp_path}/s.db", json.dumps(limits)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        ws_url, tcp_url = process.stdout.readline().decode().split()
        yield process.pid, ws_url, tcp_url, log
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def hello_and_subscribe(name: str, doc_id: str) -> bytes:
    return frame(encode(Hello(name))) + frame(encode(Subscribe(doc_id, Version())))


def raw_tcp(url: str, name: str, doc_id: str, rcvbuf: int | None = None) -> socket.socket:
    host, port = url.removeprefix("tcp://").split(":")
    sock = socket.socket()
    if rcvbuf is not None:  # before connecting: the window is agreed in the handshake
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((host, int(port)))
    sock.sendall(hello_and_subscribe(name, doc_id))
    return sock


def raw_websocket(url: str, name: str, doc_id: str, rcvbuf: int | None = None) -> socket.socket:
    """The upgrade by hand, then one masked binary message (zero key), and no
    more reading: a browser tab that froze."""
    host, port = url.removeprefix("ws://").split(":")
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((host, int(port)))
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    payload = hello_and_subscribe(name, doc_id)
    assert len(payload) < 65536
    sock.sendall(bytes([0x82, 0x80 | 126]) + len(payload).to_bytes(2, "big") + bytes(4) + payload)
    return sock


def state(sock: socket.socket) -> str:
    """``open`` (nothing more to read now), ``closed`` (end of stream or reset)."""
    sock.setblocking(False)
    try:
        while True:
            try:
                if not sock.recv(1 << 20):
                    return "closed"
            except BlockingIOError:
                return "open"
    except (ConnectionResetError, BrokenPipeError):
        return "closed"


def kernel_queued(ports: set[int]) -> int:
    """Bytes the kernel holds unsent (or unacknowledged) on the sockets of ``ports``:
    memory a server spends on slow readers outside its own process."""
    total = 0
    if not os.path.exists("/proc/net/tcp"):  # not Linux: no figure
        return 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) in ports:
                total += int(fields[4].split(":")[0], 16)
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def test_idle_and_slow_clients_leave_memory_bounded_and_latency_low(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    queue_limit = 256 << 10
    limits = {"max_queued_bytes": queue_limit, "send_buffer_bytes": 64 << 10}
    with server_process(tmp_path, **limits) as (pid, ws_url, tcp_url, log):
        server = psutil.Process(pid)
        ports = {int(ws_url.rsplit(":", 1)[1]), int(tcp_url.rsplit(":", 1)[1])}

        def rss() -> int:
            return int(server.memory_info().rss)

        def connect_idle() -> list[socket.socket]:
            out = []
            for i in range(500):
                dial = raw_tcp if i % 2 else raw_websocket
                out.append(dial(tcp_url if i % 2 else ws_url, f"idle{i}", "quiet"))
                if i % 50 == 49:
                    time.sleep(0.05)  # the server's accept backlog
            return out

        idle = await asyncio.to_thread(connect_idle)
        await asyncio.sleep(1.0)
        rss_idle = rss()

        writer, reader = gether.Document(), gether.Document()
        writer["n"] = 0
        text = writer.text("t")
        sent: dict[int, float] = {}
        arrived: dict[int, float] = {}

        def on_n(changes: object) -> None:
            n = reader.get("n")
            if isinstance(n, int) and n not in arrived:
                arrived[n] = time.perf_counter()

        async def stream(start: int, count: int, chunk: str, interval: float) -> None:
            for n in range(start, start + count):
                sent[n] = time.perf_counter()
                with writer.transaction():
                    text.insert(len(text), chunk)
                    writer["n"] = n
                await asyncio.sleep(interval)

        samples: list[int] = []
        kernel: list[int] = []

        async def sample() -> None:
            while True:
                samples.append(rss())
                kernel.append(kernel_queued(ports))
                await asyncio.sleep(0.25)

        async with (
            gether.connect(ws_url, "busy", doc=writer) as w,
            gether.connect(tcp_url, "busy", doc=reader) as r,
        ):
            await w.sync()
            await r.sync()
            reader.on_change("n", on_n)
            # before: the honest pair alone with 500 idle connections (small edits)
            await stream(1, 200, "abc", 0.01)
            await asyncio.sleep(0.5)
            before = [arrived[n] - sent[n] for n in range(1, 201) if n in arrived]

            slow = await asyncio.to_thread(
                lambda: [
                    (raw_tcp(tcp_url, f"slow{i}", "busy", 4096) if i % 2
                     else raw_websocket(ws_url, f"slow{i}", "busy", 4096))
                    for i in range(50)
                ]
            )  # fmt: skip
            rss_slow = rss()
            sampler = asyncio.create_task(sample())
            # during: 2 kB an edit, 100 edits a second, to 50 readers that read nothing
            chunk = base64.b64encode(os.urandom(1500)).decode()  # 2 kB, incompressible
            started = time.perf_counter()
            await stream(1_000, 1_500, chunk, 0.01)
            await asyncio.sleep(0.5)
            streamed = time.perf_counter() - started
            sampler.cancel()
            during = [arrived[n] - sent[n] for n in range(1_000, 2_500) if n in arrived]
            await r.sync()
            assert reader.get("n") == 2_499

        states = [state(s) for s in slow]
        idle_states = [state(s) for s in idle]
        rss_end = rss()
        for s in slow + idle:
            s.close()
    log_text = log.read_text()
    cut = log_text.count("closed: [slow_consumer]")
    peak = max(samples)
    p50b, p99b = statistics.median(before) * 1e3, percentile(before, 0.99) * 1e3
    p50, p99 = statistics.median(during) * 1e3, percentile(during, 0.99) * 1e3
    mb = 1 / MIB
    print(
        f"\nresource test: 500 idle + 50 slow clients, queue limit {queue_limit >> 10} KiB, "
        f"{len(chunk) * 1500 / MIB:.1f} MiB streamed to each subscriber in {streamed:.1f} s\n"
        f"  server RSS: {rss_idle * mb:.1f} MiB with 500 idle, {rss_slow * mb:.1f} MiB + 50 slow, "
        f"peak {peak * mb:.1f} MiB while streaming, {rss_end * mb:.1f} MiB at the end; "
        f"kernel send queues to clients: peak {max(kernel) * mb:.1f} MiB\n"
        f"  slow clients disconnected: {states.count('closed')}/50 ({cut} slow_consumer logged); "
        f"idle still connected: {idle_states.count('open')}/500\n"
        f"  reader latency: p50 {p50b:.1f} ms, p99 {p99b:.1f} ms before the slow clients; "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms with them ({len(during)} edits seen)"
    )
    assert states.count("closed") == 50 and cut == 50
    assert idle_states.count("open") == 500
    # what the slow clients were sent, 50 x 2.9 MiB, would stay in the server's
    # process or its kernel buffers if nothing bounded it: with the bounds, the
    # growth is the document itself (about 36 MiB, which any server holds) and a
    # few MiB of queues before the cut
    assert (peak - rss_slow) + max(kernel) < 64 * MIB
    assert max(kernel) < 16 * MIB  # 50 sockets of 64 KiB buffers (doubled by the kernel)
    assert p99 < 200


def test_gether_serve_takes_the_limits_as_options(tmp_path: Path) -> None:
    extra = ["--messages-per-second", "5", "--max-queued-bytes", "65536"]
    with ServerProcess(f"sqlite:///{tmp_path}/s.db", extra=extra) as server:

        async def main() -> None:
            pings = b"".join(frame(encode(Ping(n))) for n in range(1, 101))  # burst: 50
            messages = await exchange(server.tcp_url, frame(encode(Hello("flood"))) + pings)
            assert [m.code for m in messages if isinstance(m, Error)] == ["rate_limited"]
            doc = gether.Document()
            doc["x"] = 1
            async with gether.connect(server.ws_url, "d", doc=doc) as session:
                await session.sync(timeout=10)

        asyncio.run(main())
        assert server.stop() == 0
