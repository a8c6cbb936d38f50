import { isSupportedLanguage, defaultLanguage, type Language } from '../../../../i18n/index.ts'
import { translate } from '../../http/i18n.ts'

/**
 * The messages the service sends, rendered per language from the i18n catalogs
 * (`notify.*` keys): an email gets a subject, a plain-text body and an HTML body;
 * an SMS or WhatsApp message gets the short `.sms` text. Every value put into the
 * HTML is escaped. No third-party name or logo appears anywhere: the only brand is
 * APP_NAME. (This folder starts with `_` so that autoload does not take it for a plugin.)
 */
export const otpPurposes = ['signup', 'login', 'reset_password', 'verify_email', 'verify_phone', 'change_email', 'change_phone'] as const
export type OtpPurpose = typeof otpPurposes[number]

export type NoticeTemplate = 'signup_attempt' | 'password_changed' | 'password_set' | 'password_reset' | 'email_changed' | 'phone_changed' | 'new_device' | 'mfa_enabled' | 'mfa_removed' | 'mfa_recovery_code_used' | 'passkey_added' | 'passkey_removed'
export type TemplateName = 'otp' | 'invitation' | NoticeTemplate

export interface RenderInput {
  template: TemplateName
  lang: string
  /** Placeholders of the catalog texts; `app` is filled in by the caller. */
  params: Record<string, string | number>
  /** The purpose of an `otp` message (chooses its first sentence). */
  purpose?: OtpPurpose
}

export interface Rendered { subject: string, text: string, html: string, short: string }

const rtl = new Set<Language>(['ar'])

export function escapeHtml (value: string): string {
  return value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)
}

export function render (input: RenderInput): Rendered {
  const lang: Language = isSupportedLanguage(input.lang) ? input.lang : defaultLanguage
  const t = (key: string) => translate(lang, key, input.params)
  const footer = t('notify.footer')
  if (input.template === 'otp') {
    const code = String(input.params.code)
    const subject = t('notify.otp.subject')
    const intro = t(`notify.otp.purpose.${input.purpose ?? 'login'}`)
    const after = [t('notify.otp.expiry'), t('notify.otp.ignore')]
    return {
      subject,
      text: [intro, `    ${code}`, ...after, '--', footer].join('\n\n') + '\n',
      html: layout(lang, subject, [paragraph(intro), codeBlock(code), ...after.map(paragraph)], footer),
      short: t('notify.otp.sms')
    }
  }
  const subject = t(`notify.${input.template}.subject`)
  const body = t(`notify.${input.template}.body`)
  return {
    subject,
    text: [body, '--', footer].join('\n\n') + '\n',
    html: layout(lang, subject, [paragraph(body)], footer),
    short: t(`notify.${input.template}.sms`)
  }
}

const paragraph = (text: string) =>
  `<p style="margin:0 0 16px;font-size:15px;line-height:1.5;color:#1f2328">${escapeHtml(text)}</p>`

// dir="ltr": digits stay in order inside a right-to-left message.
const codeBlock = (code: string) =>
  `<p dir="ltr" style="margin:8px 0 24px;font-family:Menlo,Consolas,monospace;font-size:32px;font-weight:700;letter-spacing:8px;color:#1f2328">${escapeHtml(code)}</p>`

function layout (lang: Language, subject: string, blocks: string[], footer: string): string {
  const dir = rtl.has(lang) ? 'rtl' : 'ltr'
  return `<!doctype html>
<html lang="${lang}" dir="${dir}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${escapeHtml(subject)}</title></head>
<body style="margin:0;padding:0;background:#f4f5f7">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="background:#f4f5f7"><tr><td align="center" style="padding:24px 12px">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="max-width:560px;background:#ffffff;border-radius:8px"><tr><td dir="${dir}" style="padding:32px;font-family:-apple-system,'Segoe UI',Roboto,Arial,sans-serif;text-align:${dir === 'rtl' ? 'right' : 'left'}">
<h1 style="margin:0 0 20px;font-size:20px;line-height:1.3;color:#1f2328">${escapeHtml(subject)}</h1>
${blocks.join('\n')}
<p style="margin:24px 0 0;font-size:12px;line-height:1.5;color:#6e7781">${escapeHtml(footer)}</p>
</td></tr></table>
</td></tr></table>
</body>
</html>
`
}
