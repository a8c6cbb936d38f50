// PM2 on a plain host: one API process per core in cluster mode (sharing one
// port), Caddy in front on the same host (API_UPSTREAMS=127.0.0.1:3000).
//
//   npm ci && npm run build
//   pm2 start ecosystem.config.cjs          # first start
//   pm2 reload ecosystem.config.cjs         # zero-downtime restart, one process at a time
//
// Graceful reload: PM2 starts the new process and routes to it only after it
// sent `ready` (server.ts does, right after listen: wait_ready), then sends
// SIGINT to the old one, which stops accepting, finishes its in-flight requests
// and closes PostgreSQL/Redis within SHUTDOWN_GRACE_MS (close-with-grace).
// kill_timeout is longer, so PM2's SIGKILL only ever hits a process that hangs.
const shutdownGraceMs = Number(process.env.SHUTDOWN_GRACE_MS ?? 10_000)

module.exports = {
  apps: [
    {
      name: 'fastify-auth-backend',
      // .env in this folder is read by the app (dotenv); PM2's env below wins over it.
      cwd: __dirname,
      script: 'dist/server.js',
      exec_mode: 'cluster',
      instances: process.env.WEB_CONCURRENCY ? Number(process.env.WEB_CONCURRENCY) : 'max',
      wait_ready: true,
      // First start of a process: migrations (unless a job runs them) and the worker pools.
      listen_timeout: 30_000,
      kill_timeout: shutdownGraceMs + 5_000,
      // A crash loop backs off instead of spinning.
      exp_backoff_restart_delay: 200,
      max_memory_restart: process.env.MAX_MEMORY_RESTART ?? '768M',
      merge_logs: true,
      env: {
        NODE_ENV: 'production',
        // Several processes: refuses in-process stores (REDIS_URL and DATABASE_URL are required).
        CLUSTER_MODE: 'true',
        HOST: '127.0.0.1',
        PORT: process.env.PORT ?? '3000',
        // Caddy on this host is the only proxy whose X-Forwarded-For is believed.
        TRUST_PROXY: '127.0.0.1,::1',
        SHUTDOWN_GRACE_MS: String(shutdownGraceMs)
      }
    }
  ]
}
