import 'dotenv/config'
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
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

// SIGTERM/SIGINT: stop accepting, let in-flight requests finish, flush and close stores, exit 0 (SR-42).
closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'fatal error, closing')
  else app.log.info({ signal }, 'closing')
  await app.close()
})

await app.listen({ port: config.PORT, host: config.HOST })
if (config.NODE_ENV === 'development') console.log(banner(config, (app.server.address() as { port: number }).port))
// PM2 cluster mode waits for this before sending traffic (wait_ready).
if (process.send) process.send('ready')
