// `g8os hub <verb>`: the reference zflist hub verbs (hub-api.md §12) against our hub's API
// (§6, §7). State changes go as POST (or DELETE), which the hub accepts for each of them.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Command } from 'commander';
import {
  closingPart, filePart, hubCall, hubRequest, hubTarget, parseJson, payloadOf, readText, refusal, seg, SLOW_TIMEOUT_MS, type HubTarget,
} from './hub-client';
import { formatBytes, printJson, UsageError } from './util';

interface Ctx {
  hub: HubTarget;
  /** '' when the verb runs without one */
  token: string;
}

/** What a verb prints: one line, or its JSON with --json. */
interface Outcome {
  line: string;
  json: unknown;
}

interface VerbOptions {
  hub?: string;
  token?: string;
  json?: boolean;
}

/** "name" → "name.flist", as the hub names flists. */
const flist = (name: string): string => (name.endsWith('.flist') ? name : `${name}.flist`);

/** "<repo>/<name>" → [repo, name]; only the first "/" splits (the hub refuses a "/" in a name). */
function repoAnd(arg: string, what: string): [string, string] {
  const i = arg.indexOf('/');
  if (i <= 0 || i === arg.length - 1) throw new UsageError(`${JSON.stringify(arg)}: expected ${what}`);
  return [arg.slice(0, i), arg.slice(i + 1)];
}

const me = (...parts: string[]): string => `/api/flist/me/${parts.map(seg).join('/')}`;

/** required: the verb acts on your repository; optional: it may (ls); none: public reads. */
type TokenUse = 'required' | 'optional' | 'none';

function verb(
  name: string,
  description: string,
  args: string[],
  tokenUse: TokenUse,
  run: (ctx: Ctx, args: string[], o: Record<string, unknown>) => Promise<Outcome>,
): Command {
  const c = new Command(name).description(description);
  for (const a of args) c.argument(a);
  c.option('--hub <url>', 'the hub, e.g. http://127.0.0.1:8080 (default: $G8OS_HUB)');
  if (tokenUse !== 'none') c.option('--token <token>', 'API token (default: $G8OS_TOKEN)');
  c.option('--json', 'print the hub\'s JSON answer instead of a line');
  return c.action(async (...a: unknown[]) => {
    // commander passes the arguments (a variadic one as an array, last), the options, itself
    const given = (a.slice(0, -2) as Array<string | string[] | undefined>).flatMap((v) => (Array.isArray(v) ? v : [v])) as string[];
    const o = a[a.length - 2] as VerbOptions & Record<string, unknown>;
    // An empty variable counts as unset.
    const hub = hubTarget(o.hub || process.env.G8OS_HUB || undefined);
    const token = tokenUse === 'none' ? '' : o.token || process.env.G8OS_TOKEN || '';
    if (tokenUse === 'required' && !token) throw new UsageError('no token: pass --token or set G8OS_TOKEN');
    const out = await run({ hub, token }, given, o);
    if (o.json) printJson(out.json);
    else if (out.line) process.stdout.write(`${out.line}\n`);
  });
}

