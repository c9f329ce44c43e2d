-- Offers: limited discount codes. An offer's claims are a counter (functions/10_inventory.sql)
-- whose capacity is max_claims, so a hot offer scales as a hot tier does. One reservation is one claim.

CREATE TABLE offers (
    offer_id     uuid PRIMARY KEY,
    event_id     uuid NOT NULL REFERENCES events,
    code         text NOT NULL CHECK (code ~ '^[A-Z0-9_-]{3,32}$'),  -- stored upper-case
    percent_off  integer CHECK (percent_off BETWEEN 1 AND 100),
    amount_off   bigint CHECK (amount_off >= 1),
    max_claims   integer NOT NULL CHECK (max_claims BETWEEN 1 AND 1000000),
    valid_until  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, code),
    CHECK ((percent_off IS NULL) <> (amount_off IS NULL))
);

CREATE TABLE offer_tiers (
    offer_id  uuid NOT NULL REFERENCES offers,
    tier_id   uuid NOT NULL REFERENCES tiers,
    PRIMARY KEY (offer_id, tier_id)
);

ALTER TABLE reservations
    ADD COLUMN offer_id         uuid REFERENCES offers,
    ADD COLUMN offer_code       text,
    ADD COLUMN discount_amount  bigint NOT NULL DEFAULT 0;
CREATE INDEX reservations_held_by_offer ON reservations (offer_id, expires_at) WHERE status = 'held';
