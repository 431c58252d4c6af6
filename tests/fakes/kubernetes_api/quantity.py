"""Kubernetes resource quantities ("500m", "1.5", "2Gi", "1e3"), as exact decimals."""

from __future__ import annotations

import re
from decimal import Decimal

SUFFIXES = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[a-zA-Z]*)$")
#: The API server's words when a quantity does not parse (resource.ErrFormatWrong).
FORMAT_WRONG = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


def parse_quantity(value: object) -> Decimal:
    """The quantity's value; ValueError(FORMAT_WRONG) when it is not one."""
    if isinstance(value, bool):
        raise ValueError(FORMAT_WRONG)
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = QUANTITY.match(str(value))
    if not match or match.group(1) in (".", "+", "-") or match.group(1).count(".") > 1:
        raise ValueError(FORMAT_WRONG)
    number, suffix = Decimal(match.group(1)), match.group(2)
    if suffix[:1] in ("e", "E"):
        return number * Decimal(10) ** int(suffix[1:])
    if suffix not in SUFFIXES:
        raise ValueError(FORMAT_WRONG)
    return number * SUFFIXES[suffix]
