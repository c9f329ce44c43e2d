"""The domain: reservations, events, check-in, expiry and payments, in the domain's own words."""
