"""A fake GlobalGiving API, mounted by hub.sandbox at /globalgiving (so /globalgiving/api/...).

Documented shapes: the donation request ({"donation": {refcode, email, amount, project{id}...}}
with api_key/api_token/is_test in the query) and the projects list. Assumed (GlobalGiving
documents neither): the answer body, refcode idempotency and the lookup route, see the README.
Magic e-mail tags: partners/_fake.py. "+fail" answers 400. GlobalGiving is synchronous;
"+pending" answers 202 with status "pending", so the relay's slow path can be exercised.
"""
from __future__ import annotations

import itertools
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from partners._fake import FakeApp, Order, Verdict, json_body, json_response, now_iso
from partners.globalgiving import report
from partners.globalgiving.config import DEFAULTS

NAME = "globalgiving"

PROJECTS = [
    {"id": 1883, "title": "Clean Water for 500 Families in Kenya", "themeName": "Clean Water", "country": "Kenya",
     "organization": {"id": 5021, "name": "Water for Good Kenya"},
     "summary": "Drill and maintain boreholes for rural families.",
     "donationOptions": {"donationOption": [{"amount": 10, "description": "A water filter"},
                                            {"amount": 25, "description": "Repairs to a hand pump"},
                                            {"amount": 50, "description": "Water for a family for a year"}]}},
    {"id": 32217, "title": "School Meals for Children in Guatemala", "themeName": "Education", "country": "Guatemala",
     "organization": {"id": 8840, "name": "Nutrición Escolar"},
     "summary": "A hot lunch every school day.",
     "donationOptions": {"donationOption": [{"amount": 15, "description": "A month of meals"}]}},
    {"id": 41002, "title": "Emergency Relief Fund", "themeName": "Disaster Response", "country": "Global",
     "organization": {"id": 2, "name": "GlobalGiving Foundation"},
     "summary": "Rapid grants to local responders after disasters."},
]
_PROJECTS = {p["id"]: p for p in PROJECTS}
_STATUS = {"pending": "pending", "fulfilled": "complete"}  # else failed


class GlobalGivingFake(FakeApp):
    name = NAME
    report_header = report.HEADER

    def __init__(self, *, api_key: str | None = None, api_token: str | None = None, **options: Any):
        super().__init__(**options)
        self.api_key = api_key or DEFAULTS["api_key"]
        self.api_token = api_token or DEFAULTS["api_token"]
        self._receipts = itertools.count(73510001)

    def rules(self) -> list[Rule]:
        return [
            Rule("/api/public/projectservice/all/projects/active", endpoint="projects", methods=["GET"]),
            Rule("/api/secure/givingservice/donations", endpoint="donate", methods=["POST"]),
            Rule("/api/secure/givingservice/donations/<refcode>", endpoint="donation", methods=["GET"]),
        ]

    def error(self, status: int, message: str, code: str = "error") -> Response:
        return json_response({"error": {"code": code, "message": message}}, status)

    def __call__(self, environ, start_response):
        request = Request(environ)
        if request.path.startswith("/api/"):
            ok = request.args.get("api_key") == self.api_key
            if request.path.startswith("/api/secure/"):
                ok = ok and request.args.get("api_token") == self.api_token
            if not ok:
                return self.error(401, "invalid api_key or api_token", "unauthorized")(environ, start_response)
        return super().__call__(environ, start_response)

    def on_projects(self, request: Request) -> Response:
        projects = [{**p, "active": True, "funding": 10000, "goal": 50000, "currencyCode": "USD"} for p in PROJECTS]
        return json_response({"projects": {"hasNext": False, "numberFound": len(projects), "project": projects}})

    def on_donate(self, request: Request) -> Response:
        donation = (json_body(request) or {}).get("donation")
        problem = self._invalid(donation)
        if problem:
            return self.error(400, problem, "invalid_donation")
        is_test = request.args.get("is_test", "false").lower() == "true"
        verdict, order = self.submit(donation["refcode"], donation.get("email"),
                                     lambda o: self._place(o, donation, is_test))
        if verdict is Verdict.REFUSED:
            return self.error(400, "The donation was declined", "donation_declined")
        misbehaviour = self.misbehaviour(verdict)
        if misbehaviour:
            return misbehaviour
        return json_response({"donation": self._view(order)}, 202 if order.status == "pending" else 200)

    def on_donation(self, request: Request, refcode: str) -> Response:
        order = self.book.find(refcode)
        if order is None:
            return self.error(404, f"no donation with refcode {refcode}", "donation_not_found")
        return json_response({"donation": self._view(order)})

    def _invalid(self, donation: Any) -> str | None:
        if not isinstance(donation, dict):
            return "body must be {\"donation\": {...}}"
        refcode = donation.get("refcode")
        if not isinstance(refcode, str) or not 0 < len(refcode) <= 100:
            return "refcode is required (at most 100 characters)"
        if not donation.get("email") or len(donation["email"]) > 50:
            return "email is required (at most 50 characters)"
        try:
            amount = Decimal(str(donation.get("amount")))
        except InvalidOperation:
            return "amount must be a number"
        if not amount > 1:
            return "amount must be greater than one"
        if donation.get("currencyCode", "USD") != "USD":
            return "currencyCode must be USD in the sandbox"
        if (donation.get("project") or {}).get("id") not in _PROJECTS:
            return "project.id is not an active project"
        return None

    def _place(self, order: Order, donation: dict, is_test: bool) -> None:
        project = _PROJECTS[donation["project"]["id"]]
        order.fields.update(
            id=str(next(self._receipts)), transactionId=donation.get("transactionId"), isTest=is_test,
            amount=format(Decimal(str(donation["amount"])).quantize(Decimal("0.01")), "f"),
            currency=donation.get("currencyCode", "USD"), donationDate=now_iso(),
            project={"id": project["id"], "title": project["title"], "organization": project["organization"]},
        )

    def report_row(self, order: Order) -> list[str]:
        f = order.fields
        donated = datetime.fromisoformat(f["donationDate"]).strftime(report.DATE_FORMAT)
        return [f["id"], order.reference, donated, str(f["project"]["id"]), f["project"]["title"], f["amount"],
                _STATUS.get(order.status, "failed")]

    def _view(self, order: Order) -> dict:
        f = order.fields
        status = _STATUS.get(order.status, "failed")
        receipt = None if status != "complete" else {
            "receiptNumber": f["id"], "amount": f["amount"], "currencyCode": f["currency"],
            "donationDate": f["donationDate"], "project": f["project"],
        }
        return {"refcode": order.reference, "transactionId": f["transactionId"], "isTest": f["isTest"],
                "status": status, "receipt": receipt}


def create_app(**options: Any) -> GlobalGivingFake:
    return GlobalGivingFake(**options)
