-- Events and their tiers: creation and the reads buyers see.

-- An event's waiting room as the API shows it, or NULL when it has none.
CREATE OR REPLACE FUNCTION waiting_room_json(p_event_id uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('admit_per_minute', w.admit_per_minute, 'admission_seconds', w.admission_seconds)
    FROM waiting_rooms w WHERE w.event_id = p_event_id
$$;

-- An event as the API shows it, with its tiers and the seats a buyer could have right now;
-- NULL when there is no such event.
CREATE OR REPLACE FUNCTION event_json(p_event_id uuid) RETURNS jsonb
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT jsonb_build_object(
        'event_id', e.event_id,
        'name', e.name,
        'venue', e.venue,
        'starts_at', e.starts_at,
        'currency', e.currency,
        'hold_seconds', e.hold_seconds,
        'max_per_customer', e.max_per_customer,
        'max_holds_per_ip', e.max_holds_per_ip,
        'sales_start_at', e.sales_start_at,
        'sales_end_at', e.sales_end_at,
        'created_at', e.created_at,
        'waiting_room', waiting_room_json(e.event_id),
        'tiers', (
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                'tier_id', t.tier_id, 'name', t.name, 'capacity', t.capacity, 'price', t.price,
                'currency', e.currency, 'max_per_order', t.max_per_order, 'seating', t.seating,
                'available_seats', tier_available(t.tier_id)) ORDER BY t.position), '[]'::jsonb)
            FROM tiers t WHERE t.event_id = e.event_id),
        'quotas', (
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                'quota_id', q.quota_id, 'name', q.name, 'capacity', q.capacity,
                'tier_ids', (SELECT coalesce(jsonb_agg(qt.tier_id ORDER BY t.position), '[]'::jsonb)
                             FROM quota_tiers qt JOIN tiers t USING (tier_id) WHERE qt.quota_id = q.quota_id))
                ORDER BY q.position), '[]'::jsonb)
            FROM quotas q WHERE q.event_id = e.event_id))
    FROM events e WHERE e.event_id = p_event_id
$$;

-- Availability: per tier, per quota, and the event's total: the least of the tiers' sum and,
-- for each quota, its free seats plus the available seats of the tiers outside it.
CREATE OR REPLACE FUNCTION event_availability(p_event_id uuid) RETURNS jsonb
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH event AS (SELECT event_json(p_event_id) AS e),
    tier AS (
        SELECT t, n, (t->>'tier_id')::uuid AS tier_id, (t->>'available_seats')::integer AS seats
        FROM event, jsonb_array_elements(e->'tiers') WITH ORDINALITY AS listed(t, n)
    ),
    quota AS (
        SELECT q, n, counter_available((q->>'quota_id')::uuid) AS seats,
               ARRAY(SELECT jsonb_array_elements_text(q->'tier_ids')::uuid) AS tier_ids
        FROM event, jsonb_array_elements(e->'quotas') WITH ORDINALITY AS listed(q, n)
    ),
    total AS (
        SELECT least((SELECT coalesce(sum(seats), 0) FROM tier),
                     (SELECT min(quota.seats + (SELECT coalesce(sum(tier.seats), 0) FROM tier
                                                WHERE tier.tier_id <> ALL (quota.tier_ids))) FROM quota)) AS seats
    )
    SELECT jsonb_build_object(
        'event_id', p_event_id,
        'available_seats', total.seats,
        'available', total.seats > 0,
        'tiers', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'tier_id', t->'tier_id', 'name', t->'name', 'available_seats', t->'available_seats',
                      'price', t->'price', 'currency', t->'currency', 'max_per_order', t->'max_per_order') ORDER BY n),
                      '[]'::jsonb) FROM tier),
        'quotas', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'quota_id', q->'quota_id', 'name', q->'name', 'capacity', q->'capacity',
                       'available_seats', seats) ORDER BY n), '[]'::jsonb) FROM quota))
    FROM event, total WHERE e IS NOT NULL
$$;

-- Creates an event from the request (ids chosen by the caller), its tiers and their counters.
-- Returns {"outcome": "created" | "exists", "event": {...}}: an event id that is taken leaves
-- everything as it was (the local stage's seed relies on that).
CREATE OR REPLACE FUNCTION create_event(p_event jsonb) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_event_id uuid := (p_event->>'event_id')::uuid;
    v_tier     record;
BEGIN
    INSERT INTO events (event_id, name, venue, starts_at, currency, hold_seconds, max_per_customer,
                        max_holds_per_ip, sales_start_at, sales_end_at)
    VALUES (v_event_id, p_event->>'name', p_event->>'venue', (p_event->>'starts_at')::timestamptz,
            p_event->>'currency', (p_event->>'hold_seconds')::integer, (p_event->>'max_per_customer')::integer,
            (p_event->>'max_holds_per_ip')::integer,
            (p_event->>'sales_start_at')::timestamptz, (p_event->>'sales_end_at')::timestamptz)
    ON CONFLICT (event_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'exists', 'event', event_json(v_event_id));
    END IF;
    FOR v_tier IN
        SELECT (t->>'tier_id')::uuid AS tier_id, (position - 1)::smallint AS position, t->>'name' AS name,
               (t->>'capacity')::integer AS capacity, (t->>'price')::bigint AS price,
               (t->>'max_per_order')::integer AS max_per_order, coalesce(t->>'seating', 'general') AS seating, t
        FROM jsonb_array_elements(p_event->'tiers') WITH ORDINALITY AS tier(t, position)
    LOOP
        INSERT INTO tiers (tier_id, event_id, position, name, capacity, price, max_per_order, seating)
        VALUES (v_tier.tier_id, v_event_id, v_tier.position, v_tier.name, v_tier.capacity, v_tier.price,
                v_tier.max_per_order, v_tier.seating);
        PERFORM counter_create(v_tier.tier_id, v_tier.capacity);
        -- Assigned seating: its seats (the caller checked that their number is the capacity).
        IF v_tier.seating = 'assigned' THEN
            PERFORM seats_create(v_tier.tier_id, v_tier.t);
        END IF;
    END LOOP;
    -- Quotas name their tiers by name (the request's); the caller checked that each name exists.
    INSERT INTO quotas (quota_id, event_id, position, name, capacity)
    SELECT (q->>'quota_id')::uuid, v_event_id, (position - 1)::smallint, q->>'name', (q->>'capacity')::integer
    FROM jsonb_array_elements(coalesce(p_event->'quotas', '[]'::jsonb)) WITH ORDINALITY AS quota(q, position);
    INSERT INTO quota_tiers (quota_id, tier_id)
    SELECT DISTINCT (q->>'quota_id')::uuid, t.tier_id
    FROM jsonb_array_elements(coalesce(p_event->'quotas', '[]'::jsonb)) AS quota(q),
         jsonb_array_elements_text(q->'tiers') AS named(tier_name)
    JOIN tiers t ON t.event_id = v_event_id AND t.name = named.tier_name;
    PERFORM counter_create((q->>'quota_id')::uuid, (q->>'capacity')::integer)
    FROM jsonb_array_elements(coalesce(p_event->'quotas', '[]'::jsonb)) AS quota(q);
    INSERT INTO waiting_rooms (event_id, admit_per_minute, admission_seconds)
    SELECT v_event_id, (p_event->'waiting_room'->>'admit_per_minute')::integer,
           (p_event->'waiting_room'->>'admission_seconds')::integer
    WHERE jsonb_typeof(p_event->'waiting_room') = 'object';
    RETURN jsonb_build_object('outcome', 'created', 'event', event_json(v_event_id));
END
$$;
