/**
 * The template cache: one directory per key under the templates dir (default
 * /var/lib/membrane/templates, 0700), holding the compiled object and
 * meta.json (sources, compiler, flags, shape, the object's sha256), plus one
 * file per endpoint using it. A key is compiled at most once however many
 * endpoints ask at the same time: concurrent callers in this process share
 * one promise, and other processes wait on a flock of `<key>.lock` and then
 * find the entry built. An entry whose meta.json is unreadable, names another
 * key or does not match the object's checksum is rebuilt.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, rmSync, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { InvalidInputError, MembraneError } from "../../errors.js";
import { packageRoot } from "../../package-root.js";
import { ensurePrivateDir, writeFileAtomic } from "../../sys/atomic-file.js";
import { LockBusyError, lockFile, type FileLock } from "../../sys/file-lock.js";
import { ClangCompiler, type TemplateCompiler } from "./compiler.js";
import { templateKey, type TemplateKey } from "./key.js";
import { resolveShape, type TemplateShape } from "./shape.js";
import { Template, type TemplateMeta } from "./template.js";
import type { EndpointValues } from "./endpoint-values.js";

export const DEFAULT_TEMPLATES_DIR = "/var/lib/membrane/templates";
const KEY_RE = /^[0-9a-f]{64}$/;
const LOCK_POLL_MS = 20;

export interface TemplateCacheOptions {
  /** Where templates live (default /var/lib/membrane/templates). */
  dir?: string;
  /** The datapath sources (default the package's bpf/). */
  sourceDir?: string;
  compiler?: TemplateCompiler;
}

/** An endpoint recorded as using a template. */
export interface TemplateEndpoint extends EndpointValues {
  instantiatedAt: string;
}

/** A template directory as `bpf template list/get` shows it. */
export interface TemplateEntry {
  key: string;
  dir: string;
  /** "ok", or why the entry is unusable (it is rebuilt on next use). */
  status: string;
  meta?: TemplateMeta;
  endpoints: TemplateEndpoint[];
}

export interface TemplateCacheStats {
  /** Compiler runs by this cache. */
  compiles: number;
  /** Entries found on disk and verified. */
  hits: number;
  /** Entries found corrupt or incomplete and compiled again. */
  rebuilt: number;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class TemplateCache {
  readonly dir: string;
  readonly sourceDir: string;
  readonly compiler: TemplateCompiler;
  readonly stats: TemplateCacheStats = { compiles: 0, hits: 0, rebuilt: 0 };
  readonly #inflight = new Map<string, Promise<Template>>();
  readonly #ready = new Map<string, Template>();

  constructor(opts: TemplateCacheOptions = {}) {
    this.dir = opts.dir ?? DEFAULT_TEMPLATES_DIR;
    if (!this.dir.startsWith("/")) throw new InvalidInputError(`templates dir must be an absolute path, got ${JSON.stringify(this.dir)}`);
    this.sourceDir = opts.sourceDir ?? join(packageRoot(), "bpf");
    this.compiler = opts.compiler ?? new ClangCompiler();
  }

  /** The key `program` with `shape` has now (sources as they are on disk). */
  keyOf(program: string, shape: Partial<TemplateShape> = {}): TemplateKey {
    return templateKey(this.sourceDir, program, this.compiler, resolveShape(shape));
  }

  /** The template for `program` with `shape`: from memory, from disk (verified) or compiled. */
  get(program: string, shape: Partial<TemplateShape> = {}): Promise<Template> {
    let resolved: TemplateShape;
    let key: TemplateKey;
    try {
      resolved = resolveShape(shape);
      key = templateKey(this.sourceDir, program, this.compiler, resolved);
    } catch (err) {
      return Promise.reject(err);
    }
    const ready = this.#ready.get(key.key);
    if (ready) return Promise.resolve(ready);
    let pending = this.#inflight.get(key.key);
    if (!pending) {
      pending = this.#obtain(key, resolved).then(
        (t) => {
          this.#ready.set(key.key, t);
          this.#inflight.delete(key.key);
          return t;
        },
        (err) => {
          this.#inflight.delete(key.key);
          throw err;
        },
      );
      this.#inflight.set(key.key, pending);
    }
    return pending;
  }

