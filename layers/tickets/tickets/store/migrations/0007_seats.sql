-- Assigned seats: a tier with seating 'assigned' sells named seats. The tier's counter (and its
-- quotas') still counts them (functions/10_inventory.sql); each seat is also a row here, whose
-- claim is a conditional update keyed by the seat (functions/05_seats.sql). Expand only.

ALTER TABLE tiers ADD COLUMN seating text NOT NULL DEFAULT 'general' CHECK (seating IN ('general', 'assigned'));

-- One row per seat of an assigned-seating tier.
--   seat_no         the order of preference within the tier, from 1: rows front to back, then
--                   seat numbers (or the order the labels were given)
--   row_no, row_label, number   the seat's row (front to back from 1) and number in it; NULL
--                   for a seat given by its label alone (a row-less seat)
--   reservation_id  the hold or sale that has the seat; NULL when nobody has it
--   sold            set by the confirm that sells it, under the seat's row lock: a buyer taking
--                   over the seat of a lapsed hold meets that confirm on this row
-- (tier_id has no foreign key: create_event writes a tier's seats with the tier, in one statement,
-- and a per-row key check would make a stadium's 50,000 seats slow to create.)
CREATE TABLE seats (
    tier_id         uuid NOT NULL,
    seat_no         integer NOT NULL CHECK (seat_no >= 1),
    label           text NOT NULL,
    row_no          integer,
    row_label       text,
    number          integer,
    reservation_id  uuid,
    sold            boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tier_id, seat_no),
    UNIQUE (tier_id, label),
    CHECK (NOT sold OR reservation_id IS NOT NULL)
);
-- Best available: the free seats of a tier in order of preference.
CREATE INDEX seats_free ON seats (tier_id, seat_no) WHERE reservation_id IS NULL;
-- (A reservation's seats are found by its labels, reservations.seats, through the label index:
-- one index fewer to write on every claim.)

-- A reservation's seats, as labels in the order of its tickets (NULL on a general-admission tier).
ALTER TABLE reservations ADD COLUMN seats text[];

