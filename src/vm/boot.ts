// Booting from an flist: its kernel, initrd and command line (disks-vms.md §1.1, `flist`).
// Either boot/boot.yaml names them (kernel:, initrd:, cmdline: lines) or the usual names are used.
import fs from 'node:fs';
import path from 'node:path';
import { notFound } from '../errors';
import type { Boot } from './qemu';

const KERNELS = ['boot/vmlinuz', 'vmlinuz', 'boot/kernel', 'kernel', 'boot/bzImage', 'bzImage'];
const INITRDS = ['boot/initrd.img', 'initrd.img', 'boot/initrd', 'initrd', 'boot/initramfs.img', 'initramfs.img'];
const CMDLINES = ['boot/cmdline', 'cmdline'];

const inside = (root: string, p: string): string => path.join(root, path.normalize(`/${p}`));
const isFile = (p: string): boolean => {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
};

function yaml(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^(kernel|initrd|cmdline)\s*:\s*(.*?)\s*$/.exec(l);
    if (m) out[m[1]] = m[2].replace(/^(['"])(.*)\1$/, '$2');
  }
  return out;
}

export function findBoot(root: string, flist: string): Boot {
  const conf = isFile(inside(root, 'boot/boot.yaml')) ? yaml(inside(root, 'boot/boot.yaml')) : {};
  const pick = (names: string[], given?: string): string | undefined =>
    given ? (isFile(inside(root, given)) ? inside(root, given) : undefined) : names.map((n) => inside(root, n)).find(isFile);
  const kernel = pick(KERNELS, conf.kernel);
  if (!kernel) throw notFound(`flist '${flist}' has no kernel (${conf.kernel ? `boot.yaml names ${conf.kernel}` : `looked for /${KERNELS.join(', /')}`})`);
  const initrd = pick(INITRDS, conf.initrd);
  const cmdFile = CMDLINES.map((n) => inside(root, n)).find(isFile);
  const cmdline = conf.cmdline ?? (cmdFile ? fs.readFileSync(cmdFile, 'utf8').trim() : undefined);
  return { kernel, initrd, cmdline: cmdline || 'console=ttyS0' };
}
