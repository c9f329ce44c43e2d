-- JIT off for the roles the functions and the migrator sign in as. Every statement here is a
-- short OLTP query, and PostgreSQL compiles a statement with JIT when its plan's estimated cost
-- passes jit_above_cost, which a LIMIT-ed index scan with a correlated subquery can pass by far:
-- measured, best available's 0.1 ms read of the front seats spent 0.35 s compiling. On the
-- roles, never a session SET (that pins RDS Proxy connections), as 0002 and 0005 set timeouts.
ALTER ROLE CURRENT_USER SET jit = off;
ALTER ROLE tickets_app SET jit = off;
