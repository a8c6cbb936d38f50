-- Hand-written (drizzle-kit cannot express partitioning): activity_log becomes a
-- table partitioned by RANGE (created_at). db/schema/activity.ts declares the
-- parent's columns, primary key (log_id, created_at) and indexes, which is what
-- drizzle-kit compares; 0002_snapshot.json records them.
--
-- The existing table is not copied: it is renamed activity_log_legacy and attached
-- as the partition [MINVALUE, boundary), boundary being the start of the next UTC
-- month, so every row it holds and every row written until then belongs to it.
-- ATTACH normally scans the table to prove that; a validated CHECK (created_at <
-- boundary) proves it instead, and the indexes the parent declares are found on
-- the old table and adopted rather than built. What needs a scan or a build (the
-- CHECK's validation, the unique index on (log_id, created_at)) is done before
-- this transaction by db/migrate.ts on PostgreSQL, without blocking writes
-- (VALIDATE CONSTRAINT, CREATE INDEX CONCURRENTLY); when it was not (PGlite, or a
-- migration run by other means), this block does it itself, which on a small
-- table costs nothing. What remains here is catalog work: the exclusive locks it
-- takes last milliseconds whatever the table's size (docs/activity-log.md).
--
-- activity_log_default catches rows no range covers, so an insert never fails;
-- plugins/app/activity/partitions.ts creates the partitions ahead (moving any
-- default rows into them) and drops those past ACTIVITY_RETENTION_DAYS.
DO $$
DECLARE
  boundary timestamptz;
  prepared text;
  idx record;
BEGIN
  IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('public.activity_log')) = 'p' THEN
    RETURN;
  END IF;

  SELECT pg_get_constraintdef(oid) INTO prepared FROM pg_constraint
    WHERE conrelid = 'public.activity_log'::regclass AND conname = 'activity_log_legacy_range' AND convalidated;
  IF prepared IS NOT NULL THEN
    boundary := substring(prepared FROM '''([^'']+)''')::timestamptz;
  ELSE
    boundary := (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
    ALTER TABLE activity_log DROP CONSTRAINT IF EXISTS activity_log_legacy_range;
    EXECUTE format('ALTER TABLE activity_log ADD CONSTRAINT activity_log_legacy_range CHECK (created_at < %L::timestamptz)', boundary);
  END IF;

  -- A failed CREATE INDEX CONCURRENTLY leaves an invalid index behind.
  IF NOT EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass('public.activity_log_legacy_pkey') AND indisvalid) THEN
    DROP INDEX IF EXISTS activity_log_legacy_pkey;
    CREATE UNIQUE INDEX activity_log_legacy_pkey ON activity_log (log_id, created_at);
  END IF;
  ALTER TABLE activity_log DROP CONSTRAINT activity_log_pkey;
  ALTER TABLE activity_log ADD CONSTRAINT activity_log_legacy_pkey PRIMARY KEY USING INDEX activity_log_legacy_pkey;

  ALTER TABLE activity_log RENAME TO activity_log_legacy;
  FOR idx IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE i.indrelid = 'public.activity_log_legacy'::regclass AND c.relname LIKE 'activity_log\_%\_idx' LOOP
    EXECUTE format('ALTER INDEX %I RENAME TO %I', idx.relname, 'activity_log_legacy_' || substr(idx.relname, length('activity_log_') + 1));
  END LOOP;

  CREATE TABLE activity_log (
    "log_id" uuid DEFAULT gen_random_uuid() NOT NULL,
    "user_id" uuid,
    "level" text NOT NULL,
    "action" text NOT NULL,
    "module" text NOT NULL,
    "message" text,
    "ip_address" text,
    "user_agent" text,
    "device" text,
    "browser" text,
    "os" text,
    "endpoint" text,
    "method" text,
    "status_code" integer,
    "request_id" text,
    "session_id" uuid,
    "target_user_id" uuid,
    "duration_ms" integer,
    "metadata" jsonb,
    "created_at" timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT "activity_log_pkey" PRIMARY KEY ("log_id", "created_at"),
    CONSTRAINT "activity_log_level_check" CHECK ("activity_log"."level" in ('debug', 'info', 'warning', 'error', 'critical'))
  ) PARTITION BY RANGE ("created_at");
  ALTER TABLE activity_log ADD CONSTRAINT "activity_log_user_id_user_user_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."user"("user_id") ON DELETE set null ON UPDATE no action;
  CREATE INDEX "activity_log_created_at_log_id_idx" ON activity_log USING btree ("created_at" DESC NULLS FIRST, "log_id" DESC NULLS FIRST);
  CREATE INDEX "activity_log_user_id_created_at_idx" ON activity_log USING btree ("user_id", "created_at" DESC NULLS FIRST);
  CREATE INDEX "activity_log_action_created_at_idx" ON activity_log USING btree ("action", "created_at" DESC NULLS FIRST);
  CREATE INDEX "activity_log_module_created_at_idx" ON activity_log USING btree ("module", "created_at" DESC NULLS FIRST);
  CREATE INDEX "activity_log_level_created_at_idx" ON activity_log USING btree ("level", "created_at" DESC NULLS FIRST);
  CREATE INDEX "activity_log_ip_address_created_at_idx" ON activity_log USING btree ("ip_address", "created_at" DESC NULLS FIRST);

  EXECUTE format('ALTER TABLE activity_log ATTACH PARTITION activity_log_legacy FOR VALUES FROM (MINVALUE) TO (%L)', boundary);
  -- The partition bound now says the same; the CHECK would only cost a test per insert.
  ALTER TABLE activity_log_legacy DROP CONSTRAINT activity_log_legacy_range;
  CREATE TABLE activity_log_default PARTITION OF activity_log DEFAULT;
END
$$;
