"""Money: decimal strings in, integer minor units out, with ISO 4217 exponents."""
from __future__ import annotations

import functools
import re
from decimal import Decimal

import iso4217

from hub.errors import Invalid

_AMOUNT = re.compile(r"^(0|[1-9]\d{0,14})(\.\d{1,4})?$")


@functools.cache  # hot in batches; a refusal raises and is not cached
def exponent(currency: str) -> int:
    """Minor-unit digits of an ISO 4217 currency usable for purchases."""
    try:
        exp = iso4217.Currency(currency).exponent
    except ValueError:
        exp = None
    if exp is None or not re.fullmatch(r"[A-Z]{3}", currency):
        raise Invalid(f"{currency!r} is not an ISO 4217 currency code", slug="unknown-currency")
    return exp


def to_minor(amount: str, currency: str) -> int:
    """'125000.50', 'IDR' -> 12500050. More decimals than the currency has is an error."""
    exp = exponent(currency)
    if not _AMOUNT.fullmatch(amount):
        raise Invalid(f"amount {amount!r} is not a plain decimal string", slug="invalid-amount")
    value = Decimal(amount)
    minor = value.scaleb(exp)
    if minor != minor.to_integral_value():
        raise Invalid(f"{currency} has {exp} decimal places; got {amount}", slug="invalid-amount")
    return int(minor)


def to_major(minor: int, currency: str) -> str:
    exp = exponent(currency)
    return format(Decimal(minor).scaleb(-exp), "f")
