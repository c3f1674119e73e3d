// The core0 wire protocol against a real agent and its real redis-server: the key sequence a
// client observes, result fields and types, states, job control, back-pressure and bad input.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../src/agent/client';
import type { Result } from '../src/agent/types';
import { g8os } from './helpers/cli';
import { type AgentProcess, startAgent } from './helpers/agent';

let agent: AgentProcess;
let client: Client;
let raw: Redis;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-proto-'));

beforeAll(async () => {
  agent = await startAgent();
  client = await agent.client();
  raw = new Redis({ path: agent.socket });
});

afterAll(async () => {
  raw?.disconnect();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const uuid = (): string => crypto.randomUUID();

/** What the alpha-2 client sends (only these fields; queue/max_time null unless given). */
async function push(command: string, args: unknown, extra: Record<string, unknown> = {}): Promise<string> {
  const id = (extra.id as string) ?? uuid();
  await raw.rpush('core:default', JSON.stringify({ id, command, arguments: args, queue: null, max_time: null, ...extra }));
  return id;
}

async function result(id: string, timeoutS = 20): Promise<Result> {
  const r = await client.blocking().brpoplpush(`result:${id}`, `result:${id}`, timeoutS);
  if (!r) throw new Error(`no result for ${id}`);
  return JSON.parse(r) as Result;
}

const sh = (script: string): { name: string; args: string[]; dir: string; stdin: string; env: null } => ({ name: 'sh', args: ['-c', script], dir: '', stdin: '', env: null });

describe('lifecycle', () => {
  it('flag on pickup with no TTL while running; TTL set before the result appears; 300 s expiry', async () => {
    const id = await push('core.system', sh('sleep 1; echo done'));
    // watch the keys the way clients do, in atomic snapshots
    const seen: { flag: number; ttl: number; result: number }[] = [];
    const until = Date.now() + 15_000;
    for (;;) {
      const [[, flag], [, ttl], [, res]] = (await raw.multi().exists(`result:${id}:flag`).ttl(`result:${id}:flag`).exists(`result:${id}`).exec()) as [unknown, number][];
      seen.push({ flag, ttl, result: res });
      if (res) break;
      if (Date.now() > until) throw new Error('no result');
      await new Promise((r) => setTimeout(r, 5));
    }
    const running = seen.filter((s) => s.flag && !s.result);
    expect(running.length).toBeGreaterThan(10);
    expect(running.every((s) => s.ttl === -1)).toBe(true);
    for (const s of seen.filter((x) => x.result)) expect(s.ttl).toBeGreaterThan(0);
    expect(await raw.lrange(`result:${id}:flag`, 0, -1)).toEqual(['']);
    const ttl = await raw.ttl(`result:${id}`);
    expect(ttl).toBeGreaterThan(290);
    expect(ttl).toBeLessThanOrEqual(300);
    const r = await result(id);
    expect(r.state).toBe('SUCCESS');
    expect(r.streams).toEqual(['done\n', '']);
    // BRPOPLPUSH result result: re-readable until expiry
    expect(await raw.llen(`result:${id}`)).toBe(1);
  });

  it('result fields and types for a built-in (core.ping)', async () => {
    const before = Date.now();
    const r = await result(await push('core.ping', {}));
    expect(Object.keys(r).sort()).toEqual(['code', 'command', 'container', 'data', 'id', 'level', 'starttime', 'state', 'streams', 'tags', 'time']);
    expect(r).toMatchObject({ command: 'core.ping', state: 'SUCCESS', level: 20, container: 0, code: 0, tags: null, streams: ['', ''] });
    expect(JSON.parse(r.data)).toMatch(/^PONG /);
    expect(Number.isInteger(r.starttime) && r.starttime >= before - 5 && r.starttime <= Date.now()).toBe(true);
    expect(Number.isInteger(r.time) && r.time >= 0 && r.time < 5000).toBe(true);
  });

  it('a job without output has data "" and level 0; exit status in code as 1000 + status', async () => {
    const ok = await result(await push('core.system', sh('true')));
    expect(ok).toMatchObject({ state: 'SUCCESS', data: '', level: 0, code: 0, streams: ['', ''] });
    const bad = await result(await push('core.system', sh('echo oops >&2; exit 3')));
    expect(bad).toMatchObject({ state: 'ERROR', code: 1003, streams: ['', 'oops\n'] });
  });

  it('UNKNOWN_CMD: data "", level 0, no streams; the agent keeps serving', async () => {
    const r = await result(await push('no.such.command', {}));
    expect(r).toMatchObject({ state: 'UNKNOWN_CMD', data: '', level: 0 });
    expect(r.streams).toBeUndefined();
    expect(r.code).toBeGreaterThan(0);
    expect(await client.ping()).toMatch(/^PONG/);
  });

  it('DUPILICATE_ID (sic) for an id that is running', async () => {
    const id = await push('core.system', sh('sleep 1'));
    await client.blocking().brpoplpush(`result:${id}:flag`, `result:${id}:flag`, 10);
    await push('core.ping', {}, { id });
    const first = await result(id);
    expect(first).toMatchObject({ state: 'DUPILICATE_ID', data: 'duplicate job id', level: 0 });
    // the original still ends and publishes its own result behind it
    for (let i = 0; i < 100 && (await raw.llen(`result:${id}`)) < 2; i++) await new Promise((r) => setTimeout(r, 50));
    const all = (await raw.lrange(`result:${id}`, 0, -1)).map((x) => JSON.parse(x) as Result);
    expect(all.map((x) => x.state)).toEqual(['DUPILICATE_ID', 'SUCCESS']);
  });

  it('a re-used id after completion looks running again (flag TTL -1) and has no stale result', async () => {
    const id = await push('core.ping', {});
    await result(id);
    await push('core.system', sh('sleep 1'), { id });
    await new Promise((r) => setTimeout(r, 300));
    expect(await raw.ttl(`result:${id}:flag`)).toBe(-1);
    expect(await raw.exists(`result:${id}`)).toBe(0);
    expect((await result(id)).state).toBe('SUCCESS');
  });

  it('tags come back in the type they were sent (string, list, null)', async () => {
    expect((await result(await push('core.ping', {}, { tags: 'a b' }))).tags).toBe('a b');
    expect((await result(await push('core.ping', {}, { tags: ['x', 'y'] }))).tags).toEqual(['x', 'y']);
    expect((await result(await push('core.ping', {}))).tags).toBeNull();
  });

  it('stream: true publishes every message on stream:<id> and ends with an EOF flag', async () => {
    const id = await push('core.system', sh('echo one; echo two >&2; echo 20::{}'), { stream: true });
    const entries: { level: number; text: string; flags: number; core: number; command: string }[] = [];
    for (;;) {
      const got = await client.blocking().blpop(`stream:${id}`, 10);
      if (!got) throw new Error('stream ended without EOF');
      const e = JSON.parse(got[1]) as { core: number; command: string; message: { message: string; meta: number; epoch: number } };
      expect(e.message.epoch).toBeGreaterThan(1e18); // nanoseconds
      entries.push({ level: e.message.meta >> 16, text: e.message.message, flags: e.message.meta & 0xffff, core: e.core, command: e.command });
      if (e.message.meta & 0x6) break;
    }
    expect(entries.filter((e) => e.level === 1).map((e) => e.text)).toEqual(['one']);
    expect(entries.filter((e) => e.level === 2).map((e) => e.text)).toEqual(['two']);
    expect(entries.every((e) => e.core === 0 && e.command === id)).toBe(true);
    expect(entries.at(-1)!.flags & 0x2).toBe(0x2);
    // nobody reading: the list expires by itself
    const id2 = await push('core.system', sh('echo x'), { stream: true });
    await result(id2);
    const ttl = await raw.ttl(`stream:${id2}`);
    expect(ttl > 0 && ttl <= 60).toBe(true);
  });
});

describe('level-prefix output', () => {
  it('the last result-level message becomes data; multi-line blocks; unterminated blocks and empty lines dropped; both streams parsed', async () => {
    const script = [
      'echo "20::{\\"a\\":1}"',
      'echo',
      'echo plain',
      'echo "21:::first"; echo "second: 2"; echo ":::"',
      'echo "3::a log line"',
      'echo "9::very bad" >&2',
      'echo "30::{\\"job\\":true}" >&2',
      'echo "20:::never"; echo "closed"',
    ].join('; ');
    const r = await result(await push('core.system', sh(script)));
    expect(r.state).toBe('SUCCESS');
    expect(r.level).toBe(30);
    expect(r.data).toBe('{"job":true}');
    expect(r.critical).toBe('very bad');
    expect(r.streams).toEqual(['plain\n', '']);
    const y = await result(await push('core.system', sh('echo "21:::first"; echo "second: 2"; echo ":::"')));
    expect(y).toMatchObject({ level: 21, data: 'first\nsecond: 2' });
  });

  it('a process cannot forge internal levels (50, >= 100)', async () => {
    const r = await result(await push('core.system', sh('echo "50::exit"; echo "100::x"')));
    expect(r.streams).toEqual(['100::x\n', '50::exit\n']);
    expect(r.level).toBe(0);
  });
});

describe('job control', () => {
  it('max_time: killed and TIMEOUT', async () => {
    const t0 = Date.now();
    const r = await result(await push('core.system', sh('echo started; sleep 30'), { max_time: 1 }));
    expect(r.state).toBe('TIMEOUT');
    expect(r.streams![0]).toBe('started\n');
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('job.kill: KILLED; job.list shows the running job with its command', async () => {
    const id = await push('core.system', sh('sleep 30'), { tags: 'victim' });
    await new Promise((r) => setTimeout(r, 300));
    const list = await client.json<{ cmd: { id: string; tags: string }; starttime: number; rss: number }[]>('job.list', { id });
    expect(list).toHaveLength(1);
    expect(list[0].cmd).toMatchObject({ id, tags: 'victim', command: 'core.system' });
    expect(list[0].rss).toBeGreaterThan(0);
    await client.json('job.kill', { id, signal: 15 });
    const r = await result(id);
    expect(r.state).toBe('KILLED');
    await expect(client.json('job.list', { id })).rejects.toThrow(`Process with id '${id}' doesn't exist`);
  });

  it('queue: jobs of one queue run one after another, in order', async () => {
    const log = path.join(tmp, 'queue.log');
    const ids: string[] = [];
    for (const n of [1, 2, 3]) ids.push(await push('core.system', sh(`echo start${n} >> ${log}; sleep 0.3; echo end${n} >> ${log}`), { queue: 'q1' }));
    const rs = await Promise.all(ids.map((id) => result(id)));
    expect(rs.every((r) => r.state === 'SUCCESS')).toBe(true);
    expect(fs.readFileSync(log, 'utf8').split('\n').filter(Boolean)).toEqual(['start1', 'end1', 'start2', 'end2', 'start3', 'end3']);
  });

  it('max_restart: a failing job runs that many times, the last run is published', async () => {
    const f = path.join(tmp, 'restart.log');
    const r = await result(await push('core.system', sh(`echo run >> ${f}; echo "try $(wc -l < ${f})"; exit 1`), { max_restart: 3 }));
    expect(r.state).toBe('ERROR');
    expect(fs.readFileSync(f, 'utf8').trim().split('\n')).toHaveLength(3);
    expect(r.streams![0].trim()).toBe('try 3');
  });

  it('recurring_period: re-runs until killed, then publishes KILLED', async () => {
    const f = path.join(tmp, 'recurring.log');
    const id = await push('core.system', sh(`echo tick >> ${f}`), { recurring_period: 1 });
    await new Promise((r) => setTimeout(r, 2500));
    expect(await raw.exists(`result:${id}`)).toBe(0);
    await client.json('job.kill', { id });
    const r = await result(id);
    expect(r.state).toBe('KILLED');
    expect(fs.readFileSync(f, 'utf8').trim().split('\n').length).toBeGreaterThanOrEqual(2);
  });

  it('core.subscribe re-emits a running job\'s messages on its own stream; logger.set_level checks its level', async () => {
    const target = await push('core.system', sh('sleep 0.5; echo one; sleep 0.3; echo two'));
    await client.blocking().brpoplpush(`result:${target}:flag`, `result:${target}:flag`, 10);
    const sub = await client.raw('core.subscribe', { id: target }, { stream: true });
    const seen: string[] = [];
    await sub.stream((level, text) => level === 1 && seen.push(text));
    expect(seen).toEqual(['one', 'two']);
    expect((await sub.get()).state).toBe('SUCCESS');
    const gone = await result(await push('core.subscribe', { id: 'no-such-job' }));
    expect(JSON.parse(gone.data)).toBe("Process with id 'no-such-job' doesn't exist");
    expect(await client.json('logger.set_level', { level: 'DEBUG' })).toBeNull();
    expect(await client.json('logger.set_level', { level: 'INFO' })).toBeNull();
    await expect(client.json('logger.set_level', { level: 'LOUD' })).rejects.toThrow(/one of CRITICAL/);
  });

  it('core.state and process.list answer with numbers', async () => {
    const s = await client.json<{ cpu: number; rss: number; vms: number; swap: number }>('core.state', {});
    expect(s.rss).toBeGreaterThan(10 * 2 ** 20); // the agent itself
    const ps = await client.json<{ pid: number }[]>('process.list', { pid: null });
    expect(ps.length).toBeGreaterThan(3);
  });

  it('core.system: dir, stdin and env (added to the agent environment)', async () => {
    const r = await result(await push('core.system', { name: 'sh', args: ['-c', 'pwd; cat; echo "$FOO:${PATH:+path}"'], dir: '/tmp', stdin: 'in\n', env: { FOO: 'bar' } }));
    expect(r.streams![0]).toBe('/tmp\nin\nbar:path\n');
    const bash = await (await client.bash('echo $((6*7))')).get();
    expect(bash.streams![0]).toBe('42\n');
  });
});

describe('bad input', () => {
  it('malformed JSON and a command without id are dropped; the agent keeps serving', async () => {
    await raw.rpush('core:default', '{not json', '[1,2]', JSON.stringify({ command: 'core.ping', arguments: {} }), JSON.stringify({ id: '', command: 'core.ping' }));
    expect(await client.ping()).toMatch(/^PONG/);
    expect(agent.log()).toMatch(/dropped a command that is not JSON/);
    expect(agent.log()).toMatch(/dropped a command without an id/);
    expect(await raw.exists('result::flag')).toBe(0);
  });

  it('wrong argument types get an ERROR naming the argument (code 400)', async () => {
    const r = await result(await push('core.system', { name: 5, args: [] }));
    expect(r).toMatchObject({ state: 'ERROR', level: 20, code: 400 });
    expect(JSON.parse(r.data)).toBe("argument 'name': expected string, got int");
    const r2 = await result(await push('job.kill', { id: 'x', signal: 'TERM' }));
    expect(JSON.parse(r2.data)).toBe("argument 'signal': expected int, got string");
    const r3 = await result(await push('core.system', 'not an object'));
    expect(JSON.parse(r3.data)).toMatch(/arguments: expected an object/);
  });

  it('envelope fields of the wrong type get an ERROR result instead of being dropped', async () => {
    const r = await result(await push('core.ping', {}, { max_time: 'soon' }));
    expect(r).toMatchObject({ state: 'ERROR', code: 400 });
    expect(JSON.parse(r.data)).toBe("field 'max_time' must be an integer or null");
    const r2 = await result(await push('core.ping', {}, { tags: [1, 2] }));
    expect(JSON.parse(r2.data)).toMatch(/field 'tags'/);
    const r3 = await result(await push(5 as unknown as string, {}));
    expect(JSON.parse(r3.data)).toMatch(/field 'command'/);
  });

  it('a missing executable and a missing working directory are ERRORs with a JSON-string reason', async () => {
    const r = await result(await push('core.system', { name: '/no/such/binary', args: [] }));
    expect(r).toMatchObject({ state: 'ERROR', level: 20 });
    expect(JSON.parse(r.data)).toMatch(/\/no\/such\/binary.*not found/);
    const r2 = await result(await push('core.system', { name: 'true', dir: '/no/such/dir' }));
    expect(JSON.parse(r2.data)).toBe("working directory '/no/such/dir' does not exist");
  });

  it('300 commands pushed at once all get their results', async () => {
    const cmds = Array.from({ length: 300 }, (_, i) => ({ id: uuid(), command: i % 2 ? 'core.ping' : 'core.system', arguments: i % 2 ? {} : sh(`echo ${i}`), queue: null, max_time: null }));
    await raw.rpush('core:default', ...cmds.map((c) => JSON.stringify(c)));
    const rs = await Promise.all(cmds.map((c) => result(c.id, 60)));
    expect(rs.filter((r) => r.state === 'SUCCESS')).toHaveLength(300);
    rs.forEach((r, i) => i % 2 === 0 && expect(r.streams![0]).toBe(`${i}\n`));
  }, 120_000);
});

describe('agent process', () => {
  it('max_jobs applies back-pressure without deadlock: the inbox waits while the slots are busy', async () => {
    const conf = path.join(tmp, 'g8os.toml');
    fs.writeFileSync(conf, '[main]\nmax_jobs = 2\n');
    const small = await startAgent({ config: conf });
    const c = await small.client();
    const r = new Redis({ path: small.socket });
    try {
      const ids = [uuid(), uuid(), uuid(), uuid()];
      await r.rpush('core:default', ...ids.map((id) => JSON.stringify({ id, command: 'core.system', arguments: sh('sleep 1'), queue: null, max_time: null })));
      await new Promise((res) => setTimeout(res, 500));
      // two run; the third was taken (flagged) and waits for a slot; the fourth stays in the inbox
      expect(await r.exists(`result:${ids[0]}:flag`, `result:${ids[1]}:flag`, `result:${ids[2]}:flag`)).toBe(3);
      expect(await r.exists(`result:${ids[3]}:flag`)).toBe(0);
      expect(await r.llen('core:default')).toBe(1);
      for (const id of ids) expect((await c.blocking().brpoplpush(`result:${id}`, `result:${id}`, 10)) !== null).toBe(true);
      expect(await c.ping()).toMatch(/^PONG/);
    } finally {
      r.disconnect();
      await small.stop();
    }
  });

  it('with a password: clients without it are refused clearly, with it they work', async () => {
    const locked = await startAgent({ password: 's3cret' });
    const bad = await g8os(['ping', '--agent', `redis://127.0.0.1:${locked.port}`]);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toMatch(/^g8os: agent .*: wrong or missing password/);
    const wrong = await g8os(['ping', '--agent', `redis://:nope@127.0.0.1:${locked.port}`]);
    expect(wrong.stderr.trim()).toMatch(/wrong or missing password/);
    const ok = await g8os(['ping', '--agent', `redis://127.0.0.1:${locked.port}`, '--password', 's3cret']);
    expect(ok.stdout).toMatch(/^PONG/);
    // the agent is unharmed
    const c = await locked.client('s3cret');
    expect(await c.ping()).toMatch(/^PONG/);
    await locked.stop();
  });

  it('binds loopback only by default', () => {
    const conf = fs.readFileSync(path.join(agent.data, 'redis.conf'), 'utf8');
    expect(conf).toMatch(/^bind 127\.0\.0\.1$/m);
    const ss = spawnSync('ss', ['-ltnH', `sport = :${agent.port}`], { encoding: 'utf8' });
    if (ss.status === 0) expect(ss.stdout.trim().split('\n').every((l) => /127\.0\.0\.1:/.test(l))).toBe(true);
  });

  it('restarts its redis-server when it dies', async () => {
    const a = await startAgent();
    const pid = Number(fs.readFileSync(path.join(a.data, 'redis.pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 1500));
    const c = await a.client();
    expect(await c.ping()).toMatch(/^PONG/);
    expect(a.log()).toMatch(/redis-server died/);
    await a.stop();
    expect(fs.existsSync(path.join(a.data, 'redis.sock'))).toBe(false);
  });

  it('a Python client written from the spec (alpha-2 behaviour, Debian python3-redis) works unchanged', () => {
    const py = spawnSync('/usr/bin/python3', [path.join(__dirname, 'conformance/alpha2_client.py'), agent.socket, 'host'], { encoding: 'utf8', timeout: 60_000 });
    expect(py.stderr).toBe('');
    const out = JSON.parse(py.stdout) as Record<string, any>;
    expect(out.ping).toMatch(/^PONG/);
    expect(out.system).toMatchObject({ state: 'SUCCESS', stdout: 'hello world\n', level: 0 });
    expect(out.unknown).toEqual({ state: 'UNKNOWN_CMD', data: '' });
    expect(out.cpu_keys).toEqual(expect.arrayContaining(['cpu', 'vendorId', 'modelName', 'mhz', 'flags', 'cores']));
    expect(out.notfound).toBe(true);
  }, 60_000);

  it('g8os system streams output and exits with the command status', async () => {
    const r = await g8os(['system', '--agent', agent.socket, '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
    expect(r.code).toBe(7);
    expect(r.stdout).toBe('out\n');
    expect(r.stderr).toBe('err\n');
    // a fast writer loses nothing to a reader that starts after it
    const many = await g8os(['system', '--agent', agent.socket, '--', 'seq', '1', '20000']);
    expect(many.stdout).toBe(Array.from({ length: 20000 }, (_, i) => `${i + 1}\n`).join(''));
    const none = await g8os(['ping', '--agent', 'redis://127.0.0.1:1']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/cannot connect/);
  });
});

describe('configuration', () => {
  it('extensions run their binary with {placeholders} from the arguments; loggers; config.get', async () => {
    const conf = path.join(tmp, 'ext.toml');
    fs.writeFileSync(
      conf,
      [
        '[main]',
        'max_jobs = 10',
        '[logging.redis]',
        'type = "redis"',
        'levels = [1]',
        'batch_size = 5',
        '[extension."greet"]',
        'binary = "sh"',
        'args = ["-c", "echo hello {name}; cat"]',
        '[extension."greet".env]',
        'GREETING = "hi"',
      ].join('\n'),
    );
    const a = await startAgent({ config: conf });
    const c = await a.client();
    const r = await (await c.raw('greet', { name: 'bob', stdin: 'from stdin\n' })).get();
    expect(r).toMatchObject({ state: 'SUCCESS', streams: ['hello bob\nfrom stdin\n', ''] });
    const missing = await (await c.raw('greet', {})).get();
    expect(JSON.parse(missing.data)).toBe("argument 'name' is missing");
    const logs = (await c.redis.lrange('core.logs', 0, -1)).map((x) => JSON.parse(x) as { command: string; message: { level: number; message: string } });
    expect(logs.some((l) => l.command === r.id && l.message.message === 'hello bob' && l.message.level === 1)).toBe(true);
    const cfg = await c.json<{ main: { max_jobs: number } }>('config.get', {});
    expect(cfg.main.max_jobs).toBe(10);
    await a.stop();
  });

  it('a broken config file stops the agent with one clear line', async () => {
    const conf = path.join(tmp, 'bad.toml');
    fs.writeFileSync(conf, '[main]\nmax_jobs = "many"\n');
    const r = await g8os(['agent', '--config', conf, '--data', path.join(tmp, 'bad-agent'), '--redis-port', '0']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(`g8os: ${conf}: [main] max_jobs must be a positive integer`);
  });
});
