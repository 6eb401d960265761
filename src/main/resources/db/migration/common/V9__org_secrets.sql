-- The vault (issue 15): an org's named secrets, encrypted with AES-256-GCM (see vault.VaultKey).
-- `nonce` is the 96-bit nonce of the last write, `ciphertext` the value with its 128-bit tag
-- appended, sealed with the org id and the name as associated data; `key_id` says which key
-- sealed it (a short fingerprint, never the key). Values are never stored in the clear.

CREATE TABLE org_secrets (
  org_id      VARCHAR(64)  NOT NULL REFERENCES orgs(id),
  name        VARCHAR(64)  NOT NULL,
  nonce       BYTEA        NOT NULL,
  ciphertext  BYTEA        NOT NULL,
  key_id      VARCHAR(32)  NOT NULL,
  created_at  TIMESTAMP WITH TIME ZONE NOT NULL,
  updated_at  TIMESTAMP WITH TIME ZONE NOT NULL,
  PRIMARY KEY (org_id, name)
);
