"""WhatsApp media encryption: HKDF-SHA256 keys, AES-256-CBC body, 10-byte HMAC-SHA256 tail.

Ingest decrypts `.enc` downloads with it; the simulator and tests encrypt with it so both sides
share one implementation of the format.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import msgspec
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

AUDIO_INFO = b"WhatsApp Audio Keys"
MAC_LENGTH = 10
_BLOCK = 16


class MediaError(Exception):
    """Media that cannot be trusted; `reason` is a short machine-readable word for dead letters."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class EncryptedMedia(msgspec.Struct, frozen=True):
    """An `.enc` blob plus the two digests WhatsApp puts in the message next to the media key."""

    enc: bytes
    fileSha256: bytes
    fileEncSha256: bytes


class MediaKeys(msgspec.Struct, frozen=True):
    """The parts of the 112-byte HKDF expansion that the format uses."""

    iv: bytes
    cipher_key: bytes
    mac_key: bytes


def new_media_key() -> bytes:
    """A fresh random 32-byte media key, as WhatsApp generates per upload."""
    return os.urandom(32)


def derive_keys(media_key: bytes, info: bytes = AUDIO_INFO) -> MediaKeys:
    """Expand the media key; a wrong-length key is refused before it can yield garbage."""
    if len(media_key) != 32:
        raise MediaError("bad_media_key", f"media key must be 32 bytes, got {len(media_key)}")
    expanded = HKDF(algorithm=hashes.SHA256(), length=112, salt=None, info=info).derive(media_key)
    return MediaKeys(iv=expanded[:16], cipher_key=expanded[16:48], mac_key=expanded[48:80])


def _mac(keys: MediaKeys, ciphertext: bytes) -> bytes:
    return hmac.new(keys.mac_key, keys.iv + ciphertext, hashlib.sha256).digest()[:MAC_LENGTH]


def encrypt(plaintext: bytes, media_key: bytes, *, info: bytes = AUDIO_INFO) -> EncryptedMedia:
    """Produce the `.enc` blob and digests a WhatsApp client would send for this audio."""
    keys = derive_keys(media_key, info)
    padder = padding.PKCS7(_BLOCK * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(keys.cipher_key), modes.CBC(keys.iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    enc = ciphertext + _mac(keys, ciphertext)
    return EncryptedMedia(
        enc=enc,
        fileSha256=hashlib.sha256(plaintext).digest(),
        fileEncSha256=hashlib.sha256(enc).digest(),
    )


def decrypt(
    enc: bytes,
    media_key: bytes,
    *,
    file_sha256: bytes | None,
    file_enc_sha256: bytes | None,
    info: bytes = AUDIO_INFO,
) -> bytes:
    """Verify every check the message offers before returning plaintext; never a silent pass."""
    if len(enc) < MAC_LENGTH + _BLOCK or (len(enc) - MAC_LENGTH) % _BLOCK:
        raise MediaError("too_short", f"{len(enc)} bytes is not a whole cipher block plus MAC")
    if file_enc_sha256 is not None and not hmac.compare_digest(
        hashlib.sha256(enc).digest(), file_enc_sha256
    ):
        raise MediaError("enc_sha256_mismatch", "fileEncSha256 does not match the download")
    keys = derive_keys(media_key, info)
    ciphertext, tag = enc[:-MAC_LENGTH], enc[-MAC_LENGTH:]
    if not hmac.compare_digest(_mac(keys, ciphertext), tag):
        raise MediaError("mac_mismatch", "HMAC tail does not match (wrong media key or tampered)")
    decryptor = Cipher(algorithms.AES(keys.cipher_key), modes.CBC(keys.iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(_BLOCK * 8).unpadder()
    try:
        plaintext = unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise MediaError("bad_padding", "PKCS7 padding is invalid") from exc
    if file_sha256 is not None and not hmac.compare_digest(
        hashlib.sha256(plaintext).digest(), file_sha256
    ):
        raise MediaError("sha256_mismatch", "fileSha256 does not match the decrypted audio")
    return plaintext
