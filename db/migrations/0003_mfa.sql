CREATE TABLE "mfa_factor" (
	"factor_id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"type" text DEFAULT 'totp' NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"secret" text NOT NULL,
	"last_used_step" bigint,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"verified_at" timestamp with time zone,
	"last_used_at" timestamp with time zone,
	CONSTRAINT "mfa_factor_type_check" CHECK ("mfa_factor"."type" in ('totp')),
	CONSTRAINT "mfa_factor_status_check" CHECK ("mfa_factor"."status" in ('pending', 'verified'))
);
--> statement-breakpoint
CREATE TABLE "mfa_recovery_code" (
	"code_id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"code_hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"used_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "group" ADD COLUMN "require_mfa" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "session" ADD COLUMN "amr" text DEFAULT 'pwd' NOT NULL;--> statement-breakpoint
ALTER TABLE "session" ADD COLUMN "aal" smallint DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "mfa_factor" ADD CONSTRAINT "mfa_factor_user_id_user_user_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."user"("user_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "mfa_recovery_code" ADD CONSTRAINT "mfa_recovery_code_user_id_user_user_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."user"("user_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "mfa_factor_user_id_idx" ON "mfa_factor" USING btree ("user_id");--> statement-breakpoint
CREATE UNIQUE INDEX "mfa_recovery_code_user_hash_key" ON "mfa_recovery_code" USING btree ("user_id","code_hash");--> statement-breakpoint
CREATE INDEX "mfa_recovery_code_unused_idx" ON "mfa_recovery_code" USING btree ("user_id") WHERE used_at is null;--> statement-breakpoint
ALTER TABLE "session" ADD CONSTRAINT "session_aal_check" CHECK ("session"."aal" in (1, 2));