-- Capacity rules, written down in one place.
--
-- Invariant: tier_inventory.seats_taken = sum(quantity) of the tier's reservations that are
-- 'confirmed' or 'held' (a held row past expires_at included, until it is reclaimed), and a
-- CHECK keeps it within capacity, so no interleaving can oversell.
--
-- Lock order, the same in every function, so that none can deadlock with another:
--   1. the buyer's transaction-scoped advisory lock (reserve only, when max_per_customer is set)
--   2. the tier's tier_inventory row (one per transaction)
--   3. reservation rows of that tier
-- Confirm locks only its reservation row and check-in only its ticket row.
-- Every function runs as one statement in autocommit mode, so a lock is held for exactly one
-- database round trip. Timeouts are set on the functions, never on the session.

-- Seats a buyer could have right now: capacity less seats taken, plus lapsed holds not yet reclaimed.
CREATE FUNCTION inventory_available(p_tier_id uuid) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT i.capacity - i.seats_taken + coalesce((
        SELECT sum(r.quantity)::integer FROM reservations r
        WHERE r.tier_id = p_tier_id AND r.status = 'held' AND r.expires_at <= clock_timestamp()
    ), 0)
    FROM tier_inventory i WHERE i.tier_id = p_tier_id
$$;

-- Locks the tier's inventory and takes p_quantity seats, first reclaiming the tier's lapsed
-- holds when too few seats are free. Returns the seats that were free (>= p_quantity: taken).
CREATE FUNCTION inventory_take(p_tier_id uuid, p_quantity integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_free      integer;
    v_reclaimed integer;
BEGIN
    SELECT capacity - seats_taken INTO STRICT v_free
    FROM tier_inventory WHERE tier_id = p_tier_id FOR UPDATE;

    IF v_free < p_quantity THEN
        -- A lapsed hold never blocks a sale: turn this tier's lapsed holds into 'expired' now.
        WITH lapsed AS (
            UPDATE reservations SET status = 'expired', expired_at = clock_timestamp()
            WHERE tier_id = p_tier_id AND status = 'held' AND expires_at <= clock_timestamp()
            RETURNING quantity
        )
        SELECT coalesce(sum(quantity), 0) INTO v_reclaimed FROM lapsed;
        v_free := v_free + v_reclaimed;
    ELSE
        v_reclaimed := 0;
    END IF;

    IF v_free >= p_quantity THEN
        UPDATE tier_inventory SET seats_taken = seats_taken - v_reclaimed + p_quantity
        WHERE tier_id = p_tier_id;
    ELSIF v_reclaimed > 0 THEN
        UPDATE tier_inventory SET seats_taken = seats_taken - v_reclaimed WHERE tier_id = p_tier_id;
    END IF;
    RETURN v_free;
END
$$;

-- Locks the tier's inventory row; taken before touching the tier's reservation rows.
CREATE FUNCTION inventory_lock(p_tier_id uuid) RETURNS void
LANGUAGE sql AS $$
    SELECT 1 FROM tier_inventory WHERE tier_id = p_tier_id FOR UPDATE
$$;

-- Gives seats back (the caller holds the lock through inventory_lock).
CREATE FUNCTION inventory_release(p_tier_id uuid, p_quantity integer) RETURNS void
LANGUAGE sql AS $$
    UPDATE tier_inventory SET seats_taken = seats_taken - p_quantity WHERE tier_id = p_tier_id
$$;

-- A unique, short, non-sequential reference: an odd multiplier makes x -> a*x + c a bijection
-- modulo 2^30, so 32^6 sequence values map to distinct codes with no retry loop.
CREATE FUNCTION next_booking_reference() RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_code     bigint := (nextval('booking_reference_seq') * 747796405 + 289133645) % 1073741824;
    v_alphabet constant text := '0123456789ABCDEFGHJKMNPQRSTVWXYZ';  -- Crockford base32
    v_ref      text := '';
BEGIN
    FOR i IN 1..6 LOOP
        v_ref := substr(v_alphabet, (v_code % 32)::integer + 1, 1) || v_ref;
        v_code := v_code / 32;
    END LOOP;
    RETURN 'EVT-' || v_ref;
END
$$;

-- A reservation as the API shows it: a hold past expires_at reads 'expired' at once.
CREATE FUNCTION reservation_json(r reservations) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT to_jsonb(r) || jsonb_build_object(
        'status', CASE WHEN r.status = 'held' AND r.expires_at <= clock_timestamp()
                       THEN 'expired' ELSE r.status END,
        'tickets', coalesce((
            SELECT jsonb_agg(jsonb_build_object('ticket_code', t.ticket_code) ORDER BY t.seat_index)
            FROM tickets t WHERE t.reservation_id = r.reservation_id), '[]'::jsonb),
        'payment', (
            SELECT jsonb_build_object('transaction_id', p.transaction_id, 'status', p.status,
                                      'amount', p.amount, 'currency', p.currency)
            FROM payments p WHERE p.reservation_id = r.reservation_id AND p.status = 'captured'))
$$;

-- Reserve: validation, the per-customer limit, the inventory and the hold, in one transaction.
-- Returns {"outcome": "held", "reservation": {...}} or {"outcome": <error code>, ...}.
CREATE FUNCTION reserve_seats(
    p_event_id uuid, p_tier_id uuid, p_quantity integer, p_customer text, p_reservation_id uuid
) RETURNS jsonb
LANGUAGE plpgsql SET lock_timeout = '5s' AS $$
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
            RETURN jsonb_build_object('outcome', 'tier_required');
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
                                      'max_per_customer', v_event.max_per_customer, 'remaining', v_event.max_per_customer);
        END IF;
        -- Serialises one buyer's reserves for this event (released at commit), so that two
        -- concurrent requests cannot both pass the count below.
        PERFORM pg_advisory_xact_lock(hashtextextended(p_event_id::text || '/' || p_customer, 0));
        SELECT coalesce(sum(quantity), 0) INTO v_owned FROM reservations
        WHERE event_id = p_event_id AND customer_fingerprint = p_customer
          AND (status = 'confirmed' OR (status = 'held' AND expires_at > clock_timestamp()));
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

