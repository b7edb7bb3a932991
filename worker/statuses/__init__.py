"""Delivery statuses and inbound messages: what happens to a wamid after the API accepted it."""
