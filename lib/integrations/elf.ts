/**
 * An ELF reader for binary portability: what a binary asks of the host that
 * runs it (loader, libraries, run paths), and whether a given host has it.
 * Incident 003's second failure was a services binary whose libraries existed
 * only where it was built; `checkPortability` finds that before the handover.
 */
import { open, readlink, stat } from 'node:fs/promises';
import { posix } from 'node:path';
import { BatonError } from '../core/errors.ts';
import { condition, type Condition } from '../core/runbook.ts';
import { sh, type Cmd } from '../core/shell.ts';

/** A file that is not ELF, or an ELF file that ends before its headers do. */
export class ElfError extends BatonError {
  readonly path: string;
  constructor(path: string, message: string, hint?: string) {
    super(
      'ELF_INVALID',
      `${path}: ${message}`,
      hint ?? 'Check that the path names the right file and that it was copied completely.',
    );
    this.name = 'ElfError';
    this.path = path;
  }
}

export type ElfType = 'NONE' | 'REL' | 'EXEC' | 'DYN' | 'CORE' | 'OTHER';

/**
 * How a binary gets its code: `static` (no loader, no dynamic section),
 * `static-pie` (relocates itself, no loader, no libraries) or `dynamic`
 * (needs a loader and usually libraries).
 */
export type Linkage = 'static' | 'static-pie' | 'dynamic';

/** The facts of one ELF file that decide where it can run. */
export interface ElfInfo {
  /** Where the bytes came from, for messages. */
  path: string;
  class: 32 | 64;
  endianness: 'little' | 'big';
  osabi: number;
  type: ElfType;
  /** e_machine, and its common name (`x86-64`, `AArch64` …). */
  machine: number;
  machineName: string;
  /** PT_INTERP: the program loader the kernel starts first, if any. */
  interpreter: string | undefined;
  /** Whether the file has a PT_DYNAMIC segment. */
  dynamic: boolean;
  /** DT_NEEDED, in file order. */
  needed: string[];
  soname: string | undefined;
  /** DT_RPATH and DT_RUNPATH, split at `:`; `$ORIGIN` is left unexpanded. */
  rpath: string[];
  runpath: string[];
  /** DF_1_PIE: a position-independent executable. */
  pie: boolean;
  /** DF_1_NODEFLIB: the loader must not search its cache and default directories. */
  nodeflib: boolean;
  linkage: Linkage;
}

/** Reads `length` bytes at `offset`; returns fewer only at the end of the file. */
export type RangeReader = (offset: number, length: number) => Promise<Uint8Array>;

const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const PT_LOAD = 1;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_STRSZ = 10n;
const DT_SONAME = 14n;
const DT_RPATH = 15n;
const DT_RUNPATH = 29n;
const DT_FLAGS_1 = 0x6ffffffbn;
const DF_1_NODEFLIB = 0x800n;
const DF_1_PIE = 0x08000000n;
const PN_XNUM = 0xffff;

const MACHINES: Record<number, string> = {
  2: 'SPARC',
  3: 'i386',
  8: 'MIPS',
  20: 'PowerPC',
  21: 'PowerPC64',
  22: 's390',
  40: 'ARM',
  43: 'SPARC V9',
  62: 'x86-64',
  183: 'AArch64',
  243: 'RISC-V',
  258: 'LoongArch',
};

const TYPES: Record<number, ElfType> = { 0: 'NONE', 1: 'REL', 2: 'EXEC', 3: 'DYN', 4: 'CORE' };

/** Thrown inside a parse when bytes outside what has been read are needed. */
class NeedBytes {
  constructor(
    readonly offset: number,
    readonly length: number,
  ) {}
}

/** Byte ranges read so far; `get` throws NeedBytes for anything not held. */
class Bytes {
  readonly chunks: Array<{ offset: number; data: Uint8Array }> = [];
  /** The file's size once a short read has shown it. */
  size: number | undefined;

  constructor(readonly path: string) {}

  add(offset: number, data: Uint8Array, requested: number): void {
    this.chunks.push({ offset, data });
    if (data.length < requested) this.size = offset + data.length;
  }

