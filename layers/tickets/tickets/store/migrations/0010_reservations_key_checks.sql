-- contract: none released (checks dropped: no code relies on them, every release writes valid keys)
-- A reservation's event_id, tier_id and offer_id lose their foreign keys. Each insert's key check
-- took a KEY SHARE lock on the event's row, the tier's and the offer's: the rows every buyer of an
-- on-sale shares, so every reserve added itself to a MultiXact of all the reserves in flight and
-- wrote the lock to the WAL, on the very rows the counters' shares exist to keep buyers off
-- (measured, 64 clients on one tier: +10% reserves a second without the first two). The keys stay
-- right without the checks: reserve_seats writes a hold only for a tier (and an offer) it has just
-- read with its event, in the same transaction, and nothing deletes an event, a tier or an offer
-- (only the tests' purge, which deletes the event's reservations first).
ALTER TABLE reservations DROP CONSTRAINT reservations_event_id_fkey,
                         DROP CONSTRAINT reservations_tier_id_fkey,
                         DROP CONSTRAINT reservations_offer_id_fkey;
