"""Seal an issued key's secret until its one reveal, with a key derived from SECRET_KEY."""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet() -> Fernet:
    digest = hashlib.sha256(f"key-sealing:{settings.SECRET_KEY}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def unseal(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("the sealed secret cannot be opened with this SECRET_KEY") from None


def key_hash(secret: str) -> str:
    """API keys are long random strings, so a plain SHA-256 is a sound one-way hash for them."""
    return hashlib.sha256(secret.encode()).hexdigest()
