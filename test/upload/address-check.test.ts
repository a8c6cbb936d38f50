import t from 'tap'
import { checkUrl, classifyAddress, isPublicAddress, resolvePublic, type Resolver } from '../../plugins/app/media/url-fetch.ts'
import { AppError } from '../../schemas/errors.ts'
import { ConfigError, loadConfig } from '../../config.ts'

// Pure checks over address strings and a stubbed resolver: nothing here opens a connection.

t.test('SR-36: every non-public IPv4 range is refused', async (t) => {
  const refused: Array<[string, string]> = [
    ['0.0.0.0', 'unspecified'], ['0.1.2.3', 'unspecified'],
    ['10.0.0.1', 'private'], ['10.255.255.255', 'private'],
    ['100.64.0.1', 'carrier_grade_nat'], ['100.127.255.254', 'carrier_grade_nat'],
    ['127.0.0.1', 'loopback'], ['127.8.9.10', 'loopback'],
    ['169.254.169.254', 'link_local'], ['169.254.0.1', 'link_local'],
    ['172.16.0.1', 'private'], ['172.31.255.255', 'private'],
    ['192.168.0.1', 'private'],
    ['192.0.0.8', 'reserved'], ['192.0.2.1', 'reserved'], ['198.18.0.1', 'reserved'], ['198.19.255.1', 'reserved'],
    ['198.51.100.7', 'reserved'], ['203.0.113.9', 'reserved'], ['240.0.0.1', 'reserved'],
    ['224.0.0.1', 'multicast'], ['239.255.255.250', 'multicast'], ['255.255.255.255', 'broadcast']
  ]
  for (const [ip, range] of refused) {
    t.equal(classifyAddress(ip), range, `${ip} is ${range}`)
    t.notOk(isPublicAddress(ip), `${ip} refused`)
  }
  for (const ip of ['8.8.8.8', '1.1.1.1', '93.184.216.34', '172.32.0.1', '100.128.0.1', '192.169.0.1', '11.0.0.1']) {
    t.equal(classifyAddress(ip), 'public', `${ip} is public`)
    t.ok(isPublicAddress(ip))
  }
})

t.test('SR-36: every non-public IPv6 range is refused, including IPv4 hidden inside IPv6', async (t) => {
  const refused: Array<[string, string]> = [
    ['::', 'unspecified'], ['::1', 'loopback'], ['[::1]', 'loopback'],
    ['fc00::1', 'unique_local'], ['fd12:3456::1', 'unique_local'],
    ['fe80::1', 'link_local'], ['fe80::1%eth0', 'link_local'], ['fec0::1', 'site_local'],
    ['ff02::1', 'multicast'], ['2001:db8::1', 'reserved'],
    // IPv4-mapped and SIIT forms of loopback, private and metadata addresses
    ['::ffff:127.0.0.1', 'loopback'], ['::ffff:7f00:1', 'loopback'], ['::ffff:10.0.0.1', 'private'],
    ['::ffff:169.254.169.254', 'link_local'], ['::ffff:0:7f00:1', 'loopback'],
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) with private IPv4 inside
    ['64:ff9b::7f00:1', 'loopback'], ['64:ff9b::a00:1', 'private'], ['64:ff9b::a9fe:a9fe', 'link_local'],
    ['2002:a00:1::1', 'private'], ['2002:7f00:1::', 'loopback'],
    // deprecated IPv4-compatible form, local-use NAT64, Teredo, discard
    ['::7f00:1', 'reserved'], ['64:ff9b:1::1', 'special'], ['2001::1', 'special'], ['100::1', 'special']
  ]
  for (const [ip, range] of refused) {
    t.equal(classifyAddress(ip), range, `${ip} is ${range}`)
    t.notOk(isPublicAddress(ip), `${ip} refused`)
  }
  for (const ip of ['2606:4700:4700::1111', '2a00:1450:4001::200e', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1']) {
    t.equal(classifyAddress(ip), 'public', `${ip} is public`)
  }
})

t.test('non-canonical and malformed address strings are never public', async (t) => {
  for (const ip of ['2130706433', '0x7f000001', '0177.0.0.1', '127.1', '1.2.3', '1.2.3.4.5', '256.1.1.1', 'localhost', '', ':::1', '[::1', 'fe80::1%']) {
    t.notOk(isPublicAddress(ip), JSON.stringify(ip))
  }
})

t.test('the loopback escape hatch opens 127.0.0.0/8 and ::1 and nothing else', async (t) => {
  for (const ip of ['127.0.0.1', '127.0.0.2', '::1', '::ffff:127.0.0.1']) t.ok(isPublicAddress(ip, { allowLoopback: true }), ip)
  for (const ip of ['10.0.0.1', '169.254.169.254', '192.168.1.1', 'fe80::1', 'fd00::1', '0.0.0.0', '::']) {
    t.notOk(isPublicAddress(ip, { allowLoopback: true }), `${ip} still refused`)
  }
})

