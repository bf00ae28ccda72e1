"""WhatsApp media format: round trip and every tamper case gives its own reason."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fila import mediacrypto
from fila.mediacrypto import MediaError, decrypt, derive_keys, encrypt, new_media_key


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 4096, 100_003])
def test_round_trip(size: int) -> None:
    plain = os.urandom(size)
    key = new_media_key()
    media = encrypt(plain, key)
    assert media.enc != plain
    assert len(media.enc) % 16 == mediacrypto.MAC_LENGTH
    assert media.fileSha256 == hashlib.sha256(plain).digest()
    assert media.fileEncSha256 == hashlib.sha256(media.enc).digest()
    out = decrypt(media.enc, key, file_sha256=media.fileSha256, file_enc_sha256=media.fileEncSha256)
    assert out == plain
    assert decrypt(media.enc, key, file_sha256=None, file_enc_sha256=None) == plain


def test_known_layout_matches_independent_construction() -> None:
    """The blob is AES-CBC(iv, cipher key) of PKCS7 data followed by a 10-byte HMAC tail."""
    key = bytes(range(32))
    plain = b"opus-bytes" * 7
    media = encrypt(plain, key)
    keys = derive_keys(key)
    dec = Cipher(algorithms.AES(keys.cipher_key), modes.CBC(keys.iv)).decryptor()
    padded = dec.update(media.enc[:-10]) + dec.finalize()
    assert padded[: len(plain)] == plain
    pad = padded[-1]
    assert padded[len(plain) :] == bytes([pad]) * pad


def _reason(exc: pytest.ExceptionInfo[MediaError]) -> str:
    return exc.value.reason


def test_wrong_key_is_mac_mismatch() -> None:
    plain = os.urandom(1000)
    media = encrypt(plain, new_media_key())
    with pytest.raises(MediaError) as exc:
        decrypt(media.enc, new_media_key(), file_sha256=media.fileSha256, file_enc_sha256=None)
    assert _reason(exc) == "mac_mismatch"


def test_flipped_ciphertext_byte_is_mac_mismatch() -> None:
    key = new_media_key()
    media = encrypt(os.urandom(1000), key)
    tampered = bytearray(media.enc)
    tampered[5] ^= 0x01
    with pytest.raises(MediaError) as exc:
        decrypt(bytes(tampered), key, file_sha256=None, file_enc_sha256=None)
    assert _reason(exc) == "mac_mismatch"


def test_enc_sha256_checked_before_mac() -> None:
    key = new_media_key()
    media = encrypt(os.urandom(100), key)
    tampered = bytearray(media.enc)
    tampered[-1] ^= 0xFF
    with pytest.raises(MediaError) as exc:
        decrypt(bytes(tampered), key, file_sha256=None, file_enc_sha256=media.fileEncSha256)
    assert _reason(exc) == "enc_sha256_mismatch"


def test_plaintext_digest_mismatch() -> None:
    key = new_media_key()
    media = encrypt(b"a" * 64, key)
    with pytest.raises(MediaError) as exc:
        decrypt(media.enc, key, file_sha256=hashlib.sha256(b"b").digest(), file_enc_sha256=None)
    assert _reason(exc) == "sha256_mismatch"


def test_bad_padding_with_valid_mac() -> None:
    """A correctly MACed blob whose plaintext padding is wrong is still refused."""
    key = new_media_key()
    keys = derive_keys(key)
    enc_ = Cipher(algorithms.AES(keys.cipher_key), modes.CBC(keys.iv)).encryptor()
    ciphertext = enc_.update(b"x" * 31 + b"\x00") + enc_.finalize()
    tag = hmac.new(keys.mac_key, keys.iv + ciphertext, hashlib.sha256).digest()[:10]
    with pytest.raises(MediaError) as exc:
        decrypt(ciphertext + tag, key, file_sha256=None, file_enc_sha256=None)
    assert _reason(exc) == "bad_padding"


@pytest.mark.parametrize("size", [0, 9, 10, 25, 27])
def test_too_short_or_ragged(size: int) -> None:
    with pytest.raises(MediaError) as exc:
        decrypt(os.urandom(size), new_media_key(), file_sha256=None, file_enc_sha256=None)
    assert _reason(exc) == "too_short"


def test_bad_key_length() -> None:
    with pytest.raises(MediaError) as exc:
        encrypt(b"abc", b"short")
    assert _reason(exc) == "bad_media_key"
