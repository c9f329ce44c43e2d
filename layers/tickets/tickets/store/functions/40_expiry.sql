-- The scheduled expiry, one batch: expires up to p_batch_size lapsed holds, oldest first,
-- skipping rows another transaction holds (SKIP LOCKED: running twice at once is safe), and
-- gives their seats back to every counter they took from. Returns the number expired.
CREATE OR REPLACE FUNCTION expire_lapsed_holds(p_batch_size integer) RETURNS integer
LANGUAGE sql SET lock_timeout = '2s'
SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT (reclaim_lapsed(NULL, NULL, p_batch_size)->>'expired')::integer
$$;
