"""Tango Card's order report (the RaaS portal's "Orders" export), as the hub reads it.

One line per order; amounts in major units of "Currency"; "Order Date" in UTC as
2026-11-24 10:15:30; "External Ref ID" is the externalRefID we sent (empty for an order
placed in the portal).
"""
from hub.rewards.providers import Status
from partners._report import CsvLayout, utc

HEADER = ["Reference Order ID", "External Ref ID", "Order Date", "Account Identifier", "UTID",
          "Reward Name", "Amount", "Currency", "Status"]
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

LAYOUT = CsvLayout(
    reference="External Ref ID", order_id="Reference Order ID", date="Order Date", amount="Amount",
    currency="Currency", status="Status", parse_date=utc(DATE_FORMAT),
    statuses={"COMPLETE": Status.FULFILLED, "PENDING": Status.PENDING,
              "FAILED": Status.FAILED, "CANCELLED": Status.FAILED, "CANCELED": Status.FAILED},
)
