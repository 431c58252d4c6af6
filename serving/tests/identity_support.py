"""A token issuer for tests: RSA and EC keys made here, a JWKS server on loopback, signed tokens.

with Issuer() as issuer:
    token = issuer.token(aud="https://endpoint.test")
    issuer.rotate()  # a new key (new kid) published; the old one withdrawn
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://issuer.test"
AUDIENCE = "https://endpoint.test"


class Issuer:
    """Publishes its public keys at `jwks_url` and signs tokens with the private ones."""

    def __init__(self):
        self.private: dict[str, object] = {}
        self.published: list[dict] = []
        self.fetches = 0
        self.generation = 0
        self.add_key("RS256")
        self.add_key("ES256")
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                issuer.fetches += 1
                body = json.dumps({"keys": issuer.published}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.jwks_url = f"http://127.0.0.1:{self.server.server_port}/certs"

    def add_key(self, algorithm: str) -> str:
        self.generation += 1
        kid = f"{algorithm.lower()}-{self.generation}"
        if algorithm == "RS256":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            public = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        self.private[kid] = key
        self.published.append({**public, "kid": kid, "use": "sig", "alg": algorithm})
        return kid

    def rotate(self) -> str:
        """Publish a new RSA key and withdraw the others; returns the new key's id."""
        kid = self.add_key("RS256")
        self.published = [entry for entry in self.published if entry["kid"] == kid]
        return kid

    def kid(self, algorithm: str = "RS256") -> str:
        return next(entry["kid"] for entry in reversed(self.published) if entry["alg"] == algorithm)

    def token(self, *, kid: str | None = None, algorithm: str = "RS256", headers=None, **claims) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "caller@example.com", "iat": now, "exp": now + 600}
        payload.update(claims)
        payload = {name: value for name, value in payload.items() if value is not None}
        kid = kid or self.kid(algorithm)
        return jwt.encode(
            payload, self.private[kid], algorithm=algorithm, headers={"kid": kid, **(headers or {})}
        )

    def policy(self, **overrides) -> dict:
        return {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": self.jwks_url, "claim": None, **overrides}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def __enter__(self) -> Issuer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