-- Cancel: a live hold becomes 'cancelled' and its seats are free at once.
CREATE FUNCTION cancel_reservation(p_reservation_id uuid) RETURNS jsonb
LANGUAGE plpgsql SET lock_timeout = '5s' AS $$
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
    WHERE reservation_id = p_reservation_id AND status = 'held' AND expires_at > clock_timestamp()
    RETURNING * INTO v_row;
    IF FOUND THEN
        PERFORM inventory_release(v_tier_id, v_row.quantity);
        RETURN jsonb_build_object('outcome', 'cancelled', 'reservation', reservation_json(v_row));
    END IF;
    SELECT * INTO v_row FROM reservations WHERE reservation_id = p_reservation_id;
    RETURN jsonb_build_object('outcome', reservation_json(v_row)->>'status', 'reservation', reservation_json(v_row));
END
$$;

-- Confirm, after the payment was captured: the hold becomes 'confirmed' with its tickets, or,
-- when the hold is no longer live, the payment is recorded as refund_due and nothing is sold.
-- Seats of a confirmed hold are already counted in seats_taken, so no inventory lock is needed.
CREATE FUNCTION confirm_reservation(
    p_reservation_id uuid, p_transaction_id text, p_amount bigint
) RETURNS jsonb
LANGUAGE plpgsql SET lock_timeout = '5s' AS $$
DECLARE
    v_row reservations%ROWTYPE;
