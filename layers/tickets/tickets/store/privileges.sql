-- Applied after every migration run (tickets/store/migrate.py), whatever the run changed: hands
-- every object of the schema to tickets_owner (migrations/0005_roles.sql) and lets tickets_app
-- execute the entry points and nothing else.
--
-- An entry point is a function declared SECURITY DEFINER SET search_path = public, pg_temp: one
-- the application calls (tickets.store.db.call). It runs with tickets_owner's rights; every other
-- function, table and sequence is the entry points' business only. Objects of extensions are
-- left alone.
DO $$
DECLARE
    v record;
BEGIN
    FOR v IN
        SELECT c.oid::regclass AS relation,
               CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                              WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END AS kind,
               c.relowner <> 'tickets_owner'::regrole AS foreign_owner
        FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))
    LOOP
        IF v.foreign_owner THEN
            EXECUTE format('ALTER %s %s OWNER TO tickets_owner', v.kind, v.relation);
        END IF;
        EXECUTE format('REVOKE ALL ON %s %s FROM PUBLIC, tickets_app',
                       CASE v.kind WHEN 'SEQUENCE' THEN 'SEQUENCE' ELSE 'TABLE' END, v.relation);
    END LOOP;

    FOR v IN
        SELECT p.oid::regprocedure AS routine, p.prosecdef AS entry_point,
               p.proowner <> 'tickets_owner'::regrole AS foreign_owner
        FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND p.prokind = 'f'
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.deptype = 'e')
    LOOP
        IF v.foreign_owner THEN
            EXECUTE format('ALTER FUNCTION %s OWNER TO tickets_owner', v.routine);
        END IF;
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, tickets_app', v.routine);
        IF v.entry_point THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO tickets_app', v.routine);
        END IF;
    END LOOP;
END
$$;