  async #obtain(key: TemplateKey, shape: TemplateShape): Promise<Template> {
    ensurePrivateDir(this.dir, "templates dir");
    const first = this.#readVerified(key.key);
    if (first instanceof Template) {
      this.stats.hits++;
      return first;
    }
    const lock = await this.#lock(key.key);
    try {
      // Another process may have built it while we waited.
      const again = this.#readVerified(key.key);
      if (again instanceof Template) {
        this.stats.hits++;
        return again;
      }
      if (again !== "missing") this.stats.rebuilt++;
      return await this.#build(key, shape);
    } finally {
      lock.release();
    }
  }

  async #lock(key: string): Promise<FileLock> {
    const path = join(this.dir, `${key}.lock`);
    for (;;) {
      try {
        return lockFile(path, { wait: false, what: `template ${key.slice(0, 12)}` });
      } catch (err) {
        if (!(err instanceof LockBusyError)) throw err;
        await sleep(LOCK_POLL_MS); // another process is compiling this key
      }
    }
  }

  async #build(key: TemplateKey, shape: TemplateShape): Promise<Template> {
    const dir = this.entryDir(key.key);
    rmSync(dir, { recursive: true, force: true });
    ensurePrivateDir(dir, "template dir");
    const objectPath = join(dir, `${key.program}.o`);
    const tmp = join(dir, `.${key.program}.${process.pid}.compiling.o`);
    const started = performance.now();
    this.stats.compiles++;
    try {
      await this.compiler.compile(join(this.sourceDir, `${key.program}.c`), tmp, key.defines);
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    const compileMs = performance.now() - started;
    const elf = readFileSync(tmp);
    writeFileAtomic(objectPath, elf);
    unlinkSync(tmp);
    const meta: TemplateMeta = {
      key: key.key, program: key.program, shape, sources: key.sources, compiler: key.compiler, flags: key.flags, defines: key.defines,
      objectSha256: sha256(elf), objectBytes: elf.length, compiledAt: new Date().toISOString(), compileMs: Math.round(compileMs),
    };
    // meta.json last: an entry without it is incomplete and gets rebuilt.
    writeFileAtomic(join(dir, "meta.json"), `${JSON.stringify(meta, null, 2)}\n`);
    return new Template(meta, dir, objectPath, elf);
  }

  /** The verified template on disk, "missing", or why the entry is unusable. */
  #readVerified(key: string): Template | string {
    const dir = this.entryDir(key);
    let metaText: string;
    try {
      metaText = readFileSync(join(dir, "meta.json"), "utf8");
    } catch {
      return "missing";
    }
    let meta: TemplateMeta;
    try {
      meta = JSON.parse(metaText) as TemplateMeta;
    } catch {
      return "corrupt: meta.json is not JSON";
    }
    if (meta.key !== key) return `corrupt: meta.json names key ${String(meta.key).slice(0, 12)}`;
    const objectPath = join(dir, `${meta.program}.o`);
    let elf: Uint8Array;
    try {
      elf = readFileSync(objectPath);
    } catch {
      return `corrupt: ${meta.program}.o is missing`;
    }
    if (elf.length !== meta.objectBytes || sha256(elf) !== meta.objectSha256) return `corrupt: ${meta.program}.o does not match its checksum`;
    try {
      return new Template(meta, dir, objectPath, elf);
    } catch (err) {
      return `corrupt: ${(err as Error).message}`;
    }
  }

  entryDir(key: string): string {
    if (!KEY_RE.test(key)) throw new InvalidInputError(`template key must be 64 hex digits, got ${JSON.stringify(key)}`);
    return join(this.dir, key);
  }

  /** Records that endpoint `values.id` runs template `key` (and no other). */
  recordEndpoint(key: string, values: EndpointValues): void {
    this.forgetEndpoint(values.id);
    const dir = join(this.entryDir(key), "endpoints");
    ensurePrivateDir(dir, "template endpoints dir");
    const record: TemplateEndpoint = { ...values, instantiatedAt: new Date().toISOString() };
    writeFileAtomic(join(dir, `${values.id}.json`), `${JSON.stringify(record)}\n`);
  }

  /** Forgets endpoint `id` in every template. */
  forgetEndpoint(id: number): void {
    for (const key of this.#keysOnDisk()) rmSync(join(this.dir, key, "endpoints", `${id}.json`), { force: true });
  }

  #keysOnDisk(): string[] {
    try {
      return readdirSync(this.dir).filter((n) => KEY_RE.test(n) && statSync(join(this.dir, n)).isDirectory()).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw new MembraneError("TEMPLATES_UNREADABLE", `read templates dir ${this.dir}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Every template directory with its metadata, status and endpoints. */
  list(): TemplateEntry[] {
    return this.#keysOnDisk().map((key) => this.#entry(key));
  }

  /** One template by its key or a unique prefix of it (at least 4 hex digits). */
  find(prefix: string): TemplateEntry {
    if (!/^[0-9a-f]{4,64}$/.test(prefix)) throw new InvalidInputError(`template hash must be 4 to 64 lowercase hex digits, got ${JSON.stringify(prefix)}`);
    const keys = this.#keysOnDisk().filter((k) => k.startsWith(prefix));
    if (keys.length === 0) throw new MembraneError("NOT_FOUND", `no template ${prefix} in ${this.dir}`);
    if (keys.length > 1) throw new InvalidInputError(`template hash ${prefix} is ambiguous: ${keys.map((k) => k.slice(0, 12)).join(", ")}`);
    return this.#entry(keys[0]!);
  }

  #entry(key: string): TemplateEntry {
    const dir = join(this.dir, key);
    const verified = this.#readVerified(key);
    let meta: TemplateMeta | undefined;
    if (verified instanceof Template) meta = verified.meta;
    else {
      try {
        meta = JSON.parse(readFileSync(join(dir, "meta.json"), "utf8")) as TemplateMeta;
      } catch {
        meta = undefined;
      }
    }
    const endpoints: TemplateEndpoint[] = [];
    try {
      for (const f of readdirSync(join(dir, "endpoints")).filter((n) => /^\d+\.json$/.test(n))) {
        try {
          endpoints.push(JSON.parse(readFileSync(join(dir, "endpoints", f), "utf8")) as TemplateEndpoint);
        } catch {
          // a record half-deleted by a concurrent forget: not an endpoint any more
        }
      }
    } catch {
      // no endpoints dir: no endpoint uses it
    }
    endpoints.sort((a, b) => a.id - b.id);
    return { key, dir, status: verified instanceof Template ? "ok" : verified, meta, endpoints };
  }

  /**
   * Removes every template no endpoint uses and `keep` does not name, and
   * leftovers of interrupted compiles; for the agent's start, before it
   * instantiates anything. A template being compiled by another process
   * (its lock held) is left alone. Returns the removed keys.
   */
  removeUnused(keep: Iterable<string> = []): string[] {
    const kept = new Set(keep);
    const removed: string[] = [];
    for (const entry of this.list()) {
      if (kept.has(entry.key) || (entry.endpoints.length > 0 && entry.status === "ok")) continue;
      let lock: FileLock;
      try {
        lock = lockFile(join(this.dir, `${entry.key}.lock`), { wait: false });
      } catch (err) {
        if (err instanceof LockBusyError) continue;
        throw err;
      }
      try {
        rmSync(entry.dir, { recursive: true, force: true });
        this.#ready.delete(entry.key);
        removed.push(entry.key);
      } finally {
        // The lock file stays: unlinking it would let a waiter lock a dead inode while a newcomer locks a new one.
        lock.release();
      }
    }
    return removed;
  }
}
