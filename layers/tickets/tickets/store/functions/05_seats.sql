-- Assigned seats: which seat each hold and sale has. The seat COUNT is the tier's counter (and
-- its quotas'), exactly as for a general-admission tier (10_inventory.sql); these functions only
-- say WHICH seats, each a row of `seats` (migrations/0007_seats.sql).
--
-- A seat is free for a buyer when nobody has it (reservation_id IS NULL) or, unsold, its
-- reservation is no live hold (seat_free: the live-hold rule of 00_rules.sql), so a lapsed
-- hold's seats are free at once, before anything reclaims them. A claim is a conditional update
-- keyed by the seat under its row lock: no seat is held or sold twice. A sale sets `sold`
-- (seats_sell, under the confirm's reservation lock), so a confirm and a buyer taking over a
-- lapsed hold's seat meet on the seat row: exactly one wins it (the confirm that loses refunds).
--
-- Lock order (10_inventory.sql lists the whole): reservation rows, then seat rows, then the
-- tier's front, then counter shares. Reserve claims its seats before it touches a counter;
-- cancel, confirm and expiry lock the reservation, then its seats, then give back counters.
-- Whoever waits on seat rows waits in (tier_id, seat_no) order, so two claims of overlapping
-- seats cannot deadlock.
--
-- Best available (seats_choose_best) must not queue every buyer of a stadium behind one row:
--   0. block (among the seats of the free-seat index; a reserve that finds lapsed holds on the
--      tier has them reclaimed first, seats_claim_labels, so that their seats are in it): read the
--      front-most blocks of free seats in one row (as many as about 10 seats make), lock the first
--      whose seats nobody is claiming (SKIP LOCKED) and claim it. All being claimed: move ahead
--      (seats_claim_labels) and try again.
--      A buyer alone gets the front-most block; a crowd spreads over the front rows, each buyer
--      locking only its own seats, instead of every buyer stepping over every other's locks.
--      The blocks read do not overlap (a run of free seats is cut into blocks from its first
--      seat) and every move ahead is a whole number of blocks, so that concurrent buyers of one
--      quantity claim aligned blocks: a block read from seat 2 of a run while another buyer
--      claims seats 1-2 would leave seat 1 alone, and every later try reads past such single
--      seats again (measured: hundreds left at the front after 8 s, each try read through them;
--      aligned, none, and seated/hot went from 0.38-0.46 to 0.51-0.74 at 64 clients).
--      After a few tries, steps 1-3.
--      Reads start at the tier's front (seat_fronts.free_after: no seat at or below it is free),
--      not at its first seat: every claim leaves a dead entry in the free-seat index until VACUUM,
--      and a read from the first seat walked all of them (measured: a 20,000-seat tier sold 20%
--      slower in its fourth quarter than in its first; with the front, not slower). A reserve
--      whose first read found the first free seat more than 256 seats past the front moves it
--      there (seats_front_advance: never waiting, never over a release it did not see); a
--      release (cancel, expiry) moves it back below the seats it frees, so a lone buyer still
--      gets the front-most block.
--      (Measured at 16 and 64 clients: locking the first free seats with SKIP LOCKED interleaves,
--      two buyers each getting every other seat, and step 2's windows then leave gaps that send
--      everyone there: 0.07x of a hot tier; claiming the front-most unlocked block, scanning
--      past the crowd's locks: 0.35x at 64. This step: the README's bench-db table.)
--   1. front: lock the first `quantity` free seats that nobody else is claiming (FOR UPDATE SKIP
--      LOCKED, in order of preference; with the seats of lapsed holds when the tier has any).
--      When they are one block (one row, adjacent) they are the best block there is: keep them.
--   2. block: otherwise let go, read (without locking) the first block of free seats in one row,
--      lock a window of free seats from there (SKIP LOCKED: what others are claiming is left
--      out), find the first block among them, let go and lock exactly it. Taken meanwhile: try
--      again, leaving out what was found busy. No block anywhere: the front-most free seats.
--   3. wait: when fewer free seats are unlocked than asked (others are claiming them), lock the
--      first free seats waiting for those claims to end, so a request is refused only when the
--      seats really are gone, never because others were busy.

DROP FUNCTION IF EXISTS seats_block_in_row(uuid, integer, integer, boolean);

-- The live-hold rule on a seat: free when nobody has it, or when it is unsold and its reservation
-- is no live hold. Written so that a reservation this statement cannot see yet (committed after
-- its snapshot, while it waited for the seat's lock) counts as live: never free by mistake.
CREATE OR REPLACE FUNCTION seat_free(p_reservation_id uuid, p_sold boolean) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
    SELECT p_reservation_id IS NULL
        OR (NOT p_sold AND EXISTS (SELECT 1 FROM reservations r WHERE r.reservation_id = p_reservation_id
                                   AND NOT (r.status = 'held' AND NOT hold_lapsed(r.expires_at))))
$$;

-- A seat as the seat map shows it.
CREATE OR REPLACE FUNCTION seat_status(p_reservation_id uuid, p_sold boolean) RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN p_sold THEN 'sold' WHEN seat_free(p_reservation_id, p_sold) THEN 'available' ELSE 'held' END
$$;

-- The lapsed holds of a tier, not yet reclaimed (their seats are free).
CREATE OR REPLACE FUNCTION tier_lapsed_holds(p_tier_id uuid) RETURNS SETOF uuid
LANGUAGE sql VOLATILE AS $$
    SELECT reservation_id FROM reservations WHERE status = 'held' AND hold_lapsed_on(p_tier_id, tier_id, expires_at)
    ORDER BY tier_id DESC, expires_at DESC  -- (hold_lapsed_on)
$$;

-- The seats of a new assigned-seating tier, from its request: "rows": [{"row", "seats"}] (front
-- to back) or "seats": [labels] (in order of preference; each its own row-less seat).
DROP FUNCTION IF EXISTS seats_create(uuid, jsonb);
CREATE OR REPLACE FUNCTION seats_create(p_tier_id uuid, p_tier jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO seats (tier_id, seat_no, label, row_no, row_label, number)
    SELECT p_tier_id, row_number() OVER (ORDER BY r.row_no, n), (r.entry->>'row') || '-' || n, r.row_no,
           r.entry->>'row', n
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(p_tier->'rows') = 'array' THEN p_tier->'rows' ELSE '[]' END) WITH ORDINALITY AS r(entry, row_no),
         generate_series(1, (r.entry->>'seats')::integer) AS n
    UNION ALL
    SELECT p_tier_id, l.seat_no, l.label, NULL, NULL, NULL
    FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(p_tier->'seats') = 'array' THEN p_tier->'seats' ELSE '[]' END) WITH ORDINALITY AS l(label, seat_no);
    INSERT INTO seat_fronts (tier_id) VALUES (p_tier_id);
END
$$;

-- The seats a reserve names, as {"seat_nos": [...] in seat order, "unknown": [labels]}.
CREATE OR REPLACE FUNCTION seats_named(p_tier_id uuid, p_labels text[]) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'seat_nos', coalesce(jsonb_agg(s.seat_no ORDER BY s.seat_no) FILTER (WHERE s.seat_no IS NOT NULL), '[]'),
        'unknown', coalesce(jsonb_agg(l.label ORDER BY l.ord) FILTER (WHERE s.seat_no IS NULL), '[]'))
    FROM unnest(p_labels) WITH ORDINALITY AS l(label, ord)
    LEFT JOIN seats s ON s.tier_id = p_tier_id AND s.label = l.label
