CREATE TABLE "user" (
	"user_id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"email" text,
	"phone_number" text,
	"user_name" text,
	"password" text,
	"auth_type" text DEFAULT 'email' NOT NULL,
	"user_type" text DEFAULT 'user' NOT NULL,
	"first_name" text,
	"last_name" text,
	"bio" text,
	"country" text,
	"gender" text,
	"dob" date,
	"language" text DEFAULT 'en' NOT NULL,
	"theme" text DEFAULT 'system' NOT NULL,
	"timezone" text DEFAULT 'UTC' NOT NULL,
	"profile_accessibility" text DEFAULT 'public' NOT NULL,
	"profile_picture_url" text,
	"profile_picture_key" text,
	"is_email_verified" boolean DEFAULT false NOT NULL,
	"is_phone_verified" boolean DEFAULT false NOT NULL,
	"is_active" boolean DEFAULT true NOT NULL,
	"status" text DEFAULT 'active' NOT NULL,
	"permission_version" integer DEFAULT 0 NOT NULL,
	"password_changed_at" timestamp with time zone,
	"last_login" timestamp with time zone,
	"deactivated_at" timestamp with time zone,
	"deleted_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_updated" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "user_phone_number_key" UNIQUE("phone_number"),
	CONSTRAINT "user_auth_type_check" CHECK ("user"."auth_type" in ('email', 'phone', 'user_name')),
	CONSTRAINT "user_user_type_check" CHECK ("user"."user_type" in ('user', 'admin', 'super_admin', 'developer', 'business', 'accountant')),
	CONSTRAINT "user_status_check" CHECK ("user"."status" in ('active', 'inactive', 'deleted')),
	CONSTRAINT "user_theme_check" CHECK ("user"."theme" in ('light', 'dark', 'system')),
	CONSTRAINT "user_profile_accessibility_check" CHECK ("user"."profile_accessibility" in ('public', 'private')),
	CONSTRAINT "user_country_check" CHECK ("user"."country" ~ '^[A-Z]{2}$'),
	CONSTRAINT "user_phone_number_check" CHECK ("user"."phone_number" ~ '^\+[1-9][0-9]{6,14}$'),
	CONSTRAINT "user_permission_version_check" CHECK ("user"."permission_version" >= 0)
);
--> statement-breakpoint
CREATE TABLE "group" (
	"group_id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"codename" text NOT NULL,
	"description" text,
	"is_system" boolean DEFAULT false NOT NULL,
	"is_active" boolean DEFAULT true NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_updated" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "group_name_key" UNIQUE("name"),
	CONSTRAINT "group_codename_key" UNIQUE("codename")
);
--> statement-breakpoint
CREATE TABLE "group_permission" (
	"group_id" uuid NOT NULL,
	"permission_id" uuid NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "group_permission_pkey" PRIMARY KEY("group_id","permission_id")
);
--> statement-breakpoint
CREATE TABLE "permission" (
	"permission_id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"codename" text NOT NULL,
	"category" text NOT NULL,
	"description" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_updated" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "permission_codename_key" UNIQUE("codename")
);
--> statement-breakpoint
CREATE TABLE "user_group" (
	"user_id" uuid NOT NULL,
	"group_id" uuid NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "user_group_pkey" PRIMARY KEY("user_id","group_id")
);
--> statement-breakpoint
CREATE TABLE "session" (
	"session_id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"refresh_secret" text NOT NULL,
	"refresh_generation" integer DEFAULT 0 NOT NULL,
	"rotated_at" timestamp with time zone,
	"auth_method" text NOT NULL,
	"device_name" text,
	"ip_address" text,
	"user_agent" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_used_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"revoked_at" timestamp with time zone,
	"revoked_reason" text,
	CONSTRAINT "session_auth_method_check" CHECK ("session"."auth_method" in ('password', 'otp', 'oauth_password')),
	CONSTRAINT "session_refresh_generation_check" CHECK ("session"."refresh_generation" >= 0)
);
--> statement-breakpoint
CREATE TABLE "activity_log" (
	"log_id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
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
	CONSTRAINT "activity_log_level_check" CHECK ("activity_log"."level" in ('debug', 'info', 'warning', 'error', 'critical'))
);
--> statement-breakpoint
CREATE TABLE "media" (
	"media_id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"storage_driver" text NOT NULL,
	"object_key" text NOT NULL,
	"mime_type" text NOT NULL,
	"extension" text,
	"size_bytes" bigint NOT NULL,
	"checksum_sha256" text NOT NULL,
	"original_name" text,
	"purpose" text DEFAULT 'media' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "media_object_key_key" UNIQUE("object_key"),
	CONSTRAINT "media_purpose_check" CHECK ("media"."purpose" in ('media', 'profile_picture')),
	CONSTRAINT "media_size_bytes_check" CHECK ("media"."size_bytes" >= 0)
);
--> statement-breakpoint
ALTER TABLE "group_permission" ADD CONSTRAINT "group_permission_group_id_group_group_id_fk" FOREIGN KEY ("group_id") REFERENCES "public"."group"("group_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "group_permission" ADD CONSTRAINT "group_permission_permission_id_permission_permission_id_fk" FOREIGN KEY ("permission_id") REFERENCES "public"."permission"("permission_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "user_group" ADD CONSTRAINT "user_group_user_id_user_user_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."user"("user_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "user_group" ADD CONSTRAINT "user_group_group_id_group_group_id_fk" FOREIGN KEY ("group_id") REFERENCES "public"."group"("group_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "session" ADD CONSTRAINT "session_user_id_user_user_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."user"("user_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "activity_log" ADD CONSTRAINT "activity_log_user_id_user_user_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."user"("user_id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "media" ADD CONSTRAINT "media_user_id_user_user_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."user"("user_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "user_email_lower_key" ON "user" USING btree (lower("email"));--> statement-breakpoint
CREATE UNIQUE INDEX "user_user_name_lower_key" ON "user" USING btree (lower("user_name"));--> statement-breakpoint
CREATE INDEX "user_created_at_idx" ON "user" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "user_status_is_active_idx" ON "user" USING btree ("status","is_active");--> statement-breakpoint
CREATE INDEX "user_user_type_idx" ON "user" USING btree ("user_type");--> statement-breakpoint
CREATE INDEX "user_auth_type_idx" ON "user" USING btree ("auth_type");--> statement-breakpoint
CREATE INDEX "user_country_idx" ON "user" USING btree ("country");--> statement-breakpoint
CREATE INDEX "user_language_idx" ON "user" USING btree ("language");--> statement-breakpoint
CREATE INDEX "user_last_login_idx" ON "user" USING btree ("last_login");--> statement-breakpoint
CREATE INDEX "group_permission_permission_id_idx" ON "group_permission" USING btree ("permission_id");--> statement-breakpoint
CREATE INDEX "user_group_group_id_idx" ON "user_group" USING btree ("group_id");--> statement-breakpoint
CREATE INDEX "session_user_id_active_idx" ON "session" USING btree ("user_id") WHERE revoked_at is null;--> statement-breakpoint
CREATE INDEX "activity_log_created_at_log_id_idx" ON "activity_log" USING btree ("created_at" DESC NULLS FIRST,"log_id" DESC NULLS FIRST);--> statement-breakpoint
CREATE INDEX "activity_log_user_id_created_at_idx" ON "activity_log" USING btree ("user_id","created_at" DESC NULLS FIRST);--> statement-breakpoint
CREATE INDEX "activity_log_action_created_at_idx" ON "activity_log" USING btree ("action","created_at" DESC NULLS FIRST);--> statement-breakpoint
CREATE INDEX "activity_log_module_created_at_idx" ON "activity_log" USING btree ("module","created_at" DESC NULLS FIRST);--> statement-breakpoint
CREATE INDEX "activity_log_level_created_at_idx" ON "activity_log" USING btree ("level","created_at" DESC NULLS FIRST);--> statement-breakpoint
CREATE INDEX "activity_log_ip_address_created_at_idx" ON "activity_log" USING btree ("ip_address","created_at" DESC NULLS FIRST);--> statement-breakpoint
CREATE INDEX "media_user_id_created_at_idx" ON "media" USING btree ("user_id","created_at" DESC NULLS FIRST);