"""The local runtime: real serving processes on this machine (see `runtime`)."""

from worker.runtimes.local.runtime import LocalRuntime

__all__ = ["LocalRuntime"]
