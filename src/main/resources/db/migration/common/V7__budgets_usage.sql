-- Budgets and usage (issue 12). An org's per-session budget: JSON {"maxTokens", "maxTurns",
-- "onExceeded"} (see Budget), or NULL for none. Token usage per org and UTC day, added to by each
-- node in small batches (UsageLedger).

ALTER TABLE orgs ADD COLUMN budget_policy VARCHAR(1000);

CREATE TABLE org_usage_daily (
  org_id              VARCHAR(64) NOT NULL,
  usage_day           DATE        NOT NULL,
  input_tokens        BIGINT      NOT NULL,
  output_tokens       BIGINT      NOT NULL,
  cache_read_tokens   BIGINT      NOT NULL,
  cache_write_tokens  BIGINT      NOT NULL,
  turns               BIGINT      NOT NULL,
  PRIMARY KEY (org_id, usage_day)
);
