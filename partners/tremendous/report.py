"""Tremendous' orders report (the dashboard's "Orders" CSV export), as the hub reads it.

One line per order; "Created At" in ISO 8601 with its offset; amounts in major units of
"Currency Code"; "External ID" is the external_id we sent.
"""
from hub.rewards.providers import Status
from partners._report import CsvLayout, iso_utc

HEADER = ["Order ID", "Reward ID", "External ID", "Created At", "Product ID", "Amount",
          "Currency Code", "Status", "Delivery Status"]

LAYOUT = CsvLayout(
    reference="External ID", order_id="Order ID", date="Created At", amount="Amount",
    currency="Currency Code", status="Status", parse_date=iso_utc,
    statuses={"EXECUTED": Status.FULFILLED, "PENDING APPROVAL": Status.PENDING, "PENDING INTERNAL PAYMENT APPROVAL":
              Status.PENDING, "FAILED": Status.FAILED, "CANCELED": Status.FAILED},
)
