"""Shared code of the ticket-reservation functions: domain, SQL and models."""

from tickets.lazy_package import LAZY_PACKAGES, lazy_package

# Before any module of the layer imports from them: a cold start loads the one resolver and the
# one event class an API function uses, not all of Powertools' (tickets/lazy_package.py).
for _package in LAZY_PACKAGES:
    lazy_package(_package)
