-- Capacity rules, written down in one place: the counters, their shares, and the duties of their callers.
--
-- A counter is one capacity: a tier's, a quota's (several tiers of one event counted together),
-- or an offer's claims. Every seat held or sold counts against its tier's counter and against the
-- counter of every quota that holds the tier; every reservation made with an offer counts one
-- claim against the offer's counter.
--
-- Invariant: for every counter, sum(free) over its shares = capacity - seats (claims, for an
-- offer) of the reservations it counts that are 'confirmed' or 'held' (a lapsed hold included,
-- until it is reclaimed);
-- free >= 0 is a CHECK, so no interleaving can oversell. Only the functions of this file write
-- counters and counter_shares.
--
-- Why shares: one row per counter makes every reserve of a hot tier queue on one row lock, held
-- until the commit's WAL flush. A counter is spread over `shares` rows (a small one stays one
-- row; see counter_share_count), and a reserve takes its seats from one share:
--   1. fast: a share that has the seats and is not locked (FOR UPDATE SKIP LOCKED), from a
--      random starting point, so concurrent reserves spread over the shares without waiting;
--   2. busy: when every share that has the seats is locked, wait on ONE of them (random), and
--      take the seats if it still has them after the wait.
--   Steps 1 and 2 each run in a subtransaction that is rolled back when they take nothing: a row
--   that PostgreSQL locked and then found drained (re-checked after a concurrent commit) stays
--   locked until the (sub)transaction ends, and a reserve must not hold such a share while it
--   waits (step 2) or locks all shares (step 3): that is a lock taken out of order, a deadlock;
--   3. all: only when no single share has the seats, lock all the counter's shares in share
--      order, take the seats across them if their sum has them, and re-balance what is left
--      into as few shares as keep about REBALANCE_CHUNK seats each (near sell-out this keeps
--      step 1 working instead of sending every reserve to step 3).
-- Never "all shares are busy, so refuse" nor "all shares are busy, so lock all of them": step 3
-- is taken only when the seats are spread too thin for one share, and then it sees every share,
-- so a reserve is refused only when the counter really lacks the seats.
--
-- Duties of every caller, so that nothing can deadlock:
--   * Take locks in this order, never the other way round:
--       1. the buyer's, then the source address's transaction-scoped advisory lock (reserve,
--          when max_per_customer / max_holds_per_ip is set)
--       2. reservation rows (cancel, expiry, reclaim; confirm locks its row, then its payment intent)
--       2b. seat rows of assigned seating (05_seats.sql), waiting only in (tier_id, seat_no) order
--       2c. the seat_fronts rows of those tiers, in tier order (a release); a reserve that moves a
--           front locks it with SKIP LOCKED, never waiting, after its seats and before any share
--       3. counter shares, counter by counter in ascending counter_id (tier_counters gives the
--          order); within a counter, one share at a time while holding none of its others
--          (steps 1-2), or all of them in share order (step 3).
--     Reserve takes 1, 2b, 2c then 3; the one other reservation's row it locks (2) is a lapsed
--     hold's, with SKIP LOCKED, after which it answers at once (seats_claim_labels' reclaim request).
--     Cancel, expiry and reclaim take 2, 2b, 2c then 3 (a reserve's reclaim waits at 2, in id
--     order, for another reclaim); confirm 2 then 2b (it sells the seats); check-in locks only its
--     ticket row. A reserve that gives up seats it claimed itself (seats_vacate) leaves 2c alone:
--     it holds shares by then.
--   * Run as one statement in autocommit mode, so that a lock is held for one database round
--     trip: the client never talks between lock and commit. Within reserve, everything that needs
--     no lock (validation, the reservation row and its booking reference) is done before
--     the first share is locked, so the locks cover the counter changes and the commit.
--   * Set lock_timeout on the function (never a session SET: that pins RDS Proxy connections).
--   * On reserve's path, a function that runs a query is plpgsql (its plans are kept for the
--     session; a sql function that is not inlined is planned again on every call), and a test of
--     many holds goes through hold_lapsed, or hold_lapsed_on for one tier's or offer's lapsed
--     holds (00_rules.sql), which an index can bound. But each plpgsql call costs about as much
--     as a statement (its expressions are set up again in every transaction): a helper that runs
--     no query is sql that PostgreSQL inlines (booking_reference_code), one query that
--     reserve runs once is an inlined sql set (tier_counters_with_room), and a general-admission
--     reserve makes two calls, reserve_hold and counter_take (test_query_plans.py; from five:
--     hot/row at 64 clients 1.20 -> 1.40, same-run medians of 4 rounds).
--   * reserve_hold runs with plan_cache_mode = force_generic_plan (a function SET: nothing
--     pinned): once the tables have statistics, PostgreSQL's own choice planned the share UPDATE
--     (and most seat statements) again on every call, a custom plan of the same shape that looked
--     a little cheaper, 0.2-0.4 ms a reserve (measured: hot/row 1.16 -> 1.36 at 64 clients). So a
--     statement on its path must have one good plan whatever its parameters: no LIMIT or range
--     that only a parameter's value makes small (seats_try_block, seats_choose_best).

