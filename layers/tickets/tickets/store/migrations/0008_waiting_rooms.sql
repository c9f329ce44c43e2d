-- Waiting rooms: an event's admission pace. The queue itself (entries, arrival counters, the
-- admission cursor) lives in DynamoDB (QueueTable, tickets/store/queue_records.py), so that
-- joining and polling never reach PostgreSQL; only the settings, read once per environment,
-- and the stock the cursor is gated by (functions/70_queue.sql, once a second per event) do.

CREATE TABLE waiting_rooms (
    event_id           uuid PRIMARY KEY REFERENCES events,
    admit_per_minute   integer NOT NULL CHECK (admit_per_minute BETWEEN 1 AND 100000),
    admission_seconds  integer NOT NULL CHECK (admission_seconds BETWEEN 30 AND 3600)
);
