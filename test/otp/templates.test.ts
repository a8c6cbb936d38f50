import t from 'tap'
import { languages } from '../../i18n/index.ts'
import { otpPurposes, render, escapeHtml, type TemplateName } from '../../plugins/app/notifications/_templates/messages.ts'
import { maskAddress } from '../../plugins/app/accounts/contact.ts'
import { channelFor, destinationOf, requireProof, secondsToNextUtcDay } from '../../plugins/app/auth/otp.ts'

const templates: TemplateName[] = ['otp', 'signup_attempt', 'password_changed', 'password_set', 'password_reset', 'email_changed', 'phone_changed', 'new_device']
const params = { app: 'Acme', code: '042917', minutes: 10, time: '2030-01-02 03:04', address: 'n***@example.com', device: 'Firefox on Linux', ip: '203.0.113.9' }

t.test('every message renders in every language, with every placeholder filled', async (t) => {
  for (const lang of languages) {
    for (const template of templates) {
      for (const purpose of template === 'otp' ? otpPurposes : [undefined]) {
        const out = render({ template, lang, params, purpose })
        const label = `${lang} ${template} ${purpose ?? ''}`
        for (const [part, text] of Object.entries(out)) {
          t.ok(text.trim().length > 0, `${label}: ${part} is not empty`)
          t.notMatch(text, /\{\w+\}/, `${label}: ${part} has no unfilled placeholder`)
          t.notMatch(text, /notify\./, `${label}: ${part} has no raw catalog key`)
        }
        t.match(out.html, new RegExp(`<html lang="${lang}" dir="${lang === 'ar' ? 'rtl' : 'ltr'}">`), `${label}: language and direction`)
        if (template === 'otp') {
          for (const part of ['text', 'html', 'short'] as const) t.match(out[part], /042917/, `${label}: the ${part} carries the code`)
          t.notMatch(out.subject, /042917/, `${label}: the subject does not (it shows on lock screens)`)
        }
      }
    }
  }
})

t.test('messages differ per language and per purpose', async (t) => {
  const subjects = new Set(languages.map((lang) => render({ template: 'otp', lang, params }).subject))
  t.equal(subjects.size, languages.length)
  const intros = new Set(otpPurposes.map((purpose) => render({ template: 'otp', lang: 'en', params, purpose }).text.split('\n')[0]))
  t.equal(intros.size, otpPurposes.length)
  t.equal(render({ template: 'otp', lang: 'xx', params }).subject, render({ template: 'otp', lang: 'en', params }).subject, 'an unknown language falls back to English')
})

t.test('values are escaped in the HTML body', async (t) => {
  const out = render({ template: 'new_device', lang: 'en', params: { ...params, app: 'A&B', device: '<script>alert(1)</script>' } })
  t.notMatch(out.html, /<script>/)
  t.match(out.html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/)
  t.match(out.html, /A&amp;B/)
  t.match(out.text, /<script>/, 'the text body is plain text')
  t.equal(escapeHtml('"\'<>&'), '&quot;&#39;&lt;&gt;&amp;')
})

t.test('no third-party branding in any message', async (t) => {
  for (const lang of languages) {
    for (const template of templates) {
      const out = render({ template, lang, params })
      t.notMatch(JSON.stringify(out), /twilio|nodemailer|sendgrid|mailgun/i, `${lang} ${template}`)
    }
  }
})

t.test('maskAddress keeps enough to recognise an address', async (t) => {
  t.equal(maskAddress('grace@example.com'), 'g***@example.com')
  t.equal(maskAddress('+14155550123'), '+14*******23')
  t.equal(maskAddress('1234'), '****')
})

t.test('destinationOf normalises emails and phones and wants exactly one', async (t) => {
  t.same(destinationOf({ email: '  Ada@Example.COM ' }), { kind: 'email', value: 'ada@example.com' })
  t.same(destinationOf({ phone_number: '+1 (415) 555-0123' }), { kind: 'phone', value: '+14155550123' })
  t.same(destinationOf({ phone_number: '442079460958' }), { kind: 'phone', value: '+442079460958' })
  t.throws(() => destinationOf({}), { name: 'AppError', code: 'VALIDATION_ERROR' })
  t.throws(() => destinationOf({ email: 'a@b.co', phone_number: '+14155550123' }), { name: 'AppError', code: 'VALIDATION_ERROR' })
  t.throws(() => destinationOf({ phone_number: '+1 555' }), { name: 'AppError', code: 'INVALID_PHONE' })
})

t.test('channelFor: email for emails; sms by default, or whatsapp, for phones', async (t) => {
  t.equal(channelFor({ kind: 'email', value: 'a@b.co' }), 'email')
  t.equal(channelFor({ kind: 'phone', value: '+14155550123' }), 'sms')
  t.equal(channelFor({ kind: 'phone', value: '+14155550123' }, 'whatsapp'), 'whatsapp')
  t.throws(() => channelFor({ kind: 'email', value: 'a@b.co' }, 'sms'), { name: 'AppError', code: 'VALIDATION_ERROR' })
  t.throws(() => channelFor({ kind: 'phone', value: '+14155550123' }, 'email'), { name: 'AppError', code: 'VALIDATION_ERROR' })
})

t.test('requireProof wants exactly one of otp and verification_token', async (t) => {
  t.doesNotThrow(() => requireProof({ otp: '123456' }))
  t.doesNotThrow(() => requireProof({ verification_token: 'x'.repeat(43) }))
  t.throws(() => requireProof({}))
  t.throws(() => requireProof({ otp: '123456', verification_token: 'x'.repeat(43) }))
})

t.test('the daily cap resets at the next UTC midnight', async (t) => {
  t.equal(secondsToNextUtcDay(Date.UTC(2030, 0, 1, 23, 59, 0)), 60)
  t.equal(secondsToNextUtcDay(Date.UTC(2030, 0, 1, 0, 0, 0)), 86400)
  t.equal(secondsToNextUtcDay(Date.UTC(2030, 0, 1, 12, 0, 0, 500)), 43200)
})
