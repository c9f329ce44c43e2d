-- The database roles: the functions sign in as a role that can run the application's entry
-- points and nothing else. (Expand only: nothing the running code uses changes.)
--
--   tickets_owner  NOLOGIN, no superuser: owns every table, sequence and function of the schema.
--                  The migrator hands each object to it after every run (../privileges.sql), so
--                  the entry points, SECURITY DEFINER, run with its rights and no more.
--   tickets_app    What the functions sign in as: EXECUTE on the entry points, nothing else (no
--                  table, sequence, CREATE or TEMP). Its password is set by the deploy from the
--                  stack's AppDatabaseSecret (MigrateFunction); locally it has none.
--
-- The migrator (whoever runs this: the master user on AWS) becomes a member of tickets_owner, so
-- that later migrations may change what tickets_owner owns. Roles belong to the cluster, not
-- to the database: each is created only when missing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tickets_owner') THEN
        CREATE ROLE tickets_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tickets_app') THEN
        CREATE ROLE tickets_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
    END IF;
END
$$;
-- PostgreSQL 16 records how a membership may be used: the migrator needs to inherit
-- tickets_owner's rights (to alter what it owns) and to hand objects to it (SET). (Before 16,
-- a plain GRANT gives both.)
DO $$
BEGIN
    IF current_setting('server_version_num')::integer >= 160000 THEN
        EXECUTE 'GRANT tickets_owner TO CURRENT_USER WITH INHERIT TRUE, SET TRUE';
    ELSE
        GRANT tickets_owner TO CURRENT_USER;
    END IF;
END
$$;

-- tickets_owner may own objects in the schema; nobody else may create any, nor temporary tables.
GRANT USAGE, CREATE ON SCHEMA public TO tickets_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO tickets_app;
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO tickets_app', current_database());
END
$$;
-- A function the migrator creates is nobody's to execute until ../privileges.sql says so.
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- Timeouts live on the role, never in a session SET (which pins RDS Proxy connections), as in
-- 0002 for the migrator.
ALTER ROLE tickets_app SET statement_timeout = '5s';  -- below every function's timeout (see 0003)
ALTER ROLE tickets_app SET idle_in_transaction_session_timeout = '30s';
