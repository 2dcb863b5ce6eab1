"""GlobalGiving's donations report (the corporate partner's donation export), as the hub reads it.

One line per donation, in US dollars only (the header says so, there is no currency column):
"Donation Amount (USD)" in major units; "Donation Date" in UTC as 11/24/2026 10:15:30;
"Refcode" is the refcode we sent; "Receipt Number" is GlobalGiving's id of the donation.
"""
from hub.rewards.providers import Status
from partners._report import CsvLayout, utc

HEADER = ["Receipt Number", "Refcode", "Donation Date", "Project ID", "Project Title",
          "Donation Amount (USD)", "Payment Status"]
DATE_FORMAT = "%m/%d/%Y %H:%M:%S"

LAYOUT = CsvLayout(
    reference="Refcode", order_id="Receipt Number", date="Donation Date", amount="Donation Amount (USD)",
    fixed_currency="USD", status="Payment Status", parse_date=utc(DATE_FORMAT),
    statuses={"COMPLETE": Status.FULFILLED, "PENDING": Status.PENDING, "FAILED": Status.FAILED,
              "REFUNDED": Status.FAILED},
)