  get(offset: number, length: number, what: string): Uint8Array {
    if (length === 0) return new Uint8Array(0);
    for (const c of this.chunks) {
      if (offset >= c.offset && offset + length <= c.offset + c.data.length) {
        return c.data.subarray(offset - c.offset, offset - c.offset + length);
      }
    }
    if (this.size !== undefined && offset + length > this.size) {
      throw new ElfError(
        this.path,
        `truncated: ${what} needs bytes ${offset}..${offset + length} but the file has ${this.size}`,
      );
    }
    throw new NeedBytes(offset, length);
  }
}

class View {
  constructor(
    readonly bytes: Bytes,
    readonly little: boolean,
    readonly is64: boolean,
  ) {}

  dv(offset: number, length: number, what: string): DataView {
    const b = this.bytes.get(offset, length, what);
    return new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  u16(offset: number, what: string): number {
    return this.dv(offset, 2, what).getUint16(0, this.little);
  }
  u32(offset: number, what: string): number {
    return this.dv(offset, 4, what).getUint32(0, this.little);
  }
  /** An address or offset: 4 or 8 bytes by class. */
  addr(offset: number, what: string): bigint {
    return this.is64
      ? this.dv(offset, 8, what).getBigUint64(0, this.little)
      : BigInt(this.dv(offset, 4, what).getUint32(0, this.little));
  }
  /** A signed dynamic tag. */
  tag(offset: number, what: string): bigint {
    return this.is64
      ? this.dv(offset, 8, what).getBigInt64(0, this.little)
      : BigInt(this.dv(offset, 4, what).getInt32(0, this.little));
  }
}

interface Segment {
  type: number;
  offset: number;
  vaddr: bigint;
  filesz: number;
}

function safeNumber(path: string, value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ElfError(path, `${what} ${value} is beyond any real file size`);
  }
  return Number(value);
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end === -1 ? bytes : bytes.subarray(0, end));
}

