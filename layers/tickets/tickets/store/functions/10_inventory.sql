-- Capacity rules, written down in one place: the inventory counters and the duties of their callers.
--
-- Invariant: tier_inventory.seats_taken = sum(quantity) of the tier's reservations that are
-- 'confirmed' or 'held' (a lapsed hold included, until it is reclaimed), and a CHECK keeps it
-- within capacity, so no interleaving can oversell. Only the inventory_* functions below touch
-- tier_inventory.
--
-- Duties of every caller, so that nothing can deadlock:
--   * Take locks in this order, never the other way round:
--       1. the buyer's transaction-scoped advisory lock (reserve only, when max_per_customer is set)
--       2. the source address's transaction-scoped advisory lock (reserve only, when max_holds_per_ip is set)
--       3. the tier's counter (inventory_take or inventory_lock; one tier per transaction)
--       4. reservation rows of that tier
--     Confirm locks only its reservation row, then its payment intent (a hold's seats are already
--     counted, so selling moves no counter), and check-in only its ticket row.
--   * Run as one statement in autocommit mode, so that a lock is held for one database round
--     trip: the client never talks between lock and commit.
--   * Set lock_timeout on the function (never a session SET: that pins RDS Proxy connections).

-- A tier's counter, created with the tier.
CREATE OR REPLACE FUNCTION inventory_create(p_tier_id uuid, p_capacity integer) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO tier_inventory (tier_id, capacity) VALUES (p_tier_id, p_capacity)
$$;

-- Seats a buyer could have right now: capacity less seats taken, plus lapsed holds not yet reclaimed.
CREATE OR REPLACE FUNCTION inventory_available(p_tier_id uuid) RETURNS integer
LANGUAGE sql VOLATILE AS $$
    SELECT i.capacity - i.seats_taken + coalesce((
        SELECT sum(r.quantity)::integer FROM reservations r
        WHERE r.tier_id = p_tier_id AND r.status = 'held' AND hold_lapsed(r.expires_at)
    ), 0)
    FROM tier_inventory i WHERE i.tier_id = p_tier_id
$$;

-- Locks the tier's counter and takes p_quantity seats, first reclaiming the tier's lapsed holds
-- when too few seats are free (a lapsed hold never blocks a sale). Returns the seats that were
-- free: >= p_quantity means they were taken.
CREATE OR REPLACE FUNCTION inventory_take(p_tier_id uuid, p_quantity integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_free      integer;
    v_reclaimed integer := 0;
BEGIN
    SELECT capacity - seats_taken INTO STRICT v_free
    FROM tier_inventory WHERE tier_id = p_tier_id FOR UPDATE;

    IF v_free < p_quantity THEN
        WITH lapsed AS (
            UPDATE reservations SET status = 'expired', expired_at = clock_timestamp()
            WHERE tier_id = p_tier_id AND status = 'held' AND hold_lapsed(expires_at)
            RETURNING quantity
        )
        SELECT coalesce(sum(quantity), 0) INTO v_reclaimed FROM lapsed;
        v_free := v_free + v_reclaimed;
    END IF;

    IF v_free >= p_quantity OR v_reclaimed > 0 THEN
        UPDATE tier_inventory
        SET seats_taken = seats_taken - v_reclaimed + CASE WHEN v_free >= p_quantity THEN p_quantity ELSE 0 END
        WHERE tier_id = p_tier_id;
    END IF;
    RETURN v_free;
END
$$;

-- Locks the tier's counter; taken before touching the tier's reservation rows.
CREATE OR REPLACE FUNCTION inventory_lock(p_tier_id uuid) RETURNS void
LANGUAGE sql AS $$
    SELECT 1 FROM tier_inventory WHERE tier_id = p_tier_id FOR UPDATE
$$;

-- Gives seats back (the caller holds the lock through inventory_lock).
CREATE OR REPLACE FUNCTION inventory_release(p_tier_id uuid, p_quantity integer) RETURNS void
LANGUAGE sql AS $$
    UPDATE tier_inventory SET seats_taken = seats_taken - p_quantity WHERE tier_id = p_tier_id
$$;
