"""Seal an issued key's secret until its one reveal, with the portal's own sealing key.

The sealing key is KEY_SEALING_KEY, not SECRET_KEY, so rotating SECRET_KEY (which signs sessions)
loses no key waiting to be revealed. KEY_SEALING_KEY may list several Fernet keys: the first
seals, every one opens, so the sealing key itself is rotated by putting a new one first and
dropping the old one once no sealed secret needs it (at most KEY_REVEAL_WINDOW_HOURS later).

    token = seal("mep_...")      # stored on the request
    unseal(token)                # "mep_...", at the reveal
"""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


def _legacy_fernet() -> Fernet:
    """The key secrets were sealed with before KEY_SEALING_KEY existed (derived from SECRET_KEY).

    Such a secret is erased by the reveal window at most KEY_REVEAL_WINDOW_HOURS after the
    upgrade; until then it still opens, if SECRET_KEY has not changed.
    """
    digest = hashlib.sha256(f"key-sealing:{settings.SECRET_KEY}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key) for key in settings.KEY_SEALING_KEYS] + [_legacy_fernet()])


def seal(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def unseal(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("the sealed secret cannot be opened with any key in KEY_SEALING_KEY") from None


def key_hash(secret: str) -> str:
    """API keys are long random strings, so a plain SHA-256 is a sound one-way hash for them."""
    return hashlib.sha256(secret.encode()).hexdigest()
