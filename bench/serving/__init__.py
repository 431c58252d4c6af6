"""Benchmark of the serving container against a FastAPI baseline and a raw-ASGI floor."""