/** Parse from the bytes held so far; throws NeedBytes when more are needed. */
function parseFrom(bytes: Bytes): ElfInfo {
  const path = bytes.path;
  const ident = (() => {
    try {
      return bytes.get(0, 16, 'the ELF identification');
    } catch (e) {
      if (e instanceof ElfError) throw new ElfError(path, 'not an ELF file: shorter than 16 bytes');
      throw e;
    }
  })();
  if (ident[0] !== 0x7f || ident[1] !== 0x45 || ident[2] !== 0x4c || ident[3] !== 0x46) {
    throw new ElfError(path, 'not an ELF file: no \\x7fELF magic at offset 0');
  }
  const cls = ident[4];
  const data = ident[5];
  if (cls !== 1 && cls !== 2) throw new ElfError(path, `unknown ELF class ${cls}`);
  if (data !== 1 && data !== 2) throw new ElfError(path, `unknown ELF data encoding ${data}`);
  const is64 = cls === 2;
  const v = new View(bytes, data === 1, is64);
  const ehsize = is64 ? 64 : 52;
  v.dv(0, ehsize, 'the ELF header');

  const typeNum = v.u16(16, 'e_type');
  const machine = v.u16(18, 'e_machine');
  const phoff = safeNumber(path, v.addr(is64 ? 32 : 28, 'e_phoff'), 'e_phoff');
  const shoff = safeNumber(path, v.addr(is64 ? 40 : 32, 'e_shoff'), 'e_shoff');
  const phentsize = v.u16(is64 ? 54 : 42, 'e_phentsize');
  let phnum = v.u16(is64 ? 56 : 44, 'e_phnum');
  if (phnum === PN_XNUM && shoff !== 0) {
    // More than 65534 program headers: the real count is section 0's sh_info.
    phnum = v.u32(shoff + (is64 ? 44 : 28), 'section header 0 (sh_info)');
  }
  const minPhent = is64 ? 56 : 32;
  if (phnum > 0 && phentsize < minPhent) {
    throw new ElfError(
      path,
      `e_phentsize ${phentsize} is smaller than a program header (${minPhent})`,
    );
  }

  const segments: Segment[] = [];
  if (phnum > 0) v.dv(phoff, phnum * phentsize, 'the program headers');
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    const what = `program header ${i}`;
    segments.push({
      type: v.u32(at, what),
      offset: safeNumber(path, v.addr(at + (is64 ? 8 : 4), what), 'p_offset'),
      vaddr: v.addr(at + (is64 ? 16 : 8), what),
      filesz: safeNumber(path, v.addr(at + (is64 ? 32 : 16), what), 'p_filesz'),
    });
  }

  const interpSeg = segments.find((s) => s.type === PT_INTERP);
  const interpreter = interpSeg
    ? cString(v.bytes.get(interpSeg.offset, interpSeg.filesz, 'PT_INTERP'))
    : undefined;

  const dynSeg = segments.find((s) => s.type === PT_DYNAMIC);
  const neededOffsets: bigint[] = [];
  const rpathOffsets: bigint[] = [];
  const runpathOffsets: bigint[] = [];
  let sonameOffset: bigint | undefined;
  let strtab: bigint | undefined;
  let strsz: bigint | undefined;
  let flags1 = 0n;
  if (dynSeg) {
    const entsize = is64 ? 16 : 8;
    const count = Math.floor(dynSeg.filesz / entsize);
    v.dv(dynSeg.offset, count * entsize, 'PT_DYNAMIC');
    for (let i = 0; i < count; i++) {
      const at = dynSeg.offset + i * entsize;
      const tag = v.tag(at, 'a dynamic entry');
      const val = v.addr(at + (is64 ? 8 : 4), 'a dynamic entry');
      if (tag === DT_NULL) break;
      if (tag === DT_NEEDED) neededOffsets.push(val);
      else if (tag === DT_SONAME) sonameOffset = val;
      else if (tag === DT_RPATH) rpathOffsets.push(val);
      else if (tag === DT_RUNPATH) runpathOffsets.push(val);
      else if (tag === DT_STRTAB) strtab = val;
      else if (tag === DT_STRSZ) strsz = val;
      else if (tag === DT_FLAGS_1) flags1 = val;
    }
  }

  const strings = (() => {
    const wanted = neededOffsets.length + rpathOffsets.length + runpathOffsets.length;
    if (wanted === 0 && sonameOffset === undefined) return undefined;
    if (strtab === undefined) {
      throw new ElfError(path, 'the dynamic section names libraries but has no DT_STRTAB');
    }
    // DT_STRTAB is an address in memory: find the file offset through the PT_LOAD that maps it.
    const load = segments.find(
      (s) => s.type === PT_LOAD && strtab! >= s.vaddr && strtab! < s.vaddr + BigInt(s.filesz),
    );
    if (!load) {
      throw new ElfError(
        path,
        `DT_STRTAB address 0x${strtab.toString(16)} is in no PT_LOAD segment`,
      );
    }
    const start = load.offset + safeNumber(path, strtab - load.vaddr, 'DT_STRTAB');
    const inSegment = load.offset + load.filesz - start;
    const size =
      strsz !== undefined ? Math.min(safeNumber(path, strsz, 'DT_STRSZ'), inSegment) : inSegment;
    return v.bytes.get(start, size, 'the dynamic string table');
  })();

  const str = (offset: bigint, what: string): string => {
    if (!strings || offset >= BigInt(strings.length)) {
      throw new ElfError(path, `${what} points outside the dynamic string table`);
    }
    return cString(strings.subarray(Number(offset)));
  };
  const paths = (offsets: bigint[], what: string): string[] =>
    offsets.flatMap((o) =>
      str(o, what)
        .split(':')
        .filter((p) => p !== ''),
    );

  const needed = neededOffsets.map((o) => str(o, 'DT_NEEDED'));
  const type = TYPES[typeNum] ?? 'OTHER';
  const pie = (flags1 & DF_1_PIE) !== 0n;
  const linkage: Linkage = interpreter
    ? 'dynamic'
    : !dynSeg
      ? 'static'
      : type === 'DYN' && needed.length === 0 && (pie || sonameOffset === undefined)
        ? 'static-pie'
        : 'dynamic';

  return {
    path,
    class: is64 ? 64 : 32,
    endianness: data === 1 ? 'little' : 'big',
    osabi: ident[7] ?? 0,
    type,
    machine,
    machineName: MACHINES[machine] ?? `machine ${machine}`,
    interpreter,
    dynamic: dynSeg !== undefined,
    needed,
    soname: sonameOffset === undefined ? undefined : str(sonameOffset, 'DT_SONAME'),
    rpath: paths(rpathOffsets, 'DT_RPATH'),
    runpath: paths(runpathOffsets, 'DT_RUNPATH'),
    pie,
    nodeflib: (flags1 & DF_1_NODEFLIB) !== 0n,
    linkage,
  };
}

