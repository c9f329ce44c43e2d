-- Check-in: the first scan wins; a second one learns when the first happened. p_scan names the
-- scan, so the same scan run again (a retry on a fresh connection) is admitted again, not refused.
DROP FUNCTION IF EXISTS check_in_ticket(text);

CREATE OR REPLACE FUNCTION check_in_ticket(p_ticket_code text, p_scan uuid) RETURNS jsonb
LANGUAGE plpgsql SET lock_timeout = '2s'
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_ticket tickets%ROWTYPE;
BEGIN
    UPDATE tickets SET checked_in_at = clock_timestamp(), check_in_scan = p_scan
    WHERE ticket_code = p_ticket_code AND checked_in_at IS NULL AND voided_at IS NULL
    RETURNING * INTO v_ticket;
    IF FOUND THEN
        RETURN jsonb_build_object('outcome', 'checked_in', 'ticket', ticket_json(v_ticket));
    END IF;
    SELECT * INTO v_ticket FROM tickets WHERE ticket_code = p_ticket_code;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'ticket_not_found');
    ELSIF v_ticket.voided_at IS NOT NULL THEN
        RETURN jsonb_build_object('outcome', 'ticket_void');
    ELSIF v_ticket.check_in_scan = p_scan THEN
        RETURN jsonb_build_object('outcome', 'checked_in', 'ticket', ticket_json(v_ticket));
    END IF;
    RETURN jsonb_build_object('outcome', 'already_checked_in', 'checked_in_at', v_ticket.checked_in_at);
END
$$;
