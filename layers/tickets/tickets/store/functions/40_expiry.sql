-- The scheduled expiry, one batch: picks a tier with lapsed holds whose counter is free
-- (SKIP LOCKED: a busy tier reclaims its own lapsed holds in reserve), expires up to
-- p_batch_size of its lapsed holds and returns their seats. Returns the number expired.
CREATE OR REPLACE FUNCTION expire_lapsed_holds(p_batch_size integer) RETURNS integer
LANGUAGE plpgsql SET lock_timeout = '5s'
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_tier_id uuid;
    v_count   integer;
    v_seats   integer;
BEGIN
    SELECT i.tier_id INTO v_tier_id FROM tier_inventory i
    WHERE EXISTS (SELECT 1 FROM reservations r
                  WHERE r.tier_id = i.tier_id AND r.status = 'held' AND hold_lapsed(r.expires_at))
    LIMIT 1 FOR UPDATE OF i SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    WITH lapsed AS (
        UPDATE reservations SET status = 'expired', expired_at = clock_timestamp()
        WHERE reservation_id IN (
            SELECT reservation_id FROM reservations
            WHERE tier_id = v_tier_id AND status = 'held' AND hold_lapsed(expires_at)
            ORDER BY expires_at LIMIT p_batch_size
            FOR UPDATE SKIP LOCKED)
        RETURNING quantity
    )
    SELECT count(*), coalesce(sum(quantity), 0) INTO v_count, v_seats FROM lapsed;
    PERFORM inventory_release(v_tier_id, v_seats);
    RETURN v_count;
END
$$;
