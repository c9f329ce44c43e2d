"""Offers: limited discount codes of an event (their claims are counted like seats)."""

from __future__ import annotations

import re
import uuid

from tickets.ids import parse_id
from tickets.models.offers import Offer, OfferCreate
from tickets.refusals import Refusal
from tickets.store import db

CREATE_OFFER_REFUSALS = ("event_not_found", "offer_code_taken", "validation_error")
GET_OFFER_REFUSALS = ("event_not_found", "offer_not_found")
OFFER_CODE = re.compile(r"[A-Za-z0-9_-]{3,32}")


def create_offer(event_id: str, request: OfferCreate) -> Offer:
    payload = request.model_dump(mode="json")
    payload["offer_id"] = str(uuid.uuid4())
    result = db.call("create_offer", parse_id(event_id, not_found="event_not_found"), payload)
    if result["outcome"] != "created":
        raise Refusal.from_outcome(result)
    return Offer.model_validate(result["offer"])


def get_offer(event_id: str, code: str) -> Offer:
    event_uuid = parse_id(event_id, not_found="event_not_found")
    found = db.call("offer_read", event_uuid, code) if OFFER_CODE.fullmatch(code) else None
    if found is None:
        raise Refusal("offer_not_found")
    return Offer.model_validate(found)
