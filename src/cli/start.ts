// `g8os start` (what `npm start` runs): a single node on embedded defaults, all data under one
// directory. For now the hub; the node agent joins it in a later issue.
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { untilSignal } from './util';

export function startCommand(): Command {
  return new Command('start')
    .description('run a single node on embedded defaults (hub on 127.0.0.1:8080, data in ./.g8os)')
    .option('--data <dir>', 'data directory', '.g8os')
    .option('--listen <host:port>', 'hub address', '127.0.0.1:8080')
    .action(async (o: { data: string; listen: string }) => {
      const { createHub, listen } = await import('../hub/app');
      const { DEFAULTS } = await import('../hub/app');
      const data = path.resolve(o.data);
      const hub = await createHub({ listen: o.listen, dataDir: path.join(data, 'hub'), maxUpload: DEFAULTS.maxUpload, maxExpanded: DEFAULTS.maxExpanded });
      // One local user whose token is kept next to the data, so the printed commands just work.
      const tokenFile = path.join(data, 'token');
      if (!fs.existsSync(tokenFile)) fs.writeFileSync(tokenFile, `${hub.registry.addUser('local')}\n`, { mode: 0o600 });
      const server = await listen(hub);
      const url = hub.config.publicUrl;
      const bin = path.relative(process.cwd(), path.resolve(__dirname, '../../../bin/g8os')) || 'bin/g8os';
      process.stdout.write(
        [
          `g8os node running: hub ${url} (data ${data})`,
          '',
          'Try, from another terminal:',
          `  ${bin} hub upload rootfs.tar.gz --hub ${url} --token $(cat ${path.relative(process.cwd(), tokenFile)})`,
          `  ${bin} flist ls ${url}/local/rootfs.flist`,
          `  ${bin} flist cat ${url}/local/rootfs.flist /etc/os-release`,
          '',
          'Stop with Ctrl-C.',
          '',
        ].join('\n'),
      );
      await untilSignal(server);
      await hub.close();
    });
}
