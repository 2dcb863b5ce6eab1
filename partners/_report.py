"""What the providers' report parsers share: reading a CSV report by column names.

Each provider's report.py describes its own layout (column names, date format, status words)
as a `CsvLayout`; this module reads a file in it. A report may carry more columns than the
hub reads (real ones do); one missing is another layout. A cell that cannot be read names its
line and column, so that ops can fix the file, and stops the import: half a report is worse
than none.
"""
from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from hub import money
from hub.errors import Invalid
from hub.rewards.providers import ReportLayoutUnknown, ReportLine, ReportMalformed, Status
from hub.rewards.redemptions import canonical_reference

# A cell the hub keeps fits reconciliation_lines' String(100) columns; PostgreSQL refuses a
# longer one (or a NUL) at insert, which would be a 500, not a line and column to fix.
MAX_CELL = 100
# When an order can have happened: also keeps a period's end day (date + 1 day) representable.
YEARS = range(1970, 9999)


@dataclass(frozen=True)
class CsvLayout:
    reference: str          # column of our OrderRequest.reference (may be empty: ordered elsewhere)
    order_id: str           # column of the provider's own order id
    date: str
    amount: str             # in major units ("25.00")
    status: str
    statuses: Mapping[str, Status]     # the provider's status word (any case) -> ours
    parse_date: Callable[[str], datetime]
    currency: str | None = None        # column of the ISO currency, or None with `fixed_currency`
    fixed_currency: str | None = None  # the one currency of a report without a currency column

    def columns(self) -> list[str]:
        return [c for c in (self.reference, self.order_id, self.date, self.amount, self.currency, self.status) if c]

    def __call__(self, lines: Iterable[str]) -> Iterator[ReportLine]:
        rows = csv.reader(_without_bom(lines))
        try:
            header = next(rows, None)
        except csv.Error as exc:
            raise ReportMalformed(1, "(header)", str(exc)) from exc
        header = [name.strip() for name in header or []]
        missing = [c for c in self.columns() if c not in header]
        if missing:
            raise ReportLayoutUnknown(missing)
        at = {name: header.index(name) for name in self.columns()}
        seen: dict[str, int] = {}
        while True:
            try:
                row = next(rows, None)
            except csv.Error as exc:
                raise ReportMalformed(rows.line_num, "(row)", str(exc)) from exc
            if row is None:
                return
            if not any(cell.strip() for cell in row):
                continue
            line = rows.line_num
            cells = {}
            for name, index in at.items():
                if index >= len(row):
                    raise ReportMalformed(line, name, "the line ends before this column")
                cells[name] = _cell(line, name, row[index].strip())
            reference = cells[self.reference]
            key = canonical_reference(reference)  # one order however the provider spells it
            if reference and key in seen:
                raise ReportMalformed(line, self.reference, f"{reference!r} is already on line {seen[key]}")
            seen[key] = line
            yield self._line(line, cells, reference)

    def _line(self, line: int, cells: dict[str, str], reference: str) -> ReportLine:
        order_id = cells[self.order_id]
        if not order_id:
            raise ReportMalformed(line, self.order_id, "is empty")
        currency = cells[self.currency].upper() if self.currency else self.fixed_currency
        try:
            money.exponent(currency)
        except Invalid:
            raise ReportMalformed(line, self.currency or self.amount, f"{currency!r} is not a currency") from None
        amount = cells[self.amount]
        try:
            amount_minor = money.to_minor(amount, currency)
        except Invalid:
            raise ReportMalformed(line, self.amount, f"{amount!r} is not an amount in {currency}") from None
        try:
            occurred_at = self.parse_date(cells[self.date])
        except (ValueError, OverflowError):
            raise ReportMalformed(line, self.date, f"{cells[self.date]!r} is not a date in this layout") from None
        if occurred_at.year not in YEARS:
            raise ReportMalformed(line, self.date, f"{cells[self.date]!r} is not a year from {YEARS[0]} to {YEARS[-1]}")
        status = self.statuses.get(cells[self.status].upper())
        if status is None:
            raise ReportMalformed(line, self.status, f"{cells[self.status]!r} is not a known status")
        return ReportLine(line=line, reference=reference, provider_order_id=order_id, occurred_at=occurred_at,
                          amount_minor=amount_minor, currency=currency, status=status)


def _cell(line: int, column: str, text: str) -> str:
    if len(text) > MAX_CELL:
        raise ReportMalformed(line, column, f"is {len(text)} characters long (at most {MAX_CELL})")
    bad = next((c for c in text if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        raise ReportMalformed(line, column, f"holds a control character (U+{ord(bad):04X})")
    return text


def utc(fmt: str) -> Callable[[str], datetime]:
    """A date parser for a report that writes UTC times in `fmt` (strptime's)."""
    return lambda text: datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)


def iso_utc(text: str) -> datetime:
    """ISO 8601 with an offset or Z; a time without one is refused (it could be any zone)."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError("no time zone")
    return when.astimezone(timezone.utc)


def write(header: list[str], rows: Iterable[list[str]]) -> str:
    """A report as its provider would send it (the sandbox fakes serve theirs with this)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _without_bom(lines: Iterable[str]) -> Iterator[str]:
    first = True
    for text in lines:
        yield text.removeprefix("\ufeff") if first else text
        first = False
