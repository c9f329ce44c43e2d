-- Timeouts live on the role, not the session: a session SET would pin the connection to one
-- RDS Proxy backend. Every hot-path function also sets its own lock_timeout.
-- statement_timeout bounds a runaway statement; idle_in_transaction_session_timeout frees the
-- locks of a client that vanished mid-transaction (the application itself never leaves one open).
ALTER ROLE CURRENT_USER SET statement_timeout = '15s';
ALTER ROLE CURRENT_USER SET idle_in_transaction_session_timeout = '30s';