/**
 * Parse ELF facts from bytes: the whole file, or a prefix long enough to hold
 * the headers, the dynamic section and its string table.
 */
export function parseElf(data: Uint8Array, path = '<buffer>'): ElfInfo {
  const bytes = new Bytes(path);
  bytes.add(0, data, Number.MAX_SAFE_INTEGER);
  try {
    return parseFrom(bytes);
  } catch (e) {
    if (e instanceof NeedBytes) {
      // Unreachable: `size` is set, so a missing range is reported as truncation.
      throw new ElfError(path, `truncated at ${e.offset}`);
    }
    throw e;
  }
}

/** The first read: the ELF header and, in every binary linkers write, the program headers. */
export const ELF_FIRST_READ = 4096;

/**
 * Read ELF facts through `read`, fetching only the ranges the parse needs:
 * the header and program headers (one read), then PT_INTERP and PT_DYNAMIC,
 * then the dynamic string table: three or four small reads, wherever in the
 * file those are. The dynamic section usually lies past the code, so a fixed
 * prefix (`head -c N`) is not enough in general; use `rangeCommand` remotely.
 */
export async function readElf(read: RangeReader, path = '<remote>'): Promise<ElfInfo> {
  const bytes = new Bytes(path);
  const fetch = async (offset: number, length: number): Promise<void> => {
    const data = await read(offset, length);
    bytes.add(offset, data, length);
  };
  await fetch(0, ELF_FIRST_READ);
  for (let round = 0; round < 16; round++) {
    try {
      return parseFrom(bytes);
    } catch (e) {
      if (!(e instanceof NeedBytes)) throw e;
      await fetch(e.offset, e.length);
    }
  }
  throw new ElfError(path, 'needed more than 16 reads; the headers point all over the file');
}

/** Read ELF facts from a local file without reading all of it. */
export async function readElfFile(path: string): Promise<ElfInfo> {
  const file = await open(path, 'r');
  try {
    return await readElf(async (offset, length) => {
      const buf = Buffer.alloc(length);
      const { bytesRead } = await file.read(buf, 0, length, offset);
      return buf.subarray(0, bytesRead);
    }, path);
  } finally {
    await file.close();
  }
}

/**
 * The remote half of a RangeReader: a POSIX command that prints `length`
 * bytes at `offset` of `path` as base64 (ssh results are text). Decode the
 * output with `decodeRange`.
 */
export function rangeCommand(path: string, offset: number, length: number): Cmd {
  return sh`tail -c +${offset + 1} ${path} | head -c ${length} | base64`;
}

export function decodeRange(stdout: string): Uint8Array {
  return Buffer.from(stdout.replace(/\s+/g, ''), 'base64');
}

/** What a host can tell about its files; see `localResolver`, and implement it over ssh for real hosts. */
export interface HostResolver {
  /** The host's name, used in every message. */
  readonly host: string;
  /** `uname -m` of the host, when known: a binary for another machine is refused. */
  readonly machine?: string;
  /** The first of `paths` that exists on the host (following symlinks), or undefined. */
  firstExisting(paths: readonly string[]): Promise<string | undefined>;
  /** The loader cache's path for a library (`ldconfig -p`), if the host has a cache. */
  fromCache?(name: string, elf: ElfInfo): Promise<string | undefined>;
  /** ELF facts of a file on the host: libraries found are then checked for class and their own needs. */
  inspect?(path: string): Promise<ElfInfo>;
  /** The loader's default directories for a binary like `elf`; defaults to `defaultSearchDirs`. */
  defaultDirs?(elf: ElfInfo): string[];
}

const TRIPLES: Record<number, string> = {
  62: 'x86_64-linux-gnu',
  183: 'aarch64-linux-gnu',
  3: 'i386-linux-gnu',
  40: 'arm-linux-gnueabihf',
  243: 'riscv64-linux-gnu',
  21: 'powerpc64le-linux-gnu',
  22: 's390x-linux-gnu',
};

