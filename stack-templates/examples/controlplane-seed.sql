-- The demo's "control plane": the instance metadata a DBaaS keeps, plus a queue archive.
-- `make demo` creates the database `controlplane` on the local server and runs this once.
CREATE TABLE organizations (id bigint PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE instances (
  id bigint PRIMARY KEY,
  organization_id bigint NOT NULL REFERENCES organizations,
  name text NOT NULL,
  cpu int NOT NULL, memory_gb int NOT NULL, storage_gb int NOT NULL,
  environment text NOT NULL, state text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE queue_archive (msg_id bigint PRIMARY KEY, enqueued_at timestamptz NOT NULL, message jsonb NOT NULL);

INSERT INTO organizations (id, name) VALUES (1, 'acme'), (2, 'globex'), (3, 'initech'), (4, 'umbrella');
INSERT INTO instances (id, organization_id, name, cpu, memory_gb, storage_gb, environment, state, created_at) VALUES
  (1, 1, 'acme-prod', 4, 16, 100, 'prod', 'Up', now() - interval '90 days'),
  (2, 1, 'acme-analytics', 8, 32, 500, 'prod', 'Up', now() - interval '30 days'),
  (3, 1, 'acme-dev', 1, 2, 10, 'dev', 'Up', now() - interval '7 days'),
  (4, 2, 'globex-prod', 8, 32, 500, 'prod', 'Up', now() - interval '60 days'),
  (5, 2, 'globex-staging', 2, 4, 50, 'test', 'Stopped', now() - interval '20 days'),
  (6, 3, 'initech-reports', 2, 8, 100, 'prod', 'Up', now() - interval '3 days');
INSERT INTO queue_archive (msg_id, enqueued_at, message)
  SELECT id, created_at, jsonb_build_object('event', 'instance.created', 'instance_id', id, 'organization_id', organization_id)
  FROM instances;

-- The warehouse reads through this role only.
CREATE ROLE cp_reader LOGIN PASSWORD 'demo-reader-pw';
GRANT SELECT ON ALL TABLES IN SCHEMA public TO cp_reader;

-- pgmq's archive of instance events, as the customer-warehouse example imports it.
CREATE SCHEMA pgmq;
CREATE TABLE pgmq.a_events (msg_id bigint PRIMARY KEY, read_ct int NOT NULL DEFAULT 0,
  enqueued_at timestamptz NOT NULL, archived_at timestamptz NOT NULL DEFAULT now(), vt timestamptz NOT NULL, message jsonb);
INSERT INTO pgmq.a_events (msg_id, enqueued_at, vt, message)
  SELECT msg_id, enqueued_at, enqueued_at, message FROM queue_archive;
GRANT USAGE ON SCHEMA pgmq TO cp_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA pgmq TO cp_reader;