export function hubVerbs(): Command[] {
  return [
    verb('whoami', 'print the user your token acts as', [], 'required', async ({ hub, token }) => {
      const body = await hubCall(hub, 'whoami', 'GET', '/api/flist/me', { token });
      return { line: payloadOf<{ username: string }>(body).username, json: body };
    }).alias('username'),

    ls(),

    verb('promote', 'copy another repository\'s flist into yours', ['<repo/flist>', '[localname]'], 'required', async ({ hub, token }, [src, local]) => {
      const [repo, name] = repoAnd(src, '<repo>/<flist>');
      const dest = flist(local ?? name);
      const body = await hubCall(hub, 'promote', 'POST', me('promote', repo, flist(name), dest), { token });
      return { line: `promoted ${repo}/${flist(name)} to ${dest}`, json: body };
    }),

    verb('link', 'make <linkname> a symlink to <source> in your repository', ['<source>', '<linkname>'], 'required', async ({ hub, token }, [source, link]) => {
      const body = await hubCall(hub, 'link', 'POST', me(flist(source), 'link', flist(link)), { token });
      return { line: `linked ${flist(link)} -> ${flist(source)}`, json: body };
    }).alias('symlink'),

    verb('crosslink', 'make <linkname> a symlink to another repository\'s flist', ['<repo/source>', '<linkname>'], 'required', async ({ hub, token }, [src, link]) => {
      const [repo, source] = repoAnd(src, '<repo>/<source>');
      const body = await hubCall(hub, 'crosslink', 'POST', me(flist(link), 'crosslink', repo, flist(source)), { token });
      return { line: `linked ${flist(link)} -> ${repo}/${flist(source)}`, json: body };
    }),

    verb('crosstag', 'make <linkname> a link to another repository\'s tag', ['<repo/tag>', '<linkname>'], 'required', async ({ hub, token }, [src, link]) => {
      const [repo, tag] = repoAnd(src, '<repo>/<tag>');
      // No ".flist" here: a tag link names a directory of flists (the hub refuses the suffix).
      const body = await hubCall(hub, 'crosstag', 'POST', me(link, 'crosstag', repo, tag), { token });
      return { line: `linked ${link} -> ${repo}/tags/${tag}`, json: body };
    }),

    verb('tag', 'add <repo/source> to your tag <tag> (as [linkname], default its name)', ['<tag>', '<repo/source>', '[linkname]'], 'required', async ({ hub, token }, [tag, src, link]) => {
      const [repo, source] = repoAnd(src, '<repo>/<source>');
      const name = flist(link ?? source);
      const body = await hubCall(hub, 'tag', 'POST', me(tag, name, 'tag', repo, flist(source)), { token });
      return { line: `tagged ${repo}/${flist(source)} as tags/${tag}/${name}`, json: body };
    }),

    verb('untag', 'remove an entry from your tag <tag> (an emptied tag goes away)', ['<tag>', '<repo/source>', '[linkname]'], 'required', async ({ hub, token }, [tag, src, link]) => {
      const [repo, source] = repoAnd(src, '<repo>/<source>');
      const name = flist(link ?? source);
      const body = await hubCall(hub, 'untag', 'DELETE', me(tag, name, 'tag', repo, flist(source)), { token });
      return { line: `untagged tags/${tag}/${name}`, json: body };
    }),

    verb('rename', 'rename an flist or link in your repository', ['<source>', '<destination>'], 'required', async ({ hub, token }, [source, dest]) => {
      const body = await hubCall(hub, 'rename', 'POST', me(flist(source), 'rename', flist(dest)), { token });
      return { line: `renamed ${flist(source)} to ${flist(dest)}`, json: body };
    }),

    // Sent as given: the hub adds ".flist" itself unless the name is a tag link (which has none).
    verb('delete', 'delete an flist or link from your repository', ['<flist>'], 'required', async ({ hub, token }, [name]) => {
      const body = await hubCall(hub, 'delete', 'DELETE', me(name), { token });
      return { line: `deleted ${name}`, json: body };
    }),

    verb('merge', 'merge flists into <target> in your repository (the first source wins on conflicts)', ['<target>', '<repo/flist...>'], 'required', async ({ hub, token }, [target, ...sources]) => {
      const body = await hubCall(hub, 'merge', 'POST', me('merge', flist(target)), {
        token, body: Buffer.from(JSON.stringify(sources)), contentType: 'application/json', timeoutMs: SLOW_TIMEOUT_MS,
      });
      return { line: `merged ${sources.length} flists into ${flist(target)}`, json: body };
    }),

    verb('readlink', 'print the target of a link', ['<user/flist>'], 'none', async ({ hub }, [arg]) => {
      const [user, name] = repoAnd(arg, '<user>/<flist>');
      const body = (await hubCall(hub, 'readlink', 'GET', `/api/flist/${seg(user)}/${seg(flist(name))}/light`)) as { type?: string; target?: string };
      if (body.type !== 'symlink' || typeof body.target !== 'string') throw new Error(`${user}/${flist(name)} is not a link (type ${body.type ?? 'unknown'})`);
      return { line: body.target, json: body };
    }),

    verb('taglink', 'print the tag a tag link points at', ['<user/link>'], 'none', async ({ hub }, [arg]) => {
      const [user, name] = repoAnd(arg, '<user>/<link>');
      const body = (await hubCall(hub, 'taglink', 'GET', `/api/flist/${seg(user)}/${seg(name)}/taglink`)) as { target: string };
      return { line: body.target, json: body };
    }),

    verb('upload-flist', 'publish an existing flist whose blocks the hub already has; prints its URL', ['<file.flist>'], 'required', uploadFlist),

    download(),
  ];
}

