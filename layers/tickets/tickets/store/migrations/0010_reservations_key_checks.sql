-- contract: none released (a check dropped: no code relies on it, every release writes valid keys)
-- A reservation's event_id and tier_id lose their foreign keys. Each insert's key check took a
-- KEY SHARE lock on the event's row and on the tier's: the two rows every buyer of an on-sale
-- shares, so every reserve added itself to a MultiXact of all the reserves in flight and wrote
-- the lock to the WAL, on the very rows the counters' shares exist to keep buyers off (measured,
-- 64 clients on one tier: +10% reserves a second without them). The keys stay right without the
-- check: reserve_seats writes a hold only for a tier it has just read with its event, in the same
-- transaction, and nothing deletes an event or a tier (only the tests' purge, which deletes the
-- event's reservations first).
ALTER TABLE reservations DROP CONSTRAINT reservations_event_id_fkey,
                         DROP CONSTRAINT reservations_tier_id_fkey;
