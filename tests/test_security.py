"""Security against the real servers: apikey near misses, secrets kept out of every log,
no audio byte written to local disk (strace), private webhook targets refused."""

from __future__ import annotations

import base64
import contextlib
import hmac
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from controlplane.app import create_app
from fila import topology
from fila.keys import Keys
from fila.settings import Settings
from simulator.evolution import EvolutionStub
from simulator.receiver import Receiver
from tests.conftest import _management
from tests.support import Proc, wait_answering, wait_for
from tests.test_controlplane_support import cp, free_port, migrated, unthrottled
from tests.test_ingest_support import audio_event, counters, enc_event, noise, rabbit, workers

__all__ = ["cp", "migrated"]

# ---------------------------------------------------------------------------------- apikey


def _near_misses(key: str) -> list[str]:
    last = key[-1]
    return [
        key[:-1] + ("A" if last != "A" else "B"),  # same length, last byte differs
        ("A" if key[0] != "A" else "B") + key[1:],  # same length, first byte differs
        key[:-1],  # a prefix
        key + "x",  # the key plus one byte
        key.upper() if key.upper() != key else key.lower(),  # case folded
        f" {key}",  # padded
    ]


async def test_near_miss_keys_are_refused_on_every_route(cp: AsyncTestClient[Any]) -> None:
    """tests/test_controlplane.py covers missing/empty/unrelated keys; these are near misses."""
    unthrottled(cp)
    key = cp.headers["apikey"]
    schema = (await cp.get("/schema/openapi.json")).json()
    checked = 0
    for path, item in schema["paths"].items():
        if path in ("/healthz", "/readyz", "/fleet/stream"):  # probes; SSE needs a stream
            continue
        concrete = path.replace("{", "").replace("}", "")
        for method in item:
            if method not in ("get", "post", "put", "delete", "patch"):
                continue
            for wrong in _near_misses(key):
                response = await cp.request(method.upper(), concrete, headers={"apikey": wrong})
                assert response.status_code == 401, (method, path, wrong, response.text)
                assert response.json()["message"] == "apikey: wrong key"
                checked += 1
    assert checked >= 30 * 6
    assert (await cp.get("/queue/stats")).status_code == 200  # the right key still works


async def test_an_empty_header_is_refused_even_against_an_empty_key(
    cp: AsyncTestClient[Any], settings: Settings
) -> None:
    """Settings refuse FILA_API_KEY=""; should an empty key reach the guard anyway,
    `compare_digest(b"", b"")` is true, so the empty header must be refused before it."""
    app = cp.app
    assert isinstance(app, Litestar)
    for key in ("", settings.api_key):
        forced = settings.replace()
        msgspec.structs.force_setattr(forced, "api_key", key)  # past the settings check
        app.state.settings = forced
        for headers in ({"apikey": ""}, {}):
            request = cp.build_request("GET", "/queue/stats")
            request.headers.pop("apikey", None)
            request.headers.update(headers)
            response = await cp.send(request)
            assert response.status_code == 401, (key, headers, response.text)
            assert response.json()["message"] == "apikey: header is required"
    assert (await cp.get("/queue/stats")).status_code == 200  # the right key still works


