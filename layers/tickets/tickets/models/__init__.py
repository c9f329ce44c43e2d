"""Request and response models: the single source of the API's shapes (and its OpenAPI).

One module per part of the API, imported by name (`from tickets.models.reservations import
Reservation`): a function's cold start defines the classes its routes use, not all of them.
"""
