-- The last hibernation snapshot of each session's sandbox (DESIGN.md §4): a tar archive of its
-- /workspace, so a sandbox lost after the session restarted or moved to another node comes back
-- with its files. One row per session, replaced on every hibernation, deleted with the sandbox.
-- BYTEA is PostgreSQL's binary type and an alias of BINARY VARYING in H2 2.x.

CREATE TABLE sandbox_snapshots (
  session_id  VARCHAR(64)  NOT NULL PRIMARY KEY,
  sandbox_id  VARCHAR(128) NOT NULL,
  snapshot    BYTEA        NOT NULL,
  taken_at    TIMESTAMP WITH TIME ZONE NOT NULL
);
