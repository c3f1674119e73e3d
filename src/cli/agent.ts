// `g8os agent` (core0) and its client verbs: ping, system, container run|ls|exec|logs|rm.
import path from 'node:path';
import { Command } from 'commander';
import type { Client, Response } from '../agent/client';
import { exitStatus, type Result } from '../agent/types';
import { parseMeta, UsageError } from './util';

const DEFAULT_AGENT = 'redis://127.0.0.1:6379';

interface AgentFlags {
  agent?: string;
  password?: string;
}

function withAgent(c: Command): Command {
  return c
    .option('--agent <url>', `the node: redis://host:port or a unix socket path (default: $G8OS_AGENT or ${DEFAULT_AGENT})`)
    .option('--password <p>', 'the agent password (default: $G8OS_AGENT_PASSWORD)');
}

async function open(o: AgentFlags): Promise<Client> {
  const { Client } = await import('../agent/client');
  return new Client(o.agent ?? process.env.G8OS_AGENT ?? DEFAULT_AGENT, o.password ?? process.env.G8OS_AGENT_PASSWORD).open();
}

function parseInt10(s: string, what: string): number {
  if (!/^\d+$/.test(s)) throw new UsageError(`${what} ${JSON.stringify(s)}: expected a number`);
  return Number(s);
}

/** Streams a job's stdout/stderr live, then returns its result. */
async function follow(resp: Response, waitSeconds: number): Promise<Result> {
  await resp.stream((level, text) => {
    if (level === 1) process.stdout.write(`${text}\n`);
    else if (level === 2) process.stderr.write(`${text}\n`);
  });
  return resp.get(waitSeconds);
}

function report(r: Result): number {
  const code = exitStatus(r);
  if (r.state !== 'SUCCESS' && r.code < 1000) {
    const { ResultError } = require('../agent/client') as typeof import('../agent/client');
    process.stderr.write(`g8os: ${ResultError.text(r)}\n`);
  } else if (r.state === 'TIMEOUT' || r.state === 'KILLED') process.stderr.write(`g8os: ${r.command}: ${r.state}\n`);
  return code;
}

