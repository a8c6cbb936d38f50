import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Redis } from 'ioredis'

async function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/**
 * A private redis-server on a loopback port, for tests that FLUSHALL, stop or
 * restart "the" Redis without touching the shared one other test files use.
 */
export class PrivateRedis {
  port = 0
  private child?: ChildProcess

  get url () { return `redis://127.0.0.1:${this.port}` }

  async start () {
    if (this.port === 0) this.port = await freePort()
    this.child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    for (let i = 0; i < 100; i++) {
      const client = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
      try {
        await client.connect()
        await client.ping()
        return
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50))
      } finally {
        client.disconnect()
      }
    }
    throw new Error('redis-server did not start')
  }

  async flushAll () {
    const client = new Redis(this.url)
    try { await client.flushall() } finally { client.disconnect() }
  }

  async stop () {
    const child = this.child
    // A killed child has a signalCode and no exitCode: a second stop() must not wait for an exit that already happened.
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    await new Promise<void>((resolve) => { child.once('exit', () => resolve()); child.kill('SIGKILL') })
  }
}

/** A redis-server (or redis-sentinel) process of a test topology, on its own loopback port. */
export class RedisNode {
  child?: ChildProcess
  constructor (readonly port: number, private readonly args: string[]) {}

  get address () { return `127.0.0.1:${this.port}` }
  get running () { return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null }

  async start () {
    this.child = spawn('redis-server', this.args, { stdio: 'ignore' })
    await waitFor(`redis-server on ${this.port}`, 10_000, async () => (await this.command('PING')) === 'PONG')
  }

  /** One command on a fresh connection (no prefix, no retries); throws when the node does not answer. */
  async command (...args: Array<string | number>): Promise<unknown> {
    const client = new Redis({ host: '127.0.0.1', port: this.port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000, commandTimeout: 2000 })
    client.on('error', () => {})
    try {
      await client.connect()
      return await client.call(String(args[0]), ...args.slice(1).map(String))
    } finally {
      client.disconnect()
    }
  }

  /** SIGKILL: no shutdown, no final save, as when a machine dies. */
  async kill () {
    const child = this.child
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    await new Promise<void>((resolve) => { child.once('exit', () => resolve()); child.kill('SIGKILL') })
  }
}

