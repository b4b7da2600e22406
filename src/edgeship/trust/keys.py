"""Ed25519 signing keys on disk: PKCS#8 PEM, owner-only, optionally passphrase-encrypted."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, SSlibKey

from edgeship.errors import TrustError
from edgeship.store.fsutil import write_atomic

PASSPHRASE_ENV = "EDGESHIP_KEY_PASSPHRASE"

PassphraseSource = Callable[[Path], bytes | None]


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key(private: Ed25519PrivateKey) -> SSlibKey:
    return SSlibKey.from_crypto(private.public_key())


def save(path: Path, private: Ed25519PrivateKey, passphrase: bytes | None) -> None:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, pem, mode=0o600)


def is_encrypted(path: Path) -> bool:
    return b"ENCRYPTED PRIVATE KEY" in path.read_bytes()[:64]


def passphrase_from_env(_path: Path) -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def load(path: Path, passphrase: PassphraseSource = passphrase_from_env) -> Ed25519PrivateKey:
    try:
        pem = path.read_bytes()
    except FileNotFoundError as exc:
        raise TrustError(f"signing key {path} is missing", hint="restore it from your backup, or run `edgeship keys rotate` with the root key") from exc
    secret = passphrase(path) if is_encrypted(path) else None
    if is_encrypted(path) and not secret:
        raise TrustError(f"signing key {path} is encrypted", hint=f"set {PASSPHRASE_ENV} or run in a terminal to be asked")
    try:
        key = serialization.load_pem_private_key(pem, password=secret)
    except (ValueError, TypeError) as exc:
        raise TrustError(f"cannot open signing key {path}: wrong passphrase or damaged file") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise TrustError(f"signing key {path} is not an Ed25519 key")
    return key


def signer(private: Ed25519PrivateKey) -> CryptoSigner:
    return CryptoSigner(private, public_key(private))
