import t from 'tap'
import { catalogs, languages } from '../../i18n/index.ts'
import { errorCodes } from '../../schemas/errors.ts'
import { negotiateLanguage } from '../../plugins/app/http/i18n.ts'
import { build } from '../helpers/build.ts'

t.test('every catalog has every key of every other catalog, and every error code', async (t) => {
  const allKeys = new Set(languages.flatMap((l) => Object.keys(catalogs[l])))
  for (const code of Object.keys(errorCodes)) allKeys.add(`errors.${code}`)
  for (const lang of languages) {
    const missing = [...allKeys].filter((k) => typeof catalogs[lang][k] !== 'string' || catalogs[lang][k].trim() === '')
    t.same(missing, [], `${lang} misses no key`)
  }
})

t.test('placeholders survive translation', async (t) => {
  for (const lang of languages) {
    for (const [key, english] of Object.entries(catalogs.en)) {
      const names = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort()
      t.same(names(catalogs[lang][key] ?? ''), names(english), `${lang} ${key}`)
    }
  }
})

t.test('Accept-Language negotiation honours q-values and base languages', async (t) => {
  t.equal(negotiateLanguage('fr-CA,fr;q=0.9,en;q=0.5'), 'fr')
  t.equal(negotiateLanguage('ja,de;q=0.8,en;q=0.9'), 'en')
  t.equal(negotiateLanguage('ja'), undefined)
  t.equal(negotiateLanguage('es;q=0,de'), 'de')
  t.equal(negotiateLanguage(undefined), undefined)
})

t.test('over HTTP: ?lang, then Accept-Language, else English; Content-Language tells', async (t) => {
  const app = await build(t)
  const en = await app.inject({ url: '/api/v1/nope' })
  t.equal(en.headers['content-language'], 'en')
  t.equal(en.json().error.message, catalogs.en['errors.NOT_FOUND'])

  const fr = await app.inject({ url: '/api/v1/nope', headers: { 'accept-language': 'fr-FR,fr;q=0.9' } })
  t.equal(fr.headers['content-language'], 'fr')
  t.equal(fr.json().error.message, catalogs.fr['errors.NOT_FOUND'])

  const de = await app.inject({ url: '/api/v1/nope?lang=de', headers: { 'accept-language': 'fr' } })
  t.equal(de.headers['content-language'], 'de', '?lang wins over the header')
  t.equal(de.json().error.message, catalogs.de['errors.NOT_FOUND'])

  const ar = await app.inject({ url: '/health?lang=ar' })
  t.equal(ar.headers['content-language'], 'ar')
  t.equal(ar.json().message, catalogs.ar['success.default'])

  const unknown = await app.inject({ url: '/health?lang=xx', headers: { 'accept-language': 'ja' } })
  t.equal(unknown.headers['content-language'], 'en')
})
