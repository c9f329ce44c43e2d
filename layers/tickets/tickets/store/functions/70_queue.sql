-- Waiting rooms: the settings an event's queue runs by, and the stock its admission is gated by.
-- The queue is in DynamoDB (tickets/store/queue_records.py); these are its only reads here.

-- What the queue needs of an event, fixed once it is created (cached per environment): its
-- sales window, creation time and waiting room. NULL when there is no such event.
CREATE OR REPLACE FUNCTION queue_event(p_event_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT jsonb_build_object('event_id', e.event_id, 'created_at', e.created_at,
                              'sales_start_at', e.sales_start_at, 'sales_end_at', e.sales_end_at,
                              'waiting_room', waiting_room_json(e.event_id))
    FROM events e WHERE e.event_id = p_event_id
$$;

-- The stock the admission cursor is gated by, read once a second per event: the seats a buyer
-- could have now (a lapsed hold counts as free, as for availability) and the live holds, which
-- may still free seats. No free seats and no live holds: sold out for good.
CREATE OR REPLACE FUNCTION queue_stock(p_event_id uuid) RETURNS jsonb
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT jsonb_build_object(
        'available_seats', coalesce((event_availability(p_event_id)->>'available_seats')::integer, 0),
        'live_holds', (SELECT count(*) FROM reservations r JOIN tiers t USING (tier_id)
                       WHERE t.event_id = p_event_id AND r.status = 'held' AND NOT hold_lapsed(r.expires_at)))
$$;
