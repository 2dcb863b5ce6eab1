"""Each provider's report parser, on files in that provider's own layout (no HTTP)."""
from datetime import datetime, timezone

import uuid

import pytest

from hub.rewards.providers import ReportLayoutUnknown, ReportMalformed, Status, report_parser

TANGO = """\ufeffReference Order ID,External Ref ID,Order Date,Account Identifier,UTID,Reward Name,Amount,Currency,Status
RA261124-1401-27,rdm0001,2026-11-24 10:15:30,hub-sandbox,U157189,Starbucks Card $10.00,10.00,USD,COMPLETE
RA261124-1402-90,rdm0002,2026-11-24 11:00:00,hub-sandbox,U666425,Amazon.com Gift Card,25.50,usd,CANCELLED
RA261124-1403-11,,2026-11-25 09:00:00,hub-sandbox,U666425,Amazon.com Gift Card,5.00,USD,Pending
"""
TREMENDOUS = """Order ID,Reward ID,External ID,Created At,Product ID,Amount,Currency Code,Status,Delivery Status
QWERTY123456,ASDFGH123456,rdm0001,2026-11-24T10:15:30.123Z,OKMHM2X2OHYV,10.00,USD,EXECUTED,SUCCEEDED
ZXCVBN123456,POIUYT123456,rdm0002,2026-11-24T12:00:00+01:00,OKMHM2X2OHYV,25.5,EUR,CANCELED,FAILED
MNBVCX123456,LKJHGF123456,rdm0003,2026-11-25T09:00:00Z,OKMHM2X2OHYV,5,USD,PENDING APPROVAL,PENDING
"""
GLOBALGIVING = """Receipt Number,Refcode,Donation Date,Project ID,Project Title,Donation Amount (USD),Payment Status
73510001,rdm0001,11/24/2026 10:15:30,1883,"Clean Water, Safe Homes",10.00,complete
73510002,rdm0002,11/24/2026 11:00:00,1883,"Clean Water, Safe Homes",25.50,refunded
73510003,rdm0003,11/25/2026 09:00:00,2075,Girls' School,5.00,pending
"""
UTC = timezone.utc


def parse(provider: str, text: str):
    return list(report_parser(provider)(text.splitlines()))


@pytest.mark.parametrize("provider, text, expected", [
    ("tango", TANGO, [
        (2, "rdm0001", "RA261124-1401-27", datetime(2026, 11, 24, 10, 15, 30, tzinfo=UTC), 1000, "USD", Status.FULFILLED),
        (3, "rdm0002", "RA261124-1402-90", datetime(2026, 11, 24, 11, tzinfo=UTC), 2550, "USD", Status.FAILED),
        (4, "", "RA261124-1403-11", datetime(2026, 11, 25, 9, tzinfo=UTC), 500, "USD", Status.PENDING),
    ]),
    ("tremendous", TREMENDOUS, [
        (2, "rdm0001", "QWERTY123456", datetime(2026, 11, 24, 10, 15, 30, 123000, tzinfo=UTC), 1000, "USD",
         Status.FULFILLED),
        (3, "rdm0002", "ZXCVBN123456", datetime(2026, 11, 24, 11, tzinfo=UTC), 2550, "EUR", Status.FAILED),
        (4, "rdm0003", "MNBVCX123456", datetime(2026, 11, 25, 9, tzinfo=UTC), 500, "USD", Status.PENDING),
    ]),
    ("globalgiving", GLOBALGIVING, [
        (2, "rdm0001", "73510001", datetime(2026, 11, 24, 10, 15, 30, tzinfo=UTC), 1000, "USD", Status.FULFILLED),
        (3, "rdm0002", "73510002", datetime(2026, 11, 24, 11, tzinfo=UTC), 2550, "USD", Status.FAILED),
        (4, "rdm0003", "73510003", datetime(2026, 11, 25, 9, tzinfo=UTC), 500, "USD", Status.PENDING),
    ]),
])
def test_a_good_report_reads_in_the_hubs_terms(provider, text, expected):
    got = [(r.line, r.reference, r.provider_order_id, r.occurred_at, r.amount_minor, r.currency, r.status)
           for r in parse(provider, text)]
    assert got == expected


def test_blank_lines_are_skipped_and_lines_keep_their_numbers():
    text = TANGO.replace("\nRA261124-1402", "\n\nRA261124-1402")
    assert [r.line for r in parse("tango", text)] == [2, 4, 5]


def test_a_quoted_cell_over_two_lines_keeps_the_file_line_numbers():
    text = GLOBALGIVING.replace('"Clean Water, Safe Homes",10.00', '"Clean Water,\nSafe Homes",10.00')
    lines = list(report_parser("globalgiving")(text.splitlines(keepends=True)))
    assert [r.line for r in lines] == [3, 4, 5]


