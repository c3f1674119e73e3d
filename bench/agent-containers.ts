// The agent bench's container part: `g8os container run` of a busybox flist from a hub in the
// namespace (cold and warm block cache) vs `runc run` of the same rootfs, where a warm start's
// time goes, and CONCURRENT corex.create at once on a warm agent.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { Client } from '../src/agent/client';
import { busyboxRootfsTar } from '../test/helpers/tarballs';
import type { Agent } from '../harness/agent';
import { log } from '../harness/cleanup';
import type { Netns } from '../harness/netns';
import { G8OS } from '../harness/paths';
import { cmdline, descendants, procStatus } from '../harness/procs';
import { mountTypesUnder } from '../harness/mounts';
import { agentIn, containerRun, type FirstLine, runcBundle, runcRun, secondsSince, why } from './container-start';
import { benchHub, type Context, fmtSpread, measure, repeat, roundSpread, spread, type Table, type Target } from './lib';
import { type Bar, type Plot } from './plot';

const CONCURRENT = 50;

const one = (xs: number[], digits = 0): string => {
  const s = spread(xs);
  if (!s.n || xs.some(Number.isNaN)) return '–';
  return s.min === s.max ? s.median.toFixed(digits) : fmtSpread(s, digits);
};

/** 3. container start vs runc, 5. its phases, 4. concurrent creates: the tables, data and plots go into out. */
export async function containerStarts(ctx: Context, ns: Netns, dir: string, nStart: number, out: { tables: Table[]; data: Record<string, unknown>; plots: Plot[]; targets: Target[] }): Promise<void> {
  const { tables, data, plots } = out;
    log('agent: busybox rootfs, hub in the namespace, upload');
  const tar = path.join(dir, 'busybox-rootfs.tar');
  await busyboxRootfsTar(tar);
  const hub = await benchHub(path.join(dir, 'h'), ns);
  try {
    const upArgv = ns.exec([process.execPath, G8OS, 'hub', 'upload', tar, '--hub', hub.url, '--token', hub.token, '--name', 'busybox']);
    const up = spawnSync(upArgv[0], upArgv.slice(1), { encoding: 'utf8' });
    const flist = up.stdout.trim().split('\n').pop() ?? '';
    if (up.status !== 0 || !/^https?:\/\//.test(flist)) throw new Error(`hub upload printed no URL: ${up.stdout}${up.stderr}`);

    // runc runs are interleaved with ours (one before each), so both see the same machine load
    const runc: FirstLine[] = [];
    let runcError = '';
    const bundle = path.join(dir, 'bundle');
    const runcOnce = async (tag: string): Promise<void> => {
      if (runcError) return;
      try {
        runc.push(await runcRun(bundle, `g8b-${process.pid}-${tag}`));
      } catch (e) {
        runcError = why(e);
        log(`agent: runc baseline unavailable: ${runcError}`);
      }
    };
    try {
      runcBundle(tar, bundle);
    } catch (e) {
      runcError = why(e);
      log(`agent: runc baseline unavailable: ${runcError}`);
    }
    await runcOnce('warmup');
    runc.length = 0;

    const cold: FirstLine[] = [];
    const coldHwm: number[] = [];
    const warm: FirstLine[] = [];
    let warmHwm = NaN;
    let containerError = '';
    let conc: Record<string, unknown> | undefined;
    let concError = '';
    let phases: Phases | undefined;
    let phasesError = '';
    try {
      for (let i = 0; i < nStart; i++) {
        log(`agent: runc run, then container run, cold ${i + 1}/${nStart} (fresh agent and block cache)`);
        await runcOnce(`c${i}`);
        const a = await agentIn(ns, path.join(dir, `a-cold${i}`), path.join(dir, `cache-cold${i}`));
        try {
          cold.push(await containerRun(a, flist));
          coldHwm.push(a.memory('VmHWM'));
        } finally {
          await a.stop();
        }
      }
      const a = await agentIn(ns, path.join(dir, 'a-warm'), path.join(dir, 'cache-warm'));
      try {
        log('agent: container run, filling the warm cache');
        await containerRun(a, flist);
        for (let i = 0; i < nStart; i++) {
          log(`agent: runc run, then container run, warm ${i + 1}/${nStart}`);
          await runcOnce(`w${i}`);
          warm.push(await containerRun(a, flist));
        }
        warmHwm = a.memory('VmHWM');
        try {
          log(`agent: where the time goes: ${nStart} × create, dispatch, terminate through the client`);
          phases = await containerPhases(a, flist, nStart);
        } catch (e) {
          phasesError = why(e);
          log(`agent: phases failed: ${phasesError}`);
        }
        // ---- 4: concurrent creates on the warm agent
        try {
          log(`agent: ${CONCURRENT} concurrent corex.create, then corex.terminate`);
          conc = await concurrentCreates(a, flist);
        } catch (e) {
          concError = why(e);
          log(`agent: concurrent creates failed: ${concError}`);
        }
      } finally {
        await a.stop();
      }
    } catch (e) {
      containerError = why(e);
      log(`agent: container start unavailable: ${containerError}`);
    }
    for (let i = runc.length; i < 2 * nStart && !runcError; i++) await runcOnce(`r${i}`); // ours failed early

    const runcFirst = spread(runc.map((r) => r.firstS));
    const row = (what: string, xs: FirstLine[], rss: string, err = ''): Array<string> => {
      if (!xs.length) return [what, err ? 'unavailable (see below)' : 'unavailable', '–', '–', '–'];
      const s = spread(xs.map((r) => r.firstS));
      return [what, fmtSpread(s, 3), runc.length ? `${(s.median / runcFirst.median).toFixed(2)}×` : '–', fmtSpread(spread(xs.map((r) => r.totalS)), 3), rss];
    };
    const t3: Table = {
      title: `Container start: spawn to the first line of \`/bin/echo hello\`, busybox rootfs, ${nStart} runs each (runc ${2 * nStart}, interleaved)`,
      headers: ['what', 's to "hello"', 'vs runc', 's to exit', 'agent peak RSS MiB'],
      rows: [
        row('runc run, rootfs unpacked on tmpfs (baseline)', runc, '–', runcError),
        row('g8os container run <hub flist>, cold (fresh agent, empty block cache)', cold, one(coldHwm), containerError),
        row('g8os container run <hub flist>, warm (block cache filled)', warm, Number.isNaN(warmHwm) ? '–' : warmHwm.toFixed(0), containerError),
      ],
      notes: [
        'Wall from spawning the CLI (`node bin/g8os container run … -- /bin/echo hello`, Node start-up included) or `runc run` to its first output line; "to exit" includes tear-down (corex.terminate: processes, mounts, network, cgroups; `runc run` exit, before `runc delete`).',
        'Agent and hub in their own network namespace, on loopback; hub data, block caches, agent data and the runc rootfs all on a tmpfs. Containers get the default nic (bridge + NAT in that namespace). median [min–max].',
        ...(runcError ? [`runc unavailable: ${runcError}`] : []),
        ...(containerError ? [`g8os container run unavailable: ${containerError}`] : []),
      ],
    };
    ctx.print(t3);
    tables.push(t3);
    const bar = (label: string, xs: FirstLine[], baseline = false): Bar => ({ label, ...spread(xs.map((r) => r.firstS)), baseline });
    plots.push({
      name: 'agent-container', title: 'Container start, busybox rootfs: spawn to the first line of /bin/echo hello', unit: 'seconds', digits: 3,
      bars: [bar('runc run, rootfs unpacked on tmpfs', runc, true), bar('g8os container run <hub flist>, cold', cold), bar('g8os container run <hub flist>, warm', warm)],
    });
    const fl = (xs: FirstLine[]): Record<string, unknown> =>
      xs.length ? { first_line_s: roundSpread(spread(xs.map((r) => r.firstS))), exit_s: roundSpread(spread(xs.map((r) => r.totalS))) } : {};
    data.container_start = {
      runs: nStart,
      runc_runs: runc.length,
      runc: runc.length ? fl(runc) : { error: runcError },
      cold: cold.length ? { ...fl(cold), agent_hwm_mib: roundSpread(spread(coldHwm), 1) } : { error: containerError },
      warm: warm.length ? { ...fl(warm), agent_hwm_mib: Number(warmHwm.toFixed(1)) } : { error: containerError },
      ...(runc.length && cold.length ? { cold_vs_runc: Number((spread(cold.map((r) => r.firstS)).median / runcFirst.median).toFixed(2)) } : {}),
      ...(runc.length && warm.length ? { warm_vs_runc: Number((spread(warm.map((r) => r.firstS)).median / runcFirst.median).toFixed(2)) } : {}),
    };

    if (phases || phasesError) {
      const cli = await repeat(nStart, () => measure(process.execPath, [G8OS, '--help']));
      const prow = (what: string, xs: number[]): Array<string> => [what, phases ? fmtSpread(spread(xs), 3) : 'unavailable (see below)'];
      const t5: Table = {
        title: `Where a warm container start goes: the CLI's steps timed through the TypeScript client, ${nStart} runs`,
        headers: ['step', 's'],
        rows: [
          ['node bin/g8os --help (CLI start-up)', fmtSpread(spread(cli.map((x) => x.wallS)), 3)],
          prow('corex.create (lease of the shared lower mount, overlay, namespaces, default nic)', phases?.create ?? []),
          prow('corex.dispatch core.system /bin/echo hello, to its result', phases?.dispatch ?? []),
          prow('corex.terminate', phases?.terminate ?? []),
        ],
        notes: ['Same warm agent and cache as the warm row above. median [min–max].', ...(phasesError ? [`unavailable: ${phasesError}`] : [])],
      };
      ctx.print(t5);
      tables.push(t5);
      data.phases = phases
        ? { cli_start_s: roundSpread(spread(cli.map((x) => x.wallS))), create_s: roundSpread(spread(phases.create)), dispatch_s: roundSpread(spread(phases.dispatch)), terminate_s: roundSpread(spread(phases.terminate)) }
        : { error: phasesError };
    }

    if (conc || concError || containerError) {
      const err = concError || containerError;
      const t4: Table = {
        title: `${CONCURRENT} concurrent corex.create of the busybox flist (warm cache), then corex.terminate of all`,
        headers: ['containers', 'created', 'all up s', 'terminate s (all)', 'lower (FUSE) mounts', 'overlays', 'g8os mount processes', 'mount process RSS MiB', 'agent + mount RSS MiB'],
        rows: [
          conc
            ? [
              CONCURRENT, String(conc.created), (conc.create_s as number).toFixed(2), (conc.terminate_s as number).toFixed(2), String(conc.lower_mounts), String(conc.overlay_mounts),
              String(conc.mount_processes), fmtSpread(conc.mount_rss_mib as ReturnType<typeof spread>, 0),
              `${((conc.agent_rss_mib as number) + (conc.mount_rss_total_mib as number)).toFixed(0)} (${(conc.agent_rss_mib as number).toFixed(0)} + ${(conc.mount_rss_total_mib as number).toFixed(0)})`,
            ]
            : [CONCURRENT, 'unavailable (see below)', '–', '–', '–', '–', '–', '–', '–'],
        ],
        notes: [
          'All creates pushed at once through one client, each with the default nic; "all up" = first push to the last create\'s result; then all terminates at once. With all up: FUSE and overlay mounts under the agent\'s data dir counted from mountinfo, `g8os mount` processes among the agent\'s descendants and their VmRSS, the agent\'s VmRSS.',
          ...(conc?.first_error ? [`first failed create: ${String(conc.first_error)}`] : []),
          ...(conc ? [] : [`unavailable: ${err}`]),
        ],
      };
      ctx.print(t4);
      tables.push(t4);
      data.concurrent = conc ?? { error: err };
      const c = conc && !conc.first_error ? conc : undefined;
      out.targets.push(
        { what: `agent: ${CONCURRENT} concurrent containers from one flist (busybox), lower mounts`, target: '1', measured: c ? `${String(c.lower_mounts)} (${String(c.overlay_mounts)} overlays)` : `unavailable: ${err || String(conc?.first_error)}`, met: c ? c.lower_mounts === 1 : null },
        { what: `agent: ${CONCURRENT} concurrent containers, all up`, target: '< 5 s', measured: c ? `${(c.create_s as number).toFixed(2)} s` : 'unavailable', met: c ? (c.create_s as number) < 5 : null },
        {
          what: `agent: ${CONCURRENT} concurrent containers, agent + mount process RSS`, target: 'reported', info: true,
          measured: c ? `${((c.agent_rss_mib as number) + (c.mount_rss_total_mib as number)).toFixed(0)} MiB (agent ${(c.agent_rss_mib as number).toFixed(0)}, ${String(c.mount_processes)} mount process(es) ${(c.mount_rss_total_mib as number).toFixed(0)})` : 'unavailable', met: c ? true : null,
        },
      );
    }
  } finally {
    await hub.stop();
  }
}

interface Phases {
  create: number[];
  dispatch: number[];
  terminate: number[];
}

/** What `g8os container run` does, step by step through one client: create, dispatch, terminate (seconds). */
async function containerPhases(agent: Agent, flist: string, n: number): Promise<Phases> {
  const client = await new Client(agent.socket).open();
  const out: Phases = { create: [], dispatch: [], terminate: [] };
  let id = 0;
  try {
    for (let i = 0; i < n; i++) {
      let t0 = process.hrtime.bigint();
      id = await client.json<number>('corex.create', { root: flist, host_network: false, nics: [{ type: 'default' }], privileged: false }, 300);
      out.create.push(secondsSince(t0));
      t0 = process.hrtime.bigint();
      const r = await (await client.dispatch(id, 'core.system', { name: '/bin/echo', args: ['hello'], dir: '', stdin: '', env: null })).get(60);
      out.dispatch.push(secondsSince(t0));
      if (r.state !== 'SUCCESS' || r.streams?.[0] !== 'hello\n') throw new Error(`echo in container ${id}: ${r.state} ${JSON.stringify(r.streams)}`);
      t0 = process.hrtime.bigint();
      await client.json('corex.terminate', { container: id }, 120);
      out.terminate.push(secondsSince(t0));
      id = 0;
    }
    return out;
  } finally {
    if (id) await client.json('corex.terminate', { container: id }, 60).catch(() => undefined);
    client.close();
  }
}

/** CONCURRENT corex.create at once on a running agent, a look at its process tree, then all terminated. */
async function concurrentCreates(agent: Agent, flist: string): Promise<Record<string, unknown>> {
  const client = await new Client(agent.socket).open();
  let left: number[] = [];
  try {
    const args = { root: flist, mount: null, host_network: false, nics: [{ type: 'default' }], port: null, hostname: null, privileged: false, storage: null, tags: null };
    const t0 = process.hrtime.bigint();
    const got = await Promise.allSettled(Array.from({ length: CONCURRENT }, () => client.json<number>('corex.create', args, 300)));
    const createS = secondsSince(t0);
    const ids = got.flatMap((g) => (g.status === 'fulfilled' ? [g.value] : []));
    left = ids;
    const failed = got.find((g): g is PromiseRejectedResult => g.status === 'rejected');
    const mountPids = descendants(agent.pid).filter((p) => {
      const argv = cmdline(p);
      const i = argv.findIndex((x) => x.endsWith('bin/g8os'));
      return i >= 0 && argv[i + 1] === 'mount';
    });
    const mountProcs = mountPids.length;
    const mountRssEach = mountPids.map((p) => procStatus(p, 'VmRSS')).filter((x) => !Number.isNaN(x));
    const mountRss = spread(mountRssEach);
    const rss = agent.memory('VmRSS');
    // lower mounts: the FUSE mounts under the agent's data dir; each container adds an overlay
    const types = mountTypesUnder(agent.data);
    const lowerMounts = Object.entries(types).filter(([t]) => t.startsWith('fuse')).reduce((a, [, k]) => a + k, 0);
    const t1 = process.hrtime.bigint();
    const term = await Promise.allSettled(ids.map((id) => client.json('corex.terminate', { container: id }, 300)));
    const terminateS = secondsSince(t1);
    left = ids.filter((_, i) => term[i].status === 'rejected');
    return {
      containers: CONCURRENT,
      created: ids.length,
      ...(failed ? { first_error: why(failed.reason) } : {}),
      create_s: Number(createS.toFixed(3)),
      terminate_s: Number(terminateS.toFixed(3)),
      terminate_failed: left.length,
      mount_processes: mountProcs,
      mounts_per_container: ids.length ? Number((mountProcs / ids.length).toFixed(2)) : null,
      mount_rss_mib: roundSpread(mountRss, 1),
      mount_rss_total_mib: Number(mountRssEach.reduce((a, b) => a + b, 0).toFixed(1)),
      agent_rss_mib: Number(rss.toFixed(1)),
      lower_mounts: lowerMounts,
      overlay_mounts: types.overlay ?? 0,
    };
  } finally {
    // a second try for any that would not terminate; the agent's shutdown takes what is left
    for (const id of left) await client.json('corex.terminate', { container: id }, 60).catch(() => undefined);
    client.close();
  }
}