async def test_the_key_is_decided_by_a_constant_time_comparison(
    cp: AsyncTestClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behaviour, not source: swap `hmac.compare_digest` and watch it alone decide."""
    key = cp.headers["apikey"]
    calls: list[tuple[bytes, bytes]] = []
    verdict: list[bool] = []

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return verdict[0]

    monkeypatch.setattr(hmac, "compare_digest", spy)
    verdict.append(True)
    let_in = await cp.get("/queue/stats", headers={"apikey": "not-the-key"})
    assert let_in.status_code == 200, let_in.text
    assert calls == [(b"not-the-key", key.encode())]
    verdict[0] = False
    kept_out = await cp.get("/queue/stats", headers={"apikey": key})
    assert kept_out.status_code == 401
    assert calls[-1] == (key.encode(), key.encode())


# ---------------------------------------------------------------------------------- webhook URLs

PRIVATE_TARGETS = [
    "http://vm/hook",  # a host name /etc/hosts maps to 127.0.0.1
    "http://localhost./hook",  # fully qualified localhost
    "http://[::1]:8080/hook",  # IPv6 loopback
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6 loopback
    "http://127.1/hook",  # short form of 127.0.0.1
    "http://2130706433/hook",  # 127.0.0.1 as one integer
    "http://0.0.0.0/hook",
    "http://10.20.30.40/hook",
    "http://172.16.0.1/hook",
    "http://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
    "http://[fe80::1]/hook",
    "http://[fc00::1]/hook",  # IPv6 unique local
    "http://100.64.0.1/hook",  # carrier-grade NAT, not reachable from the internet
]


async def test_private_targets_of_every_shape_are_refused_when_blocked(
    settings: Settings, migrated: Settings
) -> None:
    """tests/test_api_webhooks.py covers 127.0.0.1, 10/8, `localhost` and 192.168/16."""
    guarded = settings.replace(webhook_block_private=True)
    async with AsyncTestClient(app=create_app(guarded)) as client:
        client.headers["apikey"] = settings.api_key
        for url in PRIVATE_TARGETS:
            for method, body, field in (
                ("POST", {"principal": {"enabled": True, "url": url}}, "principal.url"),
                ("PUT", {"monitoramento": {"enabled": True, "url": url}}, "monitoramento.url"),
            ):
                refused = await client.request(method, "/webhook/global/config", json=body)
                assert refused.status_code == 400, (url, refused.text)
                assert refused.json()["field"] == field, refused.text
            test = await client.post("/webhook/global/test", json={"url": url})
            assert test.status_code == 400 and test.json()["field"] == "url", (url, test.text)
        bad_shape = [
            ("gopher://example.com/x", "http or https"),
            ("http:///nohost", "http or https"),
            ("http://exa mple.com/x", "control characters"),
            ("http://example.com/\r\nX-Injected: 1", "control characters"),
            ("http://example.com:99999/x", "port"),
        ]
        for url, words in bad_shape:
            refused = await client.post(
                "/webhook/global/config", json={"principal": {"enabled": True, "url": url}}
            )
            assert refused.status_code == 400, (url, refused.text)
            assert refused.json()["field"] == "principal.url"
            assert words in refused.json()["message"], refused.text
        header = await client.post(
            "/webhook/global/config", json={"headers": {"x-team": "a\r\nX-Injected: 1"}}
        )
        assert header.status_code == 400 and header.json()["field"] == "headers.x-team"
        # A public address is still accepted with the guard on (no DNS needed for a literal).
        ok = await client.post(
            "/webhook/global/config",
            json={"principal": {"enabled": False, "url": "http://93.184.215.14/hook"}},
        )
        assert ok.status_code == 200, ok.text


async def test_a_partial_update_judges_only_what_it_sets(
    settings: Settings, migrated: Settings
) -> None:
    """A target stored before the guard was on does not block changing the other one."""
    async with AsyncTestClient(app=create_app(settings)) as client:
        client.headers["apikey"] = settings.api_key
        stored = await client.post(
            "/webhook/global/config",
            json={"principal": {"enabled": True, "url": "http://127.0.0.1:9/hook"}},
        )
        assert stored.status_code == 200, stored.text
    guarded = settings.replace(webhook_block_private=True)
    async with AsyncTestClient(app=create_app(guarded)) as client:
        client.headers["apikey"] = settings.api_key
        public = "http://93.184.215.14/monitor"
        ok = await client.put(
            "/webhook/global/config", json={"monitoramento": {"enabled": True, "url": public}}
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["data"]["monitoramento"]["url"] == public
        refused = await client.put(
            "/webhook/global/config",
            json={"monitoramento": {"enabled": True, "url": "http://10.1.2.3/x"}},
        )
        assert refused.status_code == 400
        assert refused.json()["field"] == "monitoramento.url"


# ---------------------------------------------------------------------------------- secrets in logs

TAG = uuid.uuid4().hex[:8]
SECRETS = {
    "api_key": f"apikey-S3CR3T-{TAG}",
    "webhook_secret": "whsec_"
    + base64.b64encode(f"whsec-S3CR3T-{TAG}-0123456789".encode()).decode(),
    "s3_access_key": f"AKIAS3CR3T{TAG.upper()}",
    "s3_secret_key": f"s3secret-S3CR3T-{TAG}",
    "evolution_api_key": f"evolution-S3CR3T-{TAG}",
}
AMQP_PASSWORD = f"amqp-S3CR3T-{TAG}"
PG_PASSWORD = f"pg-S3CR3T-{TAG}"
PAYLOAD_APIKEY = f"in-event-S3CR3T-{TAG}"
HEADER_TOKEN = f"Bearer header-S3CR3T-{TAG}"


def _forbidden() -> dict[str, str]:
    out = {name: value for name, value in SECRETS.items()}
    out["webhook_secret (key bytes)"] = SECRETS["webhook_secret"].removeprefix("whsec_")
    out["amqp password"] = AMQP_PASSWORD
    out["postgresql password"] = PG_PASSWORD
    out["apikey inside an event"] = PAYLOAD_APIKEY
    out["webhook header value"] = HEADER_TOKEN.split()[1]
    return out


def _amqp_user(settings: Settings) -> Iterator[str]:
    """A RabbitMQ user of this test's own with a secret password; yields its AMQP URL."""
    base, auth = _management(settings)
    user = f"fila-sec-{TAG}"
    parts = urlsplit(settings.rabbitmq_url)
    with httpx.Client(base_url=base, auth=auth, timeout=10) as client:
        client.put(
            f"/api/users/{user}", json={"password": AMQP_PASSWORD, "tags": ""}
        ).raise_for_status()
        client.put(
            f"/api/permissions/{quote(parts.path.lstrip('/'), safe='')}/{user}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
        netloc = f"{user}:{AMQP_PASSWORD}@{parts.hostname}:{parts.port}"
        yield urlunsplit(parts._replace(netloc=netloc))
        client.delete(f"/api/users/{user}")


@contextlib.asynccontextmanager
async def _pg_role(settings: Settings) -> AsyncIterator[str]:
    """A PostgreSQL login of this test's own with a secret password; yields its database URL."""
    role = f"fila_sec_{TAG}"
    parts = urlsplit(settings.database_url)
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PG_PASSWORD}'")
        await admin.execute(f'GRANT ALL ON DATABASE "{parts.path.lstrip("/")}" TO {role}')
        for grant in ("ALL ON SCHEMA public", "ALL ON ALL TABLES IN SCHEMA public"):
            await admin.execute(f"GRANT {grant} TO {role}")
        await admin.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
        netloc = f"{role}:{PG_PASSWORD}@{parts.hostname}:{parts.port}"
        yield urlunsplit(parts._replace(netloc=netloc))
    finally:
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def test_secrets_never_reach_any_log(
    settings: Settings, migrated: Settings, redis: Any, keys: Keys, spawn: Callable[..., Proc]
) -> None:
    users = _amqp_user(settings)
    amqp_url = next(users)
    try:
        async with _pg_role(settings) as database_url:
            await _run_with_secrets(
                settings.replace(database_url=database_url), amqp_url, redis, keys, spawn
            )
    finally:
        next(users, None)


async def _run_with_secrets(
    settings: Settings, amqp_url: str, redis: Any, keys: Keys, spawn: Callable[..., Proc]
) -> None:
    async with (
        Receiver(secret=SECRETS["webhook_secret"]) as receiver,
        EvolutionStub(api_key=SECRETS["evolution_api_key"]) as stub,
    ):
        secret = settings.replace(
            **SECRETS,
            rabbitmq_url=amqp_url,
            evolution_url=stub.url,
            log_level="DEBUG",
            ingest_max_attempts=1,
            delivery_retry_schedule="0.2,0.2,0.5",
            heartbeat_seconds=0.5,
        )
        port = free_port()
        procs = [
            spawn(["controlplane", "--no-migrate"], secret, FILA_HTTP_PORT=str(port)),
            spawn(["worker", "ingest"], secret),
            spawn(["worker", "delivery"], secret),
        ]
        key = {"apikey": SECRETS["api_key"]}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30, headers=key
        ) as api:
            await wait_answering(
                api, popen=procs[0].popen, output=lambda: procs[0].output()[-3000:]
            )
            hook = f"{receiver.url.rstrip('/')}/hook"
            configured = await api.post(
                "/webhook/global/config",
                json={
                    "principal": {"enabled": True, "url": hook},
                    "monitoramento": {"enabled": True, "url": f"{receiver.url.rstrip('/')}/mon"},
                    "headers": {"authorization": HEADER_TOKEN},
                },
            )
            assert configured.status_code == 200, configured.text
            assert (await api.get("/queue/stats", headers={"apikey": "wrong"})).status_code == 401
            tested = await api.post("/webhook/global/test", json={"url": hook})
            assert tested.status_code == 200, tested.text

            receiver.fail_with(500, times=2)  # the first POSTs fail: retried, logged
            by_http = audio_event("sec-a", "SEC-HTTP", 12, data=noise(4_000))
            by_http["apikey"] = PAYLOAD_APIKEY
            sent = await api.post("/webhook/evolution", json=by_http)
            assert sent.status_code == 202, sent.text
            refused = await api.post("/webhook/evolution", json={"apikey": PAYLOAD_APIKEY})
            assert refused.status_code == 400

            stub.add_media("SEC-API", noise(3_000), "audio/ogg; codecs=opus")
            via_api = audio_event("sec-b", "SEC-API", 15)
            via_api["apikey"] = PAYLOAD_APIKEY
            bad = audio_event("sec-b", "SEC-BAD", 15)
            bad["data"]["message"]["base64"] = f"@@{PAYLOAD_APIKEY}@@"
            bad["apikey"] = PAYLOAD_APIKEY
            async with rabbit(settings) as mq:
                await mq.publish(via_api)
                await mq.publish(bad)
                await mq.publish(f'{{"apikey": "{PAYLOAD_APIKEY}", '.encode())

            async def done() -> bool:
                c = await counters(redis, keys)
                delivered = {
                    d.json["data"]["key"]["id"]
                    for d in receiver.accepted()
                    if isinstance(d.json, dict) and d.json.get("event") == "messages.upsert"
                }
                return delivered == {"SEC-HTTP", "SEC-API"} and c.get("ingestFailed", 0) == 2

            try:
                await wait_for(done, timeout=90, interval=0.2)
            except AssertionError:
                raise AssertionError(
                    f"{await counters(redis, keys)}\n"
                    + "\n".join(p.output()[-2500:] for p in procs)
                ) from None
            main = [d for d in receiver.accepted() if d.json.get("event") == "messages.upsert"]
            assert {d.json["apikey"] for d in main} == {PAYLOAD_APIKEY}  # the contract carries it
        for proc in procs:
            assert proc.terminate() == 0, proc.output()[-3000:]
    outputs = {str(p.log.name): p.output() for p in procs}
    assert all(text.count("\n") > 20 for text in outputs.values()), outputs  # DEBUG really on
    joined = "\n".join(outputs.values())
    assert "SEC-BAD" in joined  # the failures were logged, only without the secrets
    assert "--- Logging error ---" not in joined  # masking kept every record printable
    leaks = [
        f"{what} in {name}: …{text[max(0, i - 150) : i + 60]}…"
        for name, text in outputs.items()
        for what, value in _forbidden().items()
        if (i := text.find(value)) >= 0
    ]
    assert not leaks, "\n\n".join(leaks)


