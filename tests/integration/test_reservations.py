"""Reserve, read, cancel, confirm, check-in and expiry through the handlers."""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

import pytest

from tests.support.api import Api
from tickets.domain.reservations import ReserveAnswer
from tickets.models.reservations import Reservation


def lapse(db: Any, reservation_id: str) -> None:
    """Moves a hold's expiry into the past, as time would."""
    db.execute("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE reservation_id = %s",
               (reservation_id,))


def seats_taken(db: Any, tier_id: str) -> int:
    return int(db.execute("SELECT seats_taken FROM tier_inventory WHERE tier_id = %s", (tier_id,)).fetchone()[0])


def test_reserve_holds_seats(api: Api, key: str, db: Any) -> None:
    event = api.create_event()
    response = api.reserve(event["event_id"], 2, key=key)
    assert response.status == 201, response.text
    body = response.body
    assert body["status"] == "held" and body["quantity"] == 2 and body["total_amount"] == 5000
    assert body["currency"] == "EUR" and body["event_id"] == event["event_id"]
    assert body["tier_id"] == event["tiers"][0]["tier_id"]
    assert re.fullmatch(r"EVT-[0-9A-Z]{6}", body["booking_reference"])
    assert body["expires_at"].endswith("Z")
    secret = body.pop("reservation_secret")
    assert len(secret) >= 32
    assert api.request("GET", f"/reservations/{body['reservation_id']}").body == body  # the secret is not repeated
    assert seats_taken(db, body["tier_id"]) == 2


def test_the_domain_reads_reserve_holds_values_in_their_order(db: Any) -> None:
    # A new hold comes back as reserve_hold's OUT parameters, a record read by position: ReserveAnswer
    # names them in the same order.
    names, modes = db.execute("SELECT proargnames, proargmodes FROM pg_proc WHERE proname = 'reserve_hold'").fetchone()
    assert [name for name, mode in zip(names, modes, strict=True) if mode == "o"] == [
        "answer", *(f"hold_{field}" for field in ReserveAnswer._fields[1:])]


def test_the_previous_releases_reserve_seats_answers_as_it_did(api: Api, key: str, db: Any) -> None:
    # While a deploy runs, the previous release's reserve calls reserve_seats for a JSON answer (the
    # function files are applied before its code is replaced): the shim answers a new hold as the
    # reservation that a read gives, with its secret, and anything else as reserve_hold does.
    event = api.create_event(tiers=[{"name": "GA", "capacity": 3, "price": 2500}])
    call = "SELECT reserve_seats(%s, NULL, 2, 'old-buyer', 'a', %s, 'old-secret', %s, NULL, NULL, true)"
    reservation_id = str(uuid.uuid4())
    answer = db.execute(call, (event["event_id"], reservation_id, f"{key}-old")).fetchone()[0]
    assert answer["outcome"] == "held", answer
    read = api.request("GET", f"/reservations/{reservation_id}", headers={"X-Reservation-Secret": "old-secret"})
    assert read.status == 200, read.text
    assert Reservation.model_validate(answer["reservation"]).model_dump(mode="json") == {
        **read.body, "reservation_secret": "old-secret"}
    # Asked again with the same request key: the same hold.
    assert db.execute(call, (event["event_id"], reservation_id, f"{key}-old")).fetchone()[0] == answer
    refused = db.execute(call, (event["event_id"], uuid.uuid4(), None)).fetchone()[0]
    assert refused == {"outcome": "insufficient_inventory", "available_seats": 1,
                       "tier_id": event["tiers"][0]["tier_id"]}


def test_a_reservation_needs_its_secret(api: Api, key: str, db: Any) -> None:
    event = api.create_event()
    hold = api.reserve(event["event_id"], 2, key=key).body
    path = f"/reservations/{hold['reservation_id']}"
    for n, secret in enumerate(("", "wrong", hold["reservation_secret"] + "x", "\x00", "é")):
        for method, call, body in (("GET", path, None), ("DELETE", path, None),
                                   ("POST", path + "/confirm", {"payment_token": "tok_visa"})):
            response = api.request(method, call, body=body,
                                   headers={"X-Reservation-Secret": secret, "Idempotency-Key": f"{key}-{n}"})
            assert (response.status, response.error_code) == (404, "reservation_not_found"), response.text
    assert db.execute("SELECT status, payment_status FROM reservations").fetchall() == [("held", "pending")]
    assert db.execute("SELECT count(*) FROM payments").fetchone()[0] == 0
    assert api.request("GET", path).status == 200


