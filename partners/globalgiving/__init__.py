"""GlobalGiving: charity donations. Registers the "globalgiving" connector and its report layout."""
from hub.rewards.providers import register, register_report

from partners.globalgiving import report
from partners.globalgiving.connector import GlobalGivingProvider

register(GlobalGivingProvider.name, GlobalGivingProvider)
register_report(GlobalGivingProvider.name, report.LAYOUT)