/** Where a Debian-style loader looks last for a library of this class and machine. */
export function defaultSearchDirs(elf: Pick<ElfInfo, 'machine' | 'class'>): string[] {
  const triple = TRIPLES[elf.machine];
  const multiarch = triple ? [`/lib/${triple}`, `/usr/lib/${triple}`] : [];
  const wide = elf.class === 64 ? ['/lib64', '/usr/lib64'] : ['/lib32', '/usr/lib32'];
  return [...multiarch, '/lib', '/usr/lib', ...wide];
}

/** One entry of the loader cache: where a library is, and ldconfig's tags (`libc6,x86-64`). */
export interface CacheEntry {
  path: string;
  tags: string;
}

/** Parse `ldconfig -p` output: library name to its entries, in cache order. */
export function parseLdconfigCache(output: string): Map<string, CacheEntry[]> {
  const cache = new Map<string, CacheEntry[]>();
  for (const line of output.split('\n')) {
    const m = /^\s+(\S+)\s+\(([^)]*)\)\s+=>\s+(\S.*)$/.exec(line);
    if (!m) continue;
    const list = cache.get(m[1]!) ?? [];
    list.push({ path: m[3]!.trim(), tags: m[2]! });
    cache.set(m[1]!, list);
  }
  return cache;
}

/** A POSIX command printing the first existing path of `paths` (exit 1 when none exists). */
export function firstExistingCommand(paths: readonly string[]): Cmd {
  return sh`for p in ${paths}; do if test -e "$p"; then printf '%s\\n' "$p"; exit 0; fi; done; exit 1`;
}

/**
 * Runs a read-only command on a host and returns its output: a runbook's
 * `probe` has this shape. With `allowFail` a non-zero exit is returned, not thrown.
 */
export type HostCommand = (
  command: Cmd,
  options?: { allowFail?: boolean },
) => Promise<{ stdout: string; exitCode: number | null }>;

/** ELF facts of a file on another host, read through `run` a few KB at a time. */
export async function readRemoteElf(run: HostCommand, path: string): Promise<ElfInfo> {
  return readElf(async (offset, length) => {
    const result = await run(rangeCommand(path, offset, length));
    return decodeRange(result.stdout);
  }, path);
}

/**
 * A HostResolver for a host reached through `run` (ssh): `uname -m` and the
 * loader cache (`ldconfig -p`) are read once, each lookup is one `test -e`
 * loop, and libraries found are inspected remotely.
 */
export async function remoteResolver(host: string, run: HostCommand): Promise<HostResolver> {
  const [uname, ldconfig] = await Promise.all([
    run(sh`uname -m`, { allowFail: true }),
    run(sh`/sbin/ldconfig -p 2>/dev/null || ldconfig -p`, { allowFail: true }),
  ]);
  const cache = parseLdconfigCache(ldconfig.exitCode === 0 ? ldconfig.stdout : '');
  const machine = uname.exitCode === 0 ? uname.stdout.trim() : '';
  return {
    host,
    ...(machine ? { machine } : {}),
    async firstExisting(paths) {
      if (paths.length === 0) return undefined;
      const result = await run(firstExistingCommand(paths), { allowFail: true });
      return result.exitCode === 0 ? result.stdout.split('\n')[0] : undefined;
    },
    async fromCache(name, elf) {
      // ldconfig tags 64-bit entries (x86-64, AArch64 …) with "64"; the class check after this settles it.
      const entries = cache.get(name) ?? [];
      const wide = entries.find((e) => /64/.test(e.tags) === (elf.class === 64));
      return (wide ?? entries[0])?.path;
    },
    inspect: (path) => readRemoteElf(run, path),
  };
}

