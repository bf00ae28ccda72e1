"""The S3 endpoint cache: one rule-set evaluation per bucket, and the same URLs as without it."""

from __future__ import annotations

from typing import Any

import httpx

from fila import s3
from fila.settings import Settings
from workers.storage import AudioStore


def test_the_parameters_no_rule_reads_are_the_ones_left_out() -> None:
    unread = s3._unread_endpoint_params()
    assert "Key" in unread
    assert not {"Bucket", "Region", "Endpoint", "ForcePathStyle"} & unread


async def test_puts_and_presigned_urls_resolve_the_endpoint_once(settings: Settings) -> None:
    store = AudioStore(settings)
    await store.open()
    try:
        provider = store._client._ruleset_resolver._provider
        evaluate, evaluations = provider.ruleset.evaluate, []

        def counted(params: dict[str, object]) -> object:
            evaluations.append(params)
            return evaluate(params)

        provider.ruleset.evaluate = counted
        urls = []
        for n in range(5):
            await store.upload(f"endpoint-cache/{n}.ogg", f"voice {n}".encode(), "audio/ogg")
            urls.append(await store.url_for(f"endpoint-cache/{n}.ogg"))
        assert len(evaluations) <= 2  # the PUT's and the presign's, not one per object
        async with httpx.AsyncClient() as http:
            for n, url in enumerate(urls):
                got = await http.get(url)
                assert (got.status_code, got.content) == (200, f"voice {n}".encode()), url
    finally:
        await store.close()


async def test_a_put_goes_out_whole_without_waiting_for_a_continue(settings: Settings) -> None:
    """A small voice note is one request, not headers, a `100 Continue`, then the body."""
    store = AudioStore(settings)
    await store.open()
    sent: list[tuple[str, dict[str, str]]] = []

    assert store._objects is not None
    send = store._objects._session.send

    async def seen(request: Any) -> Any:
        sent.append((request.method, dict(request.headers.items())))
        return await send(request)

    try:
        store._objects._session.send = seen  # what goes on the client's connection pool
        audio = bytes(range(256)) * 128
        await store.upload("expect/small.ogg", audio, "audio/ogg")
        assert [method for method, _ in sent] == ["PUT"]
        assert "Expect" not in sent[0][1], sent[0][1]
        got = await store._client.get_object(Bucket=settings.s3_bucket, Key="expect/small.ogg")
        assert await got["Body"].read() == audio
    finally:
        await store.close()


async def test_urls_are_signed_as_the_client_signs_them_and_serve(
    settings: Settings,
) -> None:
    """Byte for byte botocore's own presigned URL, for keys that need escaping."""
    keys = ["audio_1_inst.ogg", "audio_2_inst com espaço ção ~+&?#%=.ogg", "dir/a//b.ogg"]
    async with s3.client(settings) as client:
        objects = await s3.BucketObjects.of(client, settings.s3_bucket)
        assert objects is not None
        for key in keys:
            for _ in range(10):  # both inside one second, so both carry the same X-Amz-Date
                theirs = await client.generate_presigned_url(
                    "get_object", Params={"Bucket": settings.s3_bucket, "Key": key}, ExpiresIn=900
                )
                ours = await objects.url(key, 900)
                again = await client.generate_presigned_url(
                    "get_object", Params={"Bucket": settings.s3_bucket, "Key": key}, ExpiresIn=900
                )
                if theirs == again:
                    break
            assert ours == theirs
            await client.put_object(Bucket=settings.s3_bucket, Key=key, Body=key.encode())
            async with httpx.AsyncClient() as http:
                got = await http.get(ours)
            assert (got.status_code, got.content) == (200, key.encode()), got.text


async def test_a_url_the_signer_cannot_reproduce_is_left_to_the_client(
    settings: Settings,
) -> None:
    """A client presigning another URL shape (V2 here) keeps its own PUTs and presigns."""
    from botocore.config import Config

    async with s3.client(settings, config=Config(signature_version="s3")) as client:
        assert await s3.BucketObjects.of(client, settings.s3_bucket) is None
