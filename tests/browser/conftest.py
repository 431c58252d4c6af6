"""What every browser test shares."""

import pytest


@pytest.fixture(autouse=True)
def _sign_in_as_often_as_the_tests_do(settings):
    """Each browser test signs in afresh, the same people from the same address, more often than
    SIGN_IN_RATE lets a person (the rate is tested in endpoints/tests/test_sign_in_attacks.py)."""
    settings.SIGN_IN_RATE = "1000/min"
