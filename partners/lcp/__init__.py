"""A partner-hosted points program shaped like Points' LCP partner-program API. Registers the
"lcp" hosted program (hub.exchange.hosted), not a reward provider."""
from hub.exchange.hosted import register

from partners.lcp.connector import LcpProgram

register(LcpProgram.name, LcpProgram)
