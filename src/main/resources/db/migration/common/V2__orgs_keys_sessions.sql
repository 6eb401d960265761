-- Outboard's own tables. Portable SQL: the same script runs on PostgreSQL and on H2.

CREATE TABLE orgs (
  id          VARCHAR(64)  PRIMARY KEY,
  name        VARCHAR(256) NOT NULL,
  created_at  TIMESTAMP WITH TIME ZONE NOT NULL
);

-- An API key is "ob_<key_id>_<secret>"; only the SHA-256 of the secret is stored.
CREATE TABLE api_keys (
  key_id       VARCHAR(32)  PRIMARY KEY,
  org_id       VARCHAR(64)  NOT NULL REFERENCES orgs(id),
  secret_hash  VARCHAR(64)  NOT NULL,
  created_at   TIMESTAMP WITH TIME ZONE NOT NULL,
  revoked_at   TIMESTAMP WITH TIME ZONE
);

-- Read side of the sessions list. Written when a session is created and whenever its status
-- changes; `seq` (the journal sequence number of that change) keeps late writes from going back.
CREATE TABLE session_index (
  id          VARCHAR(64)  PRIMARY KEY,
  org_id      VARCHAR(64)  NOT NULL,
  user_name   VARCHAR(256),
  status      VARCHAR(16)  NOT NULL,
  seq         BIGINT       NOT NULL,
  created_at  TIMESTAMP WITH TIME ZONE NOT NULL,
  updated_at  TIMESTAMP WITH TIME ZONE NOT NULL,
  summary     VARCHAR      NOT NULL
);
CREATE INDEX session_index_org_created ON session_index (org_id, created_at, id);

CREATE TABLE idempotency_keys (
  org_id      VARCHAR(64)  NOT NULL,
  idem_key    VARCHAR(256) NOT NULL,
  session_id  VARCHAR(64)  NOT NULL,
  created_at  TIMESTAMP WITH TIME ZONE NOT NULL,
  PRIMARY KEY (org_id, idem_key)
);
