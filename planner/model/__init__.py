"""The data every stage shares: scenarios, plans, units. Imports nothing else of vplan."""
