-- The reservation lifecycle: held -> confirmed | expired | cancelled.
-- Each function returns {"outcome": ...}: a success word, or a refusal code of the catalogue
-- (tickets/refusals.py) with the fields that qualify it. Capacity goes through 10_inventory.sql.

-- Reserve: validation, the per-customer limit, the inventory and the hold, in one transaction.
-- Returns {"outcome": "held", "reservation": {...}} or a refusal.
CREATE OR REPLACE FUNCTION reserve_seats(
    p_event_id uuid, p_tier_id uuid, p_quantity integer, p_customer text, p_reservation_id uuid
) RETURNS jsonb
LANGUAGE plpgsql SET lock_timeout = '5s'
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_event     events%ROWTYPE;
    v_tier      tiers%ROWTYPE;
    v_owned     integer;
    v_free      integer;
    v_now       timestamptz;
    v_held      reservations%ROWTYPE;
BEGIN
    SELECT * INTO v_event FROM events WHERE event_id = p_event_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'event_not_found');
    END IF;
    IF p_tier_id IS NULL THEN
        IF (SELECT count(*) FROM tiers WHERE event_id = p_event_id) <> 1 THEN
            RETURN jsonb_build_object('outcome', 'validation_error', 'details', jsonb_build_array(
                jsonb_build_object('field', 'tier_id', 'message', 'This event has several tiers: give a tier_id.',
                                   'type', 'missing')));
        END IF;
        SELECT * INTO v_tier FROM tiers WHERE event_id = p_event_id;
    ELSE
        SELECT * INTO v_tier FROM tiers WHERE tier_id = p_tier_id AND event_id = p_event_id;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('outcome', 'tier_not_found');
        END IF;
    END IF;

    -- Rules of the request itself come before inventory.
    IF p_quantity > v_tier.max_per_order THEN
        RETURN jsonb_build_object('outcome', 'limit_exceeded', 'limit', 'max_per_order',
                                  'max_per_order', v_tier.max_per_order);
    END IF;
    IF (v_event.sales_start_at IS NOT NULL AND clock_timestamp() < v_event.sales_start_at)
       OR (v_event.sales_end_at IS NOT NULL AND clock_timestamp() >= v_event.sales_end_at) THEN
        RETURN jsonb_build_object('outcome', 'sales_closed',
                                  'sales_start_at', v_event.sales_start_at, 'sales_end_at', v_event.sales_end_at);
    END IF;
    IF v_event.max_per_customer IS NOT NULL THEN
        IF p_quantity > v_event.max_per_customer THEN
            RETURN jsonb_build_object('outcome', 'limit_exceeded', 'limit', 'max_per_customer',
                                      'max_per_customer', v_event.max_per_customer,
                                      'remaining', v_event.max_per_customer);
        END IF;
        -- Serialises one buyer's reserves for this event (released at commit), so that two
        -- concurrent requests cannot both pass the count below.
        PERFORM pg_advisory_xact_lock(hashtextextended(p_event_id::text || '/' || p_customer, 0));
        SELECT coalesce(sum(quantity), 0) INTO v_owned FROM reservations
        WHERE event_id = p_event_id AND customer_fingerprint = p_customer
          AND (status = 'confirmed' OR (status = 'held' AND NOT hold_lapsed(expires_at)));
        IF v_owned + p_quantity > v_event.max_per_customer THEN
            RETURN jsonb_build_object('outcome', 'limit_exceeded', 'limit', 'max_per_customer',
                                      'max_per_customer', v_event.max_per_customer,
                                      'remaining', greatest(v_event.max_per_customer - v_owned, 0));
        END IF;
    END IF;

    v_free := inventory_take(v_tier.tier_id, p_quantity);
    IF v_free < p_quantity THEN
        RETURN jsonb_build_object('outcome', CASE WHEN v_free = 0 THEN 'sold_out' ELSE 'insufficient_inventory' END,
                                  'available_seats', v_free);
    END IF;

    v_now := clock_timestamp();
    INSERT INTO reservations (reservation_id, booking_reference, event_id, tier_id, quantity, status,
                              customer_fingerprint, total_amount, currency, created_at, expires_at)
    VALUES (p_reservation_id, next_booking_reference(), p_event_id, v_tier.tier_id, p_quantity, 'held',
            p_customer, v_tier.price * p_quantity, v_event.currency, v_now,
            v_now + make_interval(secs => v_event.hold_seconds))
    RETURNING * INTO v_held;
    RETURN jsonb_build_object('outcome', 'held', 'reservation', reservation_json(v_held));
END
$$;

-- A reservation as the API shows it; NULL when there is none.
CREATE OR REPLACE FUNCTION reservation_read(p_reservation_id uuid) RETURNS jsonb
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT reservation_json(r) FROM reservations r WHERE r.reservation_id = p_reservation_id
$$;

-- Cancel: a live hold becomes 'cancelled' and its seats are free at once; cancelling a
-- cancelled reservation returns it again ("cancelled").
CREATE OR REPLACE FUNCTION cancel_reservation(p_reservation_id uuid) RETURNS jsonb
LANGUAGE plpgsql SET lock_timeout = '5s'
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_tier_id uuid;
    v_row     reservations%ROWTYPE;
