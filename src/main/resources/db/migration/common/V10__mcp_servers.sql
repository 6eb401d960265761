-- MCP servers (issue 15): per org, the Streamable HTTP endpoints whose tools the org's sessions
-- may call. `headers` is a JSON object of header name to template; a template may reference the
-- org's vault by name (see mcp.SecretHeaders), and credential headers must (the value is resolved at call time
-- and stored only encrypted, in org_secrets). No secret's value is ever stored here.

CREATE TABLE mcp_servers (
  org_id      VARCHAR(64)   NOT NULL REFERENCES orgs(id),
  name        VARCHAR(32)   NOT NULL,
  url         VARCHAR(2048) NOT NULL,
  headers     TEXT          NOT NULL,
  created_at  TIMESTAMP WITH TIME ZONE NOT NULL,
  updated_at  TIMESTAMP WITH TIME ZONE NOT NULL,
  PRIMARY KEY (org_id, name)
);