DROP FUNCTION IF EXISTS inventory_create(uuid, integer);
DROP FUNCTION IF EXISTS tier_counters_having(uuid, integer);
DROP FUNCTION IF EXISTS inventory_available(uuid);
DROP FUNCTION IF EXISTS inventory_take(uuid, integer);
DROP FUNCTION IF EXISTS reclaim_lapsed(uuid[], integer);
DROP FUNCTION IF EXISTS reclaim_lapsed_for_tier(uuid);
DROP FUNCTION IF EXISTS inventory_lock(uuid);
DROP FUNCTION IF EXISTS inventory_release(uuid, integer);
DROP FUNCTION IF EXISTS inventory_take(uuid, integer);
DROP FUNCTION IF EXISTS reclaim_lapsed(uuid[], integer);
DROP FUNCTION IF EXISTS reclaim_lapsed_for_tier(uuid);

-- How many shares a counter of this capacity gets: one per 32 seats, at most 64 (about the
-- concurrency one hot tier meets per database), so that a tier under 64 seats stays one row.
CREATE OR REPLACE FUNCTION counter_share_count(p_capacity integer) RETURNS smallint
LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(1, least(64, p_capacity / 32))::smallint
$$;

-- A counter with its seats spread evenly over its shares.
CREATE OR REPLACE FUNCTION counter_create(p_counter_id uuid, p_capacity integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_shares smallint := counter_share_count(p_capacity);
BEGIN
    INSERT INTO counters (counter_id, capacity, shares) VALUES (p_counter_id, p_capacity, v_shares);
    INSERT INTO counter_shares (counter_id, share, free)
    SELECT p_counter_id, s, p_capacity / v_shares + CASE WHEN s < p_capacity % v_shares THEN 1 ELSE 0 END
    FROM generate_series(0, v_shares - 1) AS s;
END
$$;

-- The counters a seat of this tier counts against, in lock order: its own and its quotas'.
CREATE OR REPLACE FUNCTION tier_counters(p_tier_id uuid) RETURNS uuid[]
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT array_agg(c ORDER BY c)
            FROM (SELECT p_tier_id AS c UNION ALL SELECT quota_id FROM quota_tiers WHERE tier_id = p_tier_id) counted);
END
$$;

-- The tiers a counter counts: the tier itself, or the quota's tiers.
CREATE OR REPLACE FUNCTION counter_tiers(p_counter_id uuid) RETURNS SETOF uuid
LANGUAGE sql STABLE AS $$
    SELECT tier_id FROM tiers WHERE tier_id = p_counter_id
    UNION ALL
    SELECT tier_id FROM quota_tiers WHERE quota_id = p_counter_id
$$;

-- Seats a buyer could have from this counter right now: its free seats, plus those of lapsed
-- holds not yet reclaimed (a lapsed hold never blocks a sale). Lapsed holds are summed only when
-- a first look (one index entry: hold_lapsed_on) finds some, as most calls find none.
-- (plpgsql: see reservation_json.)
CREATE OR REPLACE FUNCTION counter_available(p_counter_id uuid) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_seats   integer := (SELECT coalesce(sum(free), 0) FROM counter_shares WHERE counter_id = p_counter_id);
    v_tier_id uuid;
