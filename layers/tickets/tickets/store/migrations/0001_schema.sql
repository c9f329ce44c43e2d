-- The reservation schema: tables only. Every rule over them (capacity, holds, payments) lives in
-- ../functions/*.sql, and Python reaches these tables only through those functions.
--
-- Migrations are versioned and run once each, in order; a released migration is never edited.
-- (The history before the first release was squashed into this file.)

CREATE TABLE events (
    event_id          uuid PRIMARY KEY,
    name              text NOT NULL,
    venue             text,
    starts_at         timestamptz NOT NULL,
    currency          char(3) NOT NULL,
    hold_seconds      integer NOT NULL CHECK (hold_seconds BETWEEN 30 AND 3600),
    max_per_customer  integer CHECK (max_per_customer >= 1),
    sales_start_at    timestamptz,
    sales_end_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (sales_end_at IS NULL OR sales_start_at IS NULL OR sales_end_at > sales_start_at)
);

CREATE TABLE tiers (
    tier_id        uuid PRIMARY KEY,
    event_id       uuid NOT NULL REFERENCES events,
    position       smallint NOT NULL,
    name           text NOT NULL,
    capacity       integer NOT NULL CHECK (capacity BETWEEN 1 AND 1000000),
    price          bigint NOT NULL CHECK (price >= 0),
    max_per_order  integer NOT NULL CHECK (max_per_order BETWEEN 1 AND 100),
    UNIQUE (event_id, position)
);

-- The inventory counter of a tier, kept apart from the tier so that it can be spread over several
-- rows without touching anything but the inventory_* functions (functions/10_inventory.sql).
-- seats_taken = seats in holds (live, or lapsed and not yet reclaimed) + seats sold.
CREATE TABLE tier_inventory (
    tier_id      uuid PRIMARY KEY REFERENCES tiers,
    capacity     integer NOT NULL,
    seats_taken  integer NOT NULL DEFAULT 0,
    CHECK (seats_taken BETWEEN 0 AND capacity)
);

CREATE SEQUENCE booking_reference_seq;

CREATE TABLE reservations (
    reservation_id        uuid PRIMARY KEY,
    booking_reference     text NOT NULL UNIQUE,
    event_id              uuid NOT NULL REFERENCES events,
    tier_id               uuid NOT NULL REFERENCES tiers,
    quantity              integer NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    status                text NOT NULL CHECK (status IN ('held', 'confirmed', 'expired', 'cancelled')),
    customer_fingerprint  text NOT NULL,
    total_amount          bigint NOT NULL,
    currency              char(3) NOT NULL,
    payment_status        text NOT NULL DEFAULT 'pending'
                          CHECK (payment_status IN ('pending', 'captured', 'failed')),
    created_at            timestamptz NOT NULL,
    expires_at            timestamptz NOT NULL,
    confirmed_at          timestamptz,
    cancelled_at          timestamptz,
    expired_at            timestamptz,
    -- A confirm's lease on the hold while it charges (see claim_payment).
    payment_claim         text,
    payment_claim_until   timestamptz
);
-- Lapsed holds of one tier (reclaimed by reserve) and of all tiers (the scheduled expiry).
CREATE INDEX reservations_held_by_tier ON reservations (tier_id, expires_at) WHERE status = 'held';
CREATE INDEX reservations_held_by_expiry ON reservations (expires_at) WHERE status = 'held';
-- A buyer's live holds and purchases, for max_per_customer.
CREATE INDEX reservations_by_customer ON reservations (event_id, customer_fingerprint)
    WHERE status IN ('held', 'confirmed');

CREATE TABLE payments (
    transaction_id  text PRIMARY KEY,
    reservation_id  uuid NOT NULL REFERENCES reservations,
    amount          bigint NOT NULL,
    currency        char(3) NOT NULL,
    -- refund_due: captured after the hold could no longer be sold; refunded once the provider confirms.
    status          text NOT NULL CHECK (status IN ('captured', 'refund_due', 'refunded')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    refunded_at     timestamptz
);
-- Never two captured payments for one reservation.
CREATE UNIQUE INDEX payments_one_capture_per_reservation ON payments (reservation_id) WHERE status = 'captured';

CREATE TABLE tickets (
    ticket_code     text PRIMARY KEY,
    reservation_id  uuid NOT NULL REFERENCES reservations,
    event_id        uuid NOT NULL REFERENCES events,
    seat_index      integer NOT NULL,
    checked_in_at   timestamptz,
    voided_at       timestamptz,
    UNIQUE (reservation_id, seat_index)
);
