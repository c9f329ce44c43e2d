-- contract: none released (tier_inventory becomes a read-only view over the counters)
-- Counters that scale: each capacity (a tier's, a quota's) is a counter spread over share rows,
-- so that concurrent reserves lock different rows. The rules are in functions/10_inventory.sql.
-- Shared capacity: quotas over several tiers of one event.

CREATE TABLE counters (
    counter_id  uuid PRIMARY KEY,  -- the tier's or the quota's id
    capacity    integer NOT NULL CHECK (capacity BETWEEN 1 AND 1000000),
    shares      smallint NOT NULL CHECK (shares BETWEEN 1 AND 64)
);

-- sum(free) over a counter's shares = capacity - seats held (live, or lapsed and not yet
-- reclaimed) and sold against it.
CREATE TABLE counter_shares (
    counter_id  uuid NOT NULL REFERENCES counters,
    share       smallint NOT NULL,
    free        integer NOT NULL CHECK (free >= 0),
    PRIMARY KEY (counter_id, share)
);

INSERT INTO counters (counter_id, capacity, shares) SELECT tier_id, capacity, 1 FROM tier_inventory;
INSERT INTO counter_shares (counter_id, share, free) SELECT tier_id, 0, capacity - seats_taken FROM tier_inventory;
DROP TABLE tier_inventory;

CREATE TABLE quotas (
    quota_id  uuid PRIMARY KEY,
    event_id  uuid NOT NULL REFERENCES events,
    position  smallint NOT NULL,
    name      text NOT NULL,
    capacity  integer NOT NULL CHECK (capacity BETWEEN 1 AND 1000000),
    UNIQUE (event_id, position)
);

CREATE TABLE quota_tiers (
    quota_id  uuid NOT NULL REFERENCES quotas,
    tier_id   uuid NOT NULL REFERENCES tiers,
    PRIMARY KEY (quota_id, tier_id)
);
CREATE INDEX quota_tiers_by_tier ON quota_tiers (tier_id);

-- A tier's counter as one row, for people and tests reading the database (never written).
CREATE VIEW tier_inventory AS
    SELECT c.counter_id AS tier_id, c.capacity, c.capacity - sum(s.free)::integer AS seats_taken
    FROM counters c JOIN counter_shares s USING (counter_id)
    WHERE c.counter_id IN (SELECT tier_id FROM tiers)
    GROUP BY c.counter_id, c.capacity;