def test_booking_references_are_unique(api: Api, key: str) -> None:
    event = api.create_event(tiers=[{"name": "GA", "capacity": 200, "price": 1, "max_per_order": 1}])
    references = {api.reserve(event["event_id"], 1, key=f"{key}-{n}").body["booking_reference"] for n in range(100)}
    assert len(references) == 100


def test_booking_references_are_six_crockford_digits_of_the_sequences_code(db: Any) -> None:
    # The digits are slices of a table of digit pairs (00_rules.sql): each must be the code's own
    # base-32 digit, so that references stay what they were and never repeat.
    def reference(code: int) -> str:
        return "EVT-" + "".join("0123456789ABCDEFGHJKMNPQRSTVWXYZ"[code >> shift & 31] for shift in range(25, -1, -5))

    codes = [0, 1, 31, 32, 1023, 1024, 2**20 - 1, 2**20, 2**30 - 1, *random.Random(7).sample(range(2**30), 3000)]
    found = db.execute("SELECT array_agg(booking_reference_digits(code) ORDER BY n)"
                       " FROM unnest(%s::integer[]) WITH ORDINALITY AS given(code, n)", (codes,)).fetchone()[0]
    assert found == [reference(code) for code in codes]
    for seq in (1, 2, 10**9):
        assert db.execute("SELECT booking_reference(%s)", (seq,)).fetchone()[0] == reference(
            (seq * 747796405 + 289133645) % 2**30)


def test_reserve_needs_tier_id_when_event_has_several(api: Api, key: str) -> None:
    event = api.create_event(tiers=[{"name": "A", "capacity": 5, "price": 1}, {"name": "B", "capacity": 5, "price": 1}])
    response = api.reserve(event["event_id"], 1, key=key)
    assert response.status == 422 and response.error_code == "validation_error"
    assert response.body["error"]["details"][0]["field"] == "tier_id"
    other = api.create_event()
    wrong_tier = api.reserve(event["event_id"], 1, key=key + "x", tier_id=other["tiers"][0]["tier_id"])
    assert wrong_tier.status == 404 and wrong_tier.error_code == "tier_not_found"


def test_sold_out_and_insufficient_inventory(api: Api, key: str) -> None:
    event = api.create_event()
    assert api.reserve(event["event_id"], 6, key=key + "1").status == 201
    short = api.reserve(event["event_id"], 5, key=key + "2")
    assert short.status == 409 and short.error_code == "insufficient_inventory"
    assert short.body["error"]["available_seats"] == 4
    assert api.reserve(event["event_id"], 4, key=key + "3").status == 201
    gone = api.reserve(event["event_id"], 1, key=key + "4")
    assert gone.status == 409 and gone.error_code == "sold_out"
    assert api.availability(event["event_id"])["available"] is False


def test_quantity_over_max_per_order_is_422_even_when_sold_out(api: Api, key: str) -> None:
    event = api.create_event(tiers=[{"name": "GA", "capacity": 2, "price": 1, "max_per_order": 2}])
    assert api.reserve(event["event_id"], 2, key=key + "1").status == 201
    response = api.reserve(event["event_id"], 3, key=key + "2")
    assert response.status == 422 and response.error_code == "limit_exceeded"
    assert response.body["error"]["max_per_order"] == 2


def test_max_per_customer_counts_holds_and_purchases(api: Api, key: str) -> None:
    event = api.create_event(max_per_customer=4)
    first = api.reserve(event["event_id"], 3, key=key + "1", device="phone-1")
    assert api.confirm(first.body["reservation_id"], key=key + "c").status == 200
    refused = api.reserve(event["event_id"], 2, key=key + "2", device="phone-1")
    assert refused.status == 422 and refused.error_code == "limit_exceeded"
    assert refused.body["error"]["remaining"] == 1
    assert api.reserve(event["event_id"], 1, key=key + "3", device="phone-1").status == 201
    assert api.reserve(event["event_id"], 2, key=key + "4", device="phone-2").status == 201


