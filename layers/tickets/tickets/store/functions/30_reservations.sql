-- The reservation lifecycle: held -> confirmed | expired | cancelled.
-- Each function returns {"outcome": ...}: a success word, or a refusal code of the catalogue
-- (tickets/refusals.py) with the fields that qualify it. Capacity goes through 10_inventory.sql.

-- Signatures replaced by this file's current ones (a function's argument list is part of its name).
DROP FUNCTION IF EXISTS reserve_seats(uuid, uuid, integer, text, uuid);
DROP FUNCTION IF EXISTS reserve_seats(uuid, uuid, integer, text, text, uuid, text, text);
DROP FUNCTION IF EXISTS reserve_seats(uuid, uuid, integer, text, text, uuid, text, text, text);
DROP FUNCTION IF EXISTS reserve_seats(uuid, uuid, integer, text, text, uuid, text, text, text, text[]);
DROP FUNCTION IF EXISTS reservation_read(uuid);
DROP FUNCTION IF EXISTS cancel_reservation(uuid);
DROP FUNCTION IF EXISTS claim_payment(uuid, text, integer);
DROP FUNCTION IF EXISTS release_payment_claim(uuid, text, text);
DROP FUNCTION IF EXISTS confirm_reservation(uuid, text, bigint);
DROP FUNCTION IF EXISTS new_hold_json(reservations);

-- A reservation the caller may act on: the id and its secret must both match; NULL otherwise
-- (an unknown id and a wrong secret look the same).
CREATE OR REPLACE FUNCTION reservation_of_holder(p_reservation_id uuid, p_secret text) RETURNS reservations
LANGUAGE sql STABLE AS $$
    SELECT * FROM reservations WHERE reservation_id = p_reservation_id AND reservation_secret = p_secret
$$;

-- A hold as reserve answers it: the reservation and, for its holder only, the secret.
CREATE OR REPLACE FUNCTION hold_json(r reservations) RETURNS jsonb
LANGUAGE sql VOLATILE AS $$
    SELECT jsonb_build_object('outcome', 'held',
                              'reservation', reservation_json(r) || jsonb_build_object('reservation_secret', r.reservation_secret))
$$;

