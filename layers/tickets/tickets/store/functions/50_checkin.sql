-- Check-in: the first scan wins; a second one learns when the first happened.
CREATE OR REPLACE FUNCTION check_in_ticket(p_ticket_code text) RETURNS jsonb
LANGUAGE plpgsql SET lock_timeout = '5s'
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_ticket tickets%ROWTYPE;
BEGIN
    UPDATE tickets SET checked_in_at = clock_timestamp()
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
    END IF;
    RETURN jsonb_build_object('outcome', 'already_checked_in', 'checked_in_at', v_ticket.checked_in_at);
END
$$;
