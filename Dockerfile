# syntax=docker/dockerfile:1
# The API image: TypeScript compiled in a build stage with the dev
# dependencies, run from a slim stage with production dependencies only, as
# the unprivileged `node` user. docker compose (compose.yaml) builds it.

# ---- build: dev dependencies, tsc, assets -----------------------------------
FROM node:24-bookworm-slim AS build
WORKDIR /app
# patches/: npm ci's postinstall applies them (patch-package; see docs/performance.md).
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build

# ---- runtime: production dependencies and the compiled code ------------------
FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/app/data
WORKDIR /app
COPY package.json package-lock.json ./
COPY patches ./patches
# DATA_DIR is created here so a named volume mounted on it inherits the owner.
RUN npm ci --omit=dev --no-audit --no-fund \
    && npm cache clean --force \
    && mkdir -p /app/data \
    && chown node:node /app/data
COPY --from=build /app/dist ./dist
USER node
EXPOSE 3000
# Liveness (GET /health) with node itself: the slim image has no curl or wget.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# server.ts handles SIGTERM itself (close-with-grace, SHUTDOWN_GRACE_MS); the
# orchestrator's stop timeout must be longer (compose: stop_grace_period).
STOPSIGNAL SIGTERM
CMD ["node", "dist/server.js"]