def test_fingerprint_without_device_id_uses_ip_agent_and_language(api: Api, key: str) -> None:
    event = api.create_event(max_per_customer=1)
    path = f"/events/{event['event_id']}/reservations"
    browser = {"User-Agent": "Firefox", "Accept-Language": "fr"}
    first = api.request("POST", path, body={"quantity": 1}, headers={**browser, "Idempotency-Key": key + "1"})
    assert first.status == 201
    same = api.request("POST", path, body={"quantity": 1}, headers={**browser, "Idempotency-Key": key + "2"})
    assert same.status == 422 and same.error_code == "limit_exceeded"
    other_ip = api.request("POST", path, body={"quantity": 1}, headers={**browser, "Idempotency-Key": key + "3"},
                           source_ip="203.0.113.9")
    assert other_ip.status == 201


def test_sales_window(api: Api, key: str) -> None:
    not_yet = api.create_event(sales_start_at="2099-01-01T00:00:00Z")
    response = api.reserve(not_yet["event_id"], 1, key=key + "1")
    assert response.status == 403 and response.error_code == "sales_closed"
    over = api.create_event(sales_start_at="2000-01-01T00:00:00Z", sales_end_at="2001-01-01T00:00:00Z")
    assert api.reserve(over["event_id"], 1, key=key + "2").error_code == "sales_closed"
    open_now = api.create_event(sales_start_at="2000-01-01T00:00:00Z", sales_end_at="2099-01-01T00:00:00Z")
    assert api.reserve(open_now["event_id"], 1, key=key + "3").status == 201


def test_lapsed_hold_never_blocks_a_sale(api: Api, key: str, db: Any) -> None:
    event = api.create_event()
    hold = api.reserve(event["event_id"], 6, key=key + "1").body
    assert api.reserve(event["event_id"], 4, key=key + "2").status == 201
    assert api.reserve(event["event_id"], 1, key=key + "3").error_code == "sold_out"
    lapse(db, hold["reservation_id"])
    # Reads show it expired at once, before any expiry job ran...
    assert api.request("GET", f"/reservations/{hold['reservation_id']}").body["status"] == "expired"
    assert api.availability(event["event_id"])["available_seats"] == 6
    # ...and reserve reclaims its seats itself.
    assert api.reserve(event["event_id"], 6, key=key + "4").status == 201
    assert db.execute("SELECT status FROM reservations WHERE reservation_id = %s",
                      (hold["reservation_id"],)).fetchone()[0] == "expired"
    assert seats_taken(db, event["tiers"][0]["tier_id"]) == 10


def test_confirm_issues_tickets_and_payment(api: Api, key: str, db: Any) -> None:
    event = api.create_event()
    hold = api.reserve(event["event_id"], 3, key=key).body
    response = api.confirm(hold["reservation_id"], key=key + "c")
    assert response.status == 200, response.text
    body = response.body
    assert body["status"] == "confirmed" and body["payment_status"] == "captured"
    assert body["payment"]["status"] == "captured" and body["payment"]["amount"] == 7500
    assert body["payment"]["transaction_id"]
    codes = [ticket["ticket_code"] for ticket in body["tickets"]]
    assert len(codes) == 3 and len(set(codes)) == 3 and all(len(code) == 32 for code in codes)
    assert api.request("GET", f"/reservations/{hold['reservation_id']}").body == body
    again = api.confirm(hold["reservation_id"], key=key + "other")
    assert again.status == 409 and again.error_code == "reservation_confirmed"
    assert db.execute("SELECT count(*) FROM payments").fetchone()[0] == 1
    # Selling does not move seats: they were taken by the hold.
    assert seats_taken(db, event["tiers"][0]["tier_id"]) == 3