def _break(text: str, line: int, column: int, value: str) -> str:
    """`text` with one cell (1-based line, 0-based column, no quoted commas before it) replaced."""
    rows = text.splitlines()
    cells = rows[line - 1].split(",")
    cells[column] = value
    rows[line - 1] = ",".join(cells)
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("provider, text, line, column, value, named, problem", [
    ("tango", TANGO, 3, 6, "\"12,5\"", "Amount", "'12,5' is not an amount"),
    ("tango", TANGO, 3, 6, "-5.00", "Amount", "is not an amount"),
    ("tango", TANGO, 2, 6, "10.001", "Amount", "is not an amount"),
    ("tango", TANGO, 2, 7, "DOLLARS", "Currency", "is not a currency"),
    ("tango", TANGO, 4, 2, "24/11/2026", "Order Date", "is not a date"),
    ("tango", TANGO, 2, 8, "SHIPPED", "Status", "is not a known status"),
    ("tango", TANGO, 3, 0, "", "Reference Order ID", "is empty"),
    ("tango", TANGO, 3, 1, "rdm0001", "External Ref ID", "already on line 2"),
    ("tremendous", TREMENDOUS, 2, 3, "2026-11-24T10:15:30", "Created At", "is not a date"),
    ("tremendous", TREMENDOUS, 4, 5, "five", "Amount", "is not an amount"),
    ("tremendous", TREMENDOUS, 3, 6, "XYZ", "Currency Code", "is not a currency"),
    ("globalgiving", GLOBALGIVING, 2, 5, "$10.00", "Donation Amount (USD)", "is not an amount"),
    ("globalgiving", GLOBALGIVING, 4, 2, "2026-11-25 09:00:00", "Donation Date", "is not a date"),
    # What the hub stores must fit its String(100) columns and hold no control character
    # (PostgreSQL refuses either at insert): refused here, naming the cell.
    ("tango", TANGO, 3, 1, "r" * 101, "External Ref ID", "is 101 characters long (at most 100)"),
    ("tango", TANGO, 3, 0, "R" * 101, "Reference Order ID", "is 101 characters long"),
    ("tango", TANGO, 2, 1, "rdm\x000001", "External Ref ID", "control character (U+0000)"),
    ("tango", TANGO, 2, 0, "RA\x1b[2J", "Reference Order ID", "control character (U+001B)"),
    ("tremendous", TREMENDOUS, 2, 0, "QWERTY\t1", "Order ID", "control character (U+0009)"),
    # A date the period arithmetic cannot hold (or no order can have) is no date.
    ("tango", TANGO, 2, 2, "9999-12-31 23:59:59", "Order Date", "is not a year from 1970 to 9998"),
    ("tango", TANGO, 2, 2, "1969-12-31 23:59:59", "Order Date", "is not a year from 1970 to 9998"),
    ("tremendous", TREMENDOUS, 2, 3, "0001-01-01T00:00:00+01:00", "Created At", "is not a date"),
])
def test_a_bad_cell_names_its_line_and_column(provider, text, line, column, value, named, problem):
    broken = _break(text.replace('"Clean Water, Safe Homes"', "Clean Water"), line, column, value)
    with pytest.raises(ReportMalformed) as caught:
        parse(provider, broken)
    assert (caught.value.line, caught.value.column) == (line, named)
    assert str(caught.value).startswith(f'line {line}, column "{named}": ') and problem in str(caught.value)


def test_one_of_our_references_spelled_twice_is_a_duplicate():
    ours = "rdm" + "ab" * 16
    text = _break(_break(TANGO, 2, 1, ours), 3, 1, "RDM" + str(uuid.UUID(ours[3:])).upper())
    with pytest.raises(ReportMalformed, match=f'line 3, column "External Ref ID": .* already on line 2'):
        parse("tango", text)


def test_a_short_line_names_the_first_column_it_lacks():
    text = TANGO.replace(",10.00,USD,COMPLETE", "")
    with pytest.raises(ReportMalformed, match='line 2, column "Amount": the line ends before this column'):
        parse("tango", text)


@pytest.mark.parametrize("provider, text, missing", [
    ("tango", TREMENDOUS, ["Reference Order ID", "External Ref ID", "Order Date", "Currency"]),
    ("tremendous", TANGO, ["Order ID", "External ID", "Created At", "Currency Code"]),
    ("globalgiving", TANGO, ["Receipt Number", "Refcode", "Donation Date", "Donation Amount (USD)", "Payment Status"]),
    ("tango", "", ["Reference Order ID", "External Ref ID", "Order Date", "Amount", "Currency", "Status"]),
])
def test_another_layout_is_refused_naming_the_missing_columns(provider, text, missing):
    with pytest.raises(ReportLayoutUnknown) as caught:
        parse(provider, text)
    assert sorted(caught.value.missing) == sorted(missing)
