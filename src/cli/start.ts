// `g8os start` (what `npm start` runs): a single node on embedded defaults — the hub and the
// agent — with all data under one directory.
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { waitForSignal } from './agent';
import { UsageError } from './util';

export function startCommand(): Command {
  return new Command('start')
    .description('run a single node on embedded defaults: hub on 127.0.0.1:8080 and agent on 127.0.0.1:6379, data in ./.g8os')
    .option('--data <dir>', 'data directory', '.g8os')
    .option('--listen <host:port>', 'hub address', '127.0.0.1:8080')
    .option('--redis-port <port>', 'agent command bus port on 127.0.0.1', '6379')
    .action(async (o: { data: string; listen: string; redisPort: string }) => {
      const { createHub, listen, DEFAULTS } = await import('../hub/app');
      const { Agent } = await import('../agent/agent');
      const port = Number(o.redisPort);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--redis-port ${o.redisPort}: expected 0-65535`);
      const data = path.resolve(o.data);
      const hub = await createHub({ listen: o.listen, dataDir: path.join(data, 'hub'), maxUpload: DEFAULTS.maxUpload, maxExpanded: DEFAULTS.maxExpanded });
      // One local user whose token is kept next to the data, so the printed commands just work.
      const tokenFile = path.join(data, 'token');
      if (!fs.existsSync(tokenFile)) fs.writeFileSync(tokenFile, `${hub.registry.addUser('local')}\n`, { mode: 0o600 });
      const server = await listen(hub);
      let agent: import('../agent/agent').Agent;
      try {
        agent = await Agent.start({ dataDir: path.join(data, 'agent'), redisPort: port, cacheDir: path.join(data, 'cache') });
      } catch (e) {
        server.close();
        await hub.close();
        throw e;
      }
      // the hub's node page and /api/node drive this agent (its unix socket: no password, no port)
      hub.config.agent = { url: agent.socket };
      const url = hub.config.publicUrl;
      const bin = path.relative(process.cwd(), path.resolve(__dirname, '../../../bin/g8os')) || 'bin/g8os';
      const token = path.relative(process.cwd(), tokenFile);
      const agentUrl = port ? `redis://127.0.0.1:${port}` : agent.socket;
      const agentFlag = port === 6379 ? '' : ` --agent ${agentUrl}`;
      process.stdout.write(
        [
          `g8os node running: hub ${url}, agent ${agentUrl} (data ${data})`,
          '',
          `Open ${url} in a browser (sign in with the token in ${token}) to upload, browse and run containers.`,
          '',
          'Or try, from another terminal (any rootfs tarball, e.g. from debootstrap or `docker export`):',
          `  ${bin} hub upload rootfs.tar.gz --hub ${url} --token $(cat ${token})`,
          `  mkdir -p /mnt/rootfs && ${bin} mount ${url}/local/rootfs.flist /mnt/rootfs -d`,
          `  ${bin} container run${agentFlag} ${url}/local/rootfs.flist -- echo hello`,
          '',
          'Stop with Ctrl-C.',
          '',
        ].join('\n'),
      );
      await waitForSignal();
      process.stderr.write('stopping: containers, jobs, agent, hub\n');
      await agent.stop();
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await closed;
      await hub.close();
    });
}
