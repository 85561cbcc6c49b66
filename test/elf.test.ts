import { execFile, execFileSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkPortability,
  decodeRange,
  ElfError,
  firstExistingCommand,
  localResolver,
  parseElf,
  parseLdconfigCache,
  rangeCommand,
  readElf,
  readElfFile,
  readRemoteElf,
  remoteResolver,
  type ElfInfo,
  type HostCommand,
  type HostResolver,
} from '../lib/integrations/elf.ts';
import { findExecutable } from '../lib/transports/which.ts';
import { assertPrerequisite, skipUnless, testnetRequired } from './support/require.ts';

const run = promisify(execFile);

const toolchainMissing = ((): string | undefined => {
  for (const [tool, pkg] of [
    ['gcc', 'gcc and libc6-dev'],
    ['musl-gcc', 'musl-tools'],
    ['readelf', 'binutils'],
    ['as', 'binutils'],
  ] as const) {
    if (!findExecutable(tool)) return `needs ${tool} (Debian package ${pkg})`;
  }
  return undefined;
})();

const ATHEME = '/usr/bin/atheme-services';
const LOADER = '/lib64/ld-linux-x86-64.so.2';
const MULTIARCH = '/lib/x86_64-linux-gnu';
const isRoot = process.getuid?.() === 0;

/** What readelf says, to hold the reader to an independent implementation. */
function readelfFacts(path: string): {
  interpreter: string | undefined;
  needed: string[];
  soname: string | undefined;
  rpath: string[];
  runpath: string[];
} {
  const out = execFileSync('readelf', ['-W', '-l', '-d', path], { encoding: 'utf8' });
  const all = (tag: string): string[] =>
    [...out.matchAll(new RegExp(`\\(${tag}\\)\\s+[^\\[]*\\[([^\\]]*)\\]`, 'g'))].map((m) => m[1]!);
  return {
    interpreter: /Requesting program interpreter: ([^\]]+)\]/.exec(out)?.[1],
    needed: all('NEEDED'),
    soname: all('SONAME')[0],
    rpath: all('RPATH').flatMap((p) => p.split(':')),
    runpath: all('RUNPATH').flatMap((p) => p.split(':')),
  };
}

/**
 * Rewrite a little-endian ELF file as big-endian, field by field (headers,
 * program headers, dynamic entries): the same facts in the other byte order.
 * No big-endian toolchain is installed here, and objcopy refuses to convert.
 */
function toBigEndian(le: Buffer): Buffer {
  const b = Buffer.from(le);
  const is64 = b[4] === 2;
  const swap = (at: number, size: 2 | 4 | 8): void => {
    b.subarray(at, at + size).reverse();
  };
  b[5] = 2;
  const half = [16, 18];
  const word = is64 ? [20, 48] : [20, 36];
  const addr = is64 ? [24, 32, 40] : [24, 28, 32];
  const halves2 = is64 ? [52, 54, 56, 58, 60, 62] : [40, 42, 44, 46, 48, 50];
  const phoff = Number(is64 ? le.readBigUInt64LE(32) : le.readUInt32LE(28));
  const phentsize = le.readUInt16LE(is64 ? 54 : 42);
  const phnum = le.readUInt16LE(is64 ? 56 : 44);
  for (const at of [...half, ...halves2]) swap(at, 2);
  for (const at of word) swap(at, 4);
  for (const at of addr) swap(at, is64 ? 8 : 4);
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    const type = le.readUInt32LE(p);
    if (is64) {
      swap(p, 4);
      swap(p + 4, 4);
      for (let f = 8; f < 56; f += 8) swap(p + f, 8);
    } else {
      for (let f = 0; f < 32; f += 4) swap(p + f, 4);
    }
    if (type === 2) {
      const off = Number(is64 ? le.readBigUInt64LE(p + 8) : le.readUInt32LE(p + 4));
      const size = Number(is64 ? le.readBigUInt64LE(p + 32) : le.readUInt32LE(p + 16));
      const ent = is64 ? 8 : 4;
      for (let at = off; at + ent <= off + size; at += ent) swap(at, ent);
    }
  }
  return b;
}

/** A scratch filesystem root holding the loader and libc of this machine. */
function hostRoot(base: string, name: string): string {
  const root = join(base, name);
  for (const file of [join(MULTIARCH, 'ld-linux-x86-64.so.2'), join(MULTIARCH, 'libc.so.6')]) {
    mkdirSync(join(root, dirname(file)), { recursive: true });
    copyFileSync(file, join(root, file));
  }
  mkdirSync(join(root, '/lib64'), { recursive: true });
  copyFileSync(LOADER, join(root, LOADER));
  return root;
}

