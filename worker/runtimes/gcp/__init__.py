"""The Google Cloud runtime (RUNTIME=gcp); `runtime.GcpRuntime` is the entry point.

One module per Google API. This package's `__init__` imports nothing from Google, so settings can
import `config` to check values at start-up without loading the client libraries.
"""