$$;

-- Of these seats, the labels of those a live hold or a sale has (no lock: a first look).
CREATE OR REPLACE FUNCTION seats_taken(p_tier_id uuid, p_seat_nos integer[]) RETURNS text[]
LANGUAGE sql VOLATILE AS $$
    SELECT coalesce(array_agg(label ORDER BY seat_no), '{}') FROM seats
    WHERE tier_id = p_tier_id AND seat_no = ANY (p_seat_nos) AND NOT seat_free(reservation_id, sold)
$$;

-- Named seats: locks them in seat order (waiting for claims in flight). Returns the labels of
-- those that are not free ('{}': all of them are, and this transaction holds them).
DROP FUNCTION IF EXISTS seats_claim_named(uuid, integer[], uuid);
CREATE OR REPLACE FUNCTION seats_lock_named(p_tier_id uuid, p_seat_nos integer[]) RETURNS text[]
LANGUAGE sql VOLATILE AS $$
    SELECT coalesce(array_agg(label ORDER BY seat_no) FILTER (WHERE NOT seat_free(reservation_id, sold)), '{}')
    FROM (SELECT seat_no, label, reservation_id, sold FROM seats
          WHERE tier_id = p_tier_id AND seat_no = ANY (p_seat_nos) ORDER BY seat_no FOR UPDATE) locked
$$;

-- True when these seats (ascending) are one block: adjacent seats of one row (one seat always is).
CREATE OR REPLACE FUNCTION seats_are_block(p_tier_id uuid, p_seat_nos integer[]) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT cardinality(p_seat_nos) = 1
        OR (p_seat_nos[cardinality(p_seat_nos)] - p_seat_nos[1] = cardinality(p_seat_nos) - 1
            AND (SELECT count(row_no) = cardinality(p_seat_nos) AND count(DISTINCT row_no) = 1
                 FROM seats WHERE tier_id = p_tier_id AND seat_no = ANY (p_seat_nos)))
