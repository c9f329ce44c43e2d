-- contract: none released (the payment_status check gains a value; reservation_secret is filled, then NOT NULL)
-- Faults never cost a buyer money or seats: every write idempotent in the database, a payment
-- ledger, reservation secrets and the per-address hold limit.

ALTER TABLE events ADD COLUMN max_holds_per_ip integer CHECK (max_holds_per_ip BETWEEN 1 AND 10000);

-- reservation_secret: what lets a holder act on a reservation (the id only names it).
-- request_key: the reserve request that made the hold (a hash of the event, the buyer and the
--   Idempotency-Key), so that a retry after a fault finds its own hold instead of taking more seats.
-- client_address: a hash of the source IP, for max_holds_per_ip.
ALTER TABLE reservations
    ADD COLUMN reservation_secret text,
    ADD COLUMN request_key        text,
    ADD COLUMN client_address     text,
    ADD COLUMN refunded_at        timestamptz;
UPDATE reservations SET reservation_secret = replace(gen_random_uuid()::text, '-', '');
ALTER TABLE reservations ALTER COLUMN reservation_secret SET NOT NULL;
ALTER TABLE reservations DROP CONSTRAINT reservations_payment_status_check,
    ADD CONSTRAINT reservations_payment_status_check
        CHECK (payment_status IN ('pending', 'captured', 'failed', 'refunded'));
CREATE UNIQUE INDEX reservations_by_request_key ON reservations (request_key) WHERE request_key IS NOT NULL;
CREATE INDEX reservations_held_by_address ON reservations (event_id, client_address) WHERE status = 'held';

-- The payment ledger: one intent per provider idempotency key, recorded before the charge and
-- settled after it (captured: the payment is in `payments`; declined or failed: nothing was
-- charged). An intent still pending after settle_after (its confirm's lease) lost its confirm
-- to a fault: the scheduled reconciliation asks the provider and settles it.
CREATE TABLE payment_intents (
    intent_key      text PRIMARY KEY,
    reservation_id  uuid NOT NULL REFERENCES reservations,
    claim           text NOT NULL,
    amount          bigint NOT NULL,
    currency        char(3) NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'captured', 'declined', 'failed')),
    transaction_id  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    settle_after    timestamptz NOT NULL,
    settled_at      timestamptz
);
CREATE INDEX payment_intents_pending ON payment_intents (settle_after) WHERE status = 'pending';
CREATE INDEX payments_refund_due ON payments (created_at) WHERE status = 'refund_due';

-- The scan that checked a ticket in, so that a scan retried after a lost answer is recognised
-- as the same admission rather than a second one.
ALTER TABLE tickets ADD COLUMN check_in_scan uuid;

-- Below every API function's timeout (10 s; confirm 20 s), so a runaway statement ends as a 503
-- rather than a function timeout. Each call is also cancelled at its invocation's own deadline
-- (tickets/store/db.py), and the hot-path functions set lock_timeout = 2s.
ALTER ROLE CURRENT_USER SET statement_timeout = '5s';
