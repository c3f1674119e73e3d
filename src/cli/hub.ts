// `g8os hub …`: run a hub, manage its users, upload to one.
import path from 'node:path';
import { Command } from 'commander';
import { hubVerbs } from './hub-verbs';
import { importCommand } from './import';
import { parseMeta, parseSize, untilSignal, UsageError } from './util';

const DEFAULT_DATA = '.g8os/hub';

export function hubCommand(): Command {
  const cmd = new Command('hub')
    .description('run a hub (default), or manage and use one')
    .enablePositionalOptions()
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8080')
    .option('--data <dir>', 'where the hub keeps its registry, flists and blocks', DEFAULT_DATA)
    .option('--store <url>', 'block store (default dir://<data>/blocks)')
    .option('--public-url <url>', 'base URL clients reach this hub at (default http://<listen>)')
    .option('--readonly', 'refuse every write (mirror mode)')
    .option('--max-upload <size>', 'largest upload accepted, e.g. 8G', '8G')
    .option('--max-expanded <size>', 'largest total file size an upload may expand to', '64G')
    .option('--agent <url>', 'the node agent beside this hub, for the node page: redis://host:port or its unix socket path')
    .option('--agent-password <p>', 'the agent password (default: $G8OS_AGENT_PASSWORD)')
    .action(async (o: { listen: string; data: string; store?: string; publicUrl?: string; readonly?: boolean; maxUpload: string; maxExpanded: string; agent?: string; agentPassword?: string }) => {
      if (!/^(\[[0-9a-f:]+\]|[^:]+):\d+$/i.test(o.listen)) throw new UsageError(`--listen ${o.listen}: expected host:port`);
      const { createHub, listen } = await import('../hub/app');
      const hub = await createHub({
        listen: o.listen, dataDir: o.data, storeUrl: o.store, publicUrl: o.publicUrl, readonly: o.readonly,
        maxUpload: parseSize(o.maxUpload), maxExpanded: parseSize(o.maxExpanded),
        agent: o.agent ? { url: o.agent, password: o.agentPassword ?? process.env.G8OS_AGENT_PASSWORD } : null,
      });
      const server = await listen(hub);
      const extra = `${hub.config.readonly ? ', read-only' : ''}${o.agent ? `, node agent ${o.agent}` : ''}`;
      process.stdout.write(`hub listening on ${hub.config.publicUrl} (data ${hub.config.dataDir}, blocks ${hub.store.url}${extra})\n`);
      await untilSignal(server);
      await hub.close();
    });

  const user = cmd.command('user').description('manage hub users');
  user
    .command('add')
    .description('create a user (if new) and print a new API token as the last line')
    .argument('<name>')
    .option('--data <dir>', 'the hub data directory', DEFAULT_DATA)
    .option('--ttl <days>', 'token lifetime in days (default: no expiry)', (v) => Number(v))
    .action(async (name: string, o: { data: string; ttl?: number }) => {
      const { Registry } = await import('../hub/registry');
      const fs = await import('node:fs');
      fs.mkdirSync(o.data, { recursive: true });
      const reg = new Registry(path.resolve(o.data));
      try {
        const token = reg.addUser(name, o.ttl ? o.ttl * 86400 : undefined);
        process.stderr.write(`user ${name}: new token (shown once; send it as "Authorization: Bearer <token>")\n`);
        process.stdout.write(`${token}\n`);
      } finally {
        reg.close();
      }
    });

  cmd
    .command('upload')
    .description('upload a .tar / .tar.gz / .tgz to a hub, which makes it an flist; prints its URL as the last line')
    .argument('<file>')
    .requiredOption('--hub <url>', 'the hub, e.g. http://127.0.0.1:8080')
    .option('--token <token>', 'API token (default: $G8OS_TOKEN)')
    .option('--name <name>', 'flist name (default: the file name without .tar.gz)')
    .option('--meta <key=value>', 'extra flist metadata; repeatable', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .action(async (file: string, o: { hub: string; token?: string; name?: string; meta: string[] }) => {
      const token = o.token ?? process.env.G8OS_TOKEN;
      if (!token) throw new UsageError('no token: pass --token or set G8OS_TOKEN');
      const { uploadTarball } = await import('./hub-upload');
      const r = await uploadTarball(file, { hub: o.hub, token, name: o.name, meta: parseMeta(o.meta) });
      process.stdout.write(`${r.url}\n`);
    });
  cmd.addCommand(importCommand());
  // zflist's hub verbs: whoami, ls, promote, link, crosslink, … (./hub-verbs)
  for (const verb of hubVerbs()) cmd.addCommand(verb);
  return cmd;
}
