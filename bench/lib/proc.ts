import { readdirSync, readFileSync } from 'node:fs'
import net from 'node:net'

/**
 * What the kernel says about a process (Linux /proc): CPU time of all its
 * threads (the event loop, worker pools, GC) and resident memory.
 */

// USER_HZ: the unit of utime/stime in /proc/<pid>/stat; 100 on every Linux build we run on.
const TICKS_PER_SECOND = 100

/** User + system CPU time of the process so far, in microseconds. */
export function cpuMicros (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name (field 2) may contain spaces; the fields after it are space-separated.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = Number(fields[11]) + Number(fields[12])
  return ticks * (1_000_000 / TICKS_PER_SECOND)
}

/**
 * CPU time of the local PostgreSQL and Redis servers so far, in microseconds: every
 * process named `postgres` or `redis-server`, its own time and that of its exited
 * children (a backend that ends is counted in its postmaster's). On the embedded
 * stack they run inside the API process, so this stays near zero there.
 */
export function servicesCpuMicros (): number {
  let ticks = 0
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue // gone meanwhile
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    if (name !== 'postgres' && name !== 'redis-server') continue
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])
  }
  return ticks * (1_000_000 / TICKS_PER_SECOND)
}

/** Resident set size in MB. */
export function rssMb (pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))
  const kb = Number(line?.replace(/\D+/g, '') ?? 0)
  return Math.round(kb / 1024)
}

/** A TCP port free on loopback right now. */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** Whether something accepts TCP connections on host:port within `timeoutMs`. */
export function answers (host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port })
    const done = (ok: boolean) => { socket.destroy(); resolve(ok) }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}
