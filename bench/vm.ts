// `--only vm`: VM create-to-first-serial-line booted from an flist through the VM layer (src/vm,
// the mount service, QMP) vs `qemu -kernel` of the same kernel and initrd unpacked, same run, same
// accelerator; and the memory a VM costs beside qemu itself (the flist mount process and the
// VM layer's own growth). Guest: the installed cloud kernel + a busybox initramfs whose /init
// prints one line and waits.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MountService } from '../src/mountd';
import { Vms } from '../src/vm';
import { findQemu, probeAccel } from '../src/vm/qemu';
import { type BenchResult, type Context, fmtSpread, log, MiB, REPO, spread } from './lib';

const LINE = 'G8FIRST';

function buildFlist(dir: string): { flist: string; kernel: string; initrd: string; cmdline: string } {
  const kver = fs.readdirSync('/lib/modules').filter((d) => d.includes('cloud')).sort().pop();
  if (!kver) throw new Error('no cloud kernel (linux-image-cloud-amd64)');
  const root = path.join(dir, 'initramfs');
  fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
  fs.copyFileSync('/bin/busybox', path.join(root, 'bin/busybox'));
  fs.chmodSync(path.join(root, 'bin/busybox'), 0o755);
  fs.writeFileSync(path.join(root, 'init'), `#!/bin/busybox sh\n/bin/busybox echo ${LINE}\nwhile true; do /bin/busybox sleep 60; done\n`, { mode: 0o755 });
  const tree = path.join(dir, 'tree');
  fs.mkdirSync(path.join(tree, 'boot'), { recursive: true });
  const kernel = path.join(tree, 'boot/vmlinuz');
  const initrd = path.join(tree, 'boot/initrd.img');
  fs.copyFileSync(`/boot/vmlinuz-${kver}`, kernel);
  execFileSync('sh', ['-c', `cd "${root}" && find . | cpio -o -H newc --quiet | gzip -1 > "${initrd}"`]);
  const cmdline = 'console=ttyS0 quiet loglevel=0 panic=-1';
  fs.writeFileSync(path.join(tree, 'boot/cmdline'), cmdline);
  const flist = path.join(dir, 'guest.flist');
  execFileSync(process.execPath, [path.join(REPO, 'bin/g8os'), 'flist', 'create', tree, '-o', flist, '--store', `dir://${path.join(dir, 'store')}`], { stdio: 'ignore' });
  return { flist, kernel, initrd, cmdline };
}

async function waitLine(file: string, t0: number, ms = 120_000): Promise<number> {
  for (;;) {
    if (fs.existsSync(file) && fs.readFileSync(file, 'utf8').includes(LINE)) return performance.now() - t0;
    if (performance.now() - t0 > ms) throw new Error(`no ${LINE} on the serial console within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const rssKiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);

export async function vmBench(ctx: Context): Promise<BenchResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-bench-vm-'));
  const runs = ctx.quick ? 2 : 5;
  const qemu = findQemu();
  const accel = await probeAccel(qemu, log);
  const g = buildFlist(dir);
  const mounts = new MountService({ dir: path.join(dir, 'mounts'), cacheDir: path.join(dir, 'cache'), graceMs: 60_000, log });
  await mounts.init();
  const vms = new Vms({ dir: path.join(dir, 'vms'), mounts, instance: 'bnch', log });
  await vms.init();
  const viaFlist: number[] = [];
  const direct: number[] = [];
  const mem: { qemu: number; mount: number; layer: number }[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      // the VM layer: flist lease (mounted once, then warm), qemu, QMP
      let t0 = performance.now();
      const uuid = await vms.create({ name: `b${i}`, media: [], cpu: 1, memory: 128, nics: [], flist: g.flist });
      viaFlist.push(await waitLine(vms.details(uuid).serial, t0));
      // baseline: qemu -kernel of the unpacked files
      const serial = path.join(dir, `direct-${i}.log`);
      t0 = performance.now();
      const p = spawn(qemu, ['-machine', 'pc', '-accel', accel, '-cpu', accel === 'kvm' ? 'host' : 'max', '-smp', '1', '-m', '128', '-nodefaults', '-display', 'none',
        '-chardev', `file,id=s0,path=${serial}`, '-serial', 'chardev:s0', '-kernel', g.kernel, '-initrd', g.initrd, '-append', g.cmdline], { stdio: 'ignore' });
      try {
        direct.push(await waitLine(serial, t0));
      } finally {
        p.kill('SIGKILL');
      }
      await vms.destroy(uuid);
    }
    // memory: three VMs at once; qemu's own RSS vs what the node adds (mount process, VM layer)
    const before = process.memoryUsage().rss;
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await vms.create({ name: `m${i}`, media: [], cpu: 1, memory: 128, nics: [], flist: g.flist }));
    for (const id of ids) await waitLine(vms.details(id).serial, performance.now());
    const layer = (process.memoryUsage().rss - before) / 3 / 1024;
    const mountPids = mounts.list().map((l) => l.pid).filter((x): x is number => !!x);
    const mount = mountPids.reduce((s, p) => s + rssKiB(p), 0);
    for (const id of ids) mem.push({ qemu: rssKiB(vms.details(id).pid!), mount: mount / 3, layer });
    for (const id of ids) await vms.destroy(id);
  } finally {
    await vms.shutdown();
    await mounts.shutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const f = spread(viaFlist);
  const d = spread(direct);
  const m = (k: 'qemu' | 'mount' | 'layer'): number => mem.reduce((s, x) => s + x[k], 0) / mem.length / 1024;
  const tables = [
    {
      title: `VM create to first serial line (${accel.toUpperCase()}, 1 vCPU, 128 MiB, ${runs} runs, ms)`,
      headers: ['how', 'median', 'spread', 'ratio'],
      rows: [
        ['kvm layer: flist lease + qemu + QMP', Math.round(f.median), fmtSpread(f, 0), (f.median / d.median).toFixed(2)],
        ['qemu -kernel (same files unpacked)', Math.round(d.median), fmtSpread(d, 0), '1.00'],
      ],
    },
    {
      title: 'Memory per VM (3 VMs running, MiB)',
      headers: ['part', 'RSS per VM'],
      rows: [
        ['qemu process', m('qemu').toFixed(1)],
        ['flist mount process (shared, / 3)', m('mount').toFixed(1)],
        ['VM layer in the agent (RSS growth / 3)', m('layer').toFixed(1)],
      ],
      notes: ['the mount process is shared by every VM booted from the same flist'],
    },
  ];
  for (const t of tables) ctx.print(t);
  return { name: 'vm', tables, data: { accel, flistMs: f, directMs: d, qemuMiB: m('qemu'), mountMiB: m('mount'), layerMiB: m('layer'), MiB } };
}
