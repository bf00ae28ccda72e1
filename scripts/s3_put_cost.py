"""Client CPU per S3 PutObject of 32 KB, for botocore settings side by side in one process.

    .venv/bin/python scripts/s3_put_cost.py [--blocks 12] [--per-block 60]

Seven `put_object` clients (as `workers.storage` opened them until it dropped `Expect:
100-continue`; then without parameter validation, with checksums only when required, without
the per-call user-agent rebuild, without the 100-continue wait as `workers.storage` sent it
until c29e5ce, and two checksum variants of that), a PUT to a presigned URL over
`fila.httptransport`, and `fila.s3.BucketObjects.put` (signed by botocore's signer, sent on the
client's pool: what `workers.storage` sends now) take turns in blocks, so a busier second of the
host falls on each; the medians of the blocks are printed.
Needs the services up (`fila services up`); uses and empties a bucket of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import statistics
import time
import zlib
from typing import Any

import httpx
from botocore.config import Config

from fila import httptransport, s3
from fila.settings import get_settings

BUCKET = "fila-put-cost"
PRESIGNED = "presigned PUT (httpx on aiohttp)"
SIGNED = "BucketObjects.put (storage)"
CRC_WHEN_REQUIRED = "no 100-continue, checksums when_required"
CRC_OWN = "no 100-continue, when_required + own CRC32"


def config(**extra: Any) -> Config:
    base: dict[str, Any] = {
        "retries": {"max_attempts": 3, "mode": "standard"},
        "connect_timeout": 5,
        "read_timeout": 30,
        "max_pool_connections": 16,
    }
    return Config(**{**base, **extra})


async def measure(blocks: int, per_block: int) -> dict[str, list[float]]:
    settings = get_settings()
    variants = {
        "put_object (2026-11)": config(),
        "parameter_validation off": config(parameter_validation=False),
        "checksums when_required": config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
        "no user-agent rebuild": config(),
        "no 100-continue": config(),
        CRC_WHEN_REQUIRED: config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
        CRC_OWN: config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    }
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            name: await stack.enter_async_context(s3.client(settings, config=cfg))
            for name, cfg in variants.items()
        }
        for client in clients.values():
            s3.cache_endpoints(client)
        plain = clients["no user-agent rebuild"]
        service = plain.meta.service_model.service_id.hyphenize()
        plain.meta.events.unregister(
            f"request-created.{service}",
            plain._user_agent_creator.rebuild_and_replace_user_agent_handler,
        )
        for name in ("no 100-continue", CRC_WHEN_REQUIRED, CRC_OWN):
            s3.put_without_continue(clients[name])
        first = clients["put_object (2026-11)"]
        with contextlib.suppress(Exception):
            await first.create_bucket(Bucket=BUCKET)
        body = os.urandom(32_000)
        limits = httpx.Limits(max_connections=16)
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=httptransport.transport(limits), timeout=30)
        )
        signer = clients["no 100-continue"]
        objects = await s3.BucketObjects.of(first, BUCKET)
        assert objects is not None

        async def presigned_put(key: str) -> None:
            url = await signer.generate_presigned_url(
                "put_object",
                Params={"Bucket": BUCKET, "Key": key, "ContentType": "audio/ogg"},
                ExpiresIn=300,
            )
            answer = await http.put(url, content=body, headers={"content-type": "audio/ogg"})
            answer.raise_for_status()

        spent: dict[str, list[float]] = {name: [] for name in [*clients, PRESIGNED, SIGNED]}
        try:
            for block in range(blocks):
                for n, name in enumerate(spent):
                    started = time.process_time()
                    for i in range(per_block):
                        key = f"audio_{block}_{n}_{i}.ogg"
                        if name == PRESIGNED:
                            await presigned_put(key)
                        elif name == SIGNED:
                            await objects.put(key, body, "audio/ogg")
                        elif name == CRC_OWN:
                            crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
                            await clients[name].put_object(
                                Bucket=BUCKET,
                                Key=key,
                                Body=body,
                                ContentType="audio/ogg",
                                ChecksumCRC32=crc,
                            )
                        else:
                            await clients[name].put_object(
                                Bucket=BUCKET, Key=key, Body=body, ContentType="audio/ogg"
                            )
                    spent[name].append((time.process_time() - started) / per_block * 1000)
        finally:
            listed = await first.list_objects_v2(Bucket=BUCKET)
            while listed.get("Contents"):
                objects = [{"Key": o["Key"]} for o in listed["Contents"]]
                await first.delete_objects(Bucket=BUCKET, Delete={"Objects": objects})
                listed = await first.list_objects_v2(Bucket=BUCKET)
            await first.delete_bucket(Bucket=BUCKET)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--per-block", type=int, default=60)
    args = parser.parse_args()
    for name, blocks in asyncio.run(measure(args.blocks, args.per_block)).items():
        print(f"{name:>26}: median {statistics.median(blocks):.3f} ms a PUT, min {min(blocks):.3f}")


if __name__ == "__main__":
    main()