$$;

-- Step 0's try: reads the first p_window blocks of p_quantity free seats in one row after seat
-- p_after (seats in claims in flight look free; blocks cut from the start of each run of free
-- seats, not overlapping), locks the first of them whose seats nobody is claiming (SKIP LOCKED)
-- and claims it for p_reservation_id. Returns the block's labels in seat order; or NULL and the
-- last seat of the blocks tried, to read on after (they were being claimed); or NULL and NULL
-- when there is no block after p_after. v_first_free: the first free seat after p_after read.
DROP FUNCTION IF EXISTS seats_try_block(uuid, integer, integer, integer, uuid);
CREATE OR REPLACE FUNCTION seats_try_block(p_tier_id uuid, p_quantity integer, p_after integer, p_window integer,
                                           p_reservation_id uuid, OUT v_labels text[], OUT v_next integer,
                                           OUT v_first_free integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_blocks   integer[] := '{}';
    v_first    integer;
    v_count    integer;
    v_no       integer;  -- (scalars, not a record: cheaper to assign and read on every seat)
    v_row      integer;
    v_run      integer := 0;
    v_last_no  integer;
    v_last_row integer;
BEGIN
    -- A loop over the free seats in order, counting runs of adjacent seats of one row, at most
    -- 400 seats a try (a fragmented tier goes on to steps 1-3). The small constant LIMIT keeps the
    -- plan (generic: reserve_hold) the free-seat index in order: with 2,000, once the table held
    -- a few analyzed tiers, the plan sorted every free seat of the tier on each try, 7-11 ms
    -- (measured: seated/hot 0.13-0.17 from the fourth tier of one cluster on); without a LIMIT,
    -- likewise (0.16 at 64 clients). One query with the block test as a correlated subquery was
    -- estimated so dear that PostgreSQL compiled it with JIT, 0.35 s a call.
    FOR v_no, v_row IN SELECT seat_no, row_no FROM seats
                       WHERE tier_id = p_tier_id AND reservation_id IS NULL AND seat_no > p_after
                       ORDER BY seat_no LIMIT 400 LOOP
        v_first_free := coalesce(v_first_free, v_no);
        v_run := CASE WHEN v_no = v_last_no + 1 AND v_row = v_last_row THEN v_run + 1 ELSE 1 END;
        v_last_no := v_no;
        v_last_row := v_row;
        IF v_run >= p_quantity THEN
            v_blocks := v_blocks || (v_no - p_quantity + 1);
            EXIT WHEN cardinality(v_blocks) = p_window;
            v_run := 0;  -- the next block starts after this one
        END IF;
    END LOOP;
    IF cardinality(v_blocks) = 0 THEN
        RETURN;
    END IF;
    v_next := v_blocks[cardinality(v_blocks)] + p_quantity - 1;
    BEGIN
        -- The free seats from the first block's on, in order, up to the first block start that
        -- nobody is claiming. (`seat_no + 0`, so that `= ANY` is a filter: as an index condition,
        -- PostgreSQL 15 looked up every block, fetched each and sorted them, where a buyer alone
        -- needs the first; measured, 6.6% of a seated reserve's instructions.)
        SELECT seat_no INTO v_first FROM seats
        WHERE tier_id = p_tier_id AND reservation_id IS NULL AND seat_no >= v_blocks[1] AND seat_no <= v_next
          AND seat_no + 0 = ANY (v_blocks)
        ORDER BY seat_no LIMIT 1 FOR UPDATE SKIP LOCKED;
        IF v_first IS NULL THEN
            -- Every block read is being claimed. Rolled back, not returned: a seat this statement
            -- locked and then found claimed (re-checked after a concurrent commit) stays locked until
            -- the subtransaction ends, and a reserve that goes on to step 3 waits for seats in seat
            -- order: holding one out of that order, it deadlocked with another (seen in CI).
            RAISE EXCEPTION USING ERRCODE = 'TK002';
        END IF;
        -- The block's seats locked (SKIP LOCKED: the first is ours already) and claimed in one
        -- statement, in the subtransaction that locked them: a lock taken in a subtransaction and
        -- an update by its parent would make every seat row a MultiXact (measured: MultiXact SLRU
        -- waits under 16 clients). The update finds them by the locked rows' ctids (stable while
        -- locked): with the tier in its condition, a tier newer than the table's statistics
        -- looked like one row, and the plan read the whole tier through the label index, 7 ms a
        -- claim (measured). (As two statements, the claim by an array of ctids got a custom plan,
        -- made again on every call.)
        WITH claimed AS (
            UPDATE seats SET reservation_id = p_reservation_id
            WHERE ctid = ANY (ARRAY(SELECT ctid FROM seats WHERE tier_id = p_tier_id AND reservation_id IS NULL
                                      AND seat_no BETWEEN v_first AND v_first + p_quantity - 1
                                    ORDER BY seat_no FOR UPDATE SKIP LOCKED))
            RETURNING seat_no, label)
        SELECT array_agg(label ORDER BY seat_no), count(*) INTO v_labels, v_count FROM claimed;
        IF v_count = p_quantity THEN
            RETURN;
        END IF;
        -- A seat of this block is being claimed: undo the part claimed, let go of the block and
        -- read on after it (a rolled-back subtransaction leaves variables as they are).
        v_labels := NULL;
        RAISE EXCEPTION USING ERRCODE = 'TK002';
    EXCEPTION WHEN SQLSTATE 'TK002' THEN
        IF v_first IS NOT NULL THEN
            v_next := v_first + p_quantity - 1;
        END IF;  -- else read on after the blocks read (v_next as set above)
    END;
END
$$;

-- The front (migrations/0011_seat_fronts.sql): moves a tier's free_after up to p_free_after, a
-- seat before the first free one that a read found, unless a release lowered it since the caller
-- read it at p_version (before that read, so a seat freed after the read's snapshot was freed
-- after p_version too). Never waits: the row locked by a release (or another advance) is skipped,
-- and the front stays where it was, which is always safe. The lock then lasts to the commit, so a
-- release waits for it: the caller takes no seat lock after this and waits only on counter
-- shares, which nobody takes before the front (lock order, 10_inventory.sql).
CREATE OR REPLACE FUNCTION seats_front_advance(p_tier_id uuid, p_version bigint, p_free_after integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE seat_fronts SET free_after = p_free_after
    WHERE tier_id = p_tier_id AND version = p_version AND free_after < p_free_after
      AND ctid = (SELECT ctid FROM seat_fronts WHERE tier_id = p_tier_id FOR UPDATE SKIP LOCKED);
END
$$;

DROP FUNCTION IF EXISTS seats_claim_block(uuid, integer, uuid);  -- step 0 is part of seats_claim now

-- Step 1: locks the first p_quantity free seats nobody else is claiming, in order of preference
-- (with p_lapsed, the seats of lapsed holds too), and keeps them when there are p_quantity of
-- them and, with p_keep_block, they are one block (a subtransaction lets go of them otherwise).
-- Returns the seats seen, ascending, and whether they were kept.
DROP FUNCTION IF EXISTS seats_try_front(uuid, integer, boolean, boolean);
CREATE OR REPLACE FUNCTION seats_try_front(p_tier_id uuid, p_quantity integer, p_lapsed boolean, p_keep_block boolean,
                                           OUT v_seats integer[], OUT v_kept boolean)
LANGUAGE plpgsql AS $$
BEGIN
    v_kept := false;
    BEGIN
        IF p_lapsed THEN
            SELECT array_agg(seat_no ORDER BY seat_no) INTO v_seats FROM (
                SELECT seat_no FROM (
                    SELECT seat_no FROM (SELECT seat_no FROM seats WHERE tier_id = p_tier_id AND reservation_id IS NULL
                                         ORDER BY seat_no LIMIT p_quantity FOR UPDATE SKIP LOCKED) free
                    UNION ALL
                    SELECT seat_no FROM (SELECT seat_no FROM seats
                                         WHERE reservation_id IN (SELECT tier_lapsed_holds(p_tier_id)) AND NOT sold
                                         ORDER BY seat_no LIMIT p_quantity FOR UPDATE SKIP LOCKED) lapsed) candidates
                ORDER BY seat_no LIMIT p_quantity) front;
        ELSE
            SELECT array_agg(seat_no ORDER BY seat_no) INTO v_seats FROM (
                SELECT seat_no FROM seats WHERE tier_id = p_tier_id AND reservation_id IS NULL
                ORDER BY seat_no LIMIT p_quantity FOR UPDATE SKIP LOCKED) front;
        END IF;
        v_seats := coalesce(v_seats, '{}');
        IF cardinality(v_seats) = p_quantity AND (NOT p_keep_block OR seats_are_block(p_tier_id, v_seats)) THEN
            v_kept := true;
            RETURN;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'TK002';
    EXCEPTION WHEN SQLSTATE 'TK002' THEN
        RETURN;
    END;
END
$$;

-- The first block of p_quantity adjacent free seats in one row from seat p_from on, leaving out
-- p_busy (a read: seats in claims in flight look free). NULL when there is none.
DROP FUNCTION IF EXISTS seats_first_block(uuid, integer, integer, integer);
CREATE OR REPLACE FUNCTION seats_first_block(p_tier_id uuid, p_quantity integer, p_from integer, p_busy integer[])
RETURNS integer[]
LANGUAGE sql VOLATILE AS $$
    SELECT ARRAY(SELECT generate_series(first.seat_no, first.seat_no + p_quantity - 1))
    FROM (SELECT seat_no FROM (
              SELECT seat_no, row_no, lead(seat_no, p_quantity - 1) OVER w AS last_no,
                     lead(row_no, p_quantity - 1) OVER w AS last_row
              FROM seats
              WHERE tier_id = p_tier_id AND reservation_id IS NULL AND seat_no >= p_from AND seat_no <> ALL (p_busy)
              WINDOW w AS (ORDER BY seat_no)) runs
          WHERE last_no = seat_no + p_quantity - 1 AND (p_quantity = 1 OR last_row = row_no)
          ORDER BY seat_no LIMIT 1) first
$$;

-- Step 2's lock: exactly these seats if each is free and nobody else is claiming it; all or none.
CREATE OR REPLACE FUNCTION seats_try_exact(p_tier_id uuid, p_seat_nos integer[]) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        IF (SELECT count(*) FROM (SELECT 1 FROM seats WHERE tier_id = p_tier_id AND seat_no = ANY (p_seat_nos)
                                    AND reservation_id IS NULL
                                  ORDER BY seat_no FOR UPDATE SKIP LOCKED) locked) = cardinality(p_seat_nos) THEN
            RETURN true;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'TK002';
    EXCEPTION WHEN SQLSTATE 'TK002' THEN
        RETURN false;
    END;
END
$$;

-- Step 2's window: locks (SKIP LOCKED) up to p_size free seats from seat p_from on, finds the
-- first block among them, and lets go of all of them (a subtransaction rolled back). Returns the
-- block (NULL: none among them) and the seats it could lock.
CREATE OR REPLACE FUNCTION seats_window_block(p_tier_id uuid, p_quantity integer, p_from integer, p_size integer,
                                              OUT v_block integer[], OUT v_seen integer[])
LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        v_seen := ARRAY(SELECT seat_no FROM seats
                        WHERE tier_id = p_tier_id AND reservation_id IS NULL AND seat_no >= p_from
                        ORDER BY seat_no LIMIT p_size FOR UPDATE SKIP LOCKED);
        SELECT ARRAY(SELECT generate_series(first.seat_no, first.seat_no + p_quantity - 1)) INTO v_block
        FROM (SELECT seat_no FROM (
                  SELECT seat_no, row_no, lead(seat_no, p_quantity - 1) OVER w AS last_no,
                         lead(row_no, p_quantity - 1) OVER w AS last_row
                  FROM seats WHERE tier_id = p_tier_id AND seat_no = ANY (v_seen)
                  WINDOW w AS (ORDER BY seat_no)) runs
              WHERE last_no = seat_no + p_quantity - 1 AND (p_quantity = 1 OR last_row = row_no)
              ORDER BY seat_no LIMIT 1) first;
        RAISE EXCEPTION USING ERRCODE = 'TK002';
    EXCEPTION WHEN SQLSTATE 'TK002' THEN
        RETURN;
    END;
END
$$;

-- Best available (steps 1-3 above): locks and returns p_quantity seats, ascending, or NULL when
-- fewer are free (nothing kept locked that matters: the caller refuses and commits).
-- p_lapsed: the tier has lapsed holds not yet reclaimed (their seats are free too).
-- (Planned as PostgreSQL chooses, not generic as the rest of reserve: its LIMITs are parameters,
-- which a generic plan takes for a tenth of the tier, sorting all of it. It is the rare path.)
DROP FUNCTION IF EXISTS seats_choose_best(uuid, integer);
CREATE OR REPLACE FUNCTION seats_choose_best(p_tier_id uuid, p_quantity integer, p_lapsed boolean) RETURNS integer[]
LANGUAGE plpgsql SET plan_cache_mode = auto AS $$
DECLARE
    v_front  integer[];
    v_kept   boolean;
    v_block  integer[];
    v_seen   integer[];
    v_from   integer;
    v_busy   integer[] := '{}';
BEGIN
    -- 1. front
    SELECT * INTO v_front, v_kept FROM seats_try_front(p_tier_id, p_quantity, p_lapsed, true);
    IF v_kept THEN
        RETURN v_front;  -- kept locked by seats_try_front
    END IF;
    IF cardinality(v_front) = p_quantity THEN
        -- 2. block, from the first block of free seats there is (a read: some may be in claims in
        -- flight, which the window's SKIP LOCKED tells apart).
        FOR attempt IN 1..6 LOOP
            v_from := (seats_first_block(p_tier_id, p_quantity, 1, v_busy))[1];
            IF v_from IS NULL THEN
                -- No block anywhere: the front-most free seats.
                SELECT * INTO v_front, v_kept FROM seats_try_front(p_tier_id, p_quantity, p_lapsed, false);
                IF v_kept THEN
                    RETURN v_front;
                END IF;
                EXIT;
            END IF;
            SELECT * INTO v_block, v_seen FROM seats_window_block(p_tier_id, p_quantity, v_from, 4 * p_quantity + 12);
            IF v_block IS NOT NULL AND seats_try_exact(p_tier_id, v_block) THEN
                RETURN v_block;
            END IF;
            -- What the window could not lock is being claimed by others; so is a block taken meanwhile.
            v_busy := v_busy || coalesce(v_block, '{}') || ARRAY(
                SELECT seat_no FROM seats
                WHERE tier_id = p_tier_id AND reservation_id IS NULL AND seat_no >= v_from
                  AND seat_no <= coalesce(v_seen[cardinality(v_seen)], v_from + p_quantity - 1)
                  AND seat_no <> ALL (v_seen));
        END LOOP;
    END IF;
    -- 3. wait: the first free seats, once the claims in flight on them have ended.
    SELECT array_agg(seat_no ORDER BY seat_no) INTO v_front FROM (
        SELECT seat_no FROM seats WHERE tier_id = p_tier_id AND reservation_id IS NULL
        ORDER BY seat_no LIMIT p_quantity FOR UPDATE) waited;
    IF cardinality(v_front) = p_quantity THEN
        RETURN v_front;
    END IF;
    RETURN NULL;
END
$$;

-- Claims the seats of a new hold: the named ones (p_seat_nos) or the best available. Returns
-- v_outcome 'claimed' with v_labels (in seat order), or a refusal: 'seats_unavailable' with the
-- labels of the seats that are not free, or 'short' (fewer free seats than asked); or, with
-- p_reclaim, 'reclaim' when lapsed holds of the tier hold seats and no seats were named: nothing is
-- claimed, and the caller reclaims them and asks again (tickets/domain/reservations.py). Their
-- seats are free, but not in the free-seat index that step 0 reads; chosen around in steps 1-3,
-- which read every free seat of the tier, they made every best-available reserve dear until the
-- expiry schedule came (measured: 300 holds of a 20,000-seat tier, 42 of them lapsed: 5.6 ms a
-- reserve instead of 0.9 ms). Reclaimed, they are in the index again.
-- (Two fields, not jsonb: reserve reads the labels without JSON built here and taken apart there;
-- with the text array from the claim on, 1.6% of a seated reserve's instructions.)
DROP FUNCTION IF EXISTS seats_claim(uuid, integer[], integer, uuid);
CREATE OR REPLACE FUNCTION seats_claim_labels(p_tier_id uuid, p_seat_nos integer[], p_quantity integer,
                                              p_reservation_id uuid, p_reclaim boolean,
                                              OUT v_outcome text, OUT v_labels text[])
LANGUAGE plpgsql AS $$
DECLARE
    v_taken      text[];
    v_seats      integer[] := p_seat_nos;
    v_lapsed     boolean;
    v_front      seat_fronts%ROWTYPE;
    v_from       integer;
    v_after      integer;
    v_try        record;  -- a try's seats_try_block answer
    v_window     integer;  -- blocks a try reads
BEGIN
    IF p_seat_nos IS NOT NULL THEN
        v_taken := seats_lock_named(p_tier_id, p_seat_nos);
        IF cardinality(v_taken) > 0 THEN
            v_outcome := 'seats_unavailable';
            v_labels := v_taken;
            RETURN;
        END IF;
    ELSE
        -- Whether the tier has lapsed holds (a probe of the tier's range of its index:
        -- hold_lapsed_on): their seats are free, but not in the free-seat index that step 0 reads.
        v_lapsed := coalesce((SELECT true FROM reservations
                              WHERE status = 'held' AND hold_lapsed_on(p_tier_id, tier_id, expires_at)
                              ORDER BY tier_id DESC, expires_at DESC LIMIT 1), false);
        -- With p_reclaim, one that no reclaim has locked sends the caller to reclaim them. Those left
        -- (a reclaim of them under way, or after the caller's own) are not waited for: step 0
        -- chooses among the seats of the index, and steps 1-3, which see theirs too, decide only
        -- when it finds no block, so nothing is refused while seats are free. (Measured under a
        -- lapse every 30 ms at 16 clients: sending every buyer that saw a lapsed hold to reclaim,
        -- about 17 a lapse, cost 40% of the seated figure.)
        IF v_lapsed AND p_reclaim THEN
            PERFORM FROM reservations WHERE status = 'held' AND hold_lapsed_on(p_tier_id, tier_id, expires_at)
            ORDER BY tier_id DESC, expires_at DESC LIMIT 1 FOR UPDATE SKIP LOCKED;
            IF FOUND THEN
                v_outcome := 'reclaim';
                RETURN;
            END IF;
        END IF;
        -- Step 0 (see the top of this file): a block of p_quantity seats, or none after a few
        -- tries (steps 1-3 then decide). The first try looks at the front-most blocks and
        -- takes the first that nobody is claiming, so a buyer alone gets the front-most block.
        -- When all are being claimed (a crowd), the buyer moves ahead by a stretch of its
        -- own (one of 16 lanes a try's blocks apart, by its backend, so that buyers of a crowd
        -- seldom read the same blocks), then by random stretches that grow with each try. A try
        -- reads as many blocks as 10 seats make (at least 2): plpgsql's loop fetches 10 rows, then
        -- 50 more, each read from the table. (Measured against 16 blocks a try: 8.7% fewer
        -- instructions for a buyer alone; 2.6 tries a reserve instead of 1.9 at 64 clients, each
        -- cheaper; seated/hot in same-run rounds 0.50 against 0.50 at 64 clients, 0.57 against
        -- 0.54 at 16. Lanes a try apart rather than a block apart, each overlapping the next
        -- few: 2.5 tries at 64 clients, 1.7 at 16 instead of 1.8; seated/hot 0.53 against 0.53
        -- at 64, 0.54 against 0.51 at 16.)
        -- (Here, not a function of its own: on reserve's path each plpgsql call costs.)
        -- The front is read before the seats (an earlier snapshot): see seats_front_advance.
        SELECT * INTO v_front FROM seat_fronts WHERE tier_id = p_tier_id;
        v_from := coalesce(v_front.free_after, 0);
        v_after := v_from;
        v_window := greatest(10 / p_quantity, 2);
        FOR attempt IN 1..6 LOOP
            -- (an assignment, which plpgsql evaluates without starting a query)
            v_try := seats_try_block(p_tier_id, p_quantity, v_after, v_window, p_reservation_id);
            IF v_try.v_labels IS NOT NULL THEN
                IF attempt = 1 AND v_try.v_first_free - v_from > 256 THEN
                    PERFORM seats_front_advance(p_tier_id, v_front.version, v_try.v_first_free - 1);
                END IF;
                v_outcome := 'claimed';
                v_labels := v_try.v_labels;
                RETURN;
            END IF;
            IF v_try.v_next IS NULL THEN
                EXIT WHEN v_after = v_from;
                v_after := v_from;  -- jumped past the last block: from the front once more
            ELSE
                v_after := v_try.v_next + p_quantity * CASE WHEN attempt = 1 THEN v_window * (pg_backend_pid() % 16)
                                                            ELSE floor(random() * (16 << attempt))::integer END;
            END IF;
        END LOOP;
        v_seats := seats_choose_best(p_tier_id, p_quantity, v_lapsed);
        IF v_seats IS NULL THEN
            v_outcome := 'short';
            RETURN;
        END IF;
    END IF;
    WITH claimed AS (
        UPDATE seats SET reservation_id = p_reservation_id
        WHERE tier_id = p_tier_id AND seat_no = ANY (v_seats)
        RETURNING seat_no, label)
    SELECT array_agg(label ORDER BY seat_no) INTO v_labels FROM claimed;
    v_outcome := 'claimed';
END
$$;

-- The previous release's reserve_seats calls this, for the jsonb answer seats_claim_labels' fields
-- used to be (each function file is its own transaction, so a deploy has a moment between this
-- file and 30_reservations.sql). Contract: drop it a release later.
CREATE OR REPLACE FUNCTION seats_claim(p_tier_id uuid, p_seat_nos integer[], p_quantity integer,
                                       p_reservation_id uuid, p_reclaim boolean DEFAULT false) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'outcome', claim.v_outcome,
        CASE claim.v_outcome WHEN 'seats_unavailable' THEN 'unavailable_seats' ELSE 'seats' END, claim.v_labels))
    FROM seats_claim_labels(p_tier_id, p_seat_nos, p_quantity, p_reservation_id, p_reclaim) claim
$$;

-- Frees the seats these reservations still have, locking them in seat order; returns them. The
-- caller holds the reservations' rows (or made them). A reserve that claimed seats and then gives
-- up (its counters lacked the seats) calls this alone: nobody saw those seats taken, so the front
-- stays, and a reserve holding counter shares by then must not wait for a front that an advancing
-- reserve holds. Everyone else frees through seats_release.
CREATE OR REPLACE FUNCTION seats_vacate(p_reservations uuid[]) RETURNS TABLE (tier_id uuid, seat_no integer)
LANGUAGE sql AS $$
    UPDATE seats s SET reservation_id = NULL, sold = false
    FROM (SELECT s.tier_id, s.seat_no FROM seats s
          JOIN reservations r ON r.tier_id = s.tier_id AND s.label = ANY (r.seats)
          WHERE r.reservation_id = ANY (p_reservations) AND s.reservation_id = r.reservation_id
          ORDER BY s.tier_id, s.seat_no FOR UPDATE OF s) mine
    WHERE s.tier_id = mine.tier_id AND s.seat_no = mine.seat_no AND s.reservation_id = ANY (p_reservations)
    RETURNING s.tier_id, s.seat_no
$$;

-- Frees the seats these reservations still have (a cancel, an expiry) and lowers their tiers'
-- fronts below them, tier by tier in tier order (after the seats: lock order). The caller holds
-- the reservations' rows.
CREATE OR REPLACE FUNCTION seats_release(p_reservations uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_tiers  uuid[];
    v_lowest integer[];
BEGIN
    SELECT array_agg(freed.tier_id ORDER BY freed.tier_id), array_agg(freed.seat_no ORDER BY freed.tier_id)
    INTO v_tiers, v_lowest
    FROM (SELECT v.tier_id, min(v.seat_no) AS seat_no FROM seats_vacate(p_reservations) v GROUP BY v.tier_id) freed;
    FOR i IN 1..coalesce(cardinality(v_tiers), 0) LOOP
        UPDATE seat_fronts SET free_after = least(free_after, v_lowest[i] - 1), version = version + 1
        WHERE tier_id = v_tiers[i];
    END LOOP;
END
$$;

-- A confirm sells the hold's seats (the caller holds its row): true when the hold still has all
-- p_quantity of them. False when a buyer took one over after the hold lapsed: nothing is sold.
CREATE OR REPLACE FUNCTION seats_sell(p_reservation_id uuid, p_quantity integer) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_sold integer;
BEGIN
    WITH mine AS (
        SELECT s.tier_id, s.seat_no FROM seats s JOIN reservations r ON r.tier_id = s.tier_id AND s.label = ANY (r.seats)
        WHERE r.reservation_id = p_reservation_id AND s.reservation_id = p_reservation_id
        ORDER BY s.seat_no FOR UPDATE OF s)
    UPDATE seats s SET sold = true FROM mine
    WHERE s.tier_id = mine.tier_id AND s.seat_no = mine.seat_no AND s.reservation_id = p_reservation_id;
    GET DIAGNOSTICS v_sold = ROW_COUNT;
    IF v_sold < p_quantity THEN
        RAISE EXCEPTION USING ERRCODE = 'TK003';
    END IF;
    RETURN true;
EXCEPTION WHEN SQLSTATE 'TK003' THEN
    RETURN false;
END
$$;

-- A tier's seat map: every seat in order of preference, with its status now (held: a live hold).
CREATE OR REPLACE FUNCTION tier_seat_map(p_event_id uuid, p_tier_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_tier tiers%ROWTYPE;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM events WHERE event_id = p_event_id) THEN
        RETURN jsonb_build_object('outcome', 'event_not_found');
    END IF;
    SELECT * INTO v_tier FROM tiers WHERE tier_id = p_tier_id AND event_id = p_event_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'tier_not_found');
    ELSIF v_tier.seating <> 'assigned' THEN
        RETURN jsonb_build_object('outcome', 'not_assigned_seating');
    END IF;
    RETURN jsonb_build_object('outcome', 'map', 'seat_map', jsonb_build_object(
        'tier_id', p_tier_id,
        'seats', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'seat', label, 'row', row_label, 'number', number,
                      'status', seat_status(reservation_id, sold)) ORDER BY seat_no), '[]'::jsonb)
                  FROM seats WHERE tier_id = p_tier_id)));
END
$$;
