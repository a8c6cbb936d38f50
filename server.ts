import 'dotenv/config'
import closeWithGrace from 'close-with-grace'
import { buildApp, drain } from './app.ts'
import { ConfigError, loadConfig, withGeneratedSecret } from './config.ts'
import { banner } from './startup.ts'

let config
try {
  config = withGeneratedSecret(loadConfig())
} catch (error) {
  if (error instanceof ConfigError) {
    for (const problem of error.problems) console.error(`config: ${problem}`)
    process.exit(1)
  }
  throw error
}

const app = await buildApp(config)

// SIGTERM/SIGINT: stop accepting, drain open connections, let in-flight requests
// finish, flush and close stores, exit 0, all within SHUTDOWN_GRACE_MS (SR-42).
let closing = false
const shutdown = closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
  closing = true
  if (err) {
    app.log.error({ err }, 'fatal error, closing')
  } else {
    app.log.info({ signal: signal ?? 'shutdown message' }, 'closing')
    await drain(app, config.SHUTDOWN_DRAIN_MS)
  }
  await app.close()
})
// PM2 asks with a message instead of a signal when shutdown_with_message is set (and on Windows).
process.on('message', (message) => {
  if (message === 'shutdown' && !closing) shutdown.close()
})

await app.listen({ port: config.PORT, host: config.HOST })
if (config.NODE_ENV === 'development') console.log(banner(config, (app.server.address() as { port: number }).port))
// PM2 cluster mode waits for this before sending traffic (wait_ready).
if (process.send) process.send('ready')
