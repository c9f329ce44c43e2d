-- Deletes one event and every row that references it, children first, in one transaction.
-- Used by the stage checks (tests/bats, tests/race) to remove the events they created.
--
--   psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -v event_id=<uuid> -f tests/support/purge_event.sql
--
-- Tables and foreign keys: layers/tickets/tickets/store/migrations/*.sql
--   tickets        -> reservations, events
--   payments       -> reservations
--   payment_intents -> reservations
--   reservations   -> events, tiers
--   counters, counter_shares: one per tier and quota (counter_id = tier_id or quota_id)
--   quota_tiers    -> quotas, tiers
--   quotas         -> events
--   offers, offer_tiers: an event's discount codes (their claims are a counter too)
--   seats          -> tiers (assigned seating)
--   seat_fronts    -> tiers (assigned seating)
--   tiers          -> events
-- An unknown event id deletes nothing. A missing event_id variable is an error (ON_ERROR_STOP).
-- The DynamoDB idempotency records of the event's requests are left to their TTL.

\set ON_ERROR_STOP on

BEGIN;

CREATE TEMPORARY TABLE purge_reservations ON COMMIT DROP AS
    SELECT reservation_id FROM reservations
    WHERE event_id = :'event_id'
       OR tier_id IN (SELECT tier_id FROM tiers WHERE event_id = :'event_id');

DELETE FROM tickets
WHERE event_id = :'event_id'
   OR reservation_id IN (SELECT reservation_id FROM purge_reservations);

DELETE FROM payments
WHERE reservation_id IN (SELECT reservation_id FROM purge_reservations);

DELETE FROM payment_intents
WHERE reservation_id IN (SELECT reservation_id FROM purge_reservations);

DELETE FROM reservations
WHERE reservation_id IN (SELECT reservation_id FROM purge_reservations);

DELETE FROM quota_tiers
WHERE quota_id IN (SELECT quota_id FROM quotas WHERE event_id = :'event_id');

DELETE FROM offer_tiers
WHERE offer_id IN (SELECT offer_id FROM offers WHERE event_id = :'event_id');

DELETE FROM counter_shares
WHERE counter_id IN (SELECT tier_id FROM tiers WHERE event_id = :'event_id'
                     UNION ALL SELECT quota_id FROM quotas WHERE event_id = :'event_id'
                     UNION ALL SELECT offer_id FROM offers WHERE event_id = :'event_id');

DELETE FROM counters
WHERE counter_id IN (SELECT tier_id FROM tiers WHERE event_id = :'event_id'
                     UNION ALL SELECT quota_id FROM quotas WHERE event_id = :'event_id'
                     UNION ALL SELECT offer_id FROM offers WHERE event_id = :'event_id');

DELETE FROM offers WHERE event_id = :'event_id';

DELETE FROM seats
WHERE tier_id IN (SELECT tier_id FROM tiers WHERE event_id = :'event_id');

DELETE FROM seat_fronts
WHERE tier_id IN (SELECT tier_id FROM tiers WHERE event_id = :'event_id');

DELETE FROM quotas WHERE event_id = :'event_id';

DELETE FROM tiers WHERE event_id = :'event_id';

DELETE FROM events WHERE event_id = :'event_id';

COMMIT;
