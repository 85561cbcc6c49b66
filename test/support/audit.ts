/** Builders for the audit's tests: services.db texts, local hosts, a PNG reader for screenshots. */
import { inflateSync } from 'node:zlib';
import type { Inventory } from '../../lib/core/inventory.ts';

export interface DbSpec {
  accounts: Array<{ name: string; registeredAt: number }>;
  channels: Array<{ name: string; founder: string; registeredAt: number }>;
}

/** A services.db Atheme 7.2 loads: accounts with their nick, channels with a founder. */
export function servicesDb(spec: DbSpec): string {
  const lines = ['DBV 12', 'CF +AFORVabefhioqrstv'];
  spec.accounts.forEach((a, i) => {
    const id = `AAAAAAAA${String.fromCharCode(65 + i)}`;
    lines.push(
      `MU ${id} ${a.name} $pbkdf2v2$hash${i} ${a.name}@baton.test ${a.registeredAt} ${a.registeredAt} +C default`,
      `MN ${a.name} ${a.name} ${a.registeredAt} ${a.registeredAt}`,
    );
  });
  for (const c of spec.channels) {
    lines.push(
      `MC ${c.name} ${c.registeredAt} ${c.registeredAt} +v 272 0 0`,
      `CA ${c.name} ${c.founder} +AFORaefhioqrstv ${c.registeredAt} *`,
    );
  }
  lines.push('KID 0', 'XID 0', 'QID 0');
  return lines.join('\n') + '\n';
}

/** Hosts that are the controller itself (commands run through the local shell). */
export function localAuditInventory(names: string[]): Inventory {
  return {
    stack: 'audit-local',
    hosts: names.map((name) => ({
      name,
      roles: ['audit'],
      address: 'localhost',
      connection: 'local' as const,
    })),
  };
}

export interface Png {
  width: number;
  height: number;
  /** RGBA, row by row. */
  pixels: Buffer;
}

/** Decode an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium's --screenshot writes). */
export function readPng(data: Buffer): Png {
  let at = 8;
  let width = 0;
  let height = 0;
  let colorType = 0;
  const idat: Buffer[] = [];
  while (at < data.length) {
    const length = data.readUInt32BE(at);
    const type = data.toString('latin1', at + 4, at + 8);
    const body = data.subarray(at + 8, at + 8 + length);
    if (type === 'IHDR') {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      if (body[8] !== 8 || body[12] !== 0) throw new Error('only 8-bit, non-interlaced PNGs');
      colorType = body[9]!;
    } else if (type === 'IDAT') idat.push(body);
    else if (type === 'IEND') break;
    at += 12 + length;
  }
  const channels = colorType === 6 ? 4 : colorType === 2 ? 3 : 0;
  if (!channels) throw new Error(`PNG color type ${colorType} is not RGB or RGBA`);
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const out = Buffer.alloc(width * height * 4);
  let prev = Buffer.alloc(stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const line = Buffer.from(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? line[x - channels]! : 0;
      const b = prev[x]!;
      const c = x >= channels ? prev[x - channels]! : 0;
      let add = 0;
      if (filter === 1) add = a;
      else if (filter === 2) add = b;
      else if (filter === 3) add = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        add = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      line[x] = (line[x]! + add) & 0xff;
    }
    for (let x = 0; x < width; x++) {
      out[(y * width + x) * 4] = line[x * channels]!;
      out[(y * width + x) * 4 + 1] = line[x * channels + 1]!;
      out[(y * width + x) * 4 + 2] = line[x * channels + 2]!;
      out[(y * width + x) * 4 + 3] = channels === 4 ? line[x * channels + 3]! : 255;
    }
    prev = line;
  }
  return { width, height, pixels: out };
}

/** Pixels within `tolerance` of an RGB colour. */
export function countColor(png: Png, rgb: [number, number, number], tolerance = 12): number {
  let n = 0;
  for (let i = 0; i < png.pixels.length; i += 4) {
    if (
      Math.abs(png.pixels[i]! - rgb[0]) <= tolerance &&
      Math.abs(png.pixels[i + 1]! - rgb[1]) <= tolerance &&
      Math.abs(png.pixels[i + 2]! - rgb[2]) <= tolerance
    )
      n++;
  }
  return n;
}