BEGIN
    SELECT tier_id INTO v_tier_id FROM reservations WHERE reservation_id = p_reservation_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'reservation_not_found');
    END IF;
    PERFORM inventory_lock(v_tier_id);
    UPDATE reservations SET status = 'cancelled', cancelled_at = clock_timestamp()
    WHERE reservation_id = p_reservation_id AND status = 'held' AND NOT hold_lapsed(expires_at)
    RETURNING * INTO v_row;
    IF FOUND THEN
        PERFORM inventory_release(v_tier_id, v_row.quantity);
        RETURN jsonb_build_object('outcome', 'cancelled', 'reservation', reservation_json(v_row));
    END IF;
    SELECT * INTO v_row FROM reservations WHERE reservation_id = p_reservation_id;
    IF v_row.status = 'cancelled' THEN
        RETURN jsonb_build_object('outcome', 'cancelled', 'reservation', reservation_json(v_row));
    END IF;
    RETURN reservation_refusal(v_row);
END
$$;

-- Confirm, step 1: a lease on the live hold before charging, so that overlapping confirms
-- under different Idempotency-Keys do not both charge. A confirm that dies mid-charge frees
-- the hold when the lease ends. Returns {"outcome": "claimed"}, "payment_in_progress", or a refusal.
CREATE OR REPLACE FUNCTION claim_payment(p_reservation_id uuid, p_claim text, p_lease_seconds integer) RETURNS jsonb
LANGUAGE plpgsql SET lock_timeout = '5s'
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_row reservations%ROWTYPE;
BEGIN
    UPDATE reservations
    SET payment_claim = p_claim, payment_claim_until = clock_timestamp() + make_interval(secs => p_lease_seconds)
    WHERE reservation_id = p_reservation_id AND status = 'held' AND NOT hold_lapsed(expires_at)
      AND (payment_claim_until IS NULL OR payment_claim_until <= clock_timestamp())
    RETURNING * INTO v_row;
    IF FOUND THEN
        RETURN jsonb_build_object('outcome', 'claimed', 'reservation', reservation_json(v_row));
    END IF;
    SELECT * INTO v_row FROM reservations WHERE reservation_id = p_reservation_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'reservation_not_found');
    END IF;
    IF effective_status(v_row.status, v_row.expires_at) = 'held' THEN
        RETURN jsonb_build_object('outcome', 'request_in_progress');
    END IF;
    RETURN reservation_refusal(v_row);
END
$$;

-- Ends a claim whose charge did not go through (declined: payment_status 'failed'; provider error: unchanged).
CREATE OR REPLACE FUNCTION release_payment_claim(p_reservation_id uuid, p_claim text, p_payment_status text)
RETURNS void
LANGUAGE sql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE reservations
    SET payment_claim = NULL, payment_claim_until = NULL,
        payment_status = coalesce(p_payment_status, payment_status)
    WHERE reservation_id = p_reservation_id AND payment_claim = p_claim AND status = 'held'
$$;

-- Confirm, step 2, after the payment was captured: the live hold becomes 'confirmed' with its
-- tickets, or, when the hold is no longer live, the payment is recorded as refund_due and
-- nothing is sold. Returns {"outcome": "sold", ...} or a refusal with the reservation.
CREATE OR REPLACE FUNCTION confirm_reservation(
    p_reservation_id uuid, p_transaction_id text, p_amount bigint
) RETURNS jsonb
LANGUAGE plpgsql SET lock_timeout = '5s'
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_row reservations%ROWTYPE;
BEGIN
    SELECT * INTO v_row FROM reservations WHERE reservation_id = p_reservation_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'reservation_not_found');
    END IF;
    IF effective_status(v_row.status, v_row.expires_at) <> 'held' THEN
        -- The same provider transaction may already be recorded: it confirmed this very
        -- reservation (a concurrent confirm with the same token), or another loser noted it.
        INSERT INTO payments (transaction_id, reservation_id, amount, currency, status)
        VALUES (p_transaction_id, p_reservation_id, p_amount, v_row.currency, 'refund_due')
        ON CONFLICT (transaction_id) DO NOTHING;
        RETURN reservation_refusal(v_row);
    END IF;
    UPDATE reservations SET status = 'confirmed', confirmed_at = clock_timestamp(), payment_status = 'captured'
    WHERE reservation_id = p_reservation_id RETURNING * INTO v_row;
    INSERT INTO payments (transaction_id, reservation_id, amount, currency, status)
    VALUES (p_transaction_id, p_reservation_id, p_amount, v_row.currency, 'captured');
    -- 122 random bits from the server's strong random source per ticket: unguessable.
    INSERT INTO tickets (ticket_code, reservation_id, event_id, seat_index)
    SELECT upper(replace(gen_random_uuid()::text, '-', '')), v_row.reservation_id, v_row.event_id, seat
    FROM generate_series(1, v_row.quantity) AS seat;
    RETURN jsonb_build_object('outcome', 'sold', 'reservation', reservation_json(v_row));
END
$$;

-- A refund_due payment the provider has refunded.
CREATE OR REPLACE FUNCTION record_refund(p_transaction_id text) RETURNS void
LANGUAGE sql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE payments SET status = 'refunded', refunded_at = clock_timestamp()
    WHERE transaction_id = p_transaction_id AND status = 'refund_due'
$$;