-- Reserve: validation, the per-customer and per-address limits, the inventory and the hold, in
-- one transaction. A new hold is answered as values, answer NULL: the hold_ parameters are what
-- the database chose or worked out (the caller sent the rest: tickets/domain/reservations.py).
-- Anything else is answer (the hold_ values then say nothing): a refusal, {"outcome": code, ...};
-- "reclaim" (below); or the hold that a request_key already made, {"outcome": "held",
-- "reservation": {...}} (a retry after a fault holds its seats once), and idempotency_key_reused
-- when the request differs.
-- (Values, not the reservation's JSON: jsonb_build_object looks up the type of every key and
-- value, several catalog look-ups each, on every call; that JSON was 14% of a hot reserve's
-- instructions, callgrind. The caller asks for the record as a value, SELECT reserve_hold(...),
-- in binary: as a table, SELECT * FROM reserve_hold(...), planning the function scan cost 12%.)
-- p_seats names the seats of an assigned-seating tier (p_quantity is their number); NULL: the
-- best available (05_seats.sql). A caller of the previous release, without it, still resolves here.
-- p_reclaim: answer {"outcome": "reclaim"} instead of a best-available choice that lapsed holds'
-- seats would slow down (seats_claim_labels); the caller reclaims them and asks again without it. Without
-- it (the previous release's caller; the call after a reclaim), the choice goes around lapsed holds
-- left, and takes their seats only when no other block is free (seats_claim_labels).
-- Generic plans only (plan_cache_mode): see the duties in 10_inventory.sql. Every row it reads, it
-- reads by key (enable_seqscan off), whatever the statistics when a connection plans its statements:
-- planned while reservations was empty and analyzed (a new database's first on-sale), the look for
-- the request's key and the buyer's and the address's counts were scans of the whole table, kept
-- until autovacuum's next analyze (test_query_plans.py).
CREATE OR REPLACE FUNCTION reserve_hold(
    p_event_id uuid, p_tier_id uuid, p_quantity integer, p_customer text, p_address text,
    p_reservation_id uuid, p_secret text, p_request_key text, p_offer_code text, p_seats text[] DEFAULT NULL,
    p_reclaim boolean DEFAULT false,
    OUT answer jsonb, OUT hold_booking_reference text, OUT hold_tier_id uuid, OUT hold_seats text[],
    OUT hold_total_amount bigint, OUT hold_discount_amount bigint, OUT hold_currency text, OUT hold_offer_code text,
    OUT hold_created_at timestamptz, OUT hold_expires_at timestamptz
)
LANGUAGE plpgsql SET lock_timeout = '2s' SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_event     events%ROWTYPE;
    v_tier      tiers%ROWTYPE;
    v_owned     integer;
    v_free      integer;
    v_now       timestamptz;
    v_held      reservations%ROWTYPE;
    v_offer     offers%ROWTYPE;
    v_discount  bigint := 0;
    v_named     jsonb;
    v_seat_nos  integer[];
    v_claim     record;  -- seats_claim_labels' answer
    v_seats     text[];
    v_counters  uuid[];
    v_code      integer;
    v_taken     boolean;
BEGIN
    IF p_request_key IS NOT NULL THEN
        SELECT * INTO v_held FROM reservations WHERE request_key = p_request_key;
        IF FOUND THEN
            IF v_held.event_id = p_event_id AND v_held.quantity = p_quantity
               AND (p_tier_id IS NULL OR v_held.tier_id = p_tier_id)
               AND (p_seats IS NULL OR ARRAY(SELECT unnest(p_seats) ORDER BY 1) = ARRAY(SELECT unnest(v_held.seats) ORDER BY 1)) THEN
                answer := hold_json(v_held); RETURN;
            END IF;
            answer := jsonb_build_object('outcome', 'idempotency_key_reused'); RETURN;
        END IF;
    END IF;

    SELECT * INTO v_event FROM events WHERE event_id = p_event_id;
    IF NOT FOUND THEN
        answer := jsonb_build_object('outcome', 'event_not_found'); RETURN;
    END IF;
    IF p_tier_id IS NULL THEN
        IF (SELECT count(*) FROM tiers WHERE event_id = p_event_id) <> 1 THEN
            answer := jsonb_build_object('outcome', 'validation_error', 'details', jsonb_build_array(
                   jsonb_build_object('field', 'tier_id', 'message', 'This event has several tiers: give a tier_id.',
                                      'type', 'missing'))); RETURN;
        END IF;
        SELECT * INTO v_tier FROM tiers WHERE event_id = p_event_id;
    ELSE
        SELECT * INTO v_tier FROM tiers WHERE tier_id = p_tier_id AND event_id = p_event_id;
        IF NOT FOUND THEN
            answer := jsonb_build_object('outcome', 'tier_not_found'); RETURN;
        END IF;
    END IF;

    -- Rules of the request itself come before inventory.
    IF p_seats IS NOT NULL THEN
        IF v_tier.seating <> 'assigned' THEN
            answer := jsonb_build_object('outcome', 'validation_error', 'details', jsonb_build_array(
                   jsonb_build_object('field', 'seats', 'message', 'This tier has no assigned seating: leave out seats.',
                                      'type', 'not_assigned_seating'))); RETURN;
        END IF;
        v_named := seats_named(v_tier.tier_id, p_seats);
        IF jsonb_array_length(v_named->'unknown') > 0 THEN
            answer := jsonb_build_object('outcome', 'validation_error', 'details', jsonb_build_array(
                   jsonb_build_object('field', 'seats', 'type', 'unknown_seat', 'unknown_seats', v_named->'unknown',
                                      'message', 'This tier has no seat ' || (v_named->'unknown'->>0) || '.'))); RETURN;
        END IF;
        v_seat_nos := ARRAY(SELECT jsonb_array_elements_text(v_named->'seat_nos')::integer);
    END IF;
    IF p_quantity > v_tier.max_per_order THEN
        answer := jsonb_build_object('outcome', 'limit_exceeded', 'limit', 'max_per_order',
                                     'max_per_order', v_tier.max_per_order); RETURN;
    END IF;
    IF p_offer_code IS NOT NULL THEN
        SELECT * INTO v_offer FROM offers WHERE event_id = p_event_id AND code = upper(p_offer_code);
        IF NOT FOUND THEN
            answer := jsonb_build_object('outcome', 'offer_not_found'); RETURN;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM offer_tiers WHERE offer_id = v_offer.offer_id AND tier_id = v_tier.tier_id)
           OR (v_offer.valid_until IS NOT NULL AND clock_timestamp() >= v_offer.valid_until) THEN
            answer := jsonb_build_object('outcome', 'offer_not_applicable'); RETURN;
        END IF;
        -- Per seat: amount_off, or price x percent_off / 100 rounded down; never above the price.
        v_discount := least(v_tier.price, coalesce(v_offer.amount_off, v_tier.price * v_offer.percent_off / 100))
                      * p_quantity;
    END IF;
    IF (v_event.sales_start_at IS NOT NULL AND clock_timestamp() < v_event.sales_start_at)
       OR (v_event.sales_end_at IS NOT NULL AND clock_timestamp() >= v_event.sales_end_at) THEN
        answer := jsonb_build_object('outcome', 'sales_closed',
                                     'sales_start_at', v_event.sales_start_at, 'sales_end_at', v_event.sales_end_at); RETURN;
    END IF;
    IF v_event.max_per_customer IS NOT NULL THEN
        IF p_quantity > v_event.max_per_customer THEN
            answer := jsonb_build_object('outcome', 'limit_exceeded', 'limit', 'max_per_customer',
                                         'max_per_customer', v_event.max_per_customer,
                                         'remaining', v_event.max_per_customer); RETURN;
        END IF;
        -- Serialises one buyer's reserves for this event (released at commit), so that two
        -- concurrent requests cannot both pass the count below.
        PERFORM pg_advisory_xact_lock(hashtextextended(p_event_id::text || '/' || p_customer, 0));
        SELECT coalesce(sum(quantity), 0) INTO v_owned FROM reservations
        WHERE event_id = p_event_id AND customer_fingerprint = p_customer
          AND (status = 'confirmed' OR (status = 'held' AND NOT hold_lapsed(expires_at)));
        IF v_owned + p_quantity > v_event.max_per_customer THEN
            answer := jsonb_build_object('outcome', 'limit_exceeded', 'limit', 'max_per_customer',
                                         'max_per_customer', v_event.max_per_customer,
                                         'remaining', greatest(v_event.max_per_customer - v_owned, 0)); RETURN;
        END IF;
    END IF;
    IF v_event.max_holds_per_ip IS NOT NULL THEN
        -- As above, per source address: rotating X-Device-Id does not get round it.
        PERFORM pg_advisory_xact_lock(hashtextextended(p_event_id::text || '/address/' || p_address, 0));
        IF (SELECT count(*) FROM reservations
            WHERE event_id = p_event_id AND client_address = p_address AND status = 'held'
              AND NOT hold_lapsed(expires_at)) >= v_event.max_holds_per_ip THEN
            answer := jsonb_build_object('outcome', 'limit_exceeded', 'limit', 'max_holds_per_ip',
                                         'max_holds_per_ip', v_event.max_holds_per_ip); RETURN;
        END IF;
    END IF;

    -- Named seats that a live hold or a sale has, likewise (a first look; the claim re-checks).
    IF v_seat_nos IS NOT NULL AND cardinality(seats_taken(v_tier.tier_id, v_seat_nos)) > 0 THEN
        answer := jsonb_build_object('outcome', 'seats_unavailable',
                                     'unavailable_seats', to_jsonb(seats_taken(v_tier.tier_id, v_seat_nos))); RETURN;
    END IF;
    -- A sold-out tier, or an offer without claims left, is refused before anything is written
    -- (most requests of an on-sale's end).
    SELECT counters INTO v_counters FROM tier_counters_with_room(v_tier.tier_id, p_quantity, v_offer.offer_id) AS counters;
    IF v_counters IS NULL THEN
        v_free := tier_available(v_tier.tier_id);
        IF v_free < p_quantity THEN
            answer := jsonb_build_object('outcome', CASE WHEN v_free = 0 THEN 'sold_out' ELSE 'insufficient_inventory' END,
                                         'available_seats', v_free, 'tier_id', v_tier.tier_id); RETURN;
        END IF;
        IF v_offer.offer_id IS NOT NULL AND counter_available(v_offer.offer_id) < 1 THEN
            answer := jsonb_build_object('outcome', 'offer_exhausted'); RETURN;
        END IF;
        v_counters := tier_counters(v_tier.tier_id);
    END IF;

    v_now := clock_timestamp();
    -- Assigned seats: which ones, claimed before any counter is locked (lock order, 10_inventory.sql).
    IF v_tier.seating = 'assigned' THEN
        v_claim := seats_claim_labels(v_tier.tier_id, v_seat_nos, p_quantity, p_reservation_id, p_reclaim);
        IF v_claim.v_outcome = 'seats_unavailable' THEN
            answer := jsonb_build_object('outcome', 'seats_unavailable', 'unavailable_seats', to_jsonb(v_claim.v_labels)); RETURN;
        ELSIF v_claim.v_outcome = 'reclaim' THEN
            answer := jsonb_build_object('outcome', 'reclaim', 'reclaim', true, 'tier_id', v_tier.tier_id,
                                         'offer_id', v_offer.offer_id); RETURN;
        ELSIF v_claim.v_outcome = 'short' THEN
            -- As a counter that lacks the seats: lapsed holds may stand in the way ("reclaim" below).
            v_free := tier_available(v_tier.tier_id);
            answer := jsonb_build_object('outcome', CASE WHEN v_free = 0 THEN 'sold_out' ELSE 'insufficient_inventory' END,
                                         'available_seats', v_free, 'tier_id', v_tier.tier_id, 'reclaim', true); RETURN;
        END IF;
        v_seats := v_claim.v_labels;
    END IF;
    -- Everything that needs no lock first: the hold, its booking reference and its answer.
    v_code := booking_reference_code(nextval('booking_reference_seq'));
    INSERT INTO reservations (reservation_id, booking_reference, event_id, tier_id, quantity, status,
                              customer_fingerprint, client_address, reservation_secret, request_key,
                              offer_id, offer_code, discount_amount, total_amount, currency, created_at, expires_at,
                              seats)
    VALUES (p_reservation_id, booking_reference_digits(v_code), p_event_id, v_tier.tier_id, p_quantity, 'held',
            p_customer, p_address, p_secret, p_request_key, v_offer.offer_id, v_offer.code, v_discount,
            v_tier.price * p_quantity - v_discount, v_event.currency, v_now,
            v_now + make_interval(secs => v_event.hold_seconds),
            v_seats)
    RETURNING booking_reference, tier_id, seats, total_amount, discount_amount, currency, offer_code, created_at, expires_at
    INTO hold_booking_reference, hold_tier_id, hold_seats, hold_total_amount, hold_discount_amount, hold_currency,
         hold_offer_code, hold_created_at, hold_expires_at;

    -- Then the counters: their locks last from here to the commit. A tier in no quota, without an
    -- offer, has one counter: counter_take straight away is inventory_take's work, one call fewer.
    IF cardinality(v_counters) = 1 AND v_offer.offer_id IS NULL THEN
        v_taken := counter_take(v_counters[1], p_quantity) IS NOT NULL;
    ELSE
        v_taken := inventory_take(v_counters, p_quantity, v_offer.offer_id);
    END IF;
    IF NOT v_taken THEN
        IF v_seats IS NOT NULL THEN
            PERFORM seats_vacate(ARRAY[p_reservation_id]);  -- found through the hold's labels: before it goes
        END IF;
        DELETE FROM reservations WHERE reservation_id = p_reservation_id;
        -- "reclaim": lapsed holds block the seats or the claim (available_seats >= p_quantity, or
        -- the offer's claims left >= 1): the caller reclaims them (reclaim_lapsed_for_tier) and asks again.
        v_free := tier_available(v_tier.tier_id);
        IF v_free >= p_quantity AND v_offer.offer_id IS NOT NULL AND counter_available(v_offer.offer_id) < 1 THEN
            answer := jsonb_build_object('outcome', 'offer_exhausted'); RETURN;
        END IF;
        answer := jsonb_build_object('outcome', CASE WHEN v_free = 0 THEN 'sold_out' ELSE 'insufficient_inventory' END,
                                     'available_seats', v_free, 'tier_id', v_tier.tier_id, 'offer_id', v_offer.offer_id,
                                     'reclaim', true); RETURN;
    END IF;
    RETURN;
END
$$;

-- The previous release's reserve calls this (each function file is its own transaction, and its
-- code runs until the deploy ends): reserve_hold's answer, a new hold as the JSON it answered.
-- Contract: drop it a release later.
CREATE OR REPLACE FUNCTION reserve_seats(
    p_event_id uuid, p_tier_id uuid, p_quantity integer, p_customer text, p_address text,
    p_reservation_id uuid, p_secret text, p_request_key text, p_offer_code text, p_seats text[] DEFAULT NULL,
    p_reclaim boolean DEFAULT false
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_answer jsonb;
BEGIN
    SELECT answer INTO v_answer FROM reserve_hold(p_event_id, p_tier_id, p_quantity, p_customer, p_address,
                                                  p_reservation_id, p_secret, p_request_key, p_offer_code,
                                                  p_seats, p_reclaim);
    RETURN coalesce(v_answer, (SELECT hold_json(r) FROM reservations r WHERE r.reservation_id = p_reservation_id));
END
$$;

-- A reservation as its holder sees it; NULL when the id or the secret does not match.
CREATE OR REPLACE FUNCTION reservation_read(p_reservation_id uuid, p_secret text) RETURNS jsonb
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT reservation_json(r) FROM reservations r
    WHERE r.reservation_id = p_reservation_id AND r.reservation_secret = p_secret
$$;

-- Cancel: a live hold becomes 'cancelled' and its seats are free at once; cancelling a
-- cancelled reservation returns it again ("cancelled").
CREATE OR REPLACE FUNCTION cancel_reservation(p_reservation_id uuid, p_secret text) RETURNS jsonb
LANGUAGE plpgsql SET lock_timeout = '2s'
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_row reservations%ROWTYPE;
BEGIN
    UPDATE reservations SET status = 'cancelled', cancelled_at = clock_timestamp()
    WHERE reservation_id = p_reservation_id AND reservation_secret = p_secret
      AND status = 'held' AND NOT hold_lapsed(expires_at)
    RETURNING * INTO v_row;
    IF FOUND THEN
        IF v_row.seats IS NOT NULL THEN
            PERFORM seats_release(ARRAY[v_row.reservation_id]);
        END IF;
        PERFORM inventory_release(v_row.tier_id, v_row.quantity, v_row.offer_id);
        RETURN jsonb_build_object('outcome', 'cancelled', 'reservation', reservation_json(v_row));
    END IF;
    SELECT * INTO v_row FROM reservations WHERE reservation_id = p_reservation_id AND reservation_secret = p_secret;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'reservation_not_found');
    ELSIF v_row.status = 'cancelled' THEN
        RETURN jsonb_build_object('outcome', 'cancelled', 'reservation', reservation_json(v_row));
    END IF;
    RETURN reservation_refusal(v_row);
END
$$;

-- Confirm, step 1, before charging: a lease on the live hold for p_claim (the confirm request)
-- and a pending payment intent under p_intent_key (the provider's idempotency key). Overlapping
-- confirms under other claims get request_in_progress instead of a second charge; the same
-- claim resumes its lease (a retry after a fault), and a claim that already sold answers "sold"
-- again. A confirm that dies mid-charge frees the hold when the lease ends; the reconciliation
-- settles its intent. Returns {"outcome": "claimed" | "sold", "reservation": ...} or a refusal.
CREATE OR REPLACE FUNCTION claim_payment(
    p_reservation_id uuid, p_secret text, p_claim text, p_lease_seconds integer, p_intent_key text
) RETURNS jsonb
LANGUAGE plpgsql SET lock_timeout = '2s'
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_row reservations%ROWTYPE;
BEGIN
    SELECT * INTO v_row FROM reservations
    WHERE reservation_id = p_reservation_id AND reservation_secret = p_secret FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'reservation_not_found');
    END IF;
    IF v_row.status = 'confirmed' AND v_row.payment_claim = p_claim THEN
        RETURN jsonb_build_object('outcome', 'sold', 'reservation', reservation_json(v_row));
    END IF;
    IF effective_status(v_row.status, v_row.expires_at) <> 'held' THEN
        RETURN reservation_refusal(v_row);
    END IF;
    IF v_row.payment_claim_until > clock_timestamp() AND v_row.payment_claim IS DISTINCT FROM p_claim THEN
        RETURN jsonb_build_object('outcome', 'request_in_progress');
    END IF;
    UPDATE reservations
    SET payment_claim = p_claim, payment_claim_until = clock_timestamp() + make_interval(secs => p_lease_seconds)
    WHERE reservation_id = p_reservation_id
    RETURNING * INTO v_row;
    INSERT INTO payment_intents (intent_key, reservation_id, claim, amount, currency, status, settle_after)
    VALUES (p_intent_key, p_reservation_id, p_claim, v_row.total_amount, v_row.currency, 'pending',
            v_row.payment_claim_until)
    ON CONFLICT (intent_key) DO UPDATE
        SET claim = excluded.claim, settle_after = excluded.settle_after, status = 'pending', settled_at = NULL
        WHERE payment_intents.status <> 'captured';
    RETURN jsonb_build_object('outcome', 'claimed', 'reservation', reservation_json(v_row));
END
$$;

-- Settles an intent that charged nothing ('declined' by the provider, or 'failed': the provider
-- failed, or reconciliation learnt it never charged) and ends its claim on the hold; a declined
-- payment marks the reservation's payment_status 'failed'. With p_only_if_lapsed (reconciliation),
-- an intent whose confirm renewed its lease in the meantime is left alone. Returns true when settled.
CREATE OR REPLACE FUNCTION release_payment_claim(
    p_reservation_id uuid, p_claim text, p_intent_key text, p_outcome text, p_only_if_lapsed boolean
) RETURNS boolean
LANGUAGE plpgsql SET lock_timeout = '2s'
SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE payment_intents SET status = p_outcome, settled_at = clock_timestamp()
    WHERE intent_key = p_intent_key AND status = 'pending' AND claim = p_claim
      AND (NOT p_only_if_lapsed OR settle_after <= clock_timestamp());
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE reservations
    SET payment_claim = NULL, payment_claim_until = NULL,
        payment_status = CASE WHEN p_outcome = 'declined' THEN 'failed' ELSE payment_status END
    WHERE reservation_id = p_reservation_id AND payment_claim = p_claim AND status = 'held';
    RETURN true;
END
$$;

-- Confirm, step 2, after the provider captured p_transaction_id for the intent: the live hold
-- becomes 'confirmed' with its tickets, or, when the hold is no longer live, the payment is
-- recorded as refund_due, nothing is sold, and the answer carries "refund" for the caller to
-- send. Safe to run twice for one intent (a retry, or reconciliation beside a retry): the
-- second run answers as the first ended. Returns {"outcome": "sold", ...} or a refusal.
CREATE OR REPLACE FUNCTION confirm_reservation(
    p_reservation_id uuid, p_claim text, p_intent_key text, p_transaction_id text, p_amount bigint
) RETURNS jsonb
LANGUAGE plpgsql SET lock_timeout = '2s'
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_row    reservations%ROWTYPE;
    v_intent payment_intents%ROWTYPE;
BEGIN
    SELECT * INTO v_row FROM reservations WHERE reservation_id = p_reservation_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'reservation_not_found');
    END IF;
    SELECT * INTO v_intent FROM payment_intents WHERE intent_key = p_intent_key FOR UPDATE;
    IF v_intent.status = 'captured' THEN
        IF v_row.status = 'confirmed' AND v_row.payment_claim = p_claim THEN
            RETURN jsonb_build_object('outcome', 'sold', 'reservation', reservation_json(v_row));
        END IF;
        RETURN reservation_refusal(v_row);
    END IF;
    UPDATE payment_intents SET status = 'captured', transaction_id = p_transaction_id, settled_at = clock_timestamp()
    WHERE intent_key = p_intent_key;

    -- A hold with assigned seats sells them now; one taken over after the hold lapsed sells nothing.
    IF effective_status(v_row.status, v_row.expires_at) <> 'held'
       OR (v_row.seats IS NOT NULL AND NOT seats_sell(v_row.reservation_id, v_row.quantity)) THEN
        INSERT INTO payments (transaction_id, reservation_id, amount, currency, status)
        VALUES (p_transaction_id, p_reservation_id, p_amount, v_row.currency, 'refund_due')
        ON CONFLICT (transaction_id) DO NOTHING;
        RETURN reservation_refusal(v_row) || jsonb_build_object(
            'refund', jsonb_build_object('transaction_id', p_transaction_id, 'amount', p_amount));
    END IF;
    UPDATE reservations SET status = 'confirmed', confirmed_at = clock_timestamp(), payment_status = 'captured',
                            payment_claim = p_claim, payment_claim_until = NULL
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

-- A refund_due payment the provider has refunded; its reservation then says so.
CREATE OR REPLACE FUNCTION record_refund(p_transaction_id text) RETURNS void
LANGUAGE sql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH refunded AS (
        UPDATE payments SET status = 'refunded', refunded_at = clock_timestamp()
        WHERE transaction_id = p_transaction_id AND status = 'refund_due'
        RETURNING reservation_id
    )
    UPDATE reservations r SET payment_status = 'refunded', refunded_at = clock_timestamp()
    FROM refunded WHERE r.reservation_id = refunded.reservation_id AND r.status <> 'confirmed'
$$;

-- Reconciliation's work list: intents still pending after their confirm's lease ended, and
-- refunds not yet sent; oldest first, at most p_limit of each.
CREATE OR REPLACE FUNCTION payments_to_settle(p_limit integer) RETURNS jsonb
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT jsonb_build_object(
        'intents', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                        'intent_key', i.intent_key, 'reservation_id', i.reservation_id, 'claim', i.claim,
                        'amount', i.amount) ORDER BY i.settle_after), '[]'::jsonb)
                    FROM (SELECT * FROM payment_intents
                          WHERE status = 'pending' AND settle_after <= clock_timestamp()
                          ORDER BY settle_after LIMIT p_limit) i),
        'refunds', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                        'transaction_id', p.transaction_id, 'amount', p.amount) ORDER BY p.created_at), '[]'::jsonb)
                    FROM (SELECT * FROM payments WHERE status = 'refund_due'
                          ORDER BY created_at LIMIT p_limit) p))
$$;