# ---------------------------------------------------------------------------------- audio on disk

STRACE = "/usr/bin/strace"
TRACED = "open,openat,openat2,creat,rename,renameat,renameat2,truncate,link,linkat,mknod,mknodat"
WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND", "O_TMPFILE")
ALLOWED_PREFIXES = (
    "/dev/",  # /dev/null, /dev/shm semaphores, ttys: not files on a disk
    "/proc/",  # kernel interfaces (e.g. /proc/self/...), nothing stored
    "/sys/",  # idem
)
"""Nothing else may be opened for writing, created, renamed or truncated: no cache, no temp
file, no log file. (Bytecode writes are off: PYTHONDONTWRITEBYTECODE=1.)"""
_CALL = re.compile(r"^(?P<pid>\d+)\s+(?P<call>\w+)\((?P<args>.*)\)\s+=\s+(?P<ret>-?\d+)")
_PATHS = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _disk_writes(trace: str) -> list[str]:
    """Successful calls of the trace that write, create, rename or truncate outside /dev etc."""
    bad = []
    for line in trace.splitlines():
        match = _CALL.match(line)
        if not match or int(match["ret"]) < 0:
            continue
        call, args = match["call"], match["args"]
        if call in ("open", "openat", "openat2") and not any(f in args for f in WRITE_FLAGS):
            continue
        paths = _PATHS.findall(args)
        if paths and all(p.startswith(ALLOWED_PREFIXES) for p in paths):
            continue
        bad.append(line)
    return bad


