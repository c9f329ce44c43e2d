-- The rules the other function files name instead of restating, and the public JSON shapes.
--
-- Function files are re-applied whenever their text changes (tickets/store/migrate.py), in file
-- name order, after the versioned table migrations: so every definition here is
-- CREATE OR REPLACE, and a file only uses functions of files sorted before it (or itself).
--
-- Entry points: a function the application calls (tickets.store.db.call) is declared
-- SECURITY DEFINER SET search_path = public, pg_temp. The functions sign in as tickets_app, which
-- may execute those and nothing else (../privileges.sql); they run with the rights of the
-- schema's owner, tickets_owner, and every other function here is theirs to call. A function
-- the application calls changes its arguments or result only by a new name (README, "Changing
-- the schema": the code of the previous release still calls the old one during a deploy).

-- The live-hold rule, written once: a hold lapses at expires_at, by the clock of the moment
-- (clock_timestamp, not the transaction's start), whether or not the expiry job has run. A
-- 'held' row is live while NOT hold_lapsed(expires_at).
--
-- The moment is read through lapse_horizon(), declared STABLE although the clock moves, so that
-- a query over many holds can use it as an index bound (read once when the scan starts, instead
-- of a volatile clock_timestamp() tested row by row over every live hold of a tier: with 20,000
-- live holds that made each reserve 4x slower). hold_lapsed is inlined into the queries that name it.
-- (plpgsql: a sql function that calls a volatile one is not inlined, and run as sql it was parsed
-- and planned again in every transaction that read a hold's status.)
CREATE OR REPLACE FUNCTION lapse_horizon() RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN clock_timestamp();
END
$$;

CREATE OR REPLACE FUNCTION hold_lapsed(p_expires_at timestamptz) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
    SELECT p_expires_at <= lapse_horizon()
$$;

-- The live-hold rule for a question about the lapsed holds of one tier or one offer: the hold's
-- key column (tier_id, offer_id: p_hold_key) is p_key and the hold has lapsed. Written as a range
-- between two row comparisons over (key, expires_at), which only that index can serve
-- (reservations_held_by_tier, _by_offer), and the query orders by key DESC, expires_at DESC: a
-- backward scan that starts at (p_key, now) and stops at the key's first hold reads the lapsed
-- holds alone. (PostgreSQL 15 ends a scan early only on a row comparison's first column: read
-- forwards, the range read every live hold of the tier.) Written with hold_lapsed, generic plans
-- read the holds by expiry, testing each one's tier (every tier's lapsed holds: thousands
-- between two expiry runs of an on-sale), or scanned the table once statistics showed few
-- tiers (test_query_plans.py). A table that statistics still show empty is scanned whatever
-- the query, until autovacuum analyzes it.
CREATE OR REPLACE FUNCTION hold_lapsed_on(p_key uuid, p_hold_key uuid, p_expires_at timestamptz) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
    SELECT (p_hold_key, p_expires_at) >= (p_key, '-infinity'::timestamptz)
       AND (p_hold_key, p_expires_at) <= (p_key, lapse_horizon())
$$;

-- A reservation's status as the API shows it: a lapsed hold reads 'expired' at once.
CREATE OR REPLACE FUNCTION effective_status(p_status text, p_expires_at timestamptz) RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN p_status = 'held' AND hold_lapsed(p_expires_at) THEN 'expired' ELSE p_status END
$$;

-- A unique, short, non-sequential booking reference for the p_seq-th value of
-- booking_reference_seq: an odd multiplier makes x -> a*x + c a bijection modulo 2^30, so 32^6
-- sequence values map to distinct codes with no retry loop (booking_reference_code). The code's six
-- base-32 digits (Crockford), most significant first (booking_reference_digits).
-- These are sql and immutable, inlined into the statement that names them (a plpgsql call costs
-- more than this work). PostgreSQL sets up every operator and function of a statement on each run,
-- a permission check and a look-up each (about 1,700 instructions), so the fewer the better:
-- reserve computes the code once, as its own value (passed as booking_reference(seq), the code's
-- arithmetic was copied into each digit: 54 operators where 34 do, 2.2% of a reserve's
-- instructions, callgrind), and the digits are three slices of a table of every pair of them
-- (16 operators where one substr per digit took 30).
CREATE OR REPLACE FUNCTION booking_reference_code(p_seq bigint) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT ((p_seq * 747796405 + 289133645) % 1073741824)::integer
$$;

-- The two base-32 digits of every 10-bit number, in order: 2,048 bytes. (Immutable and without
-- arguments: PostgreSQL evaluates it once, as it plans the statement that names it.)
CREATE OR REPLACE FUNCTION booking_reference_pairs() RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT convert_to(string_agg(substr(digits, high + 1, 1) || substr(digits, low + 1, 1), '' ORDER BY high, low), 'UTF8')
    FROM (VALUES ('0123456789ABCDEFGHJKMNPQRSTVWXYZ')) AS alphabet(digits),
         generate_series(0, 31) AS high, generate_series(0, 31) AS low
$$;

-- The 30-bit code's digits: its top, middle and bottom 10 bits, each a pair (two bytes) of the table.
CREATE OR REPLACE FUNCTION booking_reference_digits(p_code integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'EVT-' || encode(substring(booking_reference_pairs() FROM (p_code >> 19 & 2046) + 1 FOR 2)
                            || substring(booking_reference_pairs() FROM (p_code >> 9 & 2046) + 1 FOR 2)
                            || substring(booking_reference_pairs() FROM (p_code << 1 & 2046) + 1 FOR 2), 'escape')
$$;

CREATE OR REPLACE FUNCTION booking_reference(p_seq bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT booking_reference_digits(booking_reference_code(p_seq))
$$;

-- The previous release's reserve_seats calls this. Contract: drop it a release later.
CREATE OR REPLACE FUNCTION next_booking_reference() RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    RETURN booking_reference(nextval('booking_reference_seq'));
END
$$;

-- A reservation's own fields as the API shows them (internal columns such as the customer
-- fingerprint and the payment claim never leave the database), its status as p_status says
-- (effective_status; a hold just written is 'held', without reading the clock: lapse_horizon is a
-- plpgsql call). (sql: inlined where it is used.)
CREATE OR REPLACE FUNCTION reservation_fields(r reservations, p_status text) RETURNS jsonb
LANGUAGE sql VOLATILE AS $$
    SELECT jsonb_build_object(
        'reservation_id', r.reservation_id,
        'booking_reference', r.booking_reference,
        'event_id', r.event_id,
        'tier_id', r.tier_id,
        'quantity', r.quantity,
        'seats', r.seats,
        'status', p_status,
        'expires_at', r.expires_at,
        'total_amount', r.total_amount,
        'offer_code', r.offer_code,
        'discount_amount', r.discount_amount,
        'currency', r.currency,
        'payment_status', r.payment_status,
        'created_at', r.created_at,
        'confirmed_at', r.confirmed_at,
        'cancelled_at', r.cancelled_at)
$$;

CREATE OR REPLACE FUNCTION reservation_fields(r reservations) RETURNS jsonb
LANGUAGE sql VOLATILE AS $$
    SELECT reservation_fields(r, effective_status(r.status, r.expires_at))
$$;

-- A reservation as the API shows it: its fields, its tickets and its captured payment.
-- (plpgsql, as every function on reserve's path that runs a query: its plan is kept for the
-- session, where a sql function's is made again on every call.)
CREATE OR REPLACE FUNCTION reservation_json(r reservations) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_tickets jsonb := '[]';
    v_payment jsonb;
BEGIN
    -- Tickets and the captured payment are written with the status 'confirmed' (confirm_reservation),
    -- which never changes after: any other reservation, a new hold first, skips both reads. (Read
    -- as statements of their own: as CASE branches of the object below, they made PostgreSQL plan
    -- the whole expression again for every reservation, to fold the CASE.)
    IF r.status = 'confirmed' THEN
        v_tickets := coalesce((
            SELECT jsonb_agg(jsonb_build_object('ticket_code', t.ticket_code)
                             || CASE WHEN r.seats IS NOT NULL THEN jsonb_build_object('seat', r.seats[t.seat_index])
                                     ELSE '{}'::jsonb END ORDER BY t.seat_index)
            FROM tickets t WHERE t.reservation_id = r.reservation_id), '[]'::jsonb);
        v_payment := (
            SELECT jsonb_build_object('transaction_id', p.transaction_id, 'status', p.status,
                                      'amount', p.amount, 'currency', p.currency)
            FROM payments p WHERE p.reservation_id = r.reservation_id AND p.status = 'captured');
    END IF;
    RETURN reservation_fields(r) || jsonb_build_object('tickets', v_tickets, 'payment', v_payment);
END
$$;

-- The refusal for acting on a reservation that is no longer a live hold:
-- reservation_confirmed, reservation_cancelled or reservation_expired.
CREATE OR REPLACE FUNCTION reservation_refusal(r reservations) RETURNS jsonb
LANGUAGE sql VOLATILE AS $$
    SELECT jsonb_build_object('outcome', 'reservation_' || effective_status(r.status, r.expires_at),
                              'reservation', reservation_json(r))
$$;

-- A ticket as check-in shows it.
CREATE OR REPLACE FUNCTION ticket_json(t tickets) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('ticket_code', t.ticket_code, 'checked_in_at', t.checked_in_at, 'event_id', t.event_id)
$$;

-- Readiness: the database answers a call of the application's own functions.
CREATE OR REPLACE FUNCTION ready() RETURNS boolean
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'reserve_hold')
$$;
