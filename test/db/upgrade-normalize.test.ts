import t from 'tap'
import { isoCountries, mapCountry, mapPhone } from '../../db/upgrade/normalize.ts'

// The value mappings of the upgrade that run in the application (once per
// distinct value): only certain mappings pass, everything else gets a reason.

t.test('phones: E.164 with or without the +, formatting removed; guesses refused', async (t) => {
  t.same(mapPhone('+971501234567'), { value: '+971501234567' }, 'an SMS sign-up')
  t.same(mapPhone('971501234567'), { value: '+971501234567' }, 'a WhatsApp sign-up (no +)')
  t.same(mapPhone(' +44 7911 123456 '), { value: '+447911123456' }, 'spaces')
  t.same(mapPhone('+1 (415) 555-2671'), { value: '+14155552671' }, 'brackets and dashes')
  t.same(mapPhone(''), { value: null }, 'empty is no phone, not a conflict')
  for (const raw of ['12345', '0501234567', '00971501234567', '+0501234567', 'call me', '{"number": "+4915112345678"}', '+97150123456789012']) {
    t.same(mapPhone(raw), { value: null, reason: 'phone_unparseable' }, raw)
  }
})

t.test('countries: ISO codes in any case, English names, a few unambiguous aliases', async (t) => {
  t.equal(isoCountries.size, 250, '249 assigned codes and XK')
  t.same(mapCountry('NG'), { value: 'NG' })
  t.same(mapCountry('ng'), { value: 'NG' })
  t.same(mapCountry(' gb '), { value: 'GB' })
  t.same(mapCountry('Nigeria'), { value: 'NG' })
  t.same(mapCountry('nigeria'), { value: 'NG' })
  t.same(mapCountry('United Arab Emirates'), { value: 'AE' })
  t.same(mapCountry('United States of America'), { value: 'US' })
  t.same(mapCountry('U.S.A.'), { value: 'US' })
  t.same(mapCountry('UK'), { value: 'GB' }, 'UK is not an ISO code but names one country')
  t.same(mapCountry(''), { value: null }, 'empty is no country')
  for (const raw of ['XX', 'EU', 'Narnia', 'Lagos', 'N/A', 'Congo']) {
    t.same(mapCountry(raw), { value: null, reason: 'country_not_iso' }, raw)
  }
})
