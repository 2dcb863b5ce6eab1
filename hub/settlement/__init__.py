"""Settlement (issue 9): what the points movements imply in money between partners, reward
providers and the hub. prices.py (dated price per point, the hub's fees), statements.py
(closing a period into immutable statements), exports.py (streamed CSV/JSON),
reconciliation.py (providers' reports matched against the hub's orders)."""