BEGIN
    FOR v_tier_id IN SELECT counter_tiers(p_counter_id) LOOP
        IF (SELECT true FROM reservations
            WHERE status = 'held' AND hold_lapsed_on(v_tier_id, tier_id, expires_at)
            ORDER BY tier_id DESC, expires_at DESC LIMIT 1) THEN
            v_seats := v_seats + (SELECT sum(quantity) FROM (
                SELECT quantity FROM reservations
                WHERE status = 'held' AND hold_lapsed_on(v_tier_id, tier_id, expires_at)
                ORDER BY tier_id DESC, expires_at DESC) lapsed);
        END IF;
    END LOOP;
    -- an offer's counter: one claim per lapsed hold made with it
    IF (SELECT true FROM reservations
        WHERE status = 'held' AND hold_lapsed_on(p_counter_id, offer_id, expires_at)
        ORDER BY offer_id DESC, expires_at DESC LIMIT 1) THEN
        v_seats := v_seats + (SELECT count(*) FROM (
            SELECT FROM reservations
            WHERE status = 'held' AND hold_lapsed_on(p_counter_id, offer_id, expires_at)
            ORDER BY offer_id DESC, expires_at DESC) lapsed);
    END IF;
    RETURN v_seats;
END
$$;

-- What a reservation takes, in lock order: (counter, amount) for its tier's and quotas' counters
-- (its seats; p_tier_counters as tier_counters gives them) and its offer's (one claim).
CREATE OR REPLACE FUNCTION reservation_counters(p_tier_counters uuid[], p_quantity integer, p_offer_id uuid)
RETURNS TABLE (counter_id uuid, amount integer)
LANGUAGE sql STABLE AS $$
    SELECT c, p_quantity FROM unnest(p_tier_counters) AS c
    UNION ALL
    SELECT p_offer_id, 1 WHERE p_offer_id IS NOT NULL
    ORDER BY 1
$$;

CREATE OR REPLACE FUNCTION reservation_counters(p_tier_id uuid, p_quantity integer, p_offer_id uuid)
RETURNS TABLE (counter_id uuid, amount integer)
LANGUAGE sql STABLE AS $$
    SELECT * FROM reservation_counters(tier_counters(p_tier_id), p_quantity, p_offer_id)
$$;

-- A tier's available seats: the least of its own counter's and each of its quotas'.
CREATE OR REPLACE FUNCTION tier_available(p_tier_id uuid) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN (SELECT min(counter_available(c)) FROM unnest(tier_counters(p_tier_id)) AS c);
END
$$;

-- True when each of these counters has a share with at least p_amount free. The previous
-- release's reserve_seats calls it (tier_counters_with_room is this release's). Contract: drop it a
-- release later.
CREATE OR REPLACE FUNCTION counters_have(p_counters uuid[], p_amount integer) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_counter uuid;
BEGIN
    FOREACH v_counter IN ARRAY p_counters LOOP
        IF NOT EXISTS (SELECT 1 FROM counter_shares WHERE counter_id = v_counter AND free >= p_amount) THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN true;
END
$$;

