-- Each session's current sandbox (issue 13), so the sandbox sweep (SandboxSweeper) can tell the
-- sandboxes of running sessions from those of sessions that ended and from ones no session holds.
ALTER TABLE session_index ADD COLUMN sandbox_id VARCHAR(128);
CREATE INDEX session_index_sandbox ON session_index (sandbox_id);
