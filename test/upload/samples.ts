import { crc32 } from 'node:zlib'
import sharp from 'sharp'

/** Small real files of each kind the upload tests send, built in memory. */

export const png = (width = 32, height = 32) =>
  sharp({ create: { width, height, channels: 3, background: '#cc3366' } }).png().toBuffer()

export const jpegWithGps = (width = 1600, height = 1200) =>
  sharp({ create: { width, height, channels: 3, background: '#3366cc' } })
    .jpeg()
    .withExif({
      IFD0: { Make: 'TestCam', Model: 'X1' },
      IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '48/1 51/1 2400/100', GPSLongitudeRef: 'E', GPSLongitude: '2/1 21/1 300/100' }
    })
    .toBuffer()

export const pdf = () => Buffer.from('%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n')

/** An ISO base media file: an `ftyp` box with the isom brand, then `size` bytes in total. */
export function mp4Header (): Buffer {
  const ftyp = Buffer.alloc(32)
  ftyp.writeUInt32BE(32, 0)
  ftyp.write('ftypisom', 4, 'latin1')
  ftyp.writeUInt32BE(0x200, 12)
  ftyp.write('isomiso2avc1mp41', 16, 'latin1')
  return ftyp
}
export const mp4 = (size = 4096) => Buffer.concat([mp4Header(), Buffer.alloc(size - 32)])

export const html = () => Buffer.from('<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>\n')

/** The first bytes of a Linux executable (ELF, 64-bit, little endian). */
export const elf = () => Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00]), Buffer.alloc(120)])

/** A Windows executable (MZ header pointing at a PE signature). */
export function windowsExe (): Buffer {
  const exe = Buffer.alloc(256)
  exe.write('MZ', 0, 'latin1')
  exe.writeUInt32LE(0x80, 0x3c)
  exe.write('PE\0\0', 0x80, 'latin1')
  return exe
}

/** A stored (uncompressed) zip archive with central directory. */
export function zip (entries: Array<[name: string, content: string]>): Buffer {
  const locals: Buffer[] = []
  const centrals: Buffer[] = []
  let offset = 0
  for (const [name, content] of entries) {
    const data = Buffer.from(content)
    const nameBytes = Buffer.from(name)
    const crc = crc32(data)
    const local = Buffer.alloc(30)
    local.writeUInt32LE(0x04034b50, 0)
    local.writeUInt16LE(20, 4)
    local.writeUInt32LE(crc, 14)
    local.writeUInt32LE(data.length, 18)
    local.writeUInt32LE(data.length, 22)
    local.writeUInt16LE(nameBytes.length, 26)
    const central = Buffer.alloc(46)
    central.writeUInt32LE(0x02014b50, 0)
    central.writeUInt16LE(20, 4)
    central.writeUInt16LE(20, 6)
    central.writeUInt32LE(crc, 16)
    central.writeUInt32LE(data.length, 20)
    central.writeUInt32LE(data.length, 24)
    central.writeUInt16LE(nameBytes.length, 28)
    central.writeUInt32LE(offset, 42)
    locals.push(local, nameBytes, data)
    centrals.push(central, nameBytes)
    offset += 30 + nameBytes.length + data.length
  }
  const directory = Buffer.concat(centrals)
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0)
  end.writeUInt16LE(entries.length, 8)
  end.writeUInt16LE(entries.length, 10)
  end.writeUInt32LE(directory.length, 12)
  end.writeUInt32LE(offset, 16)
  return Buffer.concat([...locals, directory, end])
}

export const docx = () => zip([
  ['[Content_Types].xml', '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">' +
    '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'],
  ['word/document.xml', '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body/></w:document>']
])

/** A multipart/form-data body with one file part, as a browser would send it. */
export async function form (file: Buffer, filename: string, type = 'application/octet-stream', field = 'file') {
  const data = new FormData()
  data.append(field, new Blob([new Uint8Array(file)], { type }), filename)
  const response = new Response(data)
  return { payload: Buffer.from(await response.arrayBuffer()), headers: { 'content-type': response.headers.get('content-type')! } }
}

/** Tag ids of the GPS IFD of an EXIF block, or [] when it has none (a minimal TIFF reader). */
export function gpsTags (exif: Buffer | undefined): number[] {
  if (!exif) return []
  const tiff = exif.subarray(0, 6).toString('latin1') === 'Exif\0\0' ? exif.subarray(6) : exif
  const little = tiff.toString('latin1', 0, 2) === 'II'
  const u16 = (at: number) => little ? tiff.readUInt16LE(at) : tiff.readUInt16BE(at)
  const u32 = (at: number) => little ? tiff.readUInt32LE(at) : tiff.readUInt32BE(at)
  const entries = (ifd: number) => Array.from({ length: u16(ifd) }, (_, i) => ({ tag: u16(ifd + 2 + i * 12), value: u32(ifd + 2 + i * 12 + 8) }))
  const gps = entries(u32(4)).find((e) => e.tag === 0x8825)
  return gps ? entries(gps.value).map((e) => e.tag) : []
}
