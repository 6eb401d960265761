-- Status webhooks (issue 11): one endpoint per org, and an outbox of the deliveries still owed,
-- written in the same transaction as the sessions-list change it reports, so that a delivery
-- survives any restart. `event_id` is the session id and the journal sequence number of the
-- change: a change reported twice (a session recovering) is one row.

CREATE TABLE org_webhooks (
  org_id      VARCHAR(64)   PRIMARY KEY REFERENCES orgs(id),
  url         VARCHAR(2048) NOT NULL,
  secret      VARCHAR(256)  NOT NULL,
  updated_at  TIMESTAMP WITH TIME ZONE NOT NULL
);

CREATE TABLE webhook_outbox (
  event_id         VARCHAR(96)  PRIMARY KEY,
  org_id           VARCHAR(64)  NOT NULL,
  payload          VARCHAR      NOT NULL,
  attempts         INTEGER      NOT NULL,
  next_attempt_at  TIMESTAMP WITH TIME ZONE NOT NULL,
  created_at       TIMESTAMP WITH TIME ZONE NOT NULL,
  delivered_at     TIMESTAMP WITH TIME ZONE,
  failed_at        TIMESTAMP WITH TIME ZONE,
  last_error       VARCHAR(512)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at);