function ls(): Command {
  return verb('ls', 'list a repository (default: your own)', ['[user]'], 'optional', async ({ hub, token }, [user]) => {
    if (!user) {
      if (!token) throw new UsageError('no user: name one, or pass --token (or set G8OS_TOKEN) to list your own');
      user = payloadOf<{ username: string }>(await hubCall(hub, 'ls', 'GET', '/api/flist/me', { token })).username;
    }
    const rows = (await hubCall(hub, 'ls', 'GET', `/api/flist/${seg(user)}`)) as Array<{ name: string; type: string; size: string; updated: number; target?: string }>;
    const table = rows.map((r) => [r.name, r.type, r.size, new Date(r.updated * 1000).toISOString().slice(0, 16).replace('T', ' '), r.target ?? '']);
    if (table.length) table.unshift(['NAME', 'TYPE', 'SIZE', 'UPDATED (UTC)', 'TARGET']);
    const widths = table[0]?.map((_, i) => Math.max(...table.map((r) => r[i].length))) ?? [];
    return { line: table.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n'), json: rows };
  });
}

async function uploadFlist({ hub, token }: Ctx, [file]: string[]): Promise<Outcome> {
  const st = await fs.promises.stat(file).catch((e: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot read ${file}: ${e.code ?? e.message}`);
  });
  if (!st.isFile()) throw new UsageError(`${file} is not a regular file`);
  if (!file.endsWith('.flist')) throw new UsageError(`${file}: the hub takes only files named *.flist`);
  const boundary = `g8os-${crypto.randomBytes(12).toString('hex')}`;
  const head = filePart(boundary, path.basename(file));
  const tail = closingPart(boundary);
  const parts = async function* (): AsyncGenerator<Buffer> {
    yield head;
    yield* fs.createReadStream(file) as AsyncIterable<Buffer>;
    yield tail;
  };
  const body = await hubCall(hub, 'upload-flist', 'POST', '/api/flist/me/upload-flist', {
    token,
    body: { stream: Readable.from(parts()), length: head.length + st.size + tail.length },
    contentType: `multipart/form-data; boundary=${boundary}`,
    timeoutMs: SLOW_TIMEOUT_MS,
  });
  const { name } = payloadOf<{ name: string }>(body);
  // The answer names the flist, not its repository: ask whose it is for the URL.
  const user = payloadOf<{ username: string }>(await hubCall(hub, 'upload-flist', 'GET', '/api/flist/me', { token })).username;
  return { line: `${hub.text}/${user}/${name}`, json: body };
}

function download(): Command {
  return verb(
    'download',
    'download <user>/<flist> (also <user>/tags/<tag>/<flist>) and check its md5',
    ['<user/flist>'],
    'none',
    async ({ hub }, [arg], o) => {
      const [user, rest] = repoAnd(arg, '<user>/<flist>');
      const parts = rest.split('/');
      parts[parts.length - 1] = flist(parts[parts.length - 1]);
      const where = [user, ...parts].map(seg).join('/');
      const shown = `${user}/${parts.join('/')}`;
      const output = (o.output as string | undefined) ?? parts[parts.length - 1];

      const sum = await hubRequest(hub, 'GET', `/${where}.md5`);
      const sumText = await readText(sum);
      if (sum.statusCode !== 200) throw new Error(`${hub.text} refused download: ${refusal(sum, parseJson(sumText))}`);
      const expected = sumText.trim();

      const res = await hubRequest(hub, 'GET', `/${where}`);
      if (res.statusCode !== 200) throw new Error(`${hub.text} refused download: ${refusal(res, parseJson(await readText(res)))}`);
      const { size, md5 } = await saveAtomically(res, output, expected, shown, hub);
      return { line: `downloaded ${shown} to ${output} (${formatBytes(size)}, md5 ok)`, json: { flist: shown, file: output, size, md5 } };
    },
  ).option('-o, --output <file>', 'where to write it (default: ./<flist name>)');
}

/** Writes the body to a temp file next to `output`, checks it, then renames it into place. */
async function saveAtomically(res: import('node:http').IncomingMessage, output: string, expected: string, shown: string, hub: HubTarget): Promise<{ size: number; md5: string }> {
  const tmp = path.join(path.dirname(output), `.${path.basename(output)}.${crypto.randomBytes(6).toString('hex')}.part`);
  const hash = crypto.createHash('md5');
  let size = 0;
  const count = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(res, count, fs.createWriteStream(tmp, { flags: 'wx', mode: 0o644 })).catch((e: NodeJS.ErrnoException) => {
      if (e.syscall) throw new Error(`cannot write ${output}: ${e.code}`);
      throw new Error(`download of ${shown} from ${hub.text} broke off: ${e.code ?? e.message}`);
    });
    const length = Number(res.headers['content-length']);
    if (Number.isFinite(length) && size !== length) throw new Error(`download of ${shown} from ${hub.text} broke off after ${size} of ${length} bytes`);
    const md5 = hash.digest('hex');
    if (md5 !== expected) {
      // The ETag is the md5 of what was sent: if it differs from .md5, the flist changed meanwhile.
      const changed = res.headers.etag === `"${md5}"`;
      throw new Error(`${shown}: md5 ${md5} does not match the hub's ${expected}${changed ? ' (it was replaced during the download: run again)' : ''}`);
    }
    await fs.promises.rename(tmp, output);
    return { size, md5 };
  } finally {
    await fs.promises.rm(tmp, { force: true });
  }
}
