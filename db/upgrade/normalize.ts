import { parsePhoneNumberFromString } from 'libphonenumber-js/max'

/**
 * Value mappings of the original database's free-text columns that need more
 * than SQL can say with certainty (phone numbering plans, country names). They
 * run once per DISTINCT value, never per row: the upgrade sends the distinct
 * values here and joins the answers back in SQL.
 */

/** An outcome: the value to store (null = none), or why it cannot be stored. */
export type Mapped = { value: string | null, reason?: undefined } | { value: null, reason: string }

/**
 * ISO 3166-1 alpha-2 codes (the 249 assigned ones) plus XK (Kosovo, user-assigned
 * but used by the EU, banks and libphonenumber). Spelled out so the answer does not
 * depend on the ICU data of the Node build.
 */
export const isoCountries: ReadonlySet<string> = new Set((
  'AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ ' +
  'BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR ' +
  'CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR ' +
  'GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ' +
  'ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ ' +
  'LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ ' +
  'MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF ' +
  'PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI ' +
  'SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR ' +
  'TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW').split(' '))

/**
 * Spellings that are not a code's English short name but name exactly one
 * country (what sign-up forms collected). Keys are compared after folding
 * (lower case, no dots, single spaces).
 */
const countryAliases: Readonly<Record<string, string>> = {
  usa: 'US',
  'united states of america': 'US',
  uk: 'GB',
  'great britain': 'GB',
  uae: 'AE',
  'the netherlands': 'NL',
  'russian federation': 'RU',
  'south korea': 'KR',
  'republic of korea': 'KR',
  'ivory coast': 'CI',
  turkey: 'TR',
  'czech republic': 'CZ',
  'viet nam': 'VN'
}

const fold = (name: string) => name.toLowerCase().replace(/\./g, '').replace(/\s+/g, ' ').trim()

let countryNames: Map<string, string> | undefined
function namesToCodes (): Map<string, string> {
  if (countryNames) return countryNames
  countryNames = new Map(Object.entries(countryAliases))
  const english = new Intl.DisplayNames(['en'], { type: 'region', fallback: 'none' })
  for (const code of isoCountries) {
    const name = english.of(code)
    if (name) countryNames.set(fold(name), code)
  }
  return countryNames
}

/**
 * A country column value as an ISO code: an ISO code in any case, or the
 * English name of exactly one country ("Nigeria", "nigeria", "United States").
 * Empty means no country. Anything else is not certain and is refused.
 */
export function mapCountry (raw: string): Mapped {
  const value = raw.trim()
  if (value === '') return { value: null }
  if (/^[A-Za-z]{2}$/.test(value) && isoCountries.has(value.toUpperCase())) return { value: value.toUpperCase() }
  const code = namesToCodes().get(fold(value))
  return code ? { value: code } : { value: null, reason: 'country_not_iso' }
}

/**
 * A phone number as E.164 (what this project stores). The original stored
 * SMS sign-ups with their `+` and WhatsApp sign-ups without it, so a string of
 * digits is an international number missing its `+`. Spaces, dashes, dots and
 * brackets are formatting. A number that does not parse as a valid number of
 * its country (a national number, `00`-prefixed, too short) is refused: which
 * country it belongs to is a guess.
 */
export function mapPhone (raw: string): Mapped {
  const value = raw.trim()
  if (value === '') return { value: null }
  const compact = value.replace(/[\s().-]/g, '')
  let candidate: string
  if (/^\+[0-9]+$/.test(compact)) candidate = compact
  else if (/^[1-9][0-9]*$/.test(compact)) candidate = `+${compact}`
  else return { value: null, reason: 'phone_unparseable' }
  const parsed = parsePhoneNumberFromString(candidate)
  if (!parsed?.isValid() || !/^\+[1-9][0-9]{6,14}$/.test(parsed.number)) return { value: null, reason: 'phone_unparseable' }
  return { value: parsed.number }
}
