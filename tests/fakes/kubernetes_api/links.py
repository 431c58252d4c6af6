"""How the fake's objects point at each other: owner references and the generated name parts."""

from __future__ import annotations

import hashlib
import json

HASH_LABEL = "pod-template-hash"
#: The alphabet Kubernetes encodes hashes in (rand.SafeEncodeString: no vowels, no 0/1/3).
SAFE = "bcdfghjklmnpqrstvwxz2456789"


def safe_hash(data: object, length: int = 10) -> str:
    digest = int(hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest(), 16)
    chars = []
    for _ in range(length):
        digest, index = divmod(digest, len(SAFE))
        chars.append(SAFE[index])
    return "".join(chars)


def owned_by(obj: dict, owner: dict) -> bool:
    return any(ref["uid"] == owner["metadata"]["uid"] for ref in obj["metadata"].get("ownerReferences") or [])


def owner_reference(owner: dict) -> dict:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
