"""The ops console (issue 9): server-rendered pages under /ops for the people who run the
coalition, with roles (hub.identity.roles). The blueprint and its guards are console.py; the
routes are auth.py (login, logout), pages.py (what each role reads), actions.py (what
ops_admin changes, each audited) reconciliation_pages.py and
statement_pages.py; what the pages read is queries.py."""
from hub.web.ops import actions, auth, pages, reconciliation_pages, statement_pages  # noqa: F401  (their routes join the blueprint)
from hub.web.ops.console import blueprint

__all__ = ["blueprint"]