/** Resolve `path` inside `root` as a chroot would: absolute symlinks stay inside root. */
async function resolveInRoot(root: string, path: string): Promise<string | undefined> {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  const done: string[] = [];
  let hops = 0;
  while (parts.length > 0) {
    const part = parts.shift()!;
    if (part === '..') {
      done.pop();
      continue;
    }
    const here = posix.join(root, ...done, part);
    let target: string | undefined;
    try {
      target = await readlink(here);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      if (code !== 'EINVAL') throw e;
    }
    if (target === undefined) {
      done.push(part);
      continue;
    }
    if (++hops > 40) return undefined;
    const rest = target.split('/').filter((p) => p !== '' && p !== '.');
    if (target.startsWith('/')) done.length = 0;
    parts.unshift(...rest);
  }
  const full = posix.join(root, ...done);
  try {
    await stat(full);
    return full;
  } catch {
    return undefined;
  }
}

/**
 * A HostResolver over a directory holding a host's filesystem (a testnet
 * host's root, or `/` for this machine). Paths are resolved as a chroot would.
 */
export function localResolver(
  host: string,
  root: string,
  options: { machine?: string; defaultDirs?: (elf: ElfInfo) => string[] } = {},
): HostResolver {
  const resolver: HostResolver = {
    host,
    async firstExisting(paths) {
      for (const p of paths) {
        if (await resolveInRoot(root, p)) return p;
      }
      return undefined;
    },
    async inspect(path) {
      const real = await resolveInRoot(root, path);
      if (!real) throw new ElfError(path, `does not exist on ${host}`);
      return readElfFile(real);
    },
    ...(options.defaultDirs ? { defaultDirs: options.defaultDirs } : {}),
    ...(options.machine ? { machine: options.machine } : {}),
  };
  return resolver;
}

export type PortabilityPolicy = 'resolvable' | 'static';

export interface PortabilityOptions {
  /** `resolvable` (default): every need is met on the host; `static`: no loader and no libraries at all. */
  policy?: PortabilityPolicy;
  /** Where the binary will be on the host; `$ORIGIN` expands to its directory. Defaults to the ELF's path. */
  installPath?: string;
  /** ELF facts of the libraries the binary loads, as read where it was built: their own needs are checked too. */
  libraries?: ElfInfo[];
  /** LD_LIBRARY_PATH the service is started with on the host. */
  ldLibraryPath?: string[];
}

export interface NeedResult {
  kind: 'interpreter' | 'library';
  name: string;
  /** The object that needs it (the binary or a library). */
  neededBy: string;
  found: boolean;
  /** Where the host has it. */
  path?: string;
  /** Paths tried, in order; a library's directories, or the interpreter's path. */
  searched: string[];
  /** Why a candidate that exists was not taken (wrong class or machine). */
  skipped?: string[];
}

export interface PortabilityReport {
  host: string;
  binary: string;
  policy: PortabilityPolicy;
  ok: boolean;
  needs: NeedResult[];
  /** One per unmet need, or one passing condition when every need is met. */
  conditions: Condition[];
}

const UNAME: Record<number, string[]> = {
  62: ['x86_64', 'amd64'],
  183: ['aarch64', 'arm64'],
  3: ['i386', 'i486', 'i586', 'i686', 'x86_64'],
  40: ['armv7l', 'armv6l', 'armv8l', 'aarch64'],
  243: ['riscv64'],
  21: ['ppc64le', 'ppc64'],
  22: ['s390x'],
};

function expandTokens(dir: string, origin: string, elf: ElfInfo): string {
  const lib = TRIPLES[elf.machine]
    ? `lib/${TRIPLES[elf.machine]}`
    : elf.class === 64
      ? 'lib64'
      : 'lib';
  const platform = UNAME[elf.machine]?.[0] ?? elf.machineName;
  return dir
    .replace(/\$ORIGIN|\$\{ORIGIN\}/g, origin)
    .replace(/\$LIB|\$\{LIB\}/g, lib)
    .replace(/\$PLATFORM|\$\{PLATFORM\}/g, platform);
}

function compatible(binary: ElfInfo, lib: ElfInfo): string | undefined {
  if (lib.class !== binary.class) return `ELF${lib.class}, not ELF${binary.class}`;
  if (lib.machine !== binary.machine) return `${lib.machineName}, not ${binary.machineName}`;
  if (lib.endianness !== binary.endianness) return `${lib.endianness}-endian`;
  return undefined;
}

/**
 * Check that `binary` will start on the resolver's host: its interpreter
 * exists there and every library it (and each library it loads) needs is
 * found in the order the loader searches (DT_RPATH when there is no
 * DT_RUNPATH, LD_LIBRARY_PATH, DT_RUNPATH, the loader cache, the default
 * directories). Under policy `static` any interpreter or library is refused.
 */
