"""The patterns the API's schema states agree with the services that enforce them.

A service keeps a rule in code, in its own words; the schema states the same rule as a pattern
kept beside it. Generated values show the two never disagree.
"""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from endpoints.services.endpoints import CPU_ACCEPTED, resources_refusal
from endpoints.services.keys import REASON_PATTERN
from endpoints.services.versions import MODEL_NAME_PATTERN

CPU_LIKE = st.text(alphabet="0123456789.m", max_size=8) | st.sampled_from(
    [
        "0.08",
        "0.079",
        "0.5",
        "1",
        "1.0",
        "1.5",
        "2",
        "3",
        "8",
        "8.00",
        "9",
        "80m",
        "79m",
        "1000m",
        "1001m",
        "2000m",
        "9000m",
    ]
)


def cpu_taken(cpu: str) -> bool:
    refusal = resources_refusal(cpu, "512Mi")
    return refusal is None or refusal[0] != "cpu"


@given(CPU_LIKE)
def test_the_cpu_pattern_takes_what_the_service_takes(cpu):
    assert bool(re.search(CPU_ACCEPTED, cpu)) == cpu_taken(cpu)


@pytest.mark.parametrize(
    "cpu, taken",
    [("0.08", True), ("0.5", True), ("3", True), ("8.0", True), ("80m", True), ("4000m", True)]
    + [("0", False), ("0.07", False), ("1.5", False), ("9", False), ("79m", False), ("1500m", False)],
)
def test_the_cpu_pattern_takes_fractions_whole_numbers_and_millicores(cpu, taken):
    assert cpu_taken(cpu) == taken
    assert bool(re.search(CPU_ACCEPTED, cpu)) == taken


def model_name_taken(name: str) -> bool:
    """ml_model_create's own test of a name, once stripped."""
    name = name.strip()
    return bool(name) and "/" not in name and name not in (".", "..")


@given(st.text(alphabet=" ./\nab", max_size=6))
def test_the_model_name_pattern_takes_what_the_service_takes(name):
    assert bool(re.search(MODEL_NAME_PATTERN, name)) == model_name_taken(name)


@given(st.text(alphabet=" \t\nab", max_size=14))
def test_the_reason_pattern_takes_what_the_service_takes(reason):
    assert bool(re.search(REASON_PATTERN, reason)) == (len(reason.strip()) >= 10)