-- A reserve's first look: the counters a seat of this tier counts against, in lock order (as
-- tier_counters), when each has a share with at least p_amount free and the offer's counter, if
-- any, a share with a claim: the usual answer before an on-sale's end, found by reading a share
-- or two per counter, without summing every share or counting lapsed holds (counter_available).
-- NULL says nothing: count them. One row, always. (sql, STABLE and a set, so that PostgreSQL
-- inlines it into reserve's own statement, `FROM tier_counters_with_room(...)`: no call of its
-- own, see the duties above. Each counter's look is the first share in key order with room, not
-- EXISTS: PostgreSQL plans that as a bitmap scan of all 64 shares' entries, 2.6% of a reserve.)
CREATE OR REPLACE FUNCTION tier_counters_with_room(p_tier_id uuid, p_amount integer, p_offer_id uuid)
RETURNS SETOF uuid[]
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN bool_and((SELECT true FROM counter_shares
                               WHERE counter_id = counted.c AND free >= counted.amount
                               ORDER BY share LIMIT 1) IS NOT NULL)
                THEN array_agg(c ORDER BY c) FILTER (WHERE NOT counted.claim) END
    FROM (SELECT p_tier_id AS c, p_amount AS amount, false AS claim
          UNION ALL
          SELECT quota_id, p_amount, false FROM quota_tiers WHERE tier_id = p_tier_id
          UNION ALL
          SELECT p_offer_id, 1, true WHERE p_offer_id IS NOT NULL) counted
$$;

-- The previous release's reserve_seats calls this. Contract: drop it a release later.
CREATE OR REPLACE FUNCTION tier_counters_having(p_tier_id uuid, p_amount integer, p_offer_id uuid) RETURNS uuid[]
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN (SELECT counters FROM tier_counters_with_room(p_tier_id, p_amount, p_offer_id) AS counters);
END
$$;

-- Takes p_quantity seats from one counter (steps 1-3 above). Returns the share that now holds
-- this transaction's lock and can take the seats back (see inventory_take), or NULL when the
-- counter has fewer free seats than asked (nothing taken).
-- (Steps 1 and 2 are one block in a loop, not a function of their own: on a hot tier every
-- plpgsql call on reserve's path costs about as much as the statement it runs, measured.)
CREATE OR REPLACE FUNCTION counter_take(p_counter_id uuid, p_quantity integer) RETURNS smallint
LANGUAGE plpgsql AS $$
DECLARE
    v_shares smallint;
    v_start  smallint;
    v_wait   smallint;  -- step 2's share; NULL in step 1
    v_share  smallint;
    v_total  integer;
    v_keep   integer;
BEGIN
    -- The counter's shares, as its last share's number + 1 (shares are never removed): one index
    -- entry. (Read from counters, STRICT looked for a second row: a scan of the whole table wherever
    -- PostgreSQL scans a small counters table rather than use its key, 10% of a hot reserve.)
    SELECT share + 1 INTO STRICT v_shares FROM counter_shares WHERE counter_id = p_counter_id ORDER BY share DESC LIMIT 1;
    IF v_shares > 1 THEN
        FOR try IN 1..6 LOOP  -- step 1, step 2, three times
            v_start := floor(random() * v_shares)::smallint;
            -- A subtransaction rolled back when it took nothing, so that a share locked and then
            -- found drained is not held afterwards.
            BEGIN
                -- Step 1 reads the shares in key order from a random one, wrapping round once, and
                -- stops at the first it can lock: a share or two read, not every share of the
                -- counter, each a chain of row versions on a hot counter. (Uncorrelated scalar
                -- subqueries run once each, only when coalesce reaches them: not at all in step 2.)
                UPDATE counter_shares SET free = free - p_quantity
                WHERE counter_id = p_counter_id AND free >= p_quantity
                  AND share = coalesce(v_wait,
                                       (SELECT share FROM counter_shares
                                        WHERE counter_id = p_counter_id AND share >= v_start AND free >= p_quantity
                                        ORDER BY share LIMIT 1 FOR UPDATE SKIP LOCKED),
                                       (SELECT share FROM counter_shares
                                        WHERE counter_id = p_counter_id AND share < v_start AND free >= p_quantity
                                        ORDER BY share LIMIT 1 FOR UPDATE SKIP LOCKED))
                RETURNING share INTO v_share;
                IF FOUND THEN
                    RETURN v_share;
                END IF;
                RAISE EXCEPTION USING ERRCODE = 'TK001';
            EXCEPTION WHEN SQLSTATE 'TK001' THEN
                NULL;
            END;
            IF v_wait IS NULL THEN
                -- 2. busy: wait on one share that has the seats, if any has.
                SELECT share INTO v_wait FROM counter_shares
                WHERE counter_id = p_counter_id AND free >= p_quantity
                ORDER BY random() LIMIT 1;
                EXIT WHEN NOT FOUND;
            ELSE
                v_wait := NULL;
            END IF;
        END LOOP;
    END IF;

    -- 3. all: every share, in share order.
    PERFORM 1 FROM counter_shares WHERE counter_id = p_counter_id ORDER BY share FOR UPDATE;
    SELECT sum(free) INTO v_total FROM counter_shares WHERE counter_id = p_counter_id;
    IF v_total < p_quantity THEN
        RETURN NULL;
    END IF;
    v_keep := v_total - p_quantity;
    PERFORM counter_spread(p_counter_id, v_shares, v_keep);
    RETURN 0;
END
$$;

-- The previous release's counter_take calls this for one try (a deploy has a moment when a call
-- of it is under way); a whole take answers that call as well: the seats taken from some share,
-- or NULL when the counter lacks them. Contract: drop it a release later.
CREATE OR REPLACE FUNCTION counter_try(p_counter_id uuid, p_quantity integer, p_shares smallint, p_share smallint)
RETURNS smallint
LANGUAGE plpgsql AS $$
BEGIN
    RETURN counter_take(p_counter_id, p_quantity);
END
$$;

-- Sets a locked counter's free seats to p_free, in as few shares as keep about 32 seats each
-- (the caller holds every share's lock).
CREATE OR REPLACE FUNCTION counter_spread(p_counter_id uuid, p_shares smallint, p_free integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_used integer := greatest(1, least(p_shares, p_free / 32));
BEGIN
    UPDATE counter_shares
    SET free = CASE WHEN share < v_used
                    THEN p_free / v_used + CASE WHEN share < p_free % v_used THEN 1 ELSE 0 END
                    ELSE 0 END
    WHERE counter_id = p_counter_id;
END
$$;

-- Gives seats back to a counter, to one random share. (The number of shares read as counter_take
-- reads it: from counters, the scalar subquery looked for a second row, a scan of the whole table
-- on every release wherever PostgreSQL scans a small counters table.)
CREATE OR REPLACE FUNCTION counter_release(p_counter_id uuid, p_quantity integer) RETURNS void
LANGUAGE sql AS $$
    UPDATE counter_shares SET free = free + p_quantity
    WHERE counter_id = p_counter_id
      AND share = (SELECT floor(random() * (share + 1))::smallint FROM counter_shares
                   WHERE counter_id = p_counter_id ORDER BY share DESC LIMIT 1)
$$;

-- Takes a reservation's seats from its tier's and quotas' counters (p_tier_counters, as
-- tier_counters gives them: the caller has them already), and its claim from its offer's, all or
-- none. Returns true when taken; false when one counter lacked them (what was taken from the
-- others is given back to the very shares this transaction still holds locked, so nobody saw it
-- gone).
CREATE OR REPLACE FUNCTION inventory_take(p_tier_counters uuid[], p_quantity integer, p_offer_id uuid)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_counters uuid[] := p_tier_counters;
    v_amounts  integer[] := array_fill(p_quantity, ARRAY[cardinality(p_tier_counters)]);
    v_shares   smallint[] := '{}';
    v_share    smallint;
BEGIN
    -- Without an offer that is the seats' counters as given, each taking p_quantity (a reserve's
    -- usual case, without a query); with one, reservation_counters puts its claim in lock order.
    IF p_offer_id IS NOT NULL THEN
        SELECT array_agg(counter_id ORDER BY counter_id), array_agg(amount ORDER BY counter_id)
        INTO v_counters, v_amounts FROM reservation_counters(p_tier_counters, p_quantity, p_offer_id);
    END IF;
    FOR i IN 1..cardinality(v_counters) LOOP
        v_share := counter_take(v_counters[i], v_amounts[i]);
        IF v_share IS NULL THEN
            FOR j IN 1..i - 1 LOOP
                UPDATE counter_shares SET free = free + v_amounts[j]
                WHERE counter_id = v_counters[j] AND share = v_shares[j];
            END LOOP;
            RETURN false;
        END IF;
        v_shares := v_shares || v_share;
    END LOOP;
    RETURN true;
END
$$;

-- The previous release's reserve_seats calls inventory_take by tier: it serves until that code
-- is gone (each function file is its own transaction, so a deploy has a moment between this file
-- and 30_reservations.sql). Contract: drop it a release later.
CREATE OR REPLACE FUNCTION inventory_take(p_tier_id uuid, p_quantity integer, p_offer_id uuid) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RETURN inventory_take(tier_counters(p_tier_id), p_quantity, p_offer_id);
END
$$;

-- Gives a reservation's seats and claim back (the caller holds its row).
CREATE OR REPLACE FUNCTION inventory_release(p_tier_id uuid, p_quantity integer, p_offer_id uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT * FROM reservation_counters(p_tier_id, p_quantity, p_offer_id) LOOP
        PERFORM counter_release(v.counter_id, v.amount);
    END LOOP;
END
$$;

-- Expires lapsed holds and gives their seats back, counter by counter in lock order. Which holds:
-- with p_tiers and p_offer_id both NULL (the expiry schedule), any tier's, at most p_limit, oldest
-- first, skipping rows another transaction holds; otherwise those of each tier of p_tiers and
-- those made with p_offer_id, at most p_limit of each (a reserve's reclaim: every one that blocks
-- its seats or its claim), waiting for a row another transaction holds: a reclaim of the same
-- holds under way (another buyer's) ends before this one does, so the reserve asked again after it
-- sees their seats. (Skipping them, it asked again at once, found the seats still held and
-- refused with available_seats enough: test_concurrency.py.) Lapsed holds are locked by nothing
-- but reclaims (in id order), the expiry schedule (never waiting) and a refused confirm (one row),
-- each briefly. Returns {"expired": holds, "seats": seats}.
-- Each tier's and the offer's are read as a range of its own index (hold_lapsed_on): one question
-- over the list, by expiry, read every tier's lapsed holds and tested each one's tier, and the
-- update found the chosen ones by scanning the whole table (measured with 5,000 lapsed holds of
-- another tier: 285-730 pages a call; test_query_plans.py). The update finds them by id.
CREATE OR REPLACE FUNCTION reclaim_lapsed(p_tiers uuid[], p_offer_id uuid, p_limit integer) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_ids      uuid[];
    v_count    integer;
    v_seats    integer;
    v_counters uuid[];
    v_amounts  integer[];
    v_seated   uuid[];
BEGIN
    IF p_tiers IS NULL AND p_offer_id IS NULL THEN
        v_ids := ARRAY(SELECT reservation_id FROM reservations
                       WHERE status = 'held' AND hold_lapsed(expires_at)
                       ORDER BY expires_at LIMIT p_limit
                       FOR UPDATE SKIP LOCKED);
    ELSE
        -- Found first, then locked in one order (by id), waiting: read per tier and then per offer, a
        -- hold of one buyer's tier made with the other's offer was locked in opposite orders.
        v_ids := ARRAY(
            SELECT reservation_id FROM reservations
            WHERE reservation_id = ANY (ARRAY(
                      SELECT held.reservation_id
                      FROM unnest(p_tiers) AS tier(id)
                      CROSS JOIN LATERAL (SELECT reservation_id FROM reservations
                                          WHERE status = 'held' AND hold_lapsed_on(tier.id, tier_id, expires_at)
                                          ORDER BY tier_id DESC, expires_at DESC LIMIT p_limit) held  -- (hold_lapsed_on)
                      UNION
                      SELECT reservation_id FROM (SELECT reservation_id FROM reservations
                                                  WHERE status = 'held' AND hold_lapsed_on(p_offer_id, offer_id, expires_at)
                                                  ORDER BY offer_id DESC, expires_at DESC LIMIT p_limit) claimed))
              AND status = 'held' AND hold_lapsed(expires_at)  -- (again after a wait)
            ORDER BY reservation_id FOR UPDATE);
    END IF;
    WITH lapsed AS (
        UPDATE reservations SET status = 'expired', expired_at = clock_timestamp()
        WHERE reservation_id = ANY (v_ids)
        RETURNING reservation_id, tier_id, quantity, offer_id, seats
    ),
    per_counter AS (
        SELECT counted.counter_id, sum(counted.amount)::integer AS seats
        FROM lapsed l, reservation_counters(l.tier_id, l.quantity, l.offer_id) AS counted
        GROUP BY counted.counter_id
    )
    SELECT (SELECT count(*) FROM lapsed), (SELECT coalesce(sum(quantity), 0) FROM lapsed),
           (SELECT array_agg(counter_id ORDER BY counter_id) FROM per_counter),
           (SELECT array_agg(seats ORDER BY counter_id) FROM per_counter),
           (SELECT array_agg(reservation_id) FROM lapsed WHERE seats IS NOT NULL)
    INTO v_count, v_seats, v_counters, v_amounts, v_seated;
    -- Their assigned seats that no buyer took over meanwhile (seat rows before counter shares).
    IF v_seated IS NOT NULL THEN
        PERFORM seats_release(v_seated);
    END IF;
    FOR i IN 1..coalesce(array_length(v_counters, 1), 0) LOOP
        PERFORM counter_release(v_counters[i], v_amounts[i]);
    END LOOP;
    RETURN jsonb_build_object('expired', v_count, 'seats', v_seats);
END
$$;

-- The tiers whose lapsed holds can free seats for this tier: itself and every tier sharing a quota with it.
CREATE OR REPLACE FUNCTION tiers_sharing_capacity(p_tier_id uuid) RETURNS uuid[]
LANGUAGE sql STABLE AS $$
    SELECT array_agg(DISTINCT t) FROM (
        SELECT p_tier_id AS t
        UNION ALL
        SELECT other.tier_id FROM quota_tiers mine JOIN quota_tiers other USING (quota_id)
        WHERE mine.tier_id = p_tier_id) shared
$$;

-- Reclaim before a reserve retried (tickets/domain/reservations.py): the lapsed holds that block
-- this tier's seats or this offer's claims.
CREATE OR REPLACE FUNCTION reclaim_lapsed_for_tier(p_tier_id uuid, p_offer_id uuid) RETURNS jsonb
LANGUAGE sql SET lock_timeout = '2s'
SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT reclaim_lapsed(tiers_sharing_capacity(p_tier_id), p_offer_id, 10000)
$$;