def _marked(size: int, marker: bytes) -> bytes:
    """Audio-like bytes with `marker` every 4 KiB, to look for on disk afterwards."""
    chunk = marker + noise(4096)
    return (chunk * (size // len(chunk) + 1))[:size]


def _files_containing(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path}: {n[:20]!r}" for n in needles if n in data]
    return hits


class Traced:
    """A `fila` process under strace, with a working directory and TMPDIR of its own."""

    def __init__(self, popen: subprocess.Popen[bytes], where: Path) -> None:
        self.popen = popen
        self.where = where

    def log(self) -> str:
        return (self.where / "process.log").read_text(errors="replace")[-3000:]

    def child(self) -> int:
        """The traced `fila` process (strace's child): signalled directly, so that its own
        graceful shutdown is traced too."""
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == self.popen.pid:
                return int(stat.parent.name)
        raise AssertionError(f"no child of strace {self.popen.pid}")

    async def stop(self) -> None:
        os.kill(self.child(), signal.SIGTERM)
        await wait_for(lambda: self.popen.poll() is not None, timeout=60, interval=0.2)
        assert self.popen.returncode == 0, self.log()

    def check(self, marker: bytes) -> None:
        trace = (self.where / "strace.txt").read_text(errors="replace")
        calls = [line for line in trace.splitlines() if _CALL.match(line)]
        assert len(calls) > 100, trace[-2000:]  # the trace really saw the process's file calls
        assert any("site-packages" in line for line in calls)
        writes = _disk_writes(trace)
        assert not writes, "\n".join(writes[:30])
        needles = [marker, *(base64.b64encode(b"xx"[:i] + marker)[4:40] for i in range(3))]
        assert not _files_containing(self.where / "cwd", needles)
        assert not _files_containing(self.where / "tmp", needles)


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[Callable[..., Traced]]:
    """`traced(settings, *args, **env)` starts `fila <args>` under strace."""
    started: list[subprocess.Popen[bytes]] = []

    def start(settings: Settings, *args: str, **extra_env: str) -> Traced:
        where = tmp_path / f"traced-{len(started)}"
        for name in ("cwd", "tmp"):
            (where / name).mkdir(parents=True)
        env = {
            **os.environ,
            **settings.to_env(),
            **extra_env,
            "PYTHONDONTWRITEBYTECODE": "1",
            "TMPDIR": str(where / "tmp"),
        }
        with (where / "process.log").open("wb") as log:
            popen = subprocess.Popen(
                [
                    *(STRACE, "-f", "--seccomp-bpf", "-qq", "-e", f"trace={TRACED}"),
                    *("-o", str(where / "strace.txt")),
                    *(sys.executable, "-m", "fila", *args),
                ],
                env=env,
                cwd=where / "cwd",
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(popen)
        return Traced(popen, where)

    yield start
    for popen in started:
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(20)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()


needs_strace = pytest.mark.skipif(not Path(STRACE).exists(), reason="needs strace")


@needs_strace
async def test_ingest_writes_no_audio_byte_to_local_disk(
    settings: Settings, redis: Any, keys: Keys, traced: Callable[..., Traced]
) -> None:
    marker = f"FILA-AUDIO-MARKER-{uuid.uuid4().hex}".encode()
    inline = _marked(60_000, marker)
    encrypted = _marked(80_000, marker)
    large = _marked(6_000_000, marker)  # over the threshold: a multipart upload
    async with EvolutionStub(api_key=settings.evolution_api_key) as stub, rabbit(settings) as mq:
        settings = settings.replace(
            evolution_url=stub.url, s3_multipart_threshold=1_000_000, max_audio_bytes=7_000_000
        )
        worker = traced(settings, "worker", "ingest")

        async def registered() -> bool:
            assert worker.popen.poll() is None, worker.log()
            return any(w["role"] == "ingest" for w in await workers(redis, keys))

        await wait_for(registered, timeout=90, interval=0.2)
        await mq.publish(audio_event("disk-a", "DISK-INLINE", 12, data=inline))
        await mq.publish(enc_event(stub, "disk-enc", "DISK-ENC", encrypted))
        await mq.publish(audio_event("disk-a", "DISK-LARGE", 30, data=large, mimetype="audio/mp4"))

        async def queued() -> bool:
            assert worker.popen.poll() is None, worker.log()
            return await mq.depth(topology.GLOBAL_QUEUE) == 3

        try:
            await wait_for(queued, timeout=120, interval=0.3)
        except AssertionError:
            raise AssertionError(f"{await counters(redis, keys)}\n{worker.log()}") from None
        assert len(stub.calls_to("getBase64", "disk-enc")) >= 1  # the .enc path really ran
        await worker.stop()
    worker.check(marker)


@needs_strace
async def test_http_webhook_writes_no_audio_byte_to_local_disk(
    settings: Settings, migrated: Settings, traced: Callable[..., Traced]
) -> None:
    """The control plane holds the audio too when Evolution posts events over HTTP."""
    marker = f"FILA-AUDIO-MARKER-{uuid.uuid4().hex}".encode()
    port = free_port()
    server = traced(settings, "controlplane", "--no-migrate", FILA_HTTP_PORT=str(port))
    async with (
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=60, headers={"apikey": settings.api_key}
        ) as api,
        rabbit(settings) as mq,
    ):
        await wait_answering(api, popen=server.popen, output=server.log, timeout=120, interval=0.3)
        for n, size in enumerate((50_000, 3_000_000)):
            event = audio_event("disk-h", f"DISK-HTTP-{n}", 12, data=_marked(size, marker))
            answer = await api.post("/webhook/evolution", json=event)
            assert answer.status_code == 202, answer.text
        assert await mq.depth(settings.ingest_queue) == 2
        await server.stop()
    server.check(marker)


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("amqp://guest:s3cr3t-pass@127.0.0.1:5672/", "s3cr3t-pass"),
        ('{"apikey": "k-123456"}', "k-123456"),
        ("APIKEY=k-654321 and more", "k-654321"),
        ("Secret_Access_Key: AKIAXYZ", "AKIAXYZ"),
        ("passwd=hunter22", "hunter22"),
        ("Authorization: Bearer-abcdef", "Bearer-abcdef"),
        ("mediaKey='bWVkaWFrZXk='", "bWVkaWFrZXk="),
        ("POST /webhook/evolution/t/tok-98765/messages-upsert", "tok-98765"),
        ("a configured literal: the-literal-secret", "the-literal-secret"),
    ],
)
def test_every_secret_pattern_is_masked_in_free_text(text: str, hidden: str) -> None:
    """The cheap pre-scan that lets ordinary lines skip the patterns must not let one through."""
    from fila.logging import redact

    event = redact(["the-literal-secret"])(None, "info", {"event": "x", "detail": text})
    assert hidden not in event["detail"], event
    assert "***" in event["detail"]
    plain = redact(["the-literal-secret"])(None, "info", {"id": "3EB0C1D2", "key": "audio_1.ogg"})
    assert plain == {"id": "3EB0C1D2", "key": "audio_1.ogg"}