def test_confirm_of_a_lapsed_hold_is_410_and_charges_nothing(api: Api, key: str, db: Any) -> None:
    event = api.create_event()
    hold = api.reserve(event["event_id"], 1, key=key).body
    lapse(db, hold["reservation_id"])
    response = api.confirm(hold["reservation_id"], key=key + "c")
    assert response.status == 410 and response.error_code == "reservation_expired"
    assert db.execute("SELECT count(*) FROM payments").fetchone()[0] == 0


def test_payment_that_succeeds_after_the_hold_lapsed_is_refunded(api: Api, key: str, db: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tickets.domain import reservations
    from tickets.payments import Charge, TestPaymentProvider

    event = api.create_event()
    hold = api.reserve(event["event_id"], 2, key=key).body
    refunds: list[str] = []

    class SlowProvider(TestPaymentProvider):
        def charge(self, *, amount: int, currency: str, token: str, idempotency_key: str) -> Charge:
            lapse(db, hold["reservation_id"])  # the hold lapses while the card is being charged
            return super().charge(amount=amount, currency=currency, token=token, idempotency_key=idempotency_key)

        def refund(self, *, transaction_id: str, amount: int) -> None:
            refunds.append(transaction_id)

    with pytest.raises(Exception) as raised:
        reservations.confirm(hold["reservation_id"], hold["reservation_secret"], "tok_visa", SlowProvider(),
                             lease_seconds=10)
    assert getattr(raised.value, "code", None) == "reservation_expired"
    assert len(refunds) == 1
    assert db.execute("SELECT transaction_id, status FROM payments").fetchall() == [(refunds[0], "refunded")]
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 0


@pytest.mark.parametrize(("token", "status", "code", "payment_status"), [
    ("tok_decline", 402, "payment_declined", "failed"),
    ("tok_error", 502, "payment_error", "pending"),
])
def test_failed_payment_keeps_the_hold(api: Api, key: str, token: str, status: int, code: str,
                                       payment_status: str) -> None:
    event = api.create_event()
    hold = api.reserve(event["event_id"], 1, key=key).body
    failed = api.confirm(hold["reservation_id"], key=key + "c", token=token)
    assert failed.status == status and failed.error_code == code
    current = api.request("GET", f"/reservations/{hold['reservation_id']}").body
    assert current["status"] == "held" and current["payment_status"] == payment_status
    assert api.confirm(hold["reservation_id"], key=key + "d").status == 200


def test_payment_error_is_not_kept_so_the_retry_runs_again(api: Api, key: str, db: Any) -> None:
    event = api.create_event()
    hold = api.reserve(event["event_id"], 1, key=key).body
    assert api.confirm(hold["reservation_id"], key=key + "c", token="tok_error").status == 502
    assert api.confirm(hold["reservation_id"], key=key + "c", token="tok_error").status == 502  # ran again
    declined = api.confirm(hold["reservation_id"], key=key + "d", token="tok_decline")
    assert api.confirm(hold["reservation_id"], key=key + "d", token="tok_decline").body == declined.body  # kept


def test_cancel(api: Api, key: str, db: Any) -> None:
    event = api.create_event()
    hold = api.reserve(event["event_id"], 6, key=key).body
    path = f"/reservations/{hold['reservation_id']}"
    cancelled = api.request("DELETE", path)
    assert cancelled.status == 200 and cancelled.body["status"] == "cancelled"
    assert api.availability(event["event_id"])["available_seats"] == 10
    assert seats_taken(db, hold["tier_id"]) == 0
    again = api.request("DELETE", path)
    assert again.status == 200 and again.body["status"] == "cancelled"
    assert seats_taken(db, hold["tier_id"]) == 0
    confirm = api.confirm(hold["reservation_id"], key=key + "c")
    assert confirm.status == 409 and confirm.error_code == "reservation_cancelled"


def test_cancel_confirmed_is_409_and_expired_is_410(api: Api, key: str, db: Any) -> None:
    event = api.create_event()
    sold = api.reserve(event["event_id"], 1, key=key + "1").body
    api.confirm(sold["reservation_id"], key=key + "c")
    refused = api.request("DELETE", f"/reservations/{sold['reservation_id']}")
    assert refused.status == 409 and refused.error_code == "reservation_confirmed"
    lapsed = api.reserve(event["event_id"], 1, key=key + "2").body
    lapse(db, lapsed["reservation_id"])
    gone = api.request("DELETE", f"/reservations/{lapsed['reservation_id']}")
    assert gone.status == 410 and gone.error_code == "reservation_expired"


@pytest.mark.parametrize("reservation_id", [str(uuid.uuid4()), "nope", "x' OR 1=1 --"])
def test_unknown_reservation_is_404_everywhere(api: Api, key: str, reservation_id: str) -> None:
    for response in (api.request("GET", f"/reservations/{reservation_id}"),
                     api.request("DELETE", f"/reservations/{reservation_id}"),
                     api.confirm(reservation_id, key=key)):
        assert response.status == 404 and response.error_code == "reservation_not_found", response.text


def test_check_in(api: Api, key: str, db: Any) -> None:
    event = api.create_event()
    hold = api.reserve(event["event_id"], 2, key=key).body
    tickets = api.confirm(hold["reservation_id"], key=key + "c").body["tickets"]
    code = tickets[0]["ticket_code"]
    unauthorised = api.request("POST", f"/tickets/{code}/check-in")
    assert unauthorised.status == 401 and unauthorised.error_code == "unauthorized"
    first = api.request("POST", f"/tickets/{code}/check-in", admin=True)
    assert first.status == 200
    assert first.body["ticket_code"] == code and first.body["event_id"] == event["event_id"]
    second = api.request("POST", f"/tickets/{code}/check-in", admin=True)
    assert second.status == 409 and second.error_code == "already_checked_in"
    assert second.body["error"]["checked_in_at"] == first.body["checked_in_at"]
    db.execute("UPDATE tickets SET voided_at = now() WHERE ticket_code = %s", (tickets[1]["ticket_code"],))
    void = api.request("POST", f"/tickets/{tickets[1]['ticket_code']}/check-in", admin=True)
    assert void.status == 409 and void.error_code == "ticket_void"
    for unknown in ("0" * 32, "not-a-code", "'; DROP TABLE tickets; --"):
        missing = api.request("POST", f"/tickets/{unknown}/check-in", admin=True)
        assert missing.status == 404 and missing.error_code == "ticket_not_found"


def test_scheduled_expiry_returns_seats_and_counts(api: Api, key: str, db: Any) -> None:
    from localstage.lambda_runtime import scheduled_event

    event = api.create_event(tiers=[{"name": "A", "capacity": 10, "price": 1},
                                    {"name": "B", "capacity": 10, "price": 1}])
    tier_a, tier_b = (tier["tier_id"] for tier in event["tiers"])
    lapsed = [api.reserve(event["event_id"], 2, key=f"{key}-{n}", tier_id=tier).body
              for n, tier in enumerate([tier_a, tier_a, tier_b])]
    live = api.reserve(event["event_id"], 1, key=key + "live", tier_id=tier_b).body
    for hold in lapsed:
        lapse(db, hold["reservation_id"])
    assert api.invoke_raw(scheduled_event(), "ExpireFunction")["expired"] == 3
    assert seats_taken(db, tier_a) == 0 and seats_taken(db, tier_b) == 1
    assert api.request("GET", f"/reservations/{live['reservation_id']}").body["status"] == "held"
    assert api.invoke_raw(scheduled_event(), "ExpireFunction")["expired"] == 0


def test_expiry_works_in_bounded_batches(api: Api, key: str, db: Any) -> None:
    from tickets.domain.expiry import expire_lapsed_holds

    event = api.create_event(tiers=[{"name": "GA", "capacity": 50, "price": 1, "max_per_order": 1}])
    for n in range(25):
        api.reserve(event["event_id"], 1, key=f"{key}-{n}")
    db.execute("UPDATE reservations SET expires_at = now() - interval '1 second'")
    assert expire_lapsed_holds(lambda: 60_000, batch_size=10) == 25
    assert seats_taken(db, event["tiers"][0]["tier_id"]) == 0


def test_health(api: Api) -> None:
    response = api.request("GET", "/health")
    assert response.status == 200 and response.body == {"status": "ok"}
