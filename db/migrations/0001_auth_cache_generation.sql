CREATE TABLE "auth_cache_state" (
	"id" smallint PRIMARY KEY NOT NULL,
	"generation" bigint DEFAULT 0 NOT NULL,
	"redis_run_id" text,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "auth_cache_state_single_row_check" CHECK ("auth_cache_state"."id" = 1)
);
