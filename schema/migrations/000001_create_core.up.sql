-- Core tables of the stager. Types and columns must agree with schema/pollux.yaml
-- (TestCatalogueMatchesDescription checks it on a freshly migrated database).

CREATE TYPE request_type AS ENUM ('PUT', 'GET', 'PREPARE_TO_GET', 'PUTDONE', 'RM');
CREATE TYPE request_status AS ENUM ('PENDING', 'FINISHED', 'FAILED');
CREATE TYPE subrequest_status AS ENUM (
    'START', 'RESTART', 'RETRY', 'WAITSUBREQ', 'WAITSCHED', 'SCHEDULED', 'READY', 'FINISHED', 'FAILED');
CREATE TYPE disk_copy_status AS ENUM ('STAGEOUT', 'STAGED', 'INVALID', 'BEINGDELETED');
CREATE TYPE disk_server_status AS ENUM ('PRODUCTION', 'DRAINING', 'DISABLED');
CREATE TYPE file_system_status AS ENUM ('PRODUCTION', 'DRAINING', 'DISABLED');

CREATE TABLE service_class (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    description         text NOT NULL DEFAULT '',
    max_file_size_bytes bigint NOT NULL DEFAULT 0 CHECK (max_file_size_bytes >= 0),
    created_at          timestamptz NOT NULL DEFAULT now()
);
INSERT INTO service_class (name, description) VALUES ('default', 'Default service class');

CREATE TABLE disk_server (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    url           text NOT NULL,
    status        disk_server_status NOT NULL DEFAULT 'PRODUCTION',
    registered_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    load          double precision NOT NULL DEFAULT 0
);

CREATE TABLE file_system (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    disk_server_id   bigint NOT NULL REFERENCES disk_server (id) ON DELETE CASCADE,
    mount_point      text NOT NULL,
    service_class_id bigint NOT NULL REFERENCES service_class (id),
    status           file_system_status NOT NULL DEFAULT 'PRODUCTION',
    capacity_bytes   bigint NOT NULL DEFAULT 0 CHECK (capacity_bytes >= 0),
    free_bytes       bigint NOT NULL DEFAULT 0 CHECK (free_bytes >= 0),
    heartbeat_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (disk_server_id, mount_point)
);

CREATE TABLE file (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    path             text NOT NULL UNIQUE CHECK (path ~ '^/' AND path !~ '(^|/)\.\.?(/|$)' AND path !~ '//'),
    service_class_id bigint NOT NULL REFERENCES service_class (id),
    size_bytes       bigint CHECK (size_bytes >= 0),
    checksum_adler32 text CHECK (checksum_adler32 ~ '^[0-9a-f]{8}$'),
    owner            text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE disk_copy (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_id          bigint NOT NULL REFERENCES file (id) ON DELETE CASCADE,
    file_system_id   bigint REFERENCES file_system (id),
    status           disk_copy_status NOT NULL DEFAULT 'STAGEOUT',
    size_bytes       bigint CHECK (size_bytes >= 0),
    checksum_adler32 text CHECK (checksum_adler32 ~ '^[0-9a-f]{8}$'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX disk_copy_file_id_idx ON disk_copy (file_id);
CREATE INDEX disk_copy_invalid_idx ON disk_copy (file_system_id) WHERE status = 'INVALID';

CREATE TABLE request (
    id               uuid PRIMARY KEY,
    type             request_type NOT NULL,
    status           request_status NOT NULL DEFAULT 'PENDING',
    service_class_id bigint NOT NULL REFERENCES service_class (id),
    user_name        text NOT NULL,
    user_tag         text NOT NULL DEFAULT '',
    client_host      text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subrequest (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id    uuid NOT NULL REFERENCES request (id) ON DELETE CASCADE,
    path          text NOT NULL,
    status        subrequest_status NOT NULL DEFAULT 'START',
    file_id       bigint REFERENCES file (id) ON DELETE SET NULL,
    disk_copy_id  bigint REFERENCES disk_copy (id) ON DELETE SET NULL,
    parent_id     bigint REFERENCES subrequest (id) ON DELETE SET NULL,
    retries       integer NOT NULL DEFAULT 0,
    error_code    text,
    error_message text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subrequest_request_id_idx ON subrequest (request_id);
-- The stager claims by status; these partial indexes stay as small as the queues they serve.
CREATE INDEX subrequest_new_idx ON subrequest (id) WHERE status IN ('START', 'RESTART', 'RETRY');
CREATE INDEX subrequest_waitsched_idx ON subrequest (id) WHERE status = 'WAITSCHED';
CREATE INDEX subrequest_waitsubreq_idx ON subrequest (parent_id) WHERE status = 'WAITSUBREQ';

CREATE TABLE daemon_instance (
    id           uuid PRIMARY KEY,
    role         text NOT NULL,
    host         text NOT NULL,
    pid          integer NOT NULL,
    version      text NOT NULL,
    pools        jsonb NOT NULL DEFAULT '{}',
    admin_url    text NOT NULL DEFAULT '',
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz
);
CREATE INDEX daemon_instance_heartbeat_at_idx ON daemon_instance (heartbeat_at);

CREATE TABLE system_event (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,
    daemon      text NOT NULL DEFAULT '',
    instance_id uuid,
    message     text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX system_event_at_idx ON system_event (at);

CREATE TABLE logic_bundle (
    version    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    checksum   text NOT NULL,
    catalog_checksum text NOT NULL,
    files      jsonb NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL,
    note       text NOT NULL DEFAULT ''
);
