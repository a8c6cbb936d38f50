ALTER TABLE "session" ADD COLUMN "device" text;--> statement-breakpoint
-- device_name held the parsed user agent until now: it moves to device, and device_name keeps only the names clients give.
UPDATE "session" SET "device" = "device_name", "device_name" = NULL WHERE "device_name" IS NOT NULL;
