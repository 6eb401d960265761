-- Org-wide files (/memory, /skills): the current version of each file, every version ever
-- written, and the outcome of every agent tool call that wrote, keyed by (session, call) so that
-- a call replayed after a crash is answered from here instead of writing twice.

-- Whether the org's agents may write /skills (people curate skills through the API).
ALTER TABLE orgs ADD COLUMN agents_write_skills BOOLEAN DEFAULT FALSE NOT NULL;

CREATE TABLE org_files (
  org_id      VARCHAR(64)   NOT NULL,
  namespace   VARCHAR(16)   NOT NULL,
  path        VARCHAR(1024) NOT NULL,
  content     VARCHAR,                 -- NULL: deleted (the version counter lives on)
  version     BIGINT        NOT NULL,
  size_bytes  BIGINT        NOT NULL,
  updated_at  TIMESTAMP WITH TIME ZONE NOT NULL,
  updated_by  VARCHAR(256),
  session_id  VARCHAR(64),
  PRIMARY KEY (org_id, namespace, path)
);

CREATE TABLE org_file_versions (
  org_id      VARCHAR(64)   NOT NULL,
  namespace   VARCHAR(16)   NOT NULL,
  path        VARCHAR(1024) NOT NULL,
  version     BIGINT        NOT NULL,
  op          VARCHAR(16)   NOT NULL,  -- write, edit, delete, rename
  content     VARCHAR,
  size_bytes  BIGINT        NOT NULL,
  updated_at  TIMESTAMP WITH TIME ZONE NOT NULL,
  updated_by  VARCHAR(256),
  session_id  VARCHAR(64),
  call_id     VARCHAR(128),
  PRIMARY KEY (org_id, namespace, path, version)
);

CREATE TABLE org_file_ops (
  session_id  VARCHAR(64)   NOT NULL,
  call_id     VARCHAR(128)  NOT NULL,
  org_id      VARCHAR(64)   NOT NULL,
  outcome     VARCHAR       NOT NULL,  -- JSON of the reply the call got
  created_at  TIMESTAMP WITH TIME ZONE NOT NULL,
  PRIMARY KEY (session_id, call_id)
);
