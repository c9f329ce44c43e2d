-- Events and their tiers: creation and the reads buyers see.

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
        'sales_start_at', e.sales_start_at,
        'sales_end_at', e.sales_end_at,
        'created_at', e.created_at,
        'tiers', (
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                'tier_id', t.tier_id, 'name', t.name, 'capacity', t.capacity, 'price', t.price,
                'currency', e.currency, 'max_per_order', t.max_per_order,
                'available_seats', inventory_available(t.tier_id)) ORDER BY t.position), '[]'::jsonb)
            FROM tiers t WHERE t.event_id = e.event_id))
    FROM events e WHERE e.event_id = p_event_id
$$;

-- Availability: per tier, and the event's total.
CREATE OR REPLACE FUNCTION event_availability(p_event_id uuid) RETURNS jsonb
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH event AS (SELECT event_json(p_event_id) AS e),
    tier AS (
        SELECT t, n FROM event, jsonb_array_elements(e->'tiers') WITH ORDINALITY AS listed(t, n)
    )
    SELECT jsonb_build_object(
        'event_id', p_event_id,
        'available_seats', (SELECT coalesce(sum((t->>'available_seats')::integer), 0) FROM tier),
        'available', (SELECT coalesce(sum((t->>'available_seats')::integer), 0) > 0 FROM tier),
        'tiers', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'tier_id', t->'tier_id', 'name', t->'name', 'available_seats', t->'available_seats',
                      'price', t->'price', 'currency', t->'currency', 'max_per_order', t->'max_per_order') ORDER BY n),
                      '[]'::jsonb) FROM tier))
    FROM event WHERE e IS NOT NULL
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
                        sales_start_at, sales_end_at)
    VALUES (v_event_id, p_event->>'name', p_event->>'venue', (p_event->>'starts_at')::timestamptz,
            p_event->>'currency', (p_event->>'hold_seconds')::integer, (p_event->>'max_per_customer')::integer,
            (p_event->>'sales_start_at')::timestamptz, (p_event->>'sales_end_at')::timestamptz)
    ON CONFLICT (event_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'exists', 'event', event_json(v_event_id));
    END IF;
    FOR v_tier IN
        SELECT (t->>'tier_id')::uuid AS tier_id, (position - 1)::smallint AS position, t->>'name' AS name,
               (t->>'capacity')::integer AS capacity, (t->>'price')::bigint AS price,
               (t->>'max_per_order')::integer AS max_per_order
        FROM jsonb_array_elements(p_event->'tiers') WITH ORDINALITY AS tier(t, position)
    LOOP
        INSERT INTO tiers (tier_id, event_id, position, name, capacity, price, max_per_order)
        VALUES (v_tier.tier_id, v_event_id, v_tier.position, v_tier.name, v_tier.capacity, v_tier.price,
                v_tier.max_per_order);
        PERFORM inventory_create(v_tier.tier_id, v_tier.capacity);
    END LOOP;
    RETURN jsonb_build_object('outcome', 'created', 'event', event_json(v_event_id));
END
$$;
