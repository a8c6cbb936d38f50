import t from 'tap'
import { startRedisSentinels, waitFor } from '../helpers/redis-server.ts'
import { failoverScenario, redisHaSkipReason } from '../helpers/redis-ha.ts'

// A master, a replica, three Sentinels and a failover: bounded all the same.
t.setTimeout(120_000)

t.test('SR-20, SR-41: Sentinel promotes the replica of a killed master; nothing fails open and no audit row is lost', { skip: redisHaSkipReason() }, async (t) => {
  const redis = await startRedisSentinels(t)
  await failoverScenario(t, { REDIS_SENTINELS: redis.addresses, REDIS_SENTINEL_NAME: redis.name }, () => ({
    async kill () {
      t.equal(await redis.masterPort(), redis.master.port, 'the Sentinels name the first master')
      await redis.master.kill()
    },
    async promoted () {
      await waitFor('the Sentinels to promote the replica', 30_000, async () => (await redis.masterPort()) === redis.replica.port)
      t.match(String(await redis.replica.command('INFO', 'replication')), /role:master/, 'the replica is the master now')
    }
  }))
})
