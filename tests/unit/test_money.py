import pytest

from hub import money
from hub.errors import Invalid


@pytest.mark.parametrize(
    "amount, currency, minor",
    [("125000.50", "IDR", 12500050), ("1", "USD", 100), ("0.5", "USD", 50), ("1000", "JPY", 1000), ("1.234", "KWD", 1234)],
)
def test_to_minor(amount, currency, minor):
    assert money.to_minor(amount, currency) == minor
    assert money.to_minor(money.to_major(minor, currency), currency) == minor


@pytest.mark.parametrize(
    "amount, currency, slug",
    [("1.5", "JPY", "invalid-amount"), ("1.001", "USD", "invalid-amount"), ("1e3", "USD", "invalid-amount"),
     ("-1", "USD", "invalid-amount"), ("1", "XAU", "unknown-currency"), ("1", "ABC", "unknown-currency"),
     ("1", "usd", "unknown-currency")],
)
def test_bad_amounts_and_currencies(amount, currency, slug):
    with pytest.raises(Invalid) as err:
        money.to_minor(amount, currency)
    assert err.value.slug == slug
