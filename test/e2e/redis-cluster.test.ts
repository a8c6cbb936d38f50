import t from 'tap'
import { startRedisCluster, waitFor } from '../helpers/redis-server.ts'
import { failoverScenario, redisHaSkipReason } from '../helpers/redis-ha.ts'

// Six redis-server processes, a cluster created and a failover waited for: bounded all the same.
t.setTimeout(120_000)

t.test('SR-20, SR-41: a 3-master Redis Cluster loses the master of a revoked session; a replica takes over and nothing fails open', { skip: redisHaSkipReason() }, async (t) => {
  const cluster = await startRedisCluster(t, 3)
  let killedPort = 0
  await failoverScenario(t, { REDIS_CLUSTER_NODES: cluster.seeds }, () => ({
    async kill (key) {
      const master = await cluster.masterOf(key)
      t.ok(master, 'the master serving the session entry\'s slot is known')
      killedPort = master!.port
      await master!.kill()
    },
    async promoted () {
      await waitFor('a replica to take over the killed master\'s slots', 30_000, () => cluster.healthy())
      const ranges = await cluster.nodes.find((n) => n.running)!.command('CLUSTER', 'SLOTS') as Array<[number, number, [string, number]]>
      t.notOk(ranges.some(([, , [, port]]) => Number(port) === killedPort), 'no slot is served by the killed master')
    }
  }))
})