t.test('URLs: http(s) only, credentials and fragments stripped, odd IPv4 spellings normalised before the check', async (t) => {
  for (const url of ['file:///etc/passwd', 'ftp://example.com/x', 'gopher://example.com/', 'data:text/plain,hi', 'javascript:alert(1)', 'not a url']) {
    const error = t.throws(() => checkUrl(url)) as AppError
    t.equal(error.code, 'URL_NOT_ALLOWED', url)
  }
  const clean = checkUrl('https://user:secret@example.com:8443/a/b.png?x=1#frag')
  t.equal(clean.href, 'https://example.com:8443/a/b.png?x=1', 'no user, password or fragment left')
  t.equal(checkUrl('http://2130706433/').hostname, '127.0.0.1', 'decimal IPv4 becomes a dotted quad')
  t.equal(checkUrl('http://0x7f.1/').hostname, '127.0.0.1', 'hex IPv4 becomes a dotted quad')
  t.equal(checkUrl('http://[::ffff:127.0.0.1]/').hostname, '[::ffff:7f00:1]')
  t.equal(checkUrl('/next', new URL('http://example.com/a')).href, 'http://example.com/next', 'relative redirects resolve against the hop')
})

t.test('SR-36: a host is refused when ANY of its addresses is not public (stubbed resolver)', async (t) => {
  const answers: Record<string, string[]> = {
    'public.test': ['93.184.216.34', '2606:2800:220:1:248:1893:25c8:1946'],
    'mixed.test': ['93.184.216.34', '10.0.0.7'],
    'mixed6.test': ['2606:4700::1', 'fd00::1'],
    'metadata.test': ['169.254.169.254'],
    'loopback.test': ['127.0.0.1', '::1'],
    'mapped.test': ['::ffff:192.168.1.1'],
    'empty.test': []
  }
  const lookups: string[] = []
  const resolve: Resolver = async (host) => {
    lookups.push(host)
    if (!(host in answers)) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' })
    return answers[host].map((address) => ({ address, family: address.includes(':') ? 6 : 4 }))
  }
  const ok = await resolvePublic(new URL('http://public.test/x'), { resolve })
  t.same(ok.map((a) => a.address), answers['public.test'], 'all checked addresses are returned for pinning')
  for (const [host, range] of [['mixed.test', 'private'], ['mixed6.test', 'unique_local'], ['metadata.test', 'link_local'], ['loopback.test', 'loopback'], ['mapped.test', 'private']]) {
    const error = await t.rejects(resolvePublic(new URL(`http://${host}/`), { resolve })) as unknown as AppError
    t.equal(error.code, 'URL_NOT_ALLOWED', host)
    t.same(error.details, { reason: 'non_public_address', host, range }, `${host}: the range is named, the address is not`)
  }
  const nxdomain = await t.rejects(resolvePublic(new URL('http://nowhere.test/'), { resolve })) as unknown as AppError
  t.equal(nxdomain.code, 'URL_FETCH_FAILED')
  t.match(nxdomain.details, { reason: 'dns' })
  const empty = await t.rejects(resolvePublic(new URL('http://empty.test/'), { resolve })) as unknown as AppError
  t.equal(empty.code, 'URL_FETCH_FAILED')

  lookups.length = 0
  for (const literal of ['http://127.0.0.1/', 'http://10.1.2.3/', 'http://169.254.169.254/latest/meta-data/', 'http://[::1]/', 'http://[fd00::1]/', 'http://0.0.0.0/']) {
    const error = await t.rejects(resolvePublic(new URL(literal), { resolve })) as unknown as AppError
    t.equal(error.code, 'URL_NOT_ALLOWED', literal)
  }
  t.same(lookups, [], 'IP literals are checked as they are, without DNS')
})

t.test('config: the loopback escape hatch is refused in production', async (t) => {
  const production = { NODE_ENV: 'production', JWT_SECRET_KEY: 'a-production-secret-of-at-least-32-chars', WEBAUTHN_RP_ID: 'localhost', WEBAUTHN_ORIGINS: 'http://localhost:3000' }
  t.equal(loadConfig(production).UPLOAD_URL_ALLOW_LOOPBACK, false, 'off by default')
  try {
    loadConfig({ ...production, UPLOAD_URL_ALLOW_LOOPBACK: 'true' })
    t.fail('should refuse')
  } catch (error) {
    t.ok(error instanceof ConfigError)
    t.ok((error as ConfigError).problems.some((p) => p.startsWith('UPLOAD_URL_ALLOW_LOOPBACK:')))
  }
  t.equal(loadConfig({ NODE_ENV: 'test', UPLOAD_URL_ALLOW_LOOPBACK: 'true' }).UPLOAD_URL_ALLOW_LOOPBACK, true, 'allowed in tests')
  t.throws(() => loadConfig({ STORAGE_DRIVER: 'gcs' }), ConfigError, 'the gcs driver needs a bucket')
  t.equal(loadConfig({ STORAGE_DRIVER: 'gcs', GOOGLE_STORAGE_BUCKET_NAME: 'b' }).STORAGE_DRIVER, 'gcs')
})