export async function checkPortability(
  binary: ElfInfo,
  target: HostResolver,
  options: PortabilityOptions = {},
): Promise<PortabilityReport> {
  const policy = options.policy ?? 'resolvable';
  const host = target.host;
  const installPath = options.installPath ?? binary.path;
  const name = posix.basename(installPath);
  const needs: NeedResult[] = [];
  const conditions: Condition[] = [];

  if (target.machine) {
    const accepted = UNAME[binary.machine] ?? [];
    if (!accepted.includes(target.machine)) {
      conditions.push(
        condition(`${name} matches the machine of ${host}`, false, {
          expected: `a ${target.machine} binary`,
          found: `${binary.machineName} (ELF${binary.class})`,
          remedy: `Build ${name} for ${target.machine}.`,
        }),
      );
    }
  }

  if (policy === 'static') {
    if (binary.interpreter || binary.needed.length > 0) {
      const parts = [
        ...(binary.interpreter ? [`interpreter ${binary.interpreter}`] : []),
        ...(binary.needed.length > 0 ? [`NEEDED ${binary.needed.join(', ')}`] : []),
      ];
      conditions.push(
        condition(`${name} is statically linked (policy static) for ${host}`, false, {
          expected: 'no interpreter and no needed libraries',
          found: parts.join('; '),
          remedy: `Rebuild ${name} statically (musl-gcc -static or gcc -static) and ship that build.`,
        }),
      );
    }
    if (binary.interpreter) {
      needs.push({
        kind: 'interpreter',
        name: binary.interpreter,
        neededBy: installPath,
        found: false,
        searched: [],
      });
    }
    for (const lib of binary.needed) {
      needs.push({ kind: 'library', name: lib, neededBy: installPath, found: false, searched: [] });
    }
    return finish();
  }

  if (binary.interpreter) {
    const found = await target.firstExisting([binary.interpreter]);
    needs.push({
      kind: 'interpreter',
      name: binary.interpreter,
      neededBy: installPath,
      found: found !== undefined,
      ...(found ? { path: found } : {}),
      searched: [binary.interpreter],
    });
  } else if (binary.needed.length > 0) {
    needs.push({
      kind: 'interpreter',
      name: '(none)',
      neededBy: installPath,
      found: false,
      searched: [],
    });
  }

  const known = new Map<string, ElfInfo>();
  for (const lib of options.libraries ?? []) {
    known.set(posix.basename(lib.path), lib);
    if (lib.soname) known.set(lib.soname, lib);
  }

  // Breadth-first, as the loader does; each library once. `chain` holds the
  // DT_RPATH directories of the requesting object's loaders, up to the binary.
  type Item = { lib: string; by: ElfInfo; byPath: string; chain: string[] };
  const ownRpath = (elf: ElfInfo, at: string): string[] =>
    elf.runpath.length > 0 ? [] : elf.rpath.map((d) => expandTokens(d, posix.dirname(at), elf));
  const seen = new Set<string>();
  const queue: Item[] = binary.needed.map((lib) => ({
    lib,
    by: binary,
    byPath: installPath,
    chain: [],
  }));
  while (queue.length > 0) {
    const item = queue.shift()!;
    if (seen.has(item.lib)) continue;
    seen.add(item.lib);
    const origin = posix.dirname(item.byPath);
    let result: NeedResult;
    if (item.lib.includes('/')) {
      const p = posix.resolve(origin, item.lib);
      const found = await target.firstExisting([p]);
      result = {
        kind: 'library',
        name: item.lib,
        neededBy: item.byPath,
        found: found !== undefined,
        ...(found ? { path: found } : {}),
        searched: [p],
      };
    } else {
      const dirs: string[] = [];
      if (item.by.runpath.length === 0) dirs.push(...ownRpath(item.by, item.byPath), ...item.chain);
      dirs.push(...(options.ldLibraryPath ?? []));
      dirs.push(...item.by.runpath.map((d) => expandTokens(d, origin, item.by)));
      const candidates = [...new Set(dirs)].map((d) => posix.join(d, item.lib));
      result = await locate(item.lib, item.byPath, candidates, !item.by.nodeflib);
      if (result.found && result.path && target.inspect) {
        const facts = await target.inspect(result.path).catch(() => undefined);
        if (facts) known.set(item.lib, facts);
      }
    }
    needs.push(result);
    const facts = known.get(item.lib);
    if (result.found && facts) {
      const chain = [...ownRpath(item.by, item.byPath), ...item.chain];
      const at = result.path ?? facts.path;
      for (const lib of facts.needed) queue.push({ lib, by: facts, byPath: at, chain });
    }
  }
  return finish();

  async function locate(
    lib: string,
    neededBy: string,
    candidates: string[],
    system: boolean,
  ): Promise<NeedResult> {
    const searched = [...candidates];
    const skipped: string[] = [];
    // The loader skips a file of the wrong class or machine and keeps searching.
    const tryList = async (list: string[]): Promise<string | undefined> => {
      let rest = list;
      while (rest.length > 0) {
        const found = await target.firstExisting(rest);
        if (!found) return undefined;
        const why = target.inspect
          ? await target
              .inspect(found)
              .then((facts) => compatible(binary, facts))
              .catch(() => undefined)
          : undefined;
        if (!why) return found;
        skipped.push(`${found} (${why})`);
        rest = rest.slice(rest.indexOf(found) + 1);
      }
      return undefined;
    };
    let found = await tryList(candidates);
    if (!found && system && target.fromCache) {
      const cached = await target.fromCache(lib, binary);
      searched.push('the ld.so cache');
      if (cached) found = await tryList([cached]);
    }
    if (!found && system) {
      const defaults = (target.defaultDirs?.(binary) ?? defaultSearchDirs(binary)).map((d) =>
        posix.join(d, lib),
      );
      searched.push(...defaults);
      found = await tryList(defaults);
    }
    const upTo = found ? searched.indexOf(found) : -1;
    return {
      kind: 'library',
      name: lib,
      neededBy,
      found: found !== undefined,
      ...(found ? { path: found } : {}),
      searched: upTo >= 0 ? searched.slice(0, upTo + 1) : searched,
      ...(skipped.length ? { skipped } : {}),
    };
  }

  function finish(): PortabilityReport {
    if (policy === 'resolvable') {
      for (const need of needs.filter((n) => !n.found)) {
        if (need.kind === 'interpreter' && need.name === '(none)') {
          conditions.push(
            condition(`${name} has a program interpreter`, false, {
              expected: 'PT_INTERP naming the loader, since the binary needs libraries',
              found: 'no PT_INTERP',
              remedy: `Relink ${name}; as it is no host can start it.`,
            }),
          );
        } else if (need.kind === 'interpreter') {
          conditions.push(
            condition(`interpreter ${need.name} of ${name} on ${host}`, false, {
              expected: `${need.name} exists on ${host}`,
              found: `missing on ${host}`,
              remedy: `Install the loader on ${host}, or ship a statically linked ${name}.`,
            }),
          );
        } else {
          const by = need.neededBy === installPath ? name : posix.basename(need.neededBy);
          conditions.push(
            condition(`library ${need.name} of ${name} on ${host}`, false, {
              expected: `${need.name} (needed by ${by}) found on ${host}`,
              found: `not found on ${host} in ${need.searched.join(', ') || 'any directory'}${
                need.skipped ? `; skipped ${need.skipped.join(', ')}` : ''
              }`,
              remedy: `Install ${need.name} on ${host}, or ship a statically linked ${name}.`,
            }),
          );
        }
      }
    }
    const ok = conditions.length === 0;
    if (ok) {
      const libs = needs.filter((n) => n.kind === 'library').length;
      conditions.push(
        condition(`${name} runs on ${host} (policy ${policy})`, true, {
          expected:
            policy === 'static' ? 'no interpreter and no needed libraries' : 'every need is met',
          found:
            binary.linkage === 'dynamic'
              ? `interpreter and ${libs} librar${libs === 1 ? 'y' : 'ies'} found`
              : `${binary.linkage}, needs nothing`,
        }),
      );
    }
    return { host, binary: installPath, policy, ok, needs, conditions };
  }
}
