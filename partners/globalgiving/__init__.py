"""GlobalGiving: charity donations. Registers the "globalgiving" connector."""
from hub.rewards.providers import register

from partners.globalgiving.connector import GlobalGivingProvider

register(GlobalGivingProvider.name, GlobalGivingProvider)