describe.skipIf(skipUnless(toolchainMissing, 'ELF reader on real binaries'))(
  'ELF reader on real binaries',
  () => {
    let dir: string;
    const bin = (name: string): string => join(dir, name);
    const cc = async (...args: string[]): Promise<void> => {
      await run(args[0]!, args.slice(1), { cwd: dir });
    };

    beforeAll(async () => {
      assertPrerequisite(toolchainMissing);
      dir = mkdtempSync(join(tmpdir(), 'baton-elf-'));
      writeFileSync(
        bin('hello.c'),
        '#include <stdio.h>\nint main(void){puts("hello");return 0;}\n',
      );
      writeFileSync(bin('lib.c'), 'int baton_answer(void){return 42;}\n');
      writeFileSync(
        bin('svc.c'),
        '#include <stdio.h>\nint baton_answer(void);\nint main(void){printf("%d\\n", baton_answer());return 0;}\n',
      );
      writeFileSync(
        bin('start.S'),
        '.globl _start\n.text\n_start:\n mov $1, %eax\n xor %ebx, %ebx\n int $0x80\n',
      );
      writeFileSync(bin('f.S'), '.globl f\n.text\nf: ret\n');
      await Promise.all([
        cc('gcc', '-o', 'dyn', 'hello.c'),
        cc('gcc', '-static', '-o', 'static', 'hello.c'),
        cc('gcc', '-static-pie', '-o', 'static-pie', 'hello.c'),
        cc('musl-gcc', '-static', '-o', 'musl-static', 'hello.c'),
        cc(
          'gcc',
          '-shared',
          '-fPIC',
          '-o',
          'libbaton-runpath.so',
          'lib.c',
          '-Wl,-soname,libbaton.so.1',
          '-Wl,-rpath,/opt/x/lib',
          '-Wl,--enable-new-dtags',
        ),
        cc(
          'gcc',
          '-shared',
          '-fPIC',
          '-o',
          'libbaton-rpath.so',
          'lib.c',
          '-Wl,-soname,libbaton.so.1',
          '-Wl,-rpath,/opt/x/lib:$ORIGIN/../lib',
          '-Wl,--disable-new-dtags',
        ),
        (async () => {
          await cc('as', '--32', '-o', 'start32.o', 'start.S');
          await cc('as', '--32', '-o', 'f32.o', 'f.S');
          await cc('ld', '-m', 'elf_i386', '-o', 'static32', 'start32.o');
          await cc(
            'ld',
            '-m',
            'elf_i386',
            '-shared',
            '-soname',
            'libbaton.so.1',
            '-o',
            'libbaton32.so',
            'f32.o',
          );
          await cc(
            'ld',
            '-m',
            'elf_i386',
            '-o',
            'dyn32',
            'start32.o',
            'libbaton32.so',
            '--dynamic-linker',
            '/lib/ld-linux.so.2',
            '-rpath',
            '/opt/tiny',
            '--disable-new-dtags',
          );
        })(),
      ]);
      copyFileSync(bin('libbaton-runpath.so'), bin('libbaton.so.1'));
      await cc('gcc', '-o', 'svc', 'svc.c', '-L.', '-l:libbaton.so.1', '-Wl,-rpath,/opt/baton/lib');
      await cc('gcc', '-static', '-o', 'svc-static', 'svc.c', 'lib.c');
    });

    afterAll(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('reads a gcc binary: interpreter, NEEDED libc.so.6, PIE', async () => {
      const elf = await readElfFile(bin('dyn'));
      expect(elf).toMatchObject({
        class: 64,
        endianness: 'little',
        type: 'DYN',
        machineName: 'x86-64',
        interpreter: LOADER,
        dynamic: true,
        needed: ['libc.so.6'],
        pie: true,
        linkage: 'dynamic',
      });
    });

    it('reads gcc -static and musl-gcc -static as static: no interpreter, no dynamic section', async () => {
      for (const name of ['static', 'musl-static']) {
        const elf = await readElfFile(bin(name));
        expect(elf, name).toMatchObject({
          type: 'EXEC',
          interpreter: undefined,
          dynamic: false,
          needed: [],
          linkage: 'static',
        });
      }
    });

    it('reads gcc -static-pie as static-pie: a dynamic section, but no interpreter and no NEEDED', async () => {
      const elf = await readElfFile(bin('static-pie'));
      expect(elf).toMatchObject({
        type: 'DYN',
        interpreter: undefined,
        dynamic: true,
        needed: [],
        pie: true,
        linkage: 'static-pie',
      });
    });

    it('reads DT_SONAME and DT_RUNPATH (--enable-new-dtags) or DT_RPATH of a shared library', async () => {
      expect(await readElfFile(bin('libbaton-runpath.so'))).toMatchObject({
        soname: 'libbaton.so.1',
        runpath: ['/opt/x/lib'],
        rpath: [],
        interpreter: undefined,
      });
      expect(await readElfFile(bin('libbaton-rpath.so'))).toMatchObject({
        soname: 'libbaton.so.1',
        rpath: ['/opt/x/lib', '$ORIGIN/../lib'],
        runpath: [],
      });
    });

    it('reads ELF32 (i386) executables and libraries', async () => {
      expect(await readElfFile(bin('static32'))).toMatchObject({
        class: 32,
        machineName: 'i386',
        type: 'EXEC',
        linkage: 'static',
      });
      expect(await readElfFile(bin('dyn32'))).toMatchObject({
        class: 32,
        interpreter: '/lib/ld-linux.so.2',
        needed: ['libbaton.so.1'],
        rpath: ['/opt/tiny'],
        linkage: 'dynamic',
      });
      expect(await readElfFile(bin('libbaton32.so'))).toMatchObject({
        class: 32,
        soname: 'libbaton.so.1',
      });
    });

    it('reads big-endian ELF64 and ELF32 to the same facts', async () => {
      for (const name of ['dyn', 'libbaton-rpath.so', 'dyn32', 'static']) {
        const le = readFileSync(bin(name));
        const little = parseElf(le, name);
        const big = parseElf(toBigEndian(le), name);
        expect(big, name).toEqual({ ...little, endianness: 'big' });
      }
    });

    it('agrees with readelf on every binary built here and on system binaries', async () => {
      const files = [
        'dyn',
        'static',
        'static-pie',
        'musl-static',
        'libbaton-runpath.so',
        'libbaton-rpath.so',
        'svc',
        'dyn32',
        'libbaton32.so',
      ].map(bin);
      files.push('/usr/bin/ls', join(MULTIARCH, 'libc.so.6'), '/usr/bin/node');
      if (statSync(ATHEME, { throwIfNoEntry: false })) files.push(ATHEME);
      for (const file of files) {
        const elf = await readElfFile(file);
        const facts = readelfFacts(file);
        expect(
          {
            interpreter: elf.interpreter,
            needed: elf.needed,
            soname: elf.soname,
            rpath: elf.rpath,
            runpath: elf.runpath,
          },
          file,
        ).toEqual(facts);
      }
    });

    it.skipIf(
      skipUnless(
        statSync(ATHEME, { throwIfNoEntry: false })
          ? undefined
          : `needs ${ATHEME} (Debian package atheme-services)`,
        'the atheme-services binary',
      ),
    )('reads atheme-services as installed: a PIE that needs libathemecore.so.1', async () => {
      const elf = await readElfFile(ATHEME);
      expect(elf.type).toBe('DYN');
      expect(elf.pie).toBe(true);
      expect(elf.linkage).toBe('dynamic');
      expect(elf.interpreter).toBe(LOADER);
      expect(elf.needed).toContain('libathemecore.so.1');
      expect(elf.needed).toContain('libc.so.6');
    });

    it('reads the headers remotely through tail | head | base64, a few KB of the file', async () => {
      const file = statSync(ATHEME, { throwIfNoEntry: false }) ? ATHEME : '/usr/bin/node';
      let bytes = 0;
      let reads = 0;
      const elf = await readElf(async (offset, length) => {
        reads++;
        const { stdout } = await run('sh', ['-c', rangeCommand(file, offset, length).text]);
        const data = decodeRange(stdout);
        bytes += data.length;
        return data;
      }, file);
      expect(elf).toEqual({ ...(await readElfFile(file)), path: file });
      expect(reads).toBeLessThanOrEqual(4);
      expect(bytes).toBeLessThan(16 * 1024);
      expect(bytes).toBeLessThan(statSync(file).size);
    });

    it('refuses a file that is not ELF, and a truncated one, saying what is missing', async () => {
      writeFileSync(bin('script'), '#!/bin/sh\necho hi\n');
      await expect(readElfFile(bin('script'))).rejects.toThrow(
        /script: not an ELF file: no \\x7fELF magic/,
      );
      writeFileSync(bin('empty'), '');
      await expect(readElfFile(bin('empty'))).rejects.toThrow(
        /not an ELF file: shorter than 16 bytes/,
      );

      const whole = readFileSync(bin('dyn'));
      const err = (() => {
        try {
          parseElf(whole.subarray(0, 40), 'head');
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(ElfError);
      expect((err as ElfError).code).toBe('ELF_INVALID');
      expect((err as ElfError).message).toMatch(
        /^head: truncated: the ELF header needs bytes 0\.\.64 but the file has 40$/,
      );

      // Cut inside the dynamic section: the header parses, the libraries do not.
      const dynOffset = Number(
        /DYNAMIC\s+(0x[0-9a-f]+)/.exec(
          execFileSync('readelf', ['-W', '-l', bin('dyn')], { encoding: 'utf8' }),
        )![1],
      );
      writeFileSync(bin('cut'), whole.subarray(0, dynOffset + 20));
      await expect(readElfFile(bin('cut'))).rejects.toThrow(
        /cut: truncated: PT_DYNAMIC needs bytes/,
      );
    });

    describe('portability', () => {
      let nebula: HostResolver;
      let emergency1: HostResolver;
      let roots: { nebula: string; emergency1: string };

      beforeAll(() => {
        roots = { nebula: hostRoot(dir, 'nebula'), emergency1: hostRoot(dir, 'emergency1') };
        // Only nebula has the service's own library, as in incident 003.
        mkdirSync(join(roots.nebula, 'opt/baton/lib'), { recursive: true });
        copyFileSync(bin('libbaton.so.1'), join(roots.nebula, 'opt/baton/lib/libbaton.so.1'));
        for (const [host, root] of Object.entries(roots)) {
          mkdirSync(join(root, 'srv'), { recursive: true });
          copyFileSync(bin('svc'), join(root, 'srv/svc'));
          copyFileSync(bin('svc-static'), join(root, 'srv/svc-static'));
          void host;
        }
        nebula = localResolver('nebula', roots.nebula);
        emergency1 = localResolver('emergency1', roots.emergency1);
      });

      it('passes where the library exists and refuses the host without it, naming library and host', async () => {
        const svc = await readElfFile(bin('svc'));
        const here = await checkPortability(svc, nebula, { installPath: '/srv/svc' });
        expect(here.ok).toBe(true);
        expect(here.needs.find((n) => n.name === 'libbaton.so.1')?.path).toBe(
          '/opt/baton/lib/libbaton.so.1',
        );
        // libc's own need (the loader) is followed too.
        expect(here.needs.map((n) => n.name)).toContain('ld-linux-x86-64.so.2');

        const there = await checkPortability(svc, emergency1, { installPath: '/srv/svc' });
        expect(there.ok).toBe(false);
        const failed = there.conditions.filter((c) => !c.ok);
        expect(failed).toHaveLength(1);
        expect(failed[0]!.name).toBe('library libbaton.so.1 of svc on emergency1');
        expect(failed[0]!.found).toMatch(
          /^not found on emergency1 in \/opt\/baton\/lib\/libbaton\.so\.1, /,
        );
        expect(failed[0]!.remedy).toMatch(/statically linked svc/);
        expect(there.needs.find((n) => n.name === 'libc.so.6')?.found).toBe(true);
      });

      it.skipIf(!isRoot && !testnetRequired)(
        'agrees with the real loader: chroot runs svc on nebula, fails on emergency1',
        async () => {
          const good = await run('chroot', [roots.nebula, '/srv/svc']);
          expect(good.stdout).toBe('42\n');
          const bad = await run('chroot', [roots.emergency1, '/srv/svc']).then(
            () => undefined,
            (e: { stderr: string; code: number }) => e,
          );
          expect(bad?.code).toBe(127);
          expect(bad?.stderr).toMatch(/error while loading shared libraries: libbaton\.so\.1/);
          const stat = await run('chroot', [roots.emergency1, '/srv/svc-static']);
          expect(stat.stdout).toBe('42\n');
        },
      );

      it('policy static passes a static binary and refuses a dynamic one, naming interpreter and NEEDED', async () => {
        const stat = await checkPortability(await readElfFile(bin('svc-static')), emergency1, {
          policy: 'static',
          installPath: '/srv/svc-static',
        });
        expect(stat.ok).toBe(true);
        expect(stat.conditions).toEqual([
          {
            name: 'svc-static runs on emergency1 (policy static)',
            ok: true,
            expected: 'no interpreter and no needed libraries',
            found: 'static, needs nothing',
          },
        ]);

        const musl = await checkPortability(await readElfFile(bin('musl-static')), emergency1, {
          policy: 'static',
        });
        expect(musl.ok).toBe(true);

        const dyn = await checkPortability(await readElfFile(bin('svc')), nebula, {
          policy: 'static',
          installPath: '/srv/svc',
        });
        expect(dyn.ok).toBe(false);
        expect(dyn.conditions).toEqual([
          {
            name: 'svc is statically linked (policy static) for nebula',
            ok: false,
            expected: 'no interpreter and no needed libraries',
            found: `interpreter ${LOADER}; NEEDED libbaton.so.1, libc.so.6`,
            remedy: 'Rebuild svc statically (musl-gcc -static or gcc -static) and ship that build.',
          },
        ]);
      });

      it('refuses a missing interpreter, naming it and the host', async () => {
        const bare = localResolver('bare', join(dir, 'bare'));
        mkdirSync(join(dir, 'bare'), { recursive: true });
        const report = await checkPortability(await readElfFile(bin('dyn')), bare);
        const names = report.conditions.filter((c) => !c.ok).map((c) => c.name);
        expect(names).toEqual([
          `interpreter ${LOADER} of dyn on bare`,
          'library libc.so.6 of dyn on bare',
        ]);
      });

      it('follows $ORIGIN and DT_RPATH, and skips a library of the wrong class as the loader does', async () => {
        const root = join(dir, 'origin');
        mkdirSync(join(root, 'app/bin'), { recursive: true });
        mkdirSync(join(root, 'app/lib32'), { recursive: true });
        mkdirSync(join(root, 'app/lib'), { recursive: true });
        copyFileSync(bin('libbaton32.so'), join(root, 'app/lib32/libbaton.so.1'));
        copyFileSync(bin('libbaton.so.1'), join(root, 'app/lib/libbaton.so.1'));
        const resolver = localResolver('origin', root);
        const svc: ElfInfo = {
          ...(await readElfFile(bin('svc'))),
          rpath: ['$ORIGIN/../lib32', '$ORIGIN/../lib'],
          runpath: [],
          needed: ['libbaton.so.1'],
        };
        const report = await checkPortability(svc, resolver, { installPath: '/app/bin/svc' });
        const need = report.needs.find((n) => n.name === 'libbaton.so.1')!;
        expect(need).toMatchObject({
          found: true,
          path: '/app/lib/libbaton.so.1',
          searched: ['/app/lib32/libbaton.so.1', '/app/lib/libbaton.so.1'],
          skipped: ['/app/lib32/libbaton.so.1 (ELF32, not ELF64)'],
        });
      });

      it('resolves candidates on a host with one shell command, and reads ldconfig -p', async () => {
        const cmd = firstExistingCommand(['/nonexistent/x', LOADER, '/bin/sh']);
        const { stdout } = await run('sh', ['-c', cmd.text]);
        expect(stdout).toBe(`${LOADER}\n`);
        const none = await run('sh', ['-c', firstExistingCommand(["/no'pe", '/no pe']).text]).catch(
          (e: { code: number }) => e.code,
        );
        expect(none).toBe(1);
        const cache = parseLdconfigCache(execFileSync('ldconfig', ['-p'], { encoding: 'utf8' }));
        expect(cache.get('libc.so.6')?.[0]).toMatchObject({
          path: expect.stringMatching(/libc\.so\.6$/),
          tags: expect.stringMatching(/x86-64/),
        });
      });

      it('resolves over a command runner as over ssh: uname, ldconfig -p, test -e and remote header reads', async () => {
        const commands: string[] = [];
        const sh: HostCommand = async (cmd, options) => {
          commands.push(cmd.text);
          try {
            const { stdout } = await run('sh', ['-c', cmd.text], { maxBuffer: 64 << 20 });
            return { stdout, exitCode: 0 };
          } catch (e) {
            const failed = e as { code?: unknown; stdout?: string };
            if (options?.allowFail && typeof failed.code === 'number') {
              return { stdout: failed.stdout ?? '', exitCode: failed.code };
            }
            throw e;
          }
        };
        const file = statSync(ATHEME, { throwIfNoEntry: false }) ? ATHEME : '/usr/bin/node';
        expect(await readRemoteElf(sh, file)).toEqual(await readElfFile(file));

        const self = await remoteResolver('self', sh);
        expect(self.machine).toBe('x86_64');
        const report = await checkPortability(await readRemoteElf(sh, file), self);
        expect(report.ok).toBe(true);
        expect(report.needs.filter((n) => n.kind === 'library').every((n) => n.found)).toBe(true);

        const svc = await checkPortability(await readElfFile(bin('svc')), self, {
          installPath: '/srv/svc',
        });
        expect(svc.conditions.filter((c) => !c.ok).map((c) => c.name)).toEqual([
          'library libbaton.so.1 of svc on self',
        ]);
        expect(svc.conditions[0]!.found).toMatch(/the ld\.so cache/);
        expect(commands.some((c) => c.startsWith('tail -c +'))).toBe(true);
      });
    });
  },
);