function agentCommand(): Command {
  return new Command('agent')
    .description('run the node agent (core0): a supervised redis-server as the command bus, jobs, containers')
    .option('--config <file>', 'g8os.toml ([main] max_jobs, [globals] storage/cache, [containers] bridge/cidr, ...)')
    .option('--data <dir>', 'data directory (redis socket, containers)', '/var/lib/g8os/agent')
    .option('--redis-port <port>', 'TCP port of the command bus on 127.0.0.1 (0: unix socket only)', '6379')
    .option('--listen <addr>', 'address(es) the bus listens on, comma-separated', '127.0.0.1')
    .option('--password <p>', 'require this password (redis AUTH) (default: $G8OS_AGENT_PASSWORD)')
    .option('--cache <dir>', 'block cache of container mounts (default: the machine cache)')
    .option('--mount-grace <ms>', 'how long an flist stays mounted after its last container', '30000')
    .action(async (o: { config?: string; data: string; redisPort: string; listen: string; password?: string; cache?: string; mountGrace: string }) => {
      const { Agent } = await import('../agent/agent');
      const port = parseInt10(o.redisPort, '--redis-port');
      if (port > 65535) throw new UsageError(`--redis-port ${port}: expected 0-65535`);
      const agent = await Agent.start({
        dataDir: path.resolve(o.data),
        configFile: o.config,
        redisPort: port,
        bind: o.listen.split(',').map((s) => s.trim()).filter(Boolean),
        password: o.password ?? process.env.G8OS_AGENT_PASSWORD,
        cacheDir: o.cache ? path.resolve(o.cache) : undefined,
        mountGraceMs: parseInt10(o.mountGrace, '--mount-grace'),
      });
      process.stdout.write(`agent ready: ${port ? `redis://${o.listen.split(',')[0]}:${port}, ` : ''}unix socket ${agent.socket}\n`);
      await waitForSignal();
      process.stderr.write('agent stopping: terminating containers and jobs\n');
      await agent.stop();
    });
}

export function waitForSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (s: NodeJS.Signals): void => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(s);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

function pingCommand(): Command {
  return withAgent(new Command('ping'))
    .description('check the agent answers (core.ping), with the round-trip time')
    .action(async (o: AgentFlags) => {
      const c = await open(o);
      try {
        const t0 = process.hrtime.bigint();
        const pong = await c.ping();
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        process.stdout.write(`${pong} (${ms.toFixed(1)} ms)\n`);
      } finally {
        c.close();
      }
    });
}

function systemCommand(): Command {
  return withAgent(new Command('system'))
    .description('run a command on the node (core.system); output is streamed, the exit status is the command\'s')
    .argument('<cmd...>', 'command and arguments (put -- before them)')
    .option('--dir <dir>', 'working directory')
    .option('--env <k=v>', 'add to the environment (repeatable)', collect, [])
    .option('--max-time <s>', 'kill after this many seconds')
    .action(async (argv: string[], o: AgentFlags & { dir?: string; env: string[]; maxTime?: string }) => {
      const c = await open(o);
      try {
        const resp = await c.system(argv, { dir: o.dir, env: envPairs(o.env), stream: true, max_time: o.maxTime ? parseInt10(o.maxTime, '--max-time') : null });
        process.exitCode = report(await follow(resp, 30));
      } finally {
        c.close();
      }
    });
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

function envPairs(pairs: string[]): Record<string, string> | undefined {
  return pairs.length ? parseMeta(pairs, '--env') : undefined;
}

function pairs(list: string[], flag: string, check: (s: string) => string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of list) {
    const i = p.lastIndexOf(':');
    if (i <= 0 || i === p.length - 1) throw new UsageError(`${flag} ${JSON.stringify(p)}: expected HOST:CONTAINER`);
    out[check(p.slice(0, i))] = check(p.slice(i + 1));
  }
  return out;
}

interface RunFlags extends AgentFlags {
  name?: string;
  port: string[];
  mount: string[];
  env: string[];
  hostNetwork?: boolean;
  detach?: boolean;
  memory?: string;
  storage?: string;
}

function containerCommand(): Command {
  const c = new Command('container').description('containers from flists on this node (corex.*)');

  c.addCommand(
    withAgent(new Command('run'))
      .description('start a container from an flist and run a command in it; output is streamed, the exit status is the command\'s')
      .argument('<flist>', 'flist URL (http(s)://hub/user/name.flist) or a local .flist path')
      .argument('[cmd...]', 'command and arguments (put -- before them); default: the flist entrypoint')
      .option('--name <name>', 'hostname and tag of the container')
      .option('-p, --port <host:container>', 'forward a host TCP port (repeatable)', collect, [])
      .option('--mount <host:container>', 'bind a host directory in (repeatable)', collect, [])
      .option('--env <k=v>', 'environment of the command (repeatable)', collect, [])
      .option('--host-network', 'share the host network namespace')
      .option('--memory <bytes>', 'memory limit, e.g. 256M')
      .option('--storage <url>', 'block store for the flist (default: the flist backend)')
      .option('-d, --detach', 'leave the container running and print its id (see `container logs`, `container rm`)')
      .action(async (root: string, cmd: string[], o: RunFlags) => {
        const local = !/^[a-z][a-z0-9+.-]*:\/\//i.test(root);
        const flist = local ? path.resolve(root) : root;
        const { parseSize } = await import('./util');
        const client = await open(o);
        let id = 0;
        const stop = async (): Promise<void> => {
          if (id && !o.detach) await client.json('corex.terminate', { container: id }, 60).catch(() => undefined);
        };
        const onSignal = (): void => {
          void stop().finally(() => process.exit(130));
        };
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        try {
          const port = pairs(o.port, '-p', (s) => String(parseInt10(s, '-p')));
          const mount = pairs(o.mount, '--mount', (s) => s);
          for (const h of Object.keys(mount)) if (!path.isAbsolute(h)) mount[path.resolve(h)] = mount[h], delete mount[h];
          id = await client.json<number>(
            'corex.create',
            {
              root: flist,
              mount: Object.keys(mount).length ? mount : null,
              host_network: !!o.hostNetwork,
              nics: o.hostNetwork ? [] : [{ type: 'default' }],
              port: Object.keys(port).length ? port : null,
              hostname: o.name ?? null,
              privileged: false,
              storage: o.storage ?? null,
              tags: o.name ? [o.name] : null,
              ...(o.memory ? { cgroups: { memory: parseSize(o.memory) } } : {}),
            },
            300,
          );
          let argv = cmd;
          if (!argv.length) {
            // the flist's entrypoint, as the agent read it from the flist
            const list = await client.json<Record<string, { container: { entrypoint?: string[] } }>>('corex.list', {});
            argv = list[String(id)]?.container.entrypoint ?? [];
            if (!argv.length) throw new UsageError(`${root} has no entrypoint: give the command after --`);
          }
          const resp = await client.dispatch(id, 'core.system', { name: argv[0], args: argv.slice(1), dir: '', stdin: '', env: envPairs(o.env) ?? null }, { stream: !o.detach });
          if (o.detach) {
            process.stdout.write(`${id}\n`);
            return;
          }
          process.exitCode = report(await follow(resp, 30));
        } finally {
          await stop();
          client.close();
        }
      }),
  );

  c.addCommand(
    withAgent(new Command('ls'))
      .description('list the containers')
      .option('--json', 'the corex.list answer as JSON')
      .action(async (o: AgentFlags & { json?: boolean }) => {
        const client = await open(o);
        try {
          const list = await client.json<Record<string, { rss?: number; container: { pid: number; arguments: { root: string; tags?: string[] | null } } }>>('corex.list', {});
          if (o.json) return void process.stdout.write(`${JSON.stringify(list)}\n`);
          const rows = [['ID', 'PID', 'RSS', 'TAGS', 'FLIST']];
          for (const [id, v] of Object.entries(list))
            rows.push([id, String(v.container.pid), `${Math.round((v.rss ?? 0) / 2 ** 20)}M`, (v.container.arguments.tags ?? []).join(','), v.container.arguments.root]);
          const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
          for (const r of rows) process.stdout.write(`${r.map((x, i) => (i === r.length - 1 ? x : x.padEnd(w[i]))).join('  ')}\n`);
        } finally {
          client.close();
        }
      }),
  );

  c.addCommand(
    withAgent(new Command('exec'))
      .description('run a command in a running container (corex.dispatch); output streamed, exit status the command\'s')
      .argument('<id>', 'container id')
      .argument('<cmd...>', 'command and arguments (put -- before them)')
      .option('--env <k=v>', 'environment (repeatable)', collect, [])
      .option('--dir <dir>', 'working directory inside the container')
      .action(async (idArg: string, argv: string[], o: AgentFlags & { env: string[]; dir?: string }) => {
        const id = parseInt10(idArg, 'container id');
        const client = await open(o);
        try {
          const resp = await client.dispatch(id, 'core.system', { name: argv[0], args: argv.slice(1), dir: o.dir ?? '', stdin: '', env: envPairs(o.env) ?? null }, { stream: true });
          process.exitCode = report(await follow(resp, 30));
        } finally {
          client.close();
        }
      }),
  );

  c.addCommand(
    withAgent(new Command('logs'))
      .description('the last output lines of the commands run in a container')
      .argument('<id>', 'container id')
      .action(async (idArg: string, o: AgentFlags) => {
        const client = await open(o);
        try {
          const lines = await client.json<string[]>('corex.logs', { container: parseInt10(idArg, 'container id') });
          for (const l of lines) process.stdout.write(`${l}\n`);
        } finally {
          client.close();
        }
      }),
  );

  c.addCommand(
    withAgent(new Command('rm'))
      .description('terminate containers: processes, mounts, network and cgroups are removed')
      .argument('<id...>', 'container ids')
      .action(async (ids: string[], o: AgentFlags) => {
        const client = await open(o);
        try {
          for (const i of ids) await client.json('corex.terminate', { container: parseInt10(i, 'container id') }, 120);
        } finally {
          client.close();
        }
      }),
  );
  return c;
}

export function agentCommands(): Command[] {
  return [agentCommand(), pingCommand(), systemCommand(), containerCommand()];
}
