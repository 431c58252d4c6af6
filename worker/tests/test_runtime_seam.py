"""Choosing the runtime: a name from RUNTIMES or the dotted path of a Runtime class."""

import pytest

from worker.runtimes import get_runtime
from worker.runtimes.local import LocalRuntime
from worker.runtimes.memory import MemoryRuntime


class Elsewhere(MemoryRuntime):
    """A runtime from outside the project, named by its dotted path."""

    name = "elsewhere"


class NotARuntime:
    pass


def test_a_name_or_a_dotted_path_picks_the_runtime_and_a_change_takes_effect(settings):
    settings.RUNTIME = "local"
    assert isinstance(get_runtime(), LocalRuntime)
    assert get_runtime() is get_runtime()  # built once per process

    settings.RUNTIME = f"{__name__}.Elsewhere"
    assert get_runtime().name == "elsewhere"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nomad", "RUNTIME must be one of ['gcp', 'kubernetes', 'local', 'memory'] or the dotted path"),
        ("worker.runtimes.nowhere.Runtime", "RUNTIME must be one of"),
        (f"{__name__}.NotARuntime", "is not a subclass of worker.runtimes.base.Runtime"),
    ],
)
def test_a_runtime_that_is_not_one_is_refused_by_name(settings, value, message):
    settings.RUNTIME = value
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        get_runtime()


def test_the_worker_warms_the_configured_runtime_when_it_starts(memory_runtime):
    from worker.tasks import warm_up_runtime

    warm_up_runtime()

    assert memory_runtime.warmed
