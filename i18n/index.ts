import { readFileSync } from 'node:fs'

/** The supported languages; each has a flat JSON catalog `i18n/<lang>.json`. */
export const languages = ['en', 'ar', 'fr', 'es', 'de'] as const
export type Language = typeof languages[number]
export const defaultLanguage: Language = 'en'

export const isSupportedLanguage = (value: string): value is Language => (languages as readonly string[]).includes(value)

// Read next to this file, from source or from dist/ (the build copies the JSON files).
export const catalogs = Object.fromEntries(languages.map((lang) => [
  lang,
  JSON.parse(readFileSync(new URL(`./${lang}.json`, import.meta.url), 'utf8')) as Record<string, string>
])) as Record<Language, Record<string, string>>
