-- A confirm claims the hold before charging, so that overlapping confirms under different
-- Idempotency-Keys do not both charge the buyer. The claim is a lease: a confirm that dies
-- mid-charge frees the hold when the lease ends (the provider's idempotency key still keeps
-- a repeated charge with the same token to one transaction).
ALTER TABLE reservations
    ADD COLUMN payment_claim text,
    ADD COLUMN payment_claim_until timestamptz;

-- Returns {"outcome": "claimed"} or the reservation's state: {"outcome": <status> | "payment_in_progress"}.
CREATE FUNCTION claim_payment(p_reservation_id uuid, p_claim text, p_lease_seconds integer) RETURNS jsonb
LANGUAGE plpgsql SET lock_timeout = '5s' AS $$
DECLARE
    v_row reservations%ROWTYPE;
BEGIN
    UPDATE reservations
    SET payment_claim = p_claim, payment_claim_until = clock_timestamp() + make_interval(secs => p_lease_seconds)
    WHERE reservation_id = p_reservation_id AND status = 'held' AND expires_at > clock_timestamp()
      AND (payment_claim_until IS NULL OR payment_claim_until <= clock_timestamp())
    RETURNING * INTO v_row;
    IF FOUND THEN
        RETURN jsonb_build_object('outcome', 'claimed', 'reservation', reservation_json(v_row));
    END IF;
    SELECT * INTO v_row FROM reservations WHERE reservation_id = p_reservation_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'reservation_not_found');
    END IF;
    IF reservation_json(v_row)->>'status' = 'held' THEN
        RETURN jsonb_build_object('outcome', 'payment_in_progress');
    END IF;
    RETURN jsonb_build_object('outcome', reservation_json(v_row)->>'status');
END
$$;

-- Ends a claim whose charge did not go through (declined, provider error).
CREATE FUNCTION release_payment_claim(p_reservation_id uuid, p_claim text, p_payment_status text) RETURNS void
LANGUAGE sql AS $$
    UPDATE reservations
    SET payment_claim = NULL, payment_claim_until = NULL,
        payment_status = coalesce(p_payment_status, payment_status)
    WHERE reservation_id = p_reservation_id AND payment_claim = p_claim AND status = 'held'
$$;