/** Polls `check` until it is true; throws after `timeoutMs` with the last error. */
export async function waitFor (what: string, timeoutMs: number, check: () => Promise<boolean>) {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      if (await check()) return
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

interface Teardown { teardown: (fn: () => unknown) => void }

const common = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']

/**
 * A Redis Cluster of `masters` masters with one replica each, on loopback ports,
 * created with `redis-cli --cluster create`. A short node timeout lets a replica
 * take over a killed master within a few seconds; `cluster-require-full-coverage no`
 * keeps the other masters serving their slots meanwhile. Stopped and removed at teardown.
 */
export async function startRedisCluster (t: Teardown, masters = 3) {
  const dir = mkdtempSync(path.join(tmpdir(), 'redis-cluster-'))
  const nodes: RedisNode[] = []
  t.teardown(async () => {
    await Promise.all(nodes.map((n) => n.kill()))
    rmSync(dir, { recursive: true, force: true })
  })
  for (let i = 0; i < masters * 2; i++) {
    const port = await freePort()
    nodes.push(new RedisNode(port, [
      '--port', String(port), ...common, '--dir', dir,
      '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`,
      '--cluster-node-timeout', '1000', '--cluster-replica-validity-factor', '0',
      '--cluster-require-full-coverage', 'no'
    ]))
  }
  await Promise.all(nodes.map((n) => n.start()))
  const created = spawnSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => n.address), '--cluster-replicas', '1', '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 })
  if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`)
  const cluster = {
    nodes,
    seeds: nodes.map((n) => n.address).join(','),
    /** The node that serves `key`'s slot as master now, asked of a live node. */
    async masterOf (key: string) {
      const live = nodes.find((n) => n.running)!
      const slot = Number(await live.command('CLUSTER', 'KEYSLOT', key))
      const ranges = await live.command('CLUSTER', 'SLOTS') as Array<[number, number, [string, number]]>
      const range = ranges.find(([from, to]) => slot >= from && slot <= to)
      return nodes.find((n) => n.port === Number(range?.[2][1]))
    },
    /** Every slot served by a live master, and every live node agrees the cluster is ok. */
    async healthy () {
      for (const node of nodes.filter((n) => n.running)) {
        if (!/cluster_state:ok/.test(String(await node.command('CLUSTER', 'INFO')))) return false
        const ranges = await node.command('CLUSTER', 'SLOTS') as Array<[number, number, [string, number]]>
        if (ranges.some(([, , [, port]]) => !nodes.find((n) => n.port === Number(port))?.running)) return false
      }
      return true
    }
  }
  // Every replica has synced with its master (a failover needs one to promote).
  await waitFor('the cluster and its replicas', 30_000, async () => {
    if (!(await cluster.healthy())) return false
    const roles = await Promise.all(nodes.map((n) => n.command('INFO', 'replication')))
    return roles.filter((r) => /role:slave/.test(String(r)) && /master_link_status:up/.test(String(r))).length === masters
  })
  return cluster
}

/**
 * One master, one replica and three Sentinels (`redis-server --sentinel`) on loopback
 * ports. Sentinels call a master down after 1 s and a failover times out after 3 s,
 * so a killed master's replica is promoted within seconds. Stopped and removed at teardown.
 */
export async function startRedisSentinels (t: Teardown, name = 'api') {
  const dir = mkdtempSync(path.join(tmpdir(), 'redis-sentinel-'))
  const all: RedisNode[] = []
  t.teardown(async () => {
    await Promise.all(all.map((n) => n.kill()))
    rmSync(dir, { recursive: true, force: true })
  })
  const masterPort = await freePort()
  const master = new RedisNode(masterPort, ['--port', String(masterPort), ...common, '--dir', dir])
  all.push(master)
  await master.start()
  const replicaPort = await freePort()
  const replica = new RedisNode(replicaPort, ['--port', String(replicaPort), ...common, '--dir', dir, '--replicaof', '127.0.0.1', String(masterPort)])
  all.push(replica)
  await replica.start()
  const sentinels: RedisNode[] = []
  for (let i = 0; i < 3; i++) {
    const port = await freePort()
    const file = path.join(dir, `sentinel-${port}.conf`)
    writeFileSync(file, [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${masterPort} 2`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 3000`,
      `sentinel parallel-syncs ${name} 1`,
      ''
    ].join('\n'))
    const sentinel = new RedisNode(port, [file, '--sentinel'])
    all.push(sentinel)
    sentinels.push(sentinel)
  }
  await Promise.all(sentinels.map((s) => s.start()))
  const setup = {
    name,
    master,
    replica,
    sentinels,
    addresses: sentinels.map((s) => s.address).join(','),
    /** The master's port as a majority of the Sentinels report it. */
    async masterPort () {
      const answers = await Promise.all(sentinels.filter((s) => s.running).map((s) => s.command('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name).catch(() => null) as Promise<[string, string] | null>))
      const ports = answers.filter((a) => a !== null).map((a) => Number(a![1]))
      return ports.filter((p) => p === ports[0]).length >= 2 ? ports[0] : null
    }
  }
  // The replica is in sync and every Sentinel knows it and the two other Sentinels.
  await waitFor('the replica and the Sentinels', 30_000, async () => {
    if (!/master_link_status:up/.test(String(await replica.command('INFO', 'replication')))) return false
    for (const s of sentinels) {
      if ((await s.command('SENTINEL', 'REPLICAS', name) as unknown[]).length !== 1) return false
      if ((await s.command('SENTINEL', 'SENTINELS', name) as unknown[]).length !== 2) return false
    }
    return true
  })
  return setup
}
