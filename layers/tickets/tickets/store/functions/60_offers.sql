-- Offers: limited discount codes. Their claims are a counter (10_inventory.sql); the discount
-- arithmetic and the claim itself are in reserve_hold (30_reservations.sql).

-- An offer as the API shows it, with the claims a buyer could still have right now.
CREATE OR REPLACE FUNCTION offer_json(o offers) RETURNS jsonb
LANGUAGE sql VOLATILE AS $$
    SELECT jsonb_build_object(
        'offer_id', o.offer_id, 'code', o.code, 'percent_off', o.percent_off, 'amount_off', o.amount_off,
        'max_claims', o.max_claims, 'claims_left', counter_available(o.offer_id),
        'tier_ids', (SELECT coalesce(jsonb_agg(ot.tier_id ORDER BY t.position), '[]'::jsonb)
                     FROM offer_tiers ot JOIN tiers t USING (tier_id) WHERE ot.offer_id = o.offer_id),
        'valid_until', o.valid_until)
$$;

-- Creates an offer (id chosen by the caller; tier_ids NULL: every tier of the event).
-- Returns {"outcome": "created", "offer": ...}, event_not_found, offer_code_taken, or a
-- validation_error naming tier_ids when one is not the event's.
CREATE OR REPLACE FUNCTION create_offer(p_event_id uuid, p_offer jsonb) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_offer offers%ROWTYPE;
    v_tiers uuid[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM events WHERE event_id = p_event_id) THEN
        RETURN jsonb_build_object('outcome', 'event_not_found');
    END IF;
    IF p_offer->'tier_ids' IS NULL OR jsonb_typeof(p_offer->'tier_ids') = 'null' THEN
        SELECT array_agg(tier_id) INTO v_tiers FROM tiers WHERE event_id = p_event_id;
    ELSE
        SELECT array_agg(DISTINCT value::uuid) INTO v_tiers FROM jsonb_array_elements_text(p_offer->'tier_ids');
        IF EXISTS (SELECT 1 FROM unnest(v_tiers) AS t
                   WHERE NOT EXISTS (SELECT 1 FROM tiers WHERE tier_id = t AND event_id = p_event_id)) THEN
            RETURN jsonb_build_object('outcome', 'validation_error', 'details', jsonb_build_array(
                jsonb_build_object('field', 'tier_ids', 'message', 'Every tier_id must be a tier of this event.',
                                   'type', 'unknown_tier')));
        END IF;
    END IF;
    INSERT INTO offers (offer_id, event_id, code, percent_off, amount_off, max_claims, valid_until)
    VALUES ((p_offer->>'offer_id')::uuid, p_event_id, upper(p_offer->>'code'), (p_offer->>'percent_off')::integer,
            (p_offer->>'amount_off')::bigint, (p_offer->>'max_claims')::integer, (p_offer->>'valid_until')::timestamptz)
    ON CONFLICT (event_id, code) DO NOTHING
    RETURNING * INTO v_offer;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'offer_code_taken');
    END IF;
    INSERT INTO offer_tiers (offer_id, tier_id) SELECT v_offer.offer_id, t FROM unnest(v_tiers) AS t;
    PERFORM counter_create(v_offer.offer_id, v_offer.max_claims);
    RETURN jsonb_build_object('outcome', 'created', 'offer', offer_json(v_offer));
END
$$;

-- An offer by its code (case-insensitive); NULL when the event has none such.
CREATE OR REPLACE FUNCTION offer_read(p_event_id uuid, p_code text) RETURNS jsonb
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT offer_json(o) FROM offers o WHERE o.event_id = p_event_id AND o.code = upper(p_code)
$$;
