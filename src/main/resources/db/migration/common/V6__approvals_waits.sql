-- Approvals and waits (issue 11). An org's approval policy: a JSON array of patterns (see
-- ApprovalPolicy). A waiting session's earliest wait deadline, so that a node wakes it when it
-- is due even if it passivated or its node went away (WaitWakeups).

ALTER TABLE orgs ADD COLUMN approval_policy VARCHAR(30000) DEFAULT '[]' NOT NULL;

ALTER TABLE session_index ADD COLUMN wake_at TIMESTAMP WITH TIME ZONE;
CREATE INDEX session_index_wake ON session_index (wake_at);
