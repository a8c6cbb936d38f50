CREATE TABLE "signing_key" (
	"kid" text PRIMARY KEY NOT NULL,
	"alg" text NOT NULL,
	"public_jwk" jsonb NOT NULL,
	"private_key" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"retired_at" timestamp with time zone,
	"publish_until" timestamp with time zone,
	CONSTRAINT "signing_key_alg_check" CHECK ("signing_key"."alg" in ('EdDSA', 'ES256', 'RS256')),
	CONSTRAINT "signing_key_retired_check" CHECK (("signing_key"."retired_at" is null) = ("signing_key"."publish_until" is null))
);
--> statement-breakpoint
CREATE UNIQUE INDEX "signing_key_one_current_key" ON "signing_key" USING btree (("retired_at" is null)) WHERE "signing_key"."retired_at" is null;--> statement-breakpoint
CREATE INDEX "signing_key_publish_until_idx" ON "signing_key" USING btree ("publish_until");