BEGIN
    SELECT * INTO v_row FROM reservations WHERE reservation_id = p_reservation_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'reservation_not_found');
    END IF;
    IF v_row.status <> 'held' OR v_row.expires_at <= clock_timestamp() THEN
        -- The same provider transaction may already be recorded: it confirmed this very
        -- reservation (a concurrent confirm with the same token), or another loser noted it.
        INSERT INTO payments (transaction_id, reservation_id, amount, currency, status)
        VALUES (p_transaction_id, p_reservation_id, p_amount, v_row.currency, 'refund_due')
        ON CONFLICT (transaction_id) DO NOTHING;
        RETURN jsonb_build_object('outcome', reservation_json(v_row)->>'status', 'reservation', reservation_json(v_row));
    END IF;
    UPDATE reservations SET status = 'confirmed', confirmed_at = clock_timestamp(), payment_status = 'captured'
    WHERE reservation_id = p_reservation_id RETURNING * INTO v_row;
    INSERT INTO payments (transaction_id, reservation_id, amount, currency, status)
    VALUES (p_transaction_id, p_reservation_id, p_amount, v_row.currency, 'captured');
    -- 122 random bits from the server's strong random source per ticket: unguessable.
    INSERT INTO tickets (ticket_code, reservation_id, event_id, seat_index)
    SELECT upper(replace(gen_random_uuid()::text, '-', '')), v_row.reservation_id, v_row.event_id, seat
    FROM generate_series(1, v_row.quantity) AS seat;
    -- 'sold', not 'confirmed': a loser of a race reports the row's status, which may be 'confirmed'.
    RETURN jsonb_build_object('outcome', 'sold', 'reservation', reservation_json(v_row));
END
$$;

-- The scheduled expiry, one batch: picks a tier with lapsed holds whose inventory row is free
-- (SKIP LOCKED: a busy tier reclaims its own lapsed holds in reserve), expires up to
-- p_batch_size of its lapsed holds and returns their seats. Returns the number expired.
CREATE FUNCTION expire_lapsed_holds(p_batch_size integer) RETURNS integer
LANGUAGE plpgsql SET lock_timeout = '5s' AS $$
DECLARE
    v_tier_id uuid;
    v_count   integer;
    v_seats   integer;
BEGIN
    SELECT i.tier_id INTO v_tier_id FROM tier_inventory i
    WHERE EXISTS (SELECT 1 FROM reservations r
                  WHERE r.tier_id = i.tier_id AND r.status = 'held' AND r.expires_at <= clock_timestamp())
    LIMIT 1 FOR UPDATE OF i SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    WITH lapsed AS (
        UPDATE reservations SET status = 'expired', expired_at = clock_timestamp()
        WHERE reservation_id IN (
            SELECT reservation_id FROM reservations
            WHERE tier_id = v_tier_id AND status = 'held' AND expires_at <= clock_timestamp()
            ORDER BY expires_at LIMIT p_batch_size
            FOR UPDATE SKIP LOCKED)
        RETURNING quantity
    )
    SELECT count(*), coalesce(sum(quantity), 0) INTO v_count, v_seats FROM lapsed;
    PERFORM inventory_release(v_tier_id, v_seats);
    RETURN v_count;
END
$$;

-- Check-in: the first scan wins; a second one learns when the first happened.
CREATE FUNCTION check_in_ticket(p_ticket_code text) RETURNS jsonb
LANGUAGE plpgsql SET lock_timeout = '5s' AS $$
DECLARE
    v_ticket tickets%ROWTYPE;
BEGIN
    UPDATE tickets SET checked_in_at = clock_timestamp()
    WHERE ticket_code = p_ticket_code AND checked_in_at IS NULL AND voided_at IS NULL
    RETURNING * INTO v_ticket;
    IF FOUND THEN
        RETURN jsonb_build_object('outcome', 'checked_in', 'ticket', to_jsonb(v_ticket));
    END IF;
    SELECT * INTO v_ticket FROM tickets WHERE ticket_code = p_ticket_code;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'ticket_not_found');
    ELSIF v_ticket.voided_at IS NOT NULL THEN
        RETURN jsonb_build_object('outcome', 'ticket_void', 'ticket', to_jsonb(v_ticket));
    END IF;
    RETURN jsonb_build_object('outcome', 'already_checked_in', 'ticket', to_jsonb(v_ticket));
END
$$;